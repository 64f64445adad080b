"""Schema check: a raw table becomes the feature frame and target the pipeline is fitted on.

Every problem is reported with the column, the row and the value, and what to change:
a missing column (with the closest names), a non-numeric value in a numeric column, an empty
file or column, a target with a single class.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from shipyard.data.cleaning import as_category_strings, clean_cells
from shipyard.data.features import FeatureSpec, FeatureType
from shipyard.data.sources import Table
from shipyard.errors import DataError

__all__ = ["PreparedData", "Task", "infer_features", "prepare_table"]

Task = Literal["regression", "binary", "multiclass"]

_MAX_LISTED = 5


@dataclass
class PreparedData:
    """Features and target, cleaned and typed, ready for the pipeline."""

    X: pd.DataFrame
    """Feature columns in feature order: numeric as float32 (NaN = missing), categorical and
    text as ``str`` objects (``""`` = missing)."""
    y: np.ndarray | None
    """Target values (float64 for regression; int64 or ``str`` for classification)."""
    classes: list[Any] = field(default_factory=list)
    """Sorted distinct target values (classification only)."""
    dropped_rows: int = 0
    """Rows left out because their target was missing."""


def _where(table: Table, positions: Iterable[int]) -> str:
    """'row 5 (line 6)' style locations: data rows 1-based, plus CSV file lines."""
    parts = []
    for pos in positions:
        text = f"row {pos + 1}"
        if table.kind == "csv":
            text += f" (line {pos + 2} of the file)"
        parts.append(text)
    return ", ".join(parts)


def _missing_column(table: Table, column: str, role: str) -> DataError:
    columns = [str(c) for c in table.frame.columns]
    close = difflib.get_close_matches(column, columns, n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    shown = columns if len(columns) <= 30 else [*columns[:30], "..."]
    return DataError(
        f"{role}: column {column!r} is not in {table.source}{hint} (its columns: {shown})"
    )


def infer_features(
    table: Table, target: str | None, exclude: Iterable[str] = ()
) -> dict[str, FeatureSpec]:
    """Every column but the target and ``exclude``: numeric where all values parse as numbers,
    categorical otherwise."""
    skip = set(exclude) | ({target} if target else set())
    for name in exclude:
        if name not in table.frame.columns:
            raise _missing_column(table, name, "exclude")
    features = {}
    for name in table.frame.columns:
        if name in skip:
            continue
        column = table.frame[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            kind: FeatureType = "numeric"
        else:
            cleaned = clean_cells(column, [""], strip=True)
            parsed = pd.to_numeric(cleaned, errors="coerce")
            kind = "numeric" if parsed.notna().sum() == cleaned.notna().sum() else "categorical"
        features[str(name)] = FeatureSpec(type=kind)
    if not features:
        raise DataError(f"features: {table.source} has no column left besides the target "
                        f"{target!r}; list the features in the experiment")
    return features


def _to_numbers(table: Table, name: str, column: pd.Series, missing: list[str], strip: bool,
                role: str, fix: str) -> np.ndarray:
    """float64 values, NaN for missing; a DataError naming the rows of non-numeric cells."""
    values: np.ndarray
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        cleaned = clean_cells(column, missing, strip=strip)
        parsed = pd.to_numeric(cleaned, errors="coerce")
        bad = np.flatnonzero(cleaned.notna().to_numpy() & parsed.isna().to_numpy())
        if len(bad):
            first = cleaned.iloc[bad[0]]
            more = f" and {len(bad) - 1} more row(s): {_where(table, bad[1:_MAX_LISTED])}" \
                if len(bad) > 1 else ""
            raise DataError(
                f"{role}: column {name!r} is numeric but {_where(table, bad[:1])} holds "
                f"{first!r}{more}; {fix}"
            )
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        raise DataError(
            f"{role}: column {name!r} holds {values[infinite[0]]!r} at "
            f"{_where(table, infinite[:_MAX_LISTED])}; numbers must be finite: fix the data"
        )
    return values


def _prepare_target(
    table: Table, target: str, task: Task, missing: list[str], strip: bool, check_classes: bool
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(values, mask of rows with a target, classes)."""
    if target not in table.frame.columns:
        raise _missing_column(table, target, "data.target")
    column = table.frame[target]
    if task == "regression":
        values = _to_numbers(table, target, column, missing, strip, "data.target",
                             "a regression target must be a number: fix the data or use task "
                             "binary/multiclass")
        keep = ~np.isnan(values)
        return values[keep], keep, []
    cleaned = clean_cells(column, missing, strip=strip)
    keep = cleaned.notna().to_numpy()
    present = cleaned[keep]
    parsed = pd.to_numeric(present, errors="coerce")
    if len(present) and parsed.notna().all() and np.all(np.mod(parsed.to_numpy(float), 1) == 0):
        labels: np.ndarray = parsed.to_numpy(dtype=np.float64).astype(np.int64)
    else:
        labels = as_category_strings(present)
    classes = sorted(set(labels.tolist()))
    n = len(classes)
    shown = classes if n <= 10 else [*classes[:10], "..."]
    if n == 0:
        raise DataError(f"data.target: column {target!r} has no values; check the column")
    if not check_classes:
        return labels, keep, classes
    if n == 1:
        raise DataError(
            f"data.target: column {target!r} has one class ({classes[0]!r}) in all "
            f"{len(labels)} rows; a classifier needs at least two classes: check the data or "
            "the target column"
        )
    if task == "binary" and n != 2:
        hint = "; for a numeric target use task: regression" if n > 20 else ""
        raise DataError(
            f"task: 'binary' needs a target with 2 classes, but column {target!r} has {n}: "
            f"{shown}; use task: multiclass{hint}"
        )
    if task == "multiclass" and n == 2:
        raise DataError(
            f"task: 'multiclass' but column {target!r} has 2 classes {classes}; use task: binary"
        )
    return labels, keep, classes


def prepare_table(
    table: Table,
    features: Mapping[str, FeatureType],
    target: str | None,
    task: Task,
    *,
    missing_values: list[str],
    strip: bool = True,
    check_classes: bool = True,
) -> PreparedData:
    """Check and convert ``table``; ``target`` None prepares features only (prediction).

    ``check_classes`` False skips the class-count checks (evaluation data may hold one class).
    """
    frame = table.frame
    if len(frame) == 0:
        raise DataError(f"data: {table.source} has no rows")
    if target is not None and target in features:
        raise DataError(
            f"features: {target!r} is the target (data.target) and cannot also be a feature; "
            "remove it from features"
        )
    keep = np.ones(len(frame), dtype=bool)
    y: np.ndarray | None = None
    classes: list[Any] = []
    if target is not None:
        y, keep, classes = _prepare_target(table, target, task, missing_values, strip,
                                            check_classes)
        if not keep.any():
            raise DataError(f"data.target: column {target!r} is empty in every row")
    columns: dict[str, Any] = {}
    for name, kind in features.items():
        if name not in frame.columns:
            raise _missing_column(table, name, f"features.{name}")
        column = frame[name]
        if kind == "numeric":
            values = _to_numbers(
                table, name, column, missing_values, strip, f"features.{name}",
                "fix the data, add the marker to data.missing_values, or declare the feature "
                "categorical",
            )
            if np.isnan(values[keep]).all():
                raise DataError(
                    f"features.{name}: column {name!r} has no values (all missing); remove the "
                    "feature or fix the data"
                )
            with np.errstate(over="ignore"):
                as32 = values[keep].astype(np.float32)
            too_big = np.flatnonzero(np.isinf(as32))
            if len(too_big):
                raise DataError(
                    f"features.{name}: {values[keep][too_big[0]]!r} does not fit a 32-bit float "
                    "(the served model takes FP32); rescale the column"
                )
            columns[name] = as32
        else:
            cleaned = clean_cells(column, missing_values, strip=strip)
            columns[name] = as_category_strings(cleaned)[keep]
    X = pd.DataFrame(columns, index=pd.RangeIndex(int(keep.sum())))
    return PreparedData(X, y, classes, int((~keep).sum()))
