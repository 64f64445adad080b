"""The scikit-learn family: data -> schema check -> split -> fit -> evaluate -> export -> report.

:mod:`shipyard.training.trainer` calls :func:`prepare` before the run directory exists, then
:func:`train` with the run directory, its log already attached. Everything the run produces goes
into that directory (see :mod:`shipyard.training.run`). :func:`evaluate` scores a finished run's
pipeline again (``shipyard evaluate``); scoring and plotting are :mod:`shipyard.evaluation`'s.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from shipyard.data.features import ColumnPlan, column_plans
from shipyard.data.schema import infer_features, prepare_table
from shipyard.data.sources import Table, load_table
from shipyard.data.tabular import build_preprocessor, output_feature_names
from shipyard.errors import ConfigError, ExportError
from shipyard.evaluation.metrics import mean_metrics
from shipyard.evaluation.report import ReportData, write_report
from shipyard.evaluation.scoring import Evaluation, importance_plot, score_split, split_plots
from shipyard.export.onnx import (
    OnnxInterface,
    default_opset,
    pipeline_to_onnx,
    tensor_summary,
)
from shipyard.export.verify import check_agreement
from shipyard.training.config import Experiment, SklearnModelSpec
from shipyard.training.models import MODELS, build_estimator
from shipyard.training.progress import Steps
from shipyard.training.run import (
    RUN_FILES,
    Run,
    library_versions,
    unique_folder,
    write_json,
    write_run_files,
)
from shipyard.training.splits import make_split

__all__ = ["evaluate", "export_pipeline", "fit_pipeline", "prepare", "train"]

log = logging.getLogger("shipyard.training")


def _spec(exp: Experiment) -> SklearnModelSpec:
    if not isinstance(exp.model, SklearnModelSpec):
        raise ConfigError(f"model.family: {exp.model.family!r} experiments are not trained by "
                          "the scikit-learn trainer")
    return exp.model


def _class_names(exp: Experiment, table: Table, classes: Sequence[Any]) -> list[str]:
    names = []
    for c in classes:
        if str(c) in exp.data.class_names:
            names.append(exp.data.class_names[str(c)])
        else:
            names.append(table.class_names.get(c, str(c)))
    return names


def _interface(
    exp: Experiment, classes: Sequence[Any], class_names: Sequence[str]
) -> OnnxInterface:
    cfg = exp.export
    if exp.task == "regression":
        return OnnxInterface(cfg.input, cfg.input_name, tuple(cfg.outputs or ["prediction"]))
    outputs = tuple(cfg.outputs or ["label", "probabilities"])
    index = len(classes) - 1
    if cfg.score_class is not None:
        keys = [str(n) for n in class_names]
        values = [str(c) for c in classes]
        if cfg.score_class in keys:
            index = keys.index(cfg.score_class)
        elif cfg.score_class in values:
            index = values.index(cfg.score_class)
        else:
            raise ConfigError(f"export.score_class: {cfg.score_class!r} is not a class; classes: "
                              f"{keys}")
    return OnnxInterface(cfg.input, cfg.input_name, outputs, index)


def fit_pipeline(pipeline: Pipeline, X: Any, y: np.ndarray, caught: list[str]) -> Pipeline:
    """``pipeline.fit(X, y)``; each new warning is logged and appended to ``caught``."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        pipeline.fit(X, y)
    for w in records:
        text = f"{w.category.__name__}: {w.message}"
        if text not in caught:
            caught.append(text)
            log.warning("%s", text)
    return pipeline


def _export(
    run_dir: Path, pipeline: Pipeline, plans: list[ColumnPlan], exp: Experiment,
    interface: OnnxInterface, X_test: Any, metadata: Mapping[str, str],
) -> dict[str, Any]:
    record: dict[str, Any] = {"converted": False, "file": RUN_FILES["onnx"]}
    if not MODELS[_spec(exp).type].exportable:
        record["error"] = (
            f"model {_spec(exp).type!r} cannot be exported to ONNX: skl2onnx does not convert "
            f"{type(pipeline.named_steps['model']).__name__} (it fails on its tree format); "
            "choose gradient_boosting or random_forest to serve the model"
        )
        log.warning("%s", record["error"])
        return record
    return export_pipeline(record, run_dir, pipeline, plans, interface, X_test,
                           classify=exp.task != "regression", opset=exp.export.opset,
                           tolerance=exp.export.tolerance, metadata=metadata,
                           doc=exp.description)


def export_pipeline(
    record: dict[str, Any], run_dir: Path, pipeline: Pipeline, plans: Sequence[ColumnPlan],
    interface: OnnxInterface, X_test: Any, *, classify: bool, opset: int, tolerance: float,
    metadata: Mapping[str, str], doc: str,
) -> dict[str, Any]:
    """Convert ``pipeline`` to ``run_dir/model.onnx`` and check ONNX Runtime against it on
    ``X_test``; ``record`` (export.json's) gains the file's facts and the agreement, or the
    reason it could not convert (logged, not raised)."""
    try:
        model = pipeline_to_onnx(pipeline, plans, classify=classify, interface=interface,
                                 opset=opset, metadata=metadata, doc=doc)
    except ExportError as exc:
        record["error"] = exc.message
        log.warning("%s", exc.message)
        return record
    data = model.SerializeToString()
    (run_dir / RUN_FILES["onnx"]).write_bytes(data)
    record.update(converted=True, bytes=len(data), opset=default_opset(model),
                  **tensor_summary(model))
    record["agreement"] = check_agreement(data, pipeline, X_test, plans, interface,
                                          classify=classify, tolerance=tolerance)
    if not record["agreement"]["passed"]:
        log.warning("ONNX Runtime and scikit-learn disagree on the test split: %s",
                    record["agreement"])
    return record


def prepare(exp: Experiment) -> Any:
    """The unfitted estimator of ``exp.model``; a bad ``model.params`` raises ConfigError before
    anything is written."""
    return build_estimator(_spec(exp).type, _spec(exp).params, exp.task, seed=exp.seed,
                           epochs=exp.training.epochs, n_jobs=exp.training.n_jobs)


def train(exp: Experiment, base_dir: Path, prepared: Any, *, run_dir: Path, steps: Steps,
          config_note: str = "") -> Run:
    """Fit, score, plot, export and write ``run_dir``; ``prepared`` is :func:`prepare`'s
    estimator."""
    return _train(exp, base_dir, prepared, run_dir, steps, config_note)


def _train(exp: Experiment, base_dir: Path, estimator: Any, run_dir: Path, steps: Steps,
           config_note: str) -> Run:
    classify = exp.task != "regression"
    caught: list[str] = []
    with steps.step(f"loading {exp.data.source}", "load"):
        table = load_table(exp.data.source, base_dir=base_dir, file_format=exp.data.format,
                           separator=exp.data.separator, encoding=exp.data.encoding)
    features = exp.features or infer_features(table, exp.data.target, exp.exclude)
    exp = exp.model_copy(update={"features": features, "exclude": []})
    plans = column_plans(features, exp.preprocessing, tree_model=exp.is_tree_model)
    with steps.step(f"checking {len(table.frame)} rows x {len(plans)} features", "schema"):
        prepared = prepare_table(table, {p.name: p.type for p in plans}, exp.data.target,
                                 exp.task, missing_values=exp.data.missing_values,
                                 strip=exp.data.strip)
    X, y = prepared.X, prepared.y
    assert y is not None
    if prepared.dropped_rows:
        caught.append(f"{prepared.dropped_rows} row(s) without a target were left out")
    split = make_split(y, exp.split, classify=classify, seed=exp.seed)

    def new_pipeline() -> Pipeline:
        pre = build_preprocessor(plans, text=exp.preprocessing.text,
                                 n_jobs=exp.preprocessing.n_jobs)
        return Pipeline([("preprocess", pre), ("model", clone(estimator))])

    classes = list(prepared.classes)
    class_names = _class_names(exp, table, classes)
    metrics: dict[str, dict[str, float | None]] = {}
    details: dict[str, Any] = {}
    if split.folds:
        per_fold = []
        for i, (fit_rows, val_rows) in enumerate(split.folds, 1):
            with steps.step(f"cross-validation fold {i}/{len(split.folds)}", f"fold{i}"):
                fold = fit_pipeline(new_pipeline(), X.iloc[fit_rows], y[fit_rows], caught)
                per_fold.append(score_split(fold, X.iloc[val_rows], y[val_rows], exp.task,
                                            classes, class_names).summary)
        mean, std = mean_metrics(per_fold)
        metrics["validation"] = mean
        details["validation"] = {"method": f"{len(per_fold)}-fold mean", "std": std,
                                 "folds": per_fold}
    with steps.step(f"fitting {_spec(exp).type} on {len(split.train)} rows", "fit"):
        pipeline = fit_pipeline(new_pipeline(), X.iloc[split.train], y[split.train], caught)
    if classify:
        classes = list(pipeline.classes_)
        class_names = _class_names(exp, table, classes)
    plots_dir = run_dir / "plots"
    plots: list[tuple[str, str]] = []
    with steps.step("evaluating", "evaluate"):
        if split.validation is not None:
            val = score_split(pipeline, X.iloc[split.validation], y[split.validation],
                              exp.task, classes, class_names)
            metrics["validation"], details["validation"] = val.summary, val.details
        metrics.setdefault("validation", {})
        test = score_split(pipeline, X.iloc[split.test], y[split.test], exp.task, classes,
                           class_names)
        metrics["test"], details["test"] = test.summary, test.details
    if exp.output.plots:
        with steps.step("plotting", "plots"):
            plots += split_plots(test, exp.task, classes, class_names, plots_dir, "test",
                                 run_dir)
            importance = importance_plot(
                pipeline.named_steps["model"],
                output_feature_names(pipeline.named_steps["preprocess"]), plots_dir, run_dir,
                class_names)
            if importance:
                plots.append(importance)
    import joblib

    joblib.dump(pipeline, run_dir / RUN_FILES["pipeline"])
    interface = _interface(exp, classes, class_names)
    export: dict[str, Any] = {"converted": False, "error": "export.onnx is false"}
    if exp.export.onnx:
        metadata = {"shipyard.experiment": exp.name, "shipyard.task": exp.task,
                    "shipyard.model": _spec(exp).type, "shipyard.run": run_dir.name,
                    "shipyard.columns": ",".join(p.name for p in plans),
                    "shipyard.class_names": ",".join(class_names),
                    "shipyard.missing": "FP32 inputs: NaN; BYTES inputs: '' (the graph does not "
                                        "strip text or map other missing markers)",
                    "shipyard.missing_values": json.dumps(exp.data.missing_values)}
        with steps.step("exporting to ONNX and checking it", "export"):
            export = _export(run_dir, pipeline, plans, exp, interface, X.iloc[split.test],
                             metadata)
    info = {
        "name": exp.name, "task": exp.task, "model": _spec(exp).type,
        "estimator": type(pipeline.named_steps["model"]).__name__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"source": table.source, "rows": len(table.frame),
                 "dropped_rows": prepared.dropped_rows, "train": len(split.train),
                 "validation": None if split.validation is None else len(split.validation),
                 "test": len(split.test), "folds": len(split.folds) or None},
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
        "class_names": class_names,
        "columns": [vars(p) for p in plans],
        "interface": {"input": interface.input, "input_name": interface.input_name,
                      "outputs": list(interface.outputs), "score_index": interface.score_index},
        "versions": library_versions("numpy", "pandas", "scikit-learn", "skl2onnx",
                                     "onnx", "onnxruntime"),
        "timings_s": steps.timings, "warnings": caught,
    }
    write_run_files(run_dir, exp, "# The experiment as run by shipyard (overrides applied, "
                    "features resolved).\n", config_note,
                    metrics={"test": metrics["test"], "validation": metrics["validation"]},
                    details=details, export=export, info=info)
    write_report(run_dir / RUN_FILES["report"], _report(exp, run_dir, info, metrics, details,
                                                        plots, export, caught))
    log.info("test metrics: %s", metrics["test"])
    return Run.load(run_dir)


def _report(exp: Experiment, run_dir: Path, info: dict[str, Any], metrics: dict[str, Any],
            details: dict[str, Any], plots: list[tuple[str, str]], export: dict[str, Any],
            caught: list[str]) -> ReportData:
    d = info["data"]
    if d["folds"]:
        split_text = (f"{d['folds']}-fold cross-validation on {d['train']} rows (validation = "
                      f"fold mean), then a fit on all of them; {d['test']} test rows")
    else:
        split_text = f"{d['train']} train / {d['validation'] or 0} validation / {d['test']} test"
    params = ", ".join(f"{k}={v!r}" for k, v in _spec(exp).params.items()) or "defaults"
    facts = [
        ("task", exp.task), ("run", str(run_dir)), ("data", f"{d['source']} ({d['rows']} rows, "
                                                      f"{d['dropped_rows']} without target)"),
        ("target", f"`{exp.data.target}`" + (f" (classes: {', '.join(info['class_names'])})"
                                            if info["class_names"] else "")),
        ("split", f"{split_text}; seed {exp.seed}"),
        ("model", f"{_spec(exp).type} ({info['estimator']}: {MODELS[_spec(exp).type].summary}); "
                  f"{params}"),
        ("fit time", f"{info['timings_s'].get('fit', 0):.2f} s"),
    ]
    test_details = details.get("test", {})
    return ReportData(
        title=f"{exp.name}: {exp.task} report", description=exp.description, facts=facts,
        metrics={"validation": metrics["validation"], "test": metrics["test"]},
        per_class=test_details.get("per_class"), plots=plots, columns=info["columns"],
        export=export, warnings=caught,
    )


def evaluate(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score a run's pipeline on ``data`` (a CSV/Parquet file with the feature and target
    columns, every row), or without ``data`` on the run's own test split again; the results go
    to ``<run>/evaluations/<name>/``."""
    exp = run.experiment
    if not isinstance(exp, Experiment):
        raise ConfigError(f"evaluate: run {str(run.path)!r} is a {exp.model.family} run, not a "
                          "scikit-learn one")
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
        folder = unique_folder(run.path / "evaluations",
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
