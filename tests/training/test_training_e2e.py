"""End to end: train tiny models, publish them, serve them, query them as a client would.

Only client libraries talk to the server (a separate ``shipyard serve`` process); this process
never imports ``shipyard.serving.grpc`` (its protos clash with tritonclient's).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import ServerProcess, start_server
from sklearn.datasets import load_breast_cancer
from training_support import EXAMPLES, check_publish_on_serving_host, titanic_experiment

from shipyard.api import publish, train
from shipyard.export.onnx import onnx_feeds
from shipyard.training.run import Run

# Rows as a client sends them: a missing age (NaN), a missing port (''), an unknown port.
ROWS = pd.DataFrame({
    "pclass": np.array(["1", "3", "2", "3"], dtype=object),
    "sex": np.array(["female", "male", "female", "male"], dtype=object),
    "age": np.array([29.0, np.nan, 4.0, 40.0], dtype=np.float32),
    "sibsp": np.array([0, 1, 1, 0], dtype=np.float32),
    "fare": np.array([211.3, 7.25, 23.0, 8.05], dtype=np.float32),
    "embarked": np.array(["S", "", "C", "Atlantis"], dtype=object),
})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Run, Run]]:
    root = tmp_path_factory.mktemp("e2e")
    titanic = train(titanic_experiment(), output=root / "titanic")
    risk = train(EXAMPLES / "risk" / "experiment.yaml", output=root / "risk",
                 overrides={"output.plots": False, "split.folds": 2})
    publish(titanic, root / "repo", model="titanic")
    publish(risk, root / "repo")
    server = start_server(root / "repo")
    try:
        yield server, titanic, risk
    finally:
        server.stop()


def _expected(run: Run) -> tuple[np.ndarray, np.ndarray]:
    pipeline = run.pipeline()
    return pipeline.predict(ROWS), pipeline.predict_proba(ROWS)


def _inputs(module: Any, run: Run) -> list[Any]:
    inputs = []
    for name, array in onnx_feeds(ROWS, run.plans, run.interface).items():
        if array.dtype == object:
            array = np.array([[v.encode()] for v in array[:, 0]], dtype=object)
        tensor = module.InferInput(name, list(array.shape), "BYTES" if array.dtype == object
                                   else "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def test_metadata_and_config(served: tuple[ServerProcess, Run, Run]) -> None:
    server, titanic, _ = served
    client = httpclient.InferenceServerClient(server.http_url)
    meta = client.get_model_metadata("titanic")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (p.name, p.onnx_type, [-1, 1]) for p in titanic.plans]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert client.is_model_ready("risk")


def test_rest_raw_columns_match_the_pipeline(served: tuple[ServerProcess, Run, Run]) -> None:
    server, titanic, _ = served
    labels, proba = _expected(titanic)
    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer("titanic", _inputs(httpclient, titanic))
    assert (result.as_numpy("label") == labels).all()
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba, atol=1e-4)


def test_grpc_raw_columns_match_the_pipeline(served: tuple[ServerProcess, Run, Run]) -> None:
    server, titanic, _ = served
    labels, proba = _expected(titanic)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        result = client.infer("titanic", _inputs(grpcclient, titanic))
        assert (result.as_numpy("label") == labels).all()
        np.testing.assert_allclose(result.as_numpy("probabilities"), proba, atol=1e-4)
    finally:
        client.close()


def _post(server: ServerProcess, path: str, body: Any) -> Any:
    request = urllib.request.Request(f"http://{server.http_url}{path}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_risk_is_a_drop_in_for_the_seed_api(served: tuple[ServerProcess, Run, Run]) -> None:
    server, _, risk = served
    x = load_breast_cancer().data[:3]
    result = _post(server, "/v2/models/risk/predict", {"features": x.tolist()})["result"]
    frame = pd.DataFrame(x.astype(np.float32), columns=[p.name for p in risk.plans])
    malignant = risk.pipeline().predict_proba(frame)[:, 0]
    assert len(result) == 3 and all(not math.isnan(v) for v in result)
    np.testing.assert_allclose(result, malignant, atol=1e-4)


def test_seed_api_takes_a_json_object_per_row(served: tuple[ServerProcess, Run, Run]) -> None:
    server, titanic, _ = served
    rows = [{"pclass": 1, "sex": "female", "age": 29, "sibsp": 0, "fare": 211.3,
             "embarked": "S"},
            {"pclass": 3, "sex": "male", "age": None, "sibsp": 1, "fare": 7.25,
             "embarked": None}]
    body = _post(server, "/v2/models/titanic/predict", {"features": rows})
    pipeline = titanic.pipeline()
    expected = pipeline.predict(ROWS.iloc[:2])
    assert body["result"] == expected.tolist()
    # the probabilities beside the label, by class name, as the pipeline gives them
    proba = pipeline.predict_proba(ROWS.iloc[:2])
    names = [str(c) for c in titanic.classes]  # no class_names in this experiment
    assert [list(p) for p in body["probabilities"]] == [names] * 2
    got = np.array([[p[name] for name in names] for p in body["probabilities"]])
    np.testing.assert_allclose(got, proba, atol=1e-4)
    assert body["labels"] == [names[i] for i in proba.argmax(axis=1)]


def _post_error(server: ServerProcess, path: str, body: Any) -> tuple[int, str]:
    try:
        _post(server, path, body)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]
    raise AssertionError(f"{body} was accepted")


@pytest.mark.parametrize(("column", "value", "needle"), [
    ("age", "abc", "'features' row 1, column 'age': 'abc' is not a number"),
    ("age", [1], "'features' row 1, column 'age': [1] is not a number"),
    ("sex", {"a": 1}, "'features' row 1, column 'sex': {'a': 1} is not a text or number"),
])
def test_column_errors_speak_of_rows_and_columns(served: tuple[ServerProcess, Run, Run],
                                                 column: str, value: Any, needle: str) -> None:
    server, _, _ = served
    row = {"pclass": 1, "sex": "female", "age": 29, "sibsp": 0, "fare": 211.3,
           "embarked": "S"}
    status, error = _post_error(server, "/v2/models/titanic/predict",
                                {"features": [row, {**row, column: value}]})
    assert status == 400
    assert needle in error, error
    assert "FP32" not in error and "FP64" not in error and "BYTES" not in error, error


def test_publish_into_a_watched_repository(served: tuple[ServerProcess, Run, Run],
                                           tmp_path: Path) -> None:
    _, titanic, _ = served
    repo = tmp_path / "repo"
    repo.mkdir()
    server = start_server(repo, "--watch", "--poll-interval", "0.1")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        for version in (1, 2):
            assert publish(titanic, repo, model="t").version == version
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if client.is_model_ready("t", str(version)):
                    break
                time.sleep(0.05)
            assert client.get_model_metadata("t")["versions"][-1] == str(version)
        assert not [line for line in server.log if "ERROR" in line or "failed" in line]
    finally:
        server.stop()


def test_publish_on_a_serving_host(served: tuple[ServerProcess, Run, Run], tmp_path: Path) -> None:
    """A finished run publishes where the training stack is not installed, to the same files."""
    check_publish_on_serving_host(
        {"titanic": (served[1].path, []), "risk": (served[2].path, [])}, tmp_path)
