"""Tabular data: reading tables, cleaning cells, the schema check and the preprocessing pipeline.

Names are imported lazily, so ``import shipyard.data`` costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "DataError": "errors",
    "PreparedData": "schema",
    "infer_features": "schema",
    "prepare_table": "schema",
    "Table": "sources",
    "load_table": "sources",
    "build_preprocessor": "tabular",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipyard.data.{module}"), name)
