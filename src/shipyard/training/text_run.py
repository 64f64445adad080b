"""What both text trainers share: the table, its split, the chain, scoring, the listing of the
most confidently wrong texts, ``serving.json`` and the report.

The chain (``exp.preprocess``) is built with :func:`shipyard.transforms.build_steps` and run by
:func:`run_chain` on UTF-8 bytes, exactly as the server's pipeline runs the same declaration on
a request's BYTES items, so the vectoriser or tokenizer sees the same strings at training and at
serving time.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.data.text import TextTable, load_text_table
from shipyard.errors import ConfigError, DataError
from shipyard.evaluation.metrics import classification_metrics
from shipyard.evaluation.report import ReportData, markdown_table
from shipyard.evaluation.scoring import Evaluation, SplitScore, split_plots
from shipyard.training.config import AnyExperiment
from shipyard.training.progress import Steps
from shipyard.training.run import Run, read_serving
from shipyard.training.text_config import TextExperiment
from shipyard.transforms import Step, StepConfigError, TransformError, apply_steps, build_steps

__all__ = [
    "TEXT_LIBRARIES",
    "TOP_WRONG",
    "TextPart",
    "TextSplits",
    "chain_steps",
    "evaluate_again",
    "load_splits",
    "run_chain",
    "score",
    "serving_config",
    "text_experiment",
    "text_report",
    "wrong_examples",
]

log = logging.getLogger("shipyard.training")

#: how many of the most confidently wrong test texts the report lists
TOP_WRONG = 20


def text_experiment(exp: AnyExperiment) -> TextExperiment:
    """``exp`` as a text experiment, or a ConfigError for another kind."""
    if not isinstance(exp, TextExperiment):
        raise ConfigError(f"model.family: {exp.model.family!r} {type(exp).__name__} is not a "
                          "text experiment (kind: text)")
    return exp


@dataclass(frozen=True)
class TextPart:
    """One split: the raw texts, their class numbers and their rows in the file."""

    texts: list[str]
    """The texts as read (before the chain)."""
    labels: np.ndarray
    """Class numbers (indices into the class names)."""
    rows: np.ndarray
    """0-based data rows of the file (after dropped rows), for the report."""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextSplits:
    """The split table."""

    train: TextPart
    validation: TextPart | None
    test: TextPart
    class_names: list[str]
    source: str
    dropped: int

    @property
    def total(self) -> int:
        """Rows used (all parts)."""
        return len(self.train) + len(self.test) + \
            (0 if self.validation is None else len(self.validation))


def _classes(table: TextTable, exp: TextExperiment) -> tuple[list[str], np.ndarray]:
    found = sorted(set(table.labels))
    names = list(exp.data.class_names) if exp.data.class_names is not None else found
    unknown = [label for label in found if label not in names]
    if unknown:
        raise DataError(f"data.class_names: {names} does not list the label(s) {unknown[:10]} "
                        f"of {table.source}; list every label (the data has {found[:20]})")
    if len(found) < 2:
        raise DataError(f"data.label_column: {table.source} has {len(found)} label "
                        f"({found}); a classifier needs at least two")
    if exp.task == "binary" and len(names) != 2:
        raise ConfigError(f"task: 'binary' but {table.source} has {len(names)} classes "
                          f"({names[:10]}); set task: multiclass")
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[label] for label in table.labels], dtype=np.int64)


def _split(idx: np.ndarray, y: np.ndarray, size: float, seed: int, stratify: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y[idx])
    can_stratify = stratify and counts[counts > 0].min() >= 2
    rest, held = train_test_split(idx, test_size=size, random_state=seed,
                                  stratify=y[idx] if can_stratify else None)
    return np.sort(rest), np.sort(held)


def load_splits(exp: TextExperiment, base_dir: Path, source: str | None = None) -> TextSplits:
    """Read ``data.source`` (or ``source``) and split it: test first, then validation from
    the rest, both stratified and seeded."""
    d = exp.data
    path = Path(source or d.source).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    table = load_text_table(path, text_column=d.text_column, label_column=d.label_column,
                            header=d.header, sep=d.sep, encoding=d.encoding, quoting=d.quoting)
    names, y = _classes(table, exp)
    idx = np.arange(len(y))
    if d.limit is not None and d.limit < len(idx):
        _, idx = _split(idx, y, d.limit / len(idx), exp.seed, d.stratify)
    rest, test = _split(idx, y, d.test_size, exp.seed, d.stratify)
    validation = None
    if d.validation_size > 0:
        share = d.validation_size / (1 - d.test_size)
        rest, val = _split(rest, y, share, exp.seed, d.stratify)
        validation = _part(table, y, val)
    return TextSplits(_part(table, y, rest), validation, _part(table, y, test), names,
                      table.source, table.dropped)


def _part(table: TextTable, y: np.ndarray, idx: np.ndarray) -> TextPart:
    return TextPart([table.texts[i] for i in idx], y[idx], idx)


def chain_steps(exp: TextExperiment) -> list[Step]:
    """The chain's steps, built (a declaration the trainer cannot build is a ConfigError)."""
    try:
        return build_steps(exp.preprocess, where="preprocess")
    except StepConfigError as exc:
        raise ConfigError(f"experiment: {exc}") from exc


def run_chain(steps: Sequence[Step], texts: Sequence[str]) -> list[str]:
    """``texts`` through the chain, as the server runs it (UTF-8 bytes in, bytes out)."""
    if not steps:
        return list(texts)
    items = np.empty(len(texts), dtype=object)
    items[:] = [t.encode("utf-8") for t in texts]
    try:
        out = apply_steps(steps, items)
    except TransformError as exc:
        raise DataError(f"preprocess: text {exc.index} ({texts[exc.index or 0][:60]!r}): "
                        f"{exc}") from exc
    assert not isinstance(out, dict)
    return [bytes(b).decode("utf-8") for b in out.tolist()]


def score(proba: np.ndarray, labels: np.ndarray, names: list[str], task: str) -> SplitScore:
    """Metrics of one split from its class probabilities; a binary task also reports the F1,
    precision and recall of its positive class (the second name) as ``f1_<name>`` etc."""
    pred = proba.argmax(1)
    summary, details = classification_metrics(labels, pred, proba, list(range(len(names))),
                                              names)
    if task == "binary":
        positive = details["per_class"][names[1]]
        for key in ("precision", "recall", "f1"):
            summary[f"{key}_{names[1]}"] = positive[key]
    return SplitScore(summary, details, labels, pred, proba)


def wrong_examples(result: SplitScore, part: TextPart, names: list[str],
                   top: int = TOP_WRONG) -> list[dict[str, Any]]:
    """The ``top`` wrong predictions with the highest predicted probability, most confident
    first: row, text, true and predicted class, probability."""
    assert result.proba is not None
    wrong = np.flatnonzero(result.y_pred != result.y_true)
    confidence = result.proba[wrong, result.y_pred[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:top]
    return [{"row": int(part.rows[i]), "text": part.texts[i],
             "true": names[int(result.y_true[i])], "predicted": names[int(result.y_pred[i])],
             "probability": float(result.proba[i, result.y_pred[i]])} for i in order]


def split_figures(result: SplitScore, names: list[str], run_dir: Path, split: str
                  ) -> list[tuple[str, str]]:
    """The confusion matrix and ROC PNGs of a split."""
    return split_plots(result, "multiclass", list(range(len(names))), names,
                       run_dir / "plots", split, run_dir)


def serving_config(run: Run | Path | str) -> dict[str, Any]:
    """``serving.json`` of a text run: what ``shipyard publish`` writes (model file, extra
    files such as ``tokenizer.json``, preprocess and postprocess steps, outputs, labels)."""
    return read_serving(run, "text")


#: the libraries a text run records in run.json (besides python; torch runs add torch)
TEXT_LIBRARIES = ("numpy", "scikit-learn", "tokenizers", "nltk", "onnx", "onnxruntime",
                  "skl2onnx")


def data_info(exp: TextExperiment, parts: TextSplits) -> dict[str, Any]:
    """run.json's ``data`` section."""
    return {"source": parts.source, "rows": parts.total, "dropped": parts.dropped,
            "train": len(parts.train), "test": len(parts.test),
            "validation": None if parts.validation is None else len(parts.validation),
            "text_column": exp.data.text_column, "label_column": exp.data.label_column,
            "class_counts": {n: int((parts.train.labels == i).sum() + (parts.test.labels == i).sum()
                                    + (0 if parts.validation is None else
                                       (parts.validation.labels == i).sum()))
                             for i, n in enumerate(parts.class_names)}}


def created() -> str:
    """Now, for run.json."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def text_report(exp: TextExperiment, run_dir: Path, info: dict[str, Any],
                metrics: dict[str, Any], details: dict[str, Any], plots: list[tuple[str, str]],
                export: dict[str, Any], model_facts: list[tuple[str, str]],
                notes: Sequence[str] = (), warnings: Sequence[str] = ()) -> ReportData:
    """The report of a text run: facts, metrics, per class, plots, export and the most
    confidently wrong test texts."""
    d = info["data"]
    chain = "; ".join(json.dumps(s, separators=(", ", ": ")) for s in exp.preprocess) or "none"
    facts = [
        ("task", f"{exp.task} text classification ({len(info['class_names'])} classes: "
                 f"{', '.join(info['class_names'][:20])})"),
        ("run", str(run_dir)),
        ("data", f"{d['source']}: {d['rows']} texts"
                 + (f" ({d['dropped']} rows dropped: empty text or label)" if d["dropped"]
                    else "")
                 + "; " + ", ".join(f"{k} {v}" for k, v in d["class_counts"].items())),
        ("split", f"{d['train']} train / {d['validation'] or 0} validation / {d['test']} test "
                  f"(stratified, seed {exp.seed})"),
        ("preprocess", chain),
        *model_facts,
        ("training time", f"{info['timings_s'].get('fit', 0.0):.1f} s on "
                          f"{info.get('device', 'cpu')} ({platform.processor() or 'cpu'}, "
                          f"{_cores()} cores)"),
    ]
    lines = list(notes)
    wrong = details["test"].get("most_confident_wrong") or []
    if wrong:
        lines += [*_wrong_table(wrong, "Most confidently wrong test texts"), ""]
    return ReportData(
        title=f"{exp.name}: text classification report", description=exp.description,
        facts=facts, metrics={k: metrics[k] for k in ("validation", "test") if metrics.get(k)},
        per_class=details["test"].get("per_class"), plots=plots, export=export,
        warnings=list(warnings), notes=lines)


def _wrong_table(wrong: Sequence[dict[str, Any]], heading: str) -> list[str]:
    """A report section listing :func:`wrong_examples`' texts under ``heading``."""
    return [f"## {heading}", "",
            *markdown_table(["row", "true", "predicted", "probability", "text"],
                            [[w["row"], w["true"], w["predicted"], w["probability"],
                              _clip(w["text"])] for w in wrong])]


def _clip(text: str, limit: int = 160) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "\u2026"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


def evaluate_again(run: Run, exp: TextExperiment, data: Path | None,
                   proba: Callable[[list[str]], np.ndarray], *, show_progress: bool = False
                   ) -> Evaluation:
    """``shipyard evaluate`` of a text run: ``proba`` (texts after the chain -> class
    probabilities) on ``data`` (a table with the experiment's columns, all its rows) or on the
    run's own test split; results go to ``<run>/evaluations/<name>/``."""
    from shipyard.evaluation.report import write_report
    from shipyard.training.run import unique_folder, write_json

    names = run.class_names
    with Steps(show_progress) as steps:
        with steps.step("loading texts"):
            if data is None:
                part, source, label = load_splits(exp, Path.cwd()).test, exp.data.source, "test"
            else:
                whole = exp.model_copy(update={"data": exp.data.model_copy(
                    update={"class_names": names})})
                table = load_text_table(
                    data, text_column=exp.data.text_column, label_column=exp.data.label_column,
                    header=exp.data.header, sep=exp.data.sep, encoding=exp.data.encoding,
                    quoting=exp.data.quoting)
                _, y = _classes(table, whole)
                part = TextPart(table.texts, y, np.arange(len(y)))
                source, label = table.source, "data"
        with steps.step(f"scoring {len(part)} texts"):
            result = score(proba(run_chain(chain_steps(exp), part.texts)), part.labels, names,
                           exp.task)
        folder = unique_folder(run.path / "evaluations",
                               Path(data).stem if data is not None else "test")
        plots: list[tuple[str, str]] = []
        if exp.output.plots:
            with steps.step("plotting"):
                plots = split_plots(result, "multiclass", list(range(len(names))), names,
                                    folder / "plots", label, folder)
    result.details["most_confident_wrong"] = wrong_examples(result, part, names)
    write_json(folder / "metrics.json", {label: result.summary})
    write_json(folder / "evaluation.json", {label: result.details})
    wrong = result.details["most_confident_wrong"]
    notes = _wrong_table(wrong, "Most confidently wrong texts") if wrong else []
    write_report(folder / "report.md", ReportData(
        title=f"{exp.name}: evaluation on {source if data is not None else 'the test split'}",
        facts=[("run", str(run.path)), ("data", source), ("texts", str(len(part)))],
        metrics={label: result.summary}, per_class=result.details.get("per_class"),
        per_class_split=label, plots=plots, notes=notes))
    return Evaluation(folder, result.summary, result.details, source)
