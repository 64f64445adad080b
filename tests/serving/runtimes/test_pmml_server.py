"""A real ``shipyard serve`` with a PMML model, driven by tritonclient over REST and gRPC: a
string input and missing values (JSON null over REST, NaN in FP64 over gRPC and the binary
extension), checked against jpmml_evaluator run in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import ServerProcess, http_call, start_server
from pmml_models import CLASSIFIER, classifier_pmml

pytest.importorskip("jpmml_evaluator")

SEX = ["male", "female", "female", "male"]
AGE = [22.0, None, 61.5, None]
N = [1, 0, 3, 2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "titanic" / "1").mkdir(parents=True)
    classifier_pmml(repo / "titanic" / "1")
    proc = start_server(repo)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def reference() -> dict[str, list[object]]:
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    rows = pd.DataFrame({"sex": SEX, "age": AGE, "n": N})
    return make_evaluator(CLASSIFIER).evaluateAll(rows).to_dict("list")  # type: ignore[no-any-return]


def _check(labels: list[object], p_yes: np.ndarray, reference: dict[str, list[object]]) -> None:
    assert [v.decode() if isinstance(v, bytes) else v for v in labels] == reference["y"]
    np.testing.assert_allclose(p_yes, reference["probability(yes)"], rtol=1e-12)


def test_metadata(server: ServerProcess) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    meta = client.get_model_metadata("titanic")
    assert meta["platform"] == "pmml"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("sex", "BYTES", [-1]), ("age", "FP64", [-1]), ("n", "INT64", [-1])]
    assert [o["name"] for o in meta["outputs"]] == ["y", "probability(no)", "probability(yes)"]


def test_rest_json_null(server: ServerProcess, reference: dict[str, list[object]]) -> None:
    body = json.dumps({"inputs": [
        {"name": "sex", "datatype": "BYTES", "shape": [4], "data": SEX},
        {"name": "age", "datatype": "FP64", "shape": [4], "data": AGE},  # None -> null
        {"name": "n", "datatype": "INT64", "shape": [4], "data": N},
    ]}).encode()
    status, _, raw = http_call(server, "POST", "/v2/models/titanic/infer", body,
                               {"Content-Type": "application/json"})
    assert status == 200, raw
    out = {o["name"]: o for o in json.loads(raw)["outputs"]}
    assert out["y"]["datatype"] == "BYTES" and out["probability(yes)"]["datatype"] == "FP64"
    _check(out["y"]["data"], np.array(out["probability(yes)"]["data"]), reference)


def _inputs(module: object) -> list[object]:
    inputs = [module.InferInput("sex", [4], "BYTES"),  # type: ignore[attr-defined]
              module.InferInput("age", [4], "FP64"),  # type: ignore[attr-defined]
              module.InferInput("n", [4], "INT64")]  # type: ignore[attr-defined]
    age = np.array([np.nan if v is None else v for v in AGE])
    for given, data in zip(inputs, [np.array(SEX, dtype=object), age, np.array(N, np.int64)],
                           strict=True):
        given.set_data_from_numpy(data)  # type: ignore[attr-defined]
    return inputs


def test_rest_binary_nan(server: ServerProcess, reference: dict[str, list[object]]) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer("titanic", _inputs(httpclient))
    _check(result.as_numpy("y").tolist(), result.as_numpy("probability(yes)"), reference)


def test_grpc_nan(server: ServerProcess, reference: dict[str, list[object]]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer("titanic", _inputs(grpcclient))
    _check(result.as_numpy("y").tolist(), result.as_numpy("probability(yes)"), reference)


def test_rest_invalid_category(server: ServerProcess) -> None:
    body = json.dumps({"inputs": [
        {"name": "sex", "datatype": "BYTES", "shape": [1], "data": ["robot"]},
        {"name": "age", "datatype": "FP64", "shape": [1], "data": [3]},
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [1]},
    ]}).encode()
    status, _, raw = http_call(server, "POST", "/v2/models/titanic/infer", body)
    assert status == 400, raw
    assert b'sex' in raw and b"robot" in raw
