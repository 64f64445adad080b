"""Scoring a fitted pipeline on a split, its plots, and ``shipyard evaluate RUN [--data FILE]``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.schema import prepare_table
from shipyard.data.sources import load_table
from shipyard.data.tabular import output_feature_names
from shipyard.evaluation.metrics import classification_metrics, regression_metrics
from shipyard.evaluation.plots import (
    confusion_matrix_plot,
    feature_importance_plot,
    residuals_plot,
    roc_curve_plot,
)
from shipyard.evaluation.report import ReportData, write_report
from shipyard.training.progress import Steps
from shipyard.training.run import Run, write_json
from shipyard.training.splits import make_split

__all__ = ["Evaluation", "SplitScore", "evaluate_run", "importance_plot", "score_split",
           "split_plots"]


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
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, task: str, classes: Sequence[Any],
    class_names: Sequence[str],
) -> SplitScore:
    """Predict ``X`` and compute the metrics against ``y``."""
    y_pred = pipeline.predict(X)
    if task == "regression":
        summary, details = regression_metrics(y, y_pred)
        return SplitScore(summary, details, y, y_pred)
    proba = pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else None
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
    pipeline: Any, plots_dir: Path, relative_to: Path, class_names: Sequence[str] = ()
) -> tuple[str, str] | None:
    """Feature importance of the fitted model where it has one (trees, linear models)."""
    positive = class_names[1] if len(class_names) == 2 else None
    found = _importances(pipeline.named_steps["model"], positive)
    if found is None:
        return None
    values, xlabel = found
    names = output_feature_names(pipeline.named_steps["preprocess"])
    if len(names) != len(values):
        return None
    path = feature_importance_plot(names, values, plots_dir / "feature_importance.png",
                                   f"Feature importance ({min(20, len(names))} of {len(names)} "
                                   "preprocessed features)", xlabel=xlabel)
    return "Feature importance", str(path.relative_to(relative_to))


@dataclass
class Evaluation:
    """The result of :func:`evaluate_run`."""

    path: Path
    """Folder with metrics.json, evaluation.json, report.md and plots."""
    metrics: dict[str, float | None]
    """The scalars (same names as the run's metrics.json)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Per class, confusion matrix, residual summary."""
    data: str = ""
    """What was evaluated."""


def _new_folder(parent: Path, name: str) -> Path:
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def evaluate_run(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score a run's pipeline on ``data`` (a CSV/Parquet file with the feature and target
    columns, every row), or without ``data`` on the run's own test split again."""
    exp = run.experiment
    plans = run.plans
    with Steps(show_progress) as steps:
        with steps.step("loading data"):
            source = str(data) if data is not None else exp.data.source
            table = load_table(source, base_dir=Path.cwd(), file_format=exp.data.format,
                               separator=exp.data.separator, encoding=exp.data.encoding)
            prepared = prepare_table(
                table, {p.name: p.type for p in plans}, exp.data.target, exp.task,
                missing_values=exp.data.missing_values, strip=exp.data.strip,
                check_classes=data is None)
        assert prepared.y is not None
        X, y, label = prepared.X, prepared.y, "data"
        if data is None:
            split = make_split(y, exp.split, classify=exp.task != "regression", seed=exp.seed)
            X, y, label = X.iloc[split.test], y[split.test], "test"
        pipeline = run.pipeline()
        folder = _new_folder(run.path / "evaluations",
                             Path(data).stem if data is not None else "test")
        with steps.step(f"scoring {len(y)} rows"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            score = score_split(pipeline, X, y, exp.task, run.classes, run.class_names)
        with steps.step("plotting"):
            plots = split_plots(score, exp.task, run.classes, run.class_names,
                                folder / "plots", label, folder)
    write_json(folder / "metrics.json", {label: score.summary})
    write_json(folder / "evaluation.json", {label: score.details})
    write_report(folder / "report.md", ReportData(
        title=f"{exp.name}: evaluation on {table.source if data is not None else 'the test split'}",
        facts=[("run", str(run.path)), ("data", table.source), ("rows", str(len(y))),
               ("dropped rows (no target)", str(prepared.dropped_rows))],
        metrics={label: score.summary},
        per_class=score.details.get("per_class"), per_class_split=label, plots=plots,
        warnings=sorted({str(w.message) for w in caught}),
    ))
    return Evaluation(folder, score.summary, score.details, table.source)
