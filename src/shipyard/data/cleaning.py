"""Cell cleaning before the pipeline: strip whitespace, turn missing markers into missing.

This runs on the raw table, before the fitted pipeline, for training and evaluation data alike.
The exported ONNX graph cannot strip strings, so a served model expects clean values: numbers
with NaN for missing, strings without surrounding blanks with ``""`` for missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MISSING_STRING", "as_category_strings", "clean_cells", "is_missing"]

#: How a missing string value is represented in the pipeline and in the served model.
MISSING_STRING = ""


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA/NaT."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def clean_cells(column: pd.Series, missing_values: Iterable[str], *, strip: bool) -> pd.Series:
    """An object column where every missing marker (after stripping) is None.

    Non-string cells (numbers from Parquet) are kept as they are, NaN becoming None.
    """
    markers = set(missing_values)

    def clean(value: Any) -> Any:
        if is_missing(value):
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            text = value.strip() if strip else value
            return None if text in markers or (strip and not text) else text
        return value

    return pd.Series([clean(v) for v in column.to_numpy(dtype=object)], index=column.index,
                     dtype=object, name=column.name)


def _category_text(value: Any) -> str:
    if value is None:
        return MISSING_STRING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def as_category_strings(cleaned: pd.Series) -> np.ndarray:
    """Object array of ``str``: integral numbers without ``.0`` (``3.0`` -> ``"3"``), missing
    as :data:`MISSING_STRING`."""
    return np.array([_category_text(v) for v in cleaned.to_numpy(dtype=object)], dtype=object)
