"""A real ``shipyard serve`` with a PMML model, driven by tritonclient over REST and gRPC: a
string input and missing values (JSON null over REST, NaN in FP64 over gRPC and the binary
extension), checked against jpmml_evaluator run in-process. Fields are ``[-1, 1]`` (Triton's
``dims: [1]``, batched); the earlier ``[n]`` requests still work and are answered as ``[n]``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import ServerProcess, http_call, start_server
from pmml_models import CLASSIFIER, classifier_pmml

pytest.importorskip("jpmml_evaluator")

SEX = ["male", "female", "female", "male"]
#: a missing string: only a JSON null can say it
SEX_MISSING = ["male", None, "female", "male"]
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


def _check(labels: np.ndarray | list[object], p_yes: np.ndarray,
           reference: dict[str, list[object]]) -> None:
    flat = np.asarray(labels, dtype=object).reshape(-1).tolist()
    assert [v.decode() if isinstance(v, bytes) else v for v in flat] == reference["y"]
    np.testing.assert_allclose(np.asarray(p_yes).reshape(-1), reference["probability(yes)"],
                               rtol=1e-12)


def test_metadata_and_config(server: ServerProcess) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    meta = client.get_model_metadata("titanic")
    assert meta["platform"] == "pmml"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("sex", "BYTES", [-1, 1]), ("age", "FP64", [-1, 1]), ("n", "INT64", [-1, 1])]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
        ("y", [-1, 1]), ("probability(no)", [-1, 1]), ("probability(yes)", [-1, 1])]
    # batched, one value per row: what perf_analyzer needs to shape -b N requests
    config = client.get_model_config("titanic")
    assert config["max_batch_size"] > 0
    assert [i["dims"] for i in config["input"]] == [[1], [1], [1]]
    assert [o["dims"] for o in config["output"]] == [[1], [1], [1]]
    grpc = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("titanic")
    assert [list(i.dims) for i in grpc.config.input] == [[1], [1], [1]]


@pytest.mark.parametrize("shape", [[4, 1], [4]], ids=["column", "vector"])
def test_rest_json_null(server: ServerProcess, reference: dict[str, list[object]],
                        shape: list[int]) -> None:
    body = json.dumps({"inputs": [
        {"name": "sex", "datatype": "BYTES", "shape": shape, "data": SEX_MISSING},
        {"name": "age", "datatype": "FP64", "shape": shape, "data": AGE},  # None -> null
        {"name": "n", "datatype": "INT64", "shape": shape, "data": N},
    ]}).encode()
    status, _, raw = http_call(server, "POST", "/v2/models/titanic/infer", body,
                               {"Content-Type": "application/json"})
    assert status == 200, raw
    out = {o["name"]: o for o in json.loads(raw)["outputs"]}
    assert out["y"]["datatype"] == "BYTES" and out["probability(yes)"]["datatype"] == "FP64"
    assert {o["name"]: o["shape"] for o in out.values()} == {
        "y": shape, "probability(no)": shape, "probability(yes)": shape}
    want = _score({"sex": SEX_MISSING, "age": AGE, "n": N})
    _check(out["y"]["data"], np.array(out["probability(yes)"]["data"]), want)


def _score(rows: dict[str, list[object]]) -> dict[str, list[object]]:
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    got = make_evaluator(CLASSIFIER).evaluateAll(pd.DataFrame(rows))
    return got.to_dict("list")  # type: ignore[no-any-return]


def _inputs(module: object, shape: list[int]) -> list[object]:
    inputs = [module.InferInput("sex", shape, "BYTES"),  # type: ignore[attr-defined]
              module.InferInput("age", shape, "FP64"),  # type: ignore[attr-defined]
              module.InferInput("n", shape, "INT64")]  # type: ignore[attr-defined]
    age = np.array([np.nan if v is None else v for v in AGE])
    for given, data in zip(inputs, [np.array(SEX, dtype=object), age, np.array(N, np.int64)],
                           strict=True):
        given.set_data_from_numpy(data.reshape(shape))  # type: ignore[attr-defined]
    return inputs


@pytest.mark.parametrize("shape", [[4, 1], [4]], ids=["column", "vector"])
def test_rest_binary_nan(server: ServerProcess, reference: dict[str, list[object]],
                         shape: list[int]) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    result = client.infer("titanic", _inputs(httpclient, shape))
    assert result.as_numpy("probability(yes)").shape == tuple(shape)
    _check(result.as_numpy("y"), result.as_numpy("probability(yes)"), reference)


def test_rest_json_tritonclient(server: ServerProcess) -> None:
    """tritonclient's JSON mode (binary_data=False; it cannot write a NaN or a null, so no
    missing value here) on [n, 1] fields."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    rows = {"sex": SEX, "age": [22.0, 5.0, 61.5, 40.0], "n": N}
    inputs = []
    for (name, values), datatype in zip(rows.items(), ("BYTES", "FP64", "INT64"), strict=True):
        given = httpclient.InferInput(name, [4, 1], datatype)
        given.set_data_from_numpy(np.array(values, dtype={"BYTES": object, "FP64": np.float64,
                                                          "INT64": np.int64}[datatype]
                                           ).reshape(4, 1), binary_data=False)
        inputs.append(given)
    wanted = [httpclient.InferRequestedOutput(n, binary_data=False)
              for n in ("y", "probability(yes)")]
    result = client.infer("titanic", inputs, outputs=wanted)
    assert result.as_numpy("probability(yes)").shape == (4, 1)
    _check(result.as_numpy("y"), result.as_numpy("probability(yes)"), _score(rows))


@pytest.mark.parametrize("shape", [[4, 1], [4]], ids=["column", "vector"])
def test_grpc_nan(server: ServerProcess, reference: dict[str, list[object]],
                  shape: list[int]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer("titanic", _inputs(grpcclient, shape))
    assert result.as_numpy("probability(yes)").shape == tuple(shape)
    _check(result.as_numpy("y"), result.as_numpy("probability(yes)"), reference)


def test_rest_invalid_category(server: ServerProcess) -> None:
    body = json.dumps({"inputs": [
        {"name": "sex", "datatype": "BYTES", "shape": [1], "data": ["robot"]},
        {"name": "age", "datatype": "FP64", "shape": [1], "data": [3]},
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [1]},
    ]}).encode()
    status, _, raw = http_call(server, "POST", "/v2/models/titanic/infer", body)
    assert status == 400, raw
    assert b'sex' in raw and b"robot" in raw
