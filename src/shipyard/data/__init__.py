"""Tabular data: reading tables, cleaning cells, the schema check and the preprocessing pipeline.

Names are imported lazily, so ``import shipyard.data`` costs nothing until one is used.
"""

from __future__ import annotations

from shipyard._lazy import lazy_exports

__all__ = [
    "ColumnPlan",
    "DataError",
    "FeatureSpec",
    "PreparedData",
    "Preprocessing",
    "Table",
    "build_preprocessor",
    "column_plans",
    "infer_features",
    "load_table",
    "prepare_table",
]

_WHERE = {
    "ColumnPlan": "features",
    "FeatureSpec": "features",
    "Preprocessing": "features",
    "column_plans": "features",
    "DataError": "shipyard.errors",
    "PreparedData": "schema",
    "infer_features": "schema",
    "prepare_table": "schema",
    "Table": "sources",
    "load_table": "sources",
    "build_preprocessor": "tabular",
}


__getattr__ = lazy_exports(__name__, _WHERE)
