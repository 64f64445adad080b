"""Dividing rows into train / validation / test parts, or k folds plus a test part."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from shipyard.errors import DataError
from shipyard.training.config import SplitConfig

__all__ = ["Split", "make_split"]


@dataclass
class Split:
    """Row positions of each part."""

    train: np.ndarray
    """Rows the final model is fitted on."""
    test: np.ndarray
    """Rows held out for the test metrics (and the ONNX agreement check)."""
    validation: np.ndarray | None = None
    """Holdout validation rows (None for kfold or validation_size 0)."""
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    """(fit rows, validation rows) per fold, positions into the whole table (kfold only)."""


def _check_size(part: str, rows: int, total: int) -> None:
    if rows < 1:
        raise DataError(f"split: the {part} part would be empty ({total} rows); lower the "
                        "other split sizes or use more data")


def make_split(y: np.ndarray, cfg: SplitConfig, *, classify: bool, seed: int) -> Split:
    """Split ``len(y)`` rows; stratified by ``y`` when classifying and ``cfg.stratify``."""
    rows = np.arange(len(y))
    stratify = classify and cfg.stratify
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:
            raise DataError(
                "split.stratify: a class has a single row, so it cannot be in both the train and "
                "test parts; set split.stratify: false or use more data"
            )
    try:
        rest, test = train_test_split(rows, test_size=cfg.test_size, random_state=seed,
                                      stratify=y if stratify else None)
        if cfg.method == "kfold":
            splitter = (StratifiedKFold if stratify else KFold)(
                n_splits=cfg.folds, shuffle=True, random_state=seed)
            folds = [(rest[a], rest[b]) for a, b in splitter.split(rest, y[rest])]
            return Split(np.sort(rest), np.sort(test), None, folds)
        if cfg.validation_size == 0:
            return Split(np.sort(rest), np.sort(test))
        share = cfg.validation_size / (1 - cfg.test_size)
        train, validation = train_test_split(rest, test_size=share, random_state=seed,
                                             stratify=y[rest] if stratify else None)
    except ValueError as exc:
        raise DataError(f"split: cannot split {len(y)} rows this way: {exc}; change split "
                        "sizes or folds, or set split.stratify: false") from exc
    for part, idx in (("train", train), ("validation", validation), ("test", test)):
        _check_size(part, len(idx), len(y))
    return Split(np.sort(train), np.sort(test), np.sort(validation))
