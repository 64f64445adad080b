"""The TF-IDF text family (``kind: text``, ``model.family: sklearn``): table -> split -> chain ->
TF-IDF (word and/or character n-grams) -> logistic regression or linear SVM -> ONNX.

The chain runs in :mod:`shipyard.transforms` (the published model declares it as preprocess
steps); the vectorisers and the classifier are one scikit-learn pipeline over a one-column frame
``text``, exported whole with skl2onnx (input ``text`` BYTES [N, 1], outputs ``label`` INT64 and
``probabilities``). The vectorisers neither lower-case (the chain does, with Python's rules, so
non-ASCII letters fold the same at training and serving) nor find words with a regex of their
own: word n-grams are made of what the chain leaves between blanks (:data:`WORD_PATTERN`), which
ONNX Runtime's tokenizer splits exactly as scikit-learn does.

Files of the run (besides :mod:`shipyard.training.run`'s): ``pipeline.joblib`` (the fitted
vectorisers and classifier; it takes texts after the chain), ``model.onnx`` and ``serving.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from shipyard.data.features import ColumnPlan
from shipyard.errors import ConfigError
from shipyard.evaluation.report import write_report
from shipyard.evaluation.scoring import Evaluation, SplitScore
from shipyard.export.onnx import OnnxInterface
from shipyard.training.config import AnyExperiment
from shipyard.training.progress import Steps
from shipyard.training.run import RUN_FILES, Run, library_versions, write_json, write_run_files
from shipyard.training.sklearn import export_pipeline, fit_pipeline
from shipyard.training.text_config import CharNgrams, TextExperiment, TextSklearnSpec, WordNgrams
from shipyard.training.text_run import (
    TEXT_LIBRARIES,
    TextPart,
    chain_steps,
    created,
    data_info,
    load_splits,
    run_chain,
    score,
    split_figures,
    text_experiment,
    text_report,
    wrong_examples,
)

__all__ = ["WORD_PATTERN", "build_pipeline", "evaluate", "prepare", "train"]

log = logging.getLogger("shipyard.training")

#: a word is a run of anything but ASCII blanks: the same in Python's re and ONNX Runtime's RE2
WORD_PATTERN = r"[^ \t\n\r\f\v]+"
_COLUMN = "text"
_PLANS = [ColumnPlan(_COLUMN, "text")]
_INTERFACE = OnnxInterface("columns", _COLUMN, ("label", "probabilities"))


def _spec(exp: TextExperiment) -> TextSklearnSpec:
    if not isinstance(exp.model, TextSklearnSpec):
        raise ConfigError("model.family: the TF-IDF trainer takes family sklearn")
    return exp.model


def _vectorizer(cfg: WordNgrams | CharNgrams) -> TfidfVectorizer:
    common: dict[str, Any] = {
        "ngram_range": tuple(cfg.ngram_range), "min_df": cfg.min_df, "max_df": cfg.max_df,
        "max_features": cfg.max_features, "sublinear_tf": cfg.sublinear_tf, "lowercase": False,
        "dtype": np.float32}
    if isinstance(cfg, CharNgrams):
        return TfidfVectorizer(analyzer=cfg.analyzer, **common)
    return TfidfVectorizer(analyzer="word", token_pattern=WORD_PATTERN, **common)


def _classifier(spec: TextSklearnSpec, seed: int) -> Any:
    params = dict(spec.params)
    if spec.type == "logistic_regression":
        base: Any = LogisticRegression(max_iter=2000, random_state=seed)
    else:
        base = LinearSVC(random_state=seed)
    known = base.get_params()
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        raise ConfigError(f"model.params: {unknown} are not parameters of "
                          f"{type(base).__name__}; it takes {sorted(known)}")
    try:
        base.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.params: {exc}") from exc
    if spec.type == "linear_svm":  # probabilities by Platt scaling over 3 folds
        return CalibratedClassifierCV(base, cv=3, method="sigmoid")
    return base


def build_pipeline(spec: TextSklearnSpec, seed: int = 0) -> Pipeline:
    """The unfitted pipeline: a column transformer of the TF-IDF vectorisers over the frame's
    ``text`` column, then the classifier."""
    parts = [(kind, _vectorizer(cfg), _COLUMN)
             for kind, cfg in (("word", spec.word), ("char", spec.char)) if cfg is not None]
    return Pipeline([("preprocess", ColumnTransformer(parts, sparse_threshold=1.0)),
                     ("model", _classifier(spec, seed))])


def prepare(exp: AnyExperiment) -> Pipeline:
    """The unfitted pipeline; bad ``model.params`` or a chain the trainer cannot build raise
    ConfigError before anything is written."""
    text = text_experiment(exp)
    chain_steps(text)
    return build_pipeline(_spec(text), text.seed)


def _frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({_COLUMN: pd.Series(texts, dtype=object)})


def _score(pipeline: Pipeline, X: pd.DataFrame, part: TextPart, names: list[str],
           task: str) -> SplitScore:
    return score(pipeline.predict_proba(X), part.labels, names, task)


def train(exp: AnyExperiment, base_dir: Path, prepared: Any, *, run_dir: Path, steps: Steps,
          config_note: str = "") -> Run:
    """Load, split, run the chain, fit, score, plot, export and write ``run_dir``."""
    text = text_experiment(exp)
    spec = _spec(text)
    pipeline = prepared if isinstance(prepared, Pipeline) else build_pipeline(spec, text.seed)
    chain = chain_steps(text)
    with steps.step(f"loading {text.data.source}", "load"):
        parts = load_splits(text, base_dir)
    names = parts.class_names
    with steps.step(f"preprocessing {parts.total} texts", "preprocess"):
        frames = {"train": _frame(run_chain(chain, parts.train.texts)),
                  "test": _frame(run_chain(chain, parts.test.texts))}
        if parts.validation is not None:
            frames["validation"] = _frame(run_chain(chain, parts.validation.texts))
    caught: list[str] = []
    with steps.step(f"fitting {spec.label} on {len(parts.train)} texts", "fit"):
        fit_pipeline(pipeline, frames["train"], parts.train.labels, caught)
    metrics: dict[str, dict[str, float | None]] = {"validation": {}}
    details: dict[str, Any] = {}
    with steps.step(f"evaluating on {len(parts.test)} test texts", "evaluate"):
        if parts.validation is not None:
            val = _score(pipeline, frames["validation"], parts.validation, names, text.task)
            metrics["validation"], details["validation"] = val.summary, val.details
        test = _score(pipeline, frames["test"], parts.test, names, text.task)
        metrics["test"], details["test"] = test.summary, test.details
        details["test"]["most_confident_wrong"] = wrong_examples(test, parts.test, names)
    plots: list[tuple[str, str]] = []
    if text.output.plots:
        with steps.step("plotting", "plots"):
            plots += split_figures(test, names, run_dir, "test")
    import joblib

    joblib.dump(pipeline, run_dir / RUN_FILES["pipeline"])
    vocabulary = {kind: len(vec.vocabulary_)
                  for kind, vec, _ in pipeline.named_steps["preprocess"].transformers_
                  if hasattr(vec, "vocabulary_")}
    export: dict[str, Any] = {"converted": False, "error": "export.onnx is false"}
    if text.export.onnx:
        with steps.step("exporting to ONNX and checking it", "export"):
            export = _export(text, pipeline, frames["test"], run_dir, names)
    write_json(run_dir / RUN_FILES["serving"], _serving(text, names, export))
    metrics["training"] = {"seconds_total": steps.timings.get("fit"),
                           **{f"vocabulary_{k}": float(v) for k, v in vocabulary.items()}}
    info = {"name": text.name, "kind": "text", "task": text.task, "model": spec.label,
            "estimator": type(pipeline.named_steps["model"]).__name__,
            "created": created(), "data": data_info(text, parts),
            "classes": list(range(len(names))), "class_names": names,
            "vocabulary": vocabulary, "device": "cpu",
            "versions": library_versions(*TEXT_LIBRARIES),
            "timings_s": steps.timings, "warnings": caught}
    write_run_files(run_dir, text, "# The experiment as run by shipyard (overrides applied).\n",
                    config_note, metrics=metrics, details=details, export=export, info=info)
    params = ", ".join(f"{k}={v!r}" for k, v in spec.params.items()) or "defaults"
    facts = [("model", f"{spec.label} ({info['estimator']}; {params}); vocabulary "
                       + ", ".join(f"{k} {v:,}" for k, v in vocabulary.items()))]
    write_report(run_dir / RUN_FILES["report"], text_report(
        text, run_dir, info, metrics, details, plots, export, facts, warnings=caught))
    log.info("test metrics: %s", metrics["test"])
    return Run.load(run_dir)


def _export(exp: TextExperiment, pipeline: Pipeline, X_test: pd.DataFrame, run_dir: Path,
            names: list[str]) -> dict[str, Any]:
    record: dict[str, Any] = {"converted": False, "file": RUN_FILES["onnx"]}
    char = _spec(exp).char
    if char is not None and char.analyzer == "char_wb":
        record["error"] = ("export: skl2onnx cannot convert TF-IDF with analyzer char_wb; use "
                           "model.char.analyzer: char to serve the model")
        log.warning("%s", record["error"])
        return record
    metadata = {"shipyard.experiment": exp.name, "shipyard.task": exp.task,
                "shipyard.model": _spec(exp).label, "shipyard.run": run_dir.name,
                "shipyard.class_names": ",".join(names),
                "shipyard.input": "text BYTES [N, 1]: texts after the preprocess steps"}
    record["summary"] = ("the TF-IDF vectorisers and the classifier; text BYTES [N, 1] in (after "
                         "the preprocess steps), label and probabilities out")
    return export_pipeline(record, run_dir, pipeline, _PLANS, _INTERFACE, X_test, classify=True,
                           opset=exp.export.opset or 17, tolerance=exp.export.tolerance,
                           metadata=metadata, doc=exp.description)


def _serving(exp: TextExperiment, names: list[str], export: dict[str, Any]) -> dict[str, Any]:
    return {"model_file": RUN_FILES["onnx"] if export.get("converted") else None,
            "backend": "onnx", "max_batch_size": exp.export.max_batch_size,
            "files": [], "preprocess": list(exp.preprocess), "postprocess": [],
            "outputs": None, "labels": {"probabilities": names}, "class_names": names}


def evaluate(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score the run's pipeline on ``data`` (a table with the experiment's text and label
    columns: all of it), or on the run's own test split again."""
    from shipyard.training.text_run import evaluate_again

    text = text_experiment(run.experiment)
    pipeline = run.pipeline()

    def proba(texts: list[str]) -> np.ndarray:
        return np.asarray(pipeline.predict_proba(_frame(texts)))

    return evaluate_again(run, text, data, proba, show_progress=show_progress)
