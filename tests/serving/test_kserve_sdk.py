"""The kserve SDK (PyPI ``kserve``, its ``InferenceRESTClient`` and ``InferenceGRPCClient``, v2
protocol) against real ``shipyard serve`` processes.

The SDK runs in child processes (``tests/kserve_probe.py``): it registers the protobuf package
``inference`` that tritonclient.grpc, imported by this process, registers too. Each probe
answers every step's result as JSON; the tests here check them: inference outputs against
onnxruntime run in this process, health, metadata, the V2 REST bodies against the SDK's pydantic
models (``kserve.protocol.rest.v2_datamodels``), and load/unload on an explicit-control server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ROOT, ServerProcess, http_call, start_server

PROBE = Path(__file__).resolve().parents[1] / "kserve_probe.py"
TOKEN = "kserve-sdk-test-token-0123456789"
#: four rows of scikit-learn's breast-cancer data (two malignant, two benign), the risk input
ROWS = [
    [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095,
     0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38,
     17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189],
    [20.57, 17.77, 132.9, 1326.0, 0.08474, 0.07864, 0.0869, 0.07017, 0.1812, 0.05667, 0.5435,
     0.7339, 3.398, 74.08, 0.005225, 0.01308, 0.0186, 0.0134, 0.01389, 0.003532, 24.99, 23.41,
     158.8, 1956.0, 0.1238, 0.1866, 0.2416, 0.186, 0.275, 0.08902],
    [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766, 0.2699,
     0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023, 15.11, 19.26,
     99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259],
    [13.08, 15.71, 85.63, 520.0, 0.1075, 0.127, 0.04568, 0.0311, 0.1967, 0.06811, 0.1852,
     0.7477, 1.383, 14.67, 0.004097, 0.01898, 0.01698, 0.00649, 0.01678, 0.002425, 14.5,
     20.49, 96.09, 630.5, 0.1312, 0.2776, 0.189, 0.07283, 0.3184, 0.08183],
]


def probe(**command: Any) -> dict[str, Any]:
    """Run one kserve_probe.py command in a child process; its JSON answer."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(command)], capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, f"probe {command['command']} failed:\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def step(result: dict[str, Any], name: str) -> Any:
    """One step's answer; a step that raised fails the test with its error."""
    value = result[name]
    if isinstance(value, dict) and "error" in value and "traceback" in value:
        pytest.fail(f"step {name!r} raised {value['error']}\n{value['traceback']}")
    return value


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    session = ort.InferenceSession(str(DEMO_REPOSITORY / "risk" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    scores = session.run(None, {name: np.asarray(ROWS, np.float32)})[0]
    assert scores.shape == (4, 1)
    assert scores[0, 0] > 0.5 and scores[3, 0] < 0.5  # the rows do differ
    return np.asarray(scores)


def check_scores(answer: dict[str, Any], expected: np.ndarray, request_id: str | None = None
                 ) -> None:
    assert answer["model_name"] == "risk"
    if request_id is not None:
        assert answer["id"] == request_id
    score = answer["outputs"]["score"]
    assert (score["datatype"], score["shape"]) == ("FP32", [4, 1])
    np.testing.assert_allclose(np.asarray(score["data"], np.float32), expected, rtol=1e-5,
                               atol=1e-6)


# --------------------------------------------------------------------------------------------
# REST (InferenceRESTClient), on each HTTP server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rest_server(http_server: str) -> Iterator[ServerProcess]:
    server = start_server(DEMO_REPOSITORY, "--http-server", http_server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rest(rest_server: ServerProcess) -> dict[str, Any]:
    return probe(command="rest", url=f"http://{rest_server.http_url}", model="risk", rows=ROWS)


def test_rest_health(rest: dict[str, Any]) -> None:
    assert step(rest, "is_server_live") is True
    assert step(rest, "is_server_ready") is True
    assert step(rest, "is_model_ready") is True
    assert step(rest, "is_unknown_model_ready") is False


@pytest.mark.parametrize("mode", ["infer_json", "infer_binary_in", "infer_binary_out",
                                  "infer_binary_both"])
def test_rest_infer(rest: dict[str, Any], expected: np.ndarray, mode: str) -> None:
    check_scores(step(rest, mode), expected, "json-1" if mode == "infer_json" else None)


@pytest.mark.parametrize("name", ["server_metadata", "model_metadata", "version_metadata",
                                  "live", "ready", "model_ready", "version_ready"])
def test_rest_bodies_fit_the_sdk_models(rest: dict[str, Any], name: str) -> None:
    answer = step(rest, name)
    assert answer["status"] == 200
    assert answer["content_type"] == "application/json"
    assert answer["valid"], answer


def test_rest_health_bodies(rest: dict[str, Any]) -> None:
    assert step(rest, "live")["doc"] == {"live": True}
    assert step(rest, "ready")["doc"] == {"ready": True}
    assert step(rest, "model_ready")["doc"] == {"name": "risk", "ready": True}
    assert step(rest, "version_ready")["doc"] == {"name": "risk", "ready": True}
    meta = step(rest, "model_metadata")["doc"]
    assert meta["name"] == "risk" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}]


def test_rest_infer_bodies_fit_the_sdk_models(rest: dict[str, Any]) -> None:
    answer = step(rest, "infer_body")
    assert answer["request"]["valid"], answer["request"]  # the SDK's request (with model_name)
    assert answer["status"] == 200
    assert answer["response"]["valid"], answer["response"]
    assert answer["response"]["doc"]["id"] == "body-check"
    # a request without an id still gets one ("" ): the SDK's model requires the field
    assert answer["response_without_request_id"]["valid"], answer["response_without_request_id"]
    assert answer["response_without_request_id"]["doc"]["id"] == ""


def test_rest_errors_reach_the_sdk_message(rest: dict[str, Any]) -> None:
    unknown = step(rest, "unknown_model_error")
    assert unknown["status"] == 404  # OIP's REST text lists 400 for every error: see README
    assert "unknown model 'no-such-model'" in unknown["message"]
    bad = step(rest, "bad_shape_error")
    assert bad["status"] == 400
    assert "expects shape [-1, 30], got [4, 29]" in bad["message"]


def test_rest_metadata_properties(rest_server: ServerProcess) -> None:
    status, _, body = http_call(rest_server, "GET", "/v2/models/risk")
    assert status == 200
    props = json.loads(body)["properties"]
    assert props == {"backend": "onnx", "device_kind": "KIND_CPU", "instances": "1",
                     "max_batch_size": "256", "dynamic_batching": "true",
                     "max_queue_delay_us": "0"}
    status, _, body = http_call(rest_server, "GET", "/v2/models/digits")
    props = json.loads(body)["properties"]
    assert props["preprocess"] == "image_decode,resize,to_dtype,layout"
    assert props["postprocess"] == "softmax,top_k,labels"
    status, _, body = http_call(rest_server, "GET", "/v2/models/cnn/versions/1")
    assert json.loads(body)["properties"]["labels.logits"] == "10"


# --------------------------------------------------------------------------------------------
# gRPC (InferenceGRPCClient and the SDK's stub)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[ServerProcess]:
    server = start_server(DEMO_REPOSITORY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def grpc_result(grpc_server: ServerProcess) -> dict[str, Any]:
    return probe(command="grpc", url=grpc_server.grpc_url, model="risk", rows=ROWS)


def test_grpc_health(grpc_result: dict[str, Any]) -> None:
    assert step(grpc_result, "is_server_live") is True
    assert step(grpc_result, "is_server_ready") is True
    assert step(grpc_result, "is_model_ready") is True
    # Shipyard answers ready: false for an unknown model, as Triton does (no NOT_FOUND)
    assert step(grpc_result, "is_unknown_model_ready") == {"code": "OK", "ready": False}


@pytest.mark.parametrize("mode", ["infer_contents", "infer_raw"])
def test_grpc_infer(grpc_result: dict[str, Any], expected: np.ndarray, mode: str) -> None:
    check_scores(step(grpc_result, mode), expected, "grpc-1")


def test_grpc_metadata(grpc_result: dict[str, Any]) -> None:
    server = step(grpc_result, "server_metadata")
    assert server["name"] == "shipyard" and "binary_tensor_data" in server["extensions"]
    model = step(grpc_result, "model_metadata")
    assert model["name"] == "risk" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "30"]}]


def test_grpc_metadata_properties(grpc_server: ServerProcess) -> None:
    # the SDK's proto has no field 6 yet: read it with Shipyard's own (in the child process)
    answer = probe(command="properties", url=grpc_server.grpc_url, models=["risk", "digits"])
    assert answer["risk"]["properties"] == {
        "backend": "onnx", "device_kind": "KIND_CPU", "instances": "1",
        "max_batch_size": "256", "dynamic_batching": "true", "max_queue_delay_us": "0"}
    assert answer["digits"]["properties"]["preprocess"] == "image_decode,resize,to_dtype,layout"


# --------------------------------------------------------------------------------------------
# load / unload (explicit model control)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("kserve-explicit")
    shutil.copytree(DEMO_REPOSITORY / "risk", root / "risk")
    shutil.copytree(DEMO_REPOSITORY / "risk", root / "spare")
    server = start_server(root, "--model-control", "explicit", "--control-token", TOKEN,
                          "--load-model", "risk")
    try:
        yield probe(command="control", http_url=f"http://{server.http_url}",
                    grpc_url=server.grpc_url, model="spare", required="risk", token=TOKEN,
                    rows=ROWS)
    finally:
        server.stop()


def test_control_load_unload(control: dict[str, Any], expected: np.ndarray) -> None:
    before = step(control, "before")
    # never loaded: the server does not know it yet (404, an error body); both SDKs say False
    assert (before["rest"], before["grpc"], before["status"]) == (False, False, 404)
    # the SDK's RepositoryModelLoadRequest carries model_name in field 1 (Triton's
    # repository_name); its answer's model_name and isLoaded are filled
    assert step(control, "load") == {"code": "OK", "model_name": "spare", "isLoaded": True}
    loaded = step(control, "loaded")
    assert (loaded["rest"], loaded["grpc"], loaded["status"]) == (True, True, 200)
    assert loaded["doc"] == {"name": "spare", "ready": True}
    answer = step(control, "infer")
    assert answer["model_name"] == "spare"
    np.testing.assert_allclose(np.asarray(answer["outputs"]["score"]["data"]), expected,
                               rtol=1e-5, atol=1e-6)
    assert step(control, "unload") == {"code": "OK", "model_name": "spare", "isUnloaded": True}
    unloaded = step(control, "unloaded")
    assert (unloaded["rest"], unloaded["grpc"], unloaded["status"]) == (False, False, 503)
    assert unloaded["valid"], unloaded  # the 503 body fits ModelReadyResponse too
    assert unloaded["doc"] == {"name": "spare", "ready": False}


def test_control_needs_the_token(control: dict[str, Any]) -> None:
    for name in ("load_without_token", "unload_without_token"):
        answer = step(control, name)
        assert answer["code"] == "UNAUTHENTICATED", answer
        assert "Authorization: Bearer" in answer["details"]
    unknown = step(control, "load_unknown")
    assert unknown["code"] == "NOT_FOUND" and "no-such-model" in unknown["details"]


def test_control_server_not_ready_body(control: dict[str, Any]) -> None:
    ready = step(control, "server_ready")
    assert (ready["status"], ready["grpc"], ready["rest"]) == (200, True, True)
    assert step(control, "unload_required")["code"] == "OK"
    not_ready = step(control, "server_not_ready")
    assert not_ready["status"] == 503 and not_ready["grpc"] is False
    assert not_ready["valid"] and not_ready["doc"] == {"ready": False}, not_ready
    # the SDK's REST is_server_ready raises for any status but 2xx (the OIP's not-ready answer)
    assert not_ready["rest"] == "HTTPStatusError 503"
