"""Whole-pipeline ONNX export: interfaces, agreement with scikit-learn, unconvertible models."""

from __future__ import annotations

import csv as csvlib
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from training_support import SMS_SPAM, titanic_experiment

from shipyard.api import publish, train
from shipyard.errors import ExportError
from shipyard.export.verify import onnx_session


def test_columns_interface_and_agreement(tmp_path: Path) -> None:
    raw = titanic_experiment()
    raw["model"] = {"type": "logistic_regression", "params": {"C": 0.5}}
    run = train(raw, output=tmp_path / "run")
    export = run.export
    assert export["converted"] is True
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in export["inputs"]}
    assert inputs == {"pclass": ("BYTES", [-1, 1]), "sex": ("BYTES", [-1, 1]),
                      "age": ("FP32", [-1, 1]), "sibsp": ("FP32", [-1, 1]),
                      "fare": ("FP32", [-1, 1]), "embarked": ("BYTES", [-1, 1])}
    assert [(t["name"], t["datatype"], t["shape"]) for t in export["outputs"]] == [
        ("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 2])]
    agreement = export["agreement"]
    assert agreement["passed"] and agreement["labels_identical"]
    assert agreement["rows"] == run.info["data"]["test"] and agreement["max_abs_diff"] < 1e-5
    model = onnx.load(str(run.onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["shipyard.columns"] == "pclass,sex,age,sibsp,fare,embarked"


def test_matrix_input_and_score_output(tmp_path: Path) -> None:
    raw = {"name": "bc", "task": "binary", "data": {"source": "sklearn:breast_cancer",
                                                    "target": "target"},
           "model": {"type": "logistic_regression", "params": {"max_iter": 5000}},
           "export": {"input": "matrix", "outputs": ["score", "label"],
                      "score_class": "malignant"},
           "output": {"plots": False}}
    run = train(raw, output=tmp_path / "run")
    assert [(t["name"], t["shape"]) for t in run.export["inputs"]] == [("features", [-1, 30])]
    assert [t["name"] for t in run.export["outputs"]] == ["score", "label"]
    assert run.class_names == ["malignant", "benign"] and run.interface.score_index == 0
    x = load_breast_cancer().data.astype(np.float32)
    score, label = onnx_session(run.onnx_path.read_bytes()).run(None, {"features": x[:50]})
    pipeline = run.pipeline()
    frame = pd.DataFrame(x[:50], columns=[p.name for p in run.plans])
    assert score.shape == (50, 1)
    np.testing.assert_allclose(score[:, 0], pipeline.predict_proba(frame)[:, 0], atol=1e-5)
    assert (label == pipeline.predict(frame)).all()


def test_text_column_exports_with_c_locale(tmp_path: Path) -> None:
    lines = SMS_SPAM.read_text(encoding="utf-8").splitlines()[:400]
    csv = tmp_path / "sms.csv"
    with csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csvlib.writer(fh)
        writer.writerow(["label", "text"])
        writer.writerows(line.split("\t", 1) for line in lines)
    raw = {"name": "sms", "task": "binary", "data": {"source": str(csv), "target": "label"},
           "features": {"text": "text"}, "preprocessing": {"text": {"max_features": 300}},
           "model": {"type": "logistic_regression"}, "output": {"plots": False}}
    run = train(raw, output=tmp_path / "run")
    assert run.export["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    assert run.export["outputs"][0]["datatype"] == "BYTES", "string labels ham/spam"
    assert run.export["agreement"]["passed"], run.export["agreement"]


def test_unconvertible_model_is_reported_and_not_published(tmp_path: Path) -> None:
    raw = titanic_experiment()
    raw["model"] = {"type": "hist_gradient_boosting", "params": {"max_depth": 2}}
    raw["training"] = {"epochs": 10}
    run = train(raw, output=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] > 0.6, "the model still trains and is evaluated"
    assert run.export["converted"] is False
    assert "cannot be exported to ONNX: skl2onnx does not convert " \
           "HistGradientBoostingClassifier" in run.export["error"]
    assert not run.onnx_path.exists()
    assert "**Not exported.**" in (run.path / "report.md").read_text(encoding="utf-8")
    with pytest.raises(ExportError, match="has no ONNX model to publish: model "
                       "'hist_gradient_boosting' cannot be exported"):
        publish(run, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
