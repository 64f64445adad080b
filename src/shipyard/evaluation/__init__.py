"""Evaluation: metrics (scikit-learn underneath), PNG plots and the Markdown report."""

from __future__ import annotations

from shipyard._lazy import lazy_exports

__all__ = [
    "ReportData",
    "classification_metrics",
    "confusion_matrix_plot",
    "feature_importance_plot",
    "regression_metrics",
    "render_report",
    "residuals_plot",
    "roc_curve_plot",
    "write_report",
]

_WHERE = {
    "classification_metrics": "metrics",
    "regression_metrics": "metrics",
    "confusion_matrix_plot": "plots",
    "feature_importance_plot": "plots",
    "residuals_plot": "plots",
    "roc_curve_plot": "plots",
    "ReportData": "report",
    "render_report": "report",
    "write_report": "report",
}


__getattr__ = lazy_exports(__name__, _WHERE)
