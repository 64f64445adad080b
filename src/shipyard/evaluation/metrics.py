"""Metrics, all computed by ``sklearn.metrics``.

Each function returns ``(summary, details)``: ``summary`` has the same scalar names for every
classification task (accuracy, precision/recall/F1 macro and weighted, roc_auc) or regression
task (r2, mae, rmse); ``details`` has per-class figures and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "classification_metrics",
    "mean_metrics",
    "regression_metrics",
]

CLASSIFICATION_METRICS = [
    "accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc",
]
REGRESSION_METRICS = ["r2", "mae", "rmse"]


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any]) -> float | None:
    present = set(np.unique(y_true).tolist())
    if len(present) < 2 or not present <= set(classes):
        return None  # undefined for one class, or for classes the model does not know
    if len(classes) == 2:
        return float(skm.roc_auc_score(y_true == classes[1], proba[:, 1]))
    if len(present) < len(classes):
        return None  # one-vs-rest AUC is undefined for a class absent from y_true
    return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                   labels=list(classes)))


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    class_names: Sequence[str],
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Summary scalars and details (per class, confusion matrix) for one split."""
    labels = list(classes)
    summary: dict[str, float | None] = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        summary[f"precision_{average}"] = float(p)
        summary[f"recall_{average}"] = float(r)
        summary[f"f1_{average}"] = float(f)
    summary["roc_auc"] = _roc_auc(y_true, proba, labels) if proba is not None else None
    p, r, f, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    per_class = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
               "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    matrix = skm.confusion_matrix(y_true, y_pred, labels=labels)
    details: dict[str, Any] = {
        "rows": len(y_true),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "matrix": matrix.tolist()},
    }
    if proba is not None:
        details["log_loss"] = float(skm.log_loss(y_true, proba, labels=labels))
    return summary, details


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """r2, mae, rmse for one split; details add the residual summary."""
    summary: dict[str, float | None] = {
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
    }
    residuals = np.asarray(y_true, float) - np.asarray(y_pred, float)
    details: dict[str, Any] = {
        "rows": len(y_true),
        "median_absolute_error": float(skm.median_absolute_error(y_true, y_pred)),
        "max_error": float(skm.max_error(y_true, y_pred)),
        "residual_mean": float(residuals.mean()),
        "residual_std": float(residuals.std()),
    }
    return summary, details


def mean_metrics(
    per_fold: Sequence[dict[str, float | None]],
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Mean and standard deviation of each metric over folds (None where a fold has None)."""
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for key in per_fold[0]:
        values = [f[key] for f in per_fold]
        if any(v is None for v in values):
            mean[key] = std[key] = None
        else:
            arr = np.array(values, dtype=float)
            mean[key], std[key] = float(arr.mean()), float(arr.std())
    return mean, std
