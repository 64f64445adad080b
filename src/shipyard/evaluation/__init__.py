"""Evaluation: metrics (scikit-learn underneath), PNG plots and the Markdown report."""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipyard.evaluation.{module}"), name)
