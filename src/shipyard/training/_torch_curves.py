"""curves.png of a torch run: loss and accuracy per epoch, training and validation.

Drawn on matplotlib's Agg canvas directly, like ``shipyard.evaluation.plots`` (no pyplot
state, no GUI backend); matplotlib is imported when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipyard.training.torch import History

__all__ = ["curves_plot"]


def curves_plot(history: History, path: Path, title: str = "training curves") -> Path:
    """Loss (left) and accuracy (right) against epoch; a dashed line marks the best epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # fixed margins: constrained layout would measure every label first and double the time
    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.86, wspace=0.22)
    left, right = fig.subplots(1, 2)
    epochs = history.epoch
    marker = "o" if len(epochs) <= 30 else None
    for ax, key, label in ((left, "loss", "cross-entropy"), (right, "accuracy", "accuracy")):
        ax.plot(epochs, getattr(history, f"train_{key}"), marker=marker, label="train")
        val = getattr(history, f"val_{key}")
        if any(v is not None for v in val):
            ax.plot(epochs, [float("nan") if v is None else v for v in val], marker=marker,
                    label="validation")
        if history.best_epoch is not None:
            ax.axvline(history.best_epoch, color="grey", linestyle="--", linewidth=0.8,
                       label=f"best (epoch {history.best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    left.set_title("loss")
    right.set_title("accuracy")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})
    return path
