"""Scoring a fitted model on a split, the plots of a split and of the model's feature importance,
and the result of ``shipyard evaluate RUN``.

Plain data in, plain data out: a model with ``predict`` (and ``predict_proba``), arrays, names
and folders. Nothing here knows runs, experiments or training (training imports evaluation,
never the reverse); the trainers and the family's ``evaluate`` write the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.evaluation.metrics import classification_metrics, regression_metrics
from shipyard.evaluation.plots import (
    confusion_matrix_plot,
    feature_importance_plot,
    residuals_plot,
    roc_curve_plot,
)

__all__ = ["Evaluation", "SplitScore", "importance_plot", "score_split", "split_plots"]


@dataclass
class SplitScore:
    """Metrics and predictions of one split."""

    summary: dict[str, float | None]
    """The scalars that go into metrics.json."""
    details: dict[str, Any]
    """Per class, confusion matrix, residual summary."""
    y_true: np.ndarray
    """Targets."""
    y_pred: np.ndarray
    """Predicted labels or values."""
    proba: np.ndarray | None = None
    """Class probabilities (classification)."""


def score_split(
    model: Any, X: pd.DataFrame | np.ndarray, y: np.ndarray, task: str, classes: Sequence[Any],
    class_names: Sequence[str],
) -> SplitScore:
    """Predict ``X`` with ``model`` (``predict``, and ``predict_proba`` where it has one) and
    compute the metrics against ``y``."""
    y_pred = model.predict(X)
    if task == "regression":
        summary, details = regression_metrics(y, y_pred)
        return SplitScore(summary, details, y, y_pred)
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    summary, details = classification_metrics(y, y_pred, proba, classes, class_names)
    return SplitScore(summary, details, y, y_pred, proba)


def split_plots(
    score: SplitScore, task: str, classes: Sequence[Any], class_names: Sequence[str],
    plots_dir: Path, split: str, relative_to: Path,
) -> list[tuple[str, str]]:
    """The PNGs of one split: (caption, path relative to ``relative_to``)."""
    made: list[tuple[str, Path | None]] = []
    if task == "regression":
        made.append((f"Residuals ({split})", residuals_plot(
            score.y_true, score.y_pred, plots_dir / f"residuals_{split}.png",
            f"Regression errors on the {split} split ({len(score.y_true)} rows)")))
    else:
        made.append((f"Confusion matrix ({split})", confusion_matrix_plot(
            score.y_true, score.y_pred, classes, class_names,
            plots_dir / f"confusion_matrix_{split}.png",
            f"Confusion matrix, {split} split ({len(score.y_true)} rows)")))
        if score.proba is not None:
            made.append((f"ROC curve ({split})", roc_curve_plot(
                score.y_true, score.proba, classes, class_names,
                plots_dir / f"roc_curve_{split}.png", f"ROC curve, {split} split")))
    return [(c, str(p.relative_to(relative_to))) for c, p in made if p is not None]


def _importances(model: Any, positive: str | None) -> tuple[np.ndarray, str] | None:
    if hasattr(model, "feature_importances_"):
        return np.asarray(model.feature_importances_), "impurity-based importance"
    coef = getattr(model, "coef_", None)
    if coef is None:
        return None
    coef = np.asarray(coef, dtype=float)
    if coef.ndim == 1 or coef.shape[0] == 1:
        toward = f" toward class {positive!r}" if positive is not None else ""
        return coef.reshape(-1), f"coefficient{toward} (on the preprocessed features)"
    return np.abs(coef).mean(axis=0), "mean |coefficient| over classes"


def importance_plot(
    model: Any, names: Sequence[str], plots_dir: Path, relative_to: Path,
    class_names: Sequence[str] = (),
) -> tuple[str, str] | None:
    """Feature importance of a fitted estimator where it has one (trees: impurity, linear
    models: coefficients); ``names`` are the features it was fitted on, in order."""
    positive = class_names[1] if len(class_names) == 2 else None
    found = _importances(model, positive)
    if found is None:
        return None
    values, xlabel = found
    if len(names) != len(values):
        return None
    path = feature_importance_plot(names, values, plots_dir / "feature_importance.png",
                                   f"Feature importance ({min(20, len(names))} of {len(names)} "
                                   "preprocessed features)", xlabel=xlabel)
    return "Feature importance", str(path.relative_to(relative_to))


@dataclass
class Evaluation:
    """The result of evaluating a run (``shipyard evaluate RUN``)."""

    path: Path
    """Folder with metrics.json, evaluation.json, report.md and plots."""
    metrics: dict[str, float | None]
    """The scalars (same names as the run's metrics.json)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per class, confusion matrix, residual summary."""
    data: str = ""
    """What was evaluated."""
