"""PNG plots: confusion matrix, ROC curve, residuals, feature importance, and the most
confidently wrong images of an image classifier.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no GUI backend), with
scikit-learn's display classes where one exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PredictionErrorDisplay, RocCurveDisplay

__all__ = ["confusion_matrix_plot", "feature_importance_plot", "residuals_plot", "roc_curve_plot",
           "wrong_predictions_plot"]

_DPI = 110


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def confusion_matrix_plot(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any], class_names: Sequence[str],
    path: Path, title: str,
) -> Path:
    """Counts per (true, predicted) class."""
    n = len(classes)
    size = min(4.5 + 0.45 * n, 12)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=list(classes), display_labels=list(class_names), ax=ax,
        cmap="Blues", colorbar=True, xticks_rotation=45 if n > 4 else "horizontal",
    )
    ax.set_title(title)
    return _save(fig, path)


def roc_curve_plot(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[Any], class_names: Sequence[str],
    path: Path, title: str,
) -> Path | None:
    """ROC of the positive class (binary) or one curve per class, one-vs-rest (multiclass).
    None when the split holds a single class."""
    present = set(np.unique(y_true).tolist())
    if len(present) < 2:
        return None
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    if len(classes) == 2:
        RocCurveDisplay.from_predictions(
            y_true == classes[1], proba[:, 1], name=f"{class_names[1]} vs {class_names[0]}",
            ax=ax, plot_chance_level=True,
        )
    else:
        for i, (cls, name) in enumerate(zip(classes, class_names, strict=True)):
            if cls not in present:
                continue
            RocCurveDisplay.from_predictions(
                y_true == cls, proba[:, i], name=f"{name} vs rest", ax=ax,
                plot_chance_level=(i == len(classes) - 1),
            )
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def residuals_plot(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str) -> Path:
    """Actual vs predicted (left) and residual vs predicted (right)."""
    fig = _figure(11, 4.8)
    left, right = fig.subplots(1, 2)
    PredictionErrorDisplay.from_predictions(y_true, y_pred, kind="actual_vs_predicted", ax=left,
                                            scatter_kwargs={"alpha": 0.6, "s": 18})
    left.set_title("actual vs predicted")
    PredictionErrorDisplay.from_predictions(y_true, y_pred, kind="residual_vs_predicted",
                                            ax=right, scatter_kwargs={"alpha": 0.6, "s": 18})
    right.set_title("residual (actual - predicted) vs predicted")
    fig.suptitle(title)
    return _save(fig, path)


def feature_importance_plot(
    names: Sequence[str], values: np.ndarray, path: Path, title: str, *, xlabel: str,
    top: int = 20,
) -> Path:
    """The ``top`` features by absolute importance, largest at the top."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-np.abs(values))[:top][::-1]
    fig = _figure(8, 0.32 * len(order) + 1.6)
    ax = fig.add_subplot()
    colors = ["#c0392b" if values[i] < 0 else "#2e86c1" for i in order]
    ax.barh([names[i] for i in order], values[order], color=colors)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def wrong_predictions_plot(
    images: np.ndarray, y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str],
    path: Path, title: str, *, top: int = 25,
) -> tuple[Path, list[int]]:
    """A grid of the ``top`` wrongly predicted images with the highest predicted probability,
    each captioned with its true and predicted class; ``images`` are ``uint8`` ``[N, H, W, C]``.
    Returns the file and the row numbers shown (most confident first; a figure saying so when
    none is wrong)."""
    y_pred = proba.argmax(1)
    confidence = proba.max(1)
    wrong = np.flatnonzero(y_pred != y_true)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:top]
    cols = max(1, min(5, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = _figure(2.0 * cols + 0.4, 2.25 * rows + 0.6)
    if not len(shown):
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no wrong predictions", ha="center", va="center")
    for k, i in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        image = images[i]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        ax.set_title(f"true: {class_names[int(y_true[i])]}\npred: "
                     f"{class_names[int(y_pred[i])]} ({confidence[i]:.2f})", fontsize=8)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path), [int(i) for i in shown]
