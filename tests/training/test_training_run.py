"""A whole training run: the run directory, metrics.json, plots, report, evaluate, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score
from training_support import EXAMPLES, TITANIC, png, titanic_experiment
from typer.testing import CliRunner

from shipyard.api import evaluate, train
from shipyard.cli import app
from shipyard.training.run import Run

CLASSIFICATION = ["accuracy", "precision_macro", "recall_macro", "f1_macro",
                  "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc"]


@pytest.fixture(scope="module")
def titanic_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    raw = titanic_experiment()
    raw["output"]["plots"] = True
    return train(raw, output=tmp_path_factory.mktemp("titanic") / "run")


def test_run_directory(titanic_run: Run) -> None:
    root = titanic_run.path
    for name in ["experiment.yaml", "pipeline.joblib", "model.onnx", "metrics.json",
                 "evaluation.json", "export.json", "run.json", "report.md", "train.log"]:
        assert (root / name).is_file(), name
    metrics = json.loads((root / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics) == ["test", "validation"]
    assert list(metrics["test"]) == CLASSIFICATION == list(metrics["validation"])
    assert 0.7 < metrics["test"]["accuracy"] <= 1 and 0.7 < metrics["test"]["roc_auc"] <= 1
    info = titanic_run.info
    assert info["data"]["rows"] == 1309
    assert info["data"]["train"] + info["data"]["validation"] + info["data"]["test"] == 1309
    details = json.loads((root / "evaluation.json").read_text(encoding="utf-8"))
    matrix = np.array(details["test"]["confusion_matrix"]["matrix"])
    assert matrix.sum() == info["data"]["test"]
    assert matrix.trace() / matrix.sum() == pytest.approx(metrics["test"]["accuracy"])
    assert set(details["test"]["per_class"]) == {"0", "1"}
    assert "fitting gradient_boosting" in (root / "train.log").read_text(encoding="utf-8")


def test_plots_and_report(titanic_run: Run) -> None:
    plots = sorted(p.name for p in (titanic_run.path / "plots").iterdir())
    assert plots == ["confusion_matrix_test.png", "feature_importance.png", "roc_curve_test.png"]
    assert all(png(titanic_run.path / "plots" / p) for p in plots)
    report = (titanic_run.path / "report.md").read_text(encoding="utf-8")
    for p in plots:
        assert f"](plots/{p})" in report
    assert "| accuracy |" in report and "## ONNX export" in report and "**passed**" in report


def test_run_reloads_and_reproduces(titanic_run: Run) -> None:
    again = Run.load(titanic_run.path)
    assert again.metrics == titanic_run.metrics
    result = evaluate(titanic_run)
    assert result.metrics == pytest.approx(titanic_run.metrics["test"])
    assert (result.path / "report.md").is_file() and result.path.parent.name == "evaluations"


def test_evaluate_on_a_new_csv(titanic_run: Run, tmp_path: Path) -> None:
    rows = pd.read_csv(TITANIC, dtype=str, keep_default_na=False).iloc[::7]
    rows.to_csv(tmp_path / "sample.csv", index=False)
    result = evaluate(titanic_run.path, data=tmp_path / "sample.csv")
    features = [p.name for p in titanic_run.plans]
    frame = pd.read_csv(tmp_path / "sample.csv")[features]
    for column in ("pclass", "sex", "embarked"):
        frame[column] = frame[column].map(lambda v: "" if pd.isna(v) else str(v)).astype(object)
    for column in ("age", "sibsp", "fare"):
        frame[column] = frame[column].astype(np.float32)
    expected = accuracy_score(rows["survived"].astype(int), titanic_run.pipeline().predict(frame))
    assert result.metrics["accuracy"] == pytest.approx(expected)
    assert result.details["rows"] == len(rows)
    assert result.path.name == "sample"


def test_regression_kfold(tmp_path: Path) -> None:
    run = train(EXAMPLES / "diabetes" / "experiment.yaml", output=tmp_path / "run",
                overrides=["split.folds=3"])
    assert list(run.metrics["test"]) == ["r2", "mae", "rmse"] == list(run.metrics["validation"])
    assert run.metrics["test"]["r2"] > 0.3
    details = json.loads((run.path / "evaluation.json").read_text(encoding="utf-8"))
    assert len(details["validation"]["folds"]) == 3
    assert run.metrics["validation"]["r2"] == pytest.approx(
        np.mean([f["r2"] for f in details["validation"]["folds"]]))
    assert png(run.path / "plots" / "residuals_test.png")
    assert run.export["agreement"]["passed"] and run.export["agreement"]["max_rel_diff"] < 1e-5


def test_multiclass_mlp_records_convergence_warnings(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "name": "iris", "task": "multiclass", "data": {"source": "sklearn:iris",
                                                       "target": "target"},
        "model": {"type": "mlp", "params": {"hidden_layer_sizes": [8]}},
        "training": {"epochs": 5}, "output": {"plots": False},
    }
    run = train(raw, output=tmp_path / "run")
    assert run.class_names == ["setosa", "versicolor", "virginica"]
    assert run.metrics["test"]["roc_auc"] is not None
    assert any("ConvergenceWarning" in w for w in run.info["warnings"])
    assert run.export["agreement"]["passed"]
    assert [t["shape"] for t in run.export["outputs"]] == [[-1], [-1, 3]]


def test_cli_train_evaluate_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, [
        "train", str(EXAMPLES / "titanic" / "experiment.yaml"), "--quiet", "--json",
        "--set", "model.params.n_estimators=10", "--set", "split.folds=2",
        "--set", "output.plots=false", "--set", "output.run_name=cli",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]["accuracy"] > 0.7
    run_dir = tmp_path / "runs" / "cli"
    assert "--set model.params.n_estimators=10" in (run_dir / "experiment.yaml").read_text()
    result = runner.invoke(app, ["evaluate", str(run_dir), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["publish", str(run_dir), "--repo", "models"])
    assert result.exit_code == 0, result.output
    assert "published titanic version 1" in result.stdout
    assert (tmp_path / "models" / "titanic" / "1" / "model.onnx").is_file()


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", str(EXAMPLES / "titanic" / "experiment.yaml"), "-o", str(tmp_path / "r"),
        "--set", "features.agee=numeric"])
    assert result.exit_code == 2
    assert "error: features.agee: column 'agee' is not in" in result.output
    assert "did you mean 'age'" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
