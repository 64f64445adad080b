"""Text experiments (``kind: text``): the schema's refusals, a TF-IDF run on the real SMS spam
file (chain, split, metrics, report, ONNX agreement, serving.json), a table in another layout
read through ``--set`` overrides alone, and ``shipyard evaluate`` of a text run."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from training_support import EXAMPLES, SMS_SPAM
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import ConfigError
from shipyard.training.config import family_key, load_experiment
from shipyard.training.run import Run
from shipyard.training.text_config import TextExperiment
from shipyard.training.text_run import chain_steps, run_chain
from shipyard.training.trainer import evaluate_run, train_experiment

CHAIN = [{"text_normalize": {"lowercase": True, "urls": "mask", "numbers": "mask",
                             "collapse_whitespace": True}},
         {"words": {"pattern": r"(?u)\w+|[^\w\s]"}}]


def tfidf(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "kind": "text", "name": "sms-tiny", "task": "binary",
        "data": {"source": str(SMS_SPAM), "text_column": 1, "label_column": 0,
                 "limit": 1500},
        "preprocess": CHAIN,
        "model": {"family": "sklearn", "type": "logistic_regression", "params": {"C": 30}},
        "output": {"plots": True},
    }
    raw.update(changes)
    return raw


def refusal(raw: dict[str, Any], *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_experiment(raw, list(overrides))
    return info.value.message


def test_schema_picks_the_text_experiment_and_its_trainer() -> None:
    exp, _ = load_experiment(tfidf(), [])
    assert isinstance(exp, TextExperiment)
    assert family_key(exp) == "text-sklearn"
    torch_exp, _ = load_experiment(tfidf(model={"family": "torch"}), [])
    assert family_key(torch_exp) == "text-torch"


@pytest.mark.parametrize(("changes", "overrides", "needle"), [
    ({"tokenizer": {"vocab_size": 500}}, (), "tokenizer: only for model.family: torch"),
    ({}, ("model.type=svm",), "model.type"),
    ({"preprocess": [{"resize": {"size": 3}}]}, (), "preprocess[0].resize"),
    ({"preprocess": [{"tokenize": {"path": "t.json"}}]}, (), "must give texts"),
    ({}, ("data.test_size=0.6", "data.validation_size=0.4"), "under 5% of the rows"),
    ({"model": {"family": "sklearn", "word": None}}, (), "keep at least one kind"),
    ({}, ("model.word.ngram_range=[3,1]",), "ngram_range"),
])
def test_schema_refusals_name_the_field(changes: dict[str, Any], overrides: tuple[str, ...],
                                        needle: str) -> None:
    assert needle in refusal(tfidf(**changes), *overrides)


def test_unknown_classifier_parameter_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    exp, base = load_experiment(tfidf(), ["model.params.depth=3"])
    with pytest.raises(ConfigError, match=r"model.params: \['depth'\] are not parameters"):
        train_experiment(exp, base, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    exp, base = load_experiment(tfidf(), [])
    return train_experiment(exp, base, output=tmp_path_factory.mktemp("tfidf") / "run")


def test_tfidf_run_scores_the_test_split(run: Run) -> None:
    test = run.metrics["test"]
    assert test["accuracy"] is not None and test["accuracy"] > 0.95
    assert test["f1_spam"] is not None and test["f1_spam"] > 0.75
    assert run.class_names == ["ham", "spam"]
    info = run.info["data"]
    assert info["train"] + info["validation"] + info["test"] == 1500
    assert run.export["converted"] and run.export["agreement"]["passed"], run.export


def test_tfidf_run_onnx_file_equals_the_pipeline_after_the_chain(run: Run) -> None:
    exp = run.experiment
    assert isinstance(exp, TextExperiment)
    texts = [line.split("\t", 1)[1] for line in
             SMS_SPAM.read_text(encoding="utf-8").splitlines()[:200]]
    chained = run_chain(chain_steps(exp), texts)
    session = ort.InferenceSession(str(run.onnx_path))
    _, proba = session.run(None, {"text": np.array(chained, dtype=object).reshape(-1, 1)})
    import pandas as pd

    expected = run.pipeline().predict_proba(pd.DataFrame({"text": chained}))
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_tfidf_run_report_lists_the_most_confidently_wrong_texts(run: Run) -> None:
    evaluation = json.loads((run.path / "evaluation.json").read_text())
    wrong = evaluation["test"]["most_confident_wrong"]
    assert wrong, "a 1,500-message model makes some mistakes"
    probabilities = [w["probability"] for w in wrong]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(w["true"] != w["predicted"] for w in wrong)
    report = (run.path / "report.md").read_text()
    assert "## Most confidently wrong test texts" in report
    assert wrong[0]["text"].split()[0] in report
    assert (run.path / "plots" / "confusion_matrix_test.png").read_bytes()[:4] == b"\x89PNG"


def test_tfidf_serving_json_declares_the_chain(run: Run) -> None:
    serving = json.loads((run.path / "serving.json").read_text())
    assert serving["preprocess"] == CHAIN
    assert serving["labels"] == {"probabilities": ["ham", "spam"]}
    assert serving["model_file"] == "model.onnx"


def test_evaluate_again_reproduces_the_test_metrics(run: Run) -> None:
    again = evaluate_run(run)
    assert again.metrics["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])


def _news_like_csv(path: Path) -> None:
    """The SMS file rewritten as a quoted, cp1252 CSV with a header and named columns in
    another order (a different layout, the same real texts)."""
    rows = [line.split("\t", 1) for line in
            SMS_SPAM.read_text(encoding="utf-8").splitlines()[:1200]]
    with path.open("w", encoding="cp1252", errors="replace", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "message", "category"])
        for i, (label, text) in enumerate(rows):
            writer.writerow([i, text, label.upper()])


def test_any_csv_by_set_overrides_alone(tmp_path: Path) -> None:
    table = tmp_path / "messages.csv"
    _news_like_csv(table)
    result = CliRunner().invoke(app, [
        "train", str(EXAMPLES / "sms_spam_tfidf" / "experiment.yaml"), "--quiet",
        "--output", str(tmp_path / "run"), "--set", f"data.source={table}",
        "--set", "data.text_column=message", "--set", "data.label_column=category",
        "--set", "data.encoding=cp1252", "--set", "output.plots=false"])
    assert result.exit_code == 0, result.output
    done = Run.load(tmp_path / "run")
    assert done.class_names == ["HAM", "SPAM"]
    assert done.info["data"]["rows"] == 1200
    assert done.metrics["test"]["accuracy"] is not None
    assert done.metrics["test"]["accuracy"] > 0.9


def test_a_missing_column_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", str(EXAMPLES / "sms_spam_tfidf" / "experiment.yaml"), "--quiet",
        "--output", str(tmp_path / "run"), "--set", "data.text_column=body",
        "--set", "data.header=true"])
    assert result.exit_code == 2
    assert "data.text_column" in result.output
    assert "Traceback" not in result.output


def test_evaluate_on_another_file_through_the_cli(run: Run, tmp_path: Path) -> None:
    lines = SMS_SPAM.read_text(encoding="utf-8").splitlines()[-300:]
    other = tmp_path / "later.tsv"
    other.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["evaluate", str(run.path), "--data", str(other)])
    assert result.exit_code == 0, result.output
    folder = run.path / "evaluations" / "later"
    metrics = json.loads((folder / "metrics.json").read_text())["data"]
    spam = sum(line.startswith("spam\t") for line in lines)
    details = json.loads((folder / "evaluation.json").read_text())["data"]
    assert details["per_class"]["spam"]["support"] == spam
    assert 0.9 < metrics["accuracy"] <= 1.0
    assert "Most confidently wrong texts" in (folder / "report.md").read_text() or \
        metrics["accuracy"] == 1.0
