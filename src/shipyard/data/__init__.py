"""Training data. Tabular: reading tables, cleaning cells, the schema check and the preprocessing
pipeline. Images: IDX files, class folders and sklearn:digits as cached ``ImageSet`` arrays
(``image``), a torch loader over them (``image_loader``) and batch augmentation (``augment``).
Text: a CSV/TSV table of texts and labels (``text``).

Names are imported lazily, so ``import shipyard.data`` costs nothing until one is used.
"""

from __future__ import annotations

from shipyard._lazy import lazy_dir, lazy_exports

__all__ = [
    "Augment",
    "AugmentConfig",
    "ColumnPlan",
    "DataError",
    "FeatureSpec",
    "ImageSet",
    "PreparedData",
    "Preprocessing",
    "Table",
    "TextTable",
    "build_preprocessor",
    "column_plans",
    "infer_features",
    "load_image_source",
    "load_table",
    "load_text_table",
    "make_image_loader",
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
    "ImageSet": "image",
    "load_image_source": "image",
    "make_image_loader": "image_loader",
    "Augment": "augment",
    "AugmentConfig": "augment_config",
    "TextTable": "text",
    "load_text_table": "text",
}


__getattr__ = lazy_exports(__name__, _WHERE)
__dir__ = lazy_dir(globals(), __all__)
