"""Evaluation: metrics (scikit-learn underneath), scoring a fitted model on a split, PNG plots
and the Markdown report. Plain data in and out: nothing here imports the training package."""

from __future__ import annotations

from shipyard._lazy import lazy_dir, lazy_exports

__all__ = [
    "Evaluation",
    "ReportData",
    "SplitScore",
    "classification_metrics",
    "confusion_matrix_plot",
    "feature_importance_plot",
    "importance_plot",
    "regression_metrics",
    "render_report",
    "residuals_plot",
    "roc_curve_plot",
    "score_split",
    "split_plots",
    "write_report",
]

_WHERE = {
    "classification_metrics": "metrics",
    "regression_metrics": "metrics",
    "confusion_matrix_plot": "plots",
    "feature_importance_plot": "plots",
    "residuals_plot": "plots",
    "roc_curve_plot": "plots",
    "Evaluation": "scoring",
    "SplitScore": "scoring",
    "importance_plot": "scoring",
    "score_split": "scoring",
    "split_plots": "scoring",
    "ReportData": "report",
    "render_report": "report",
    "write_report": "report",
}


__getattr__ = lazy_exports(__name__, _WHERE)
__dir__ = lazy_dir(globals(), __all__)
