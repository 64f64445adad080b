"""The seed's simple API: ``POST /predict`` (and per model) and gRPC ``ModelService.Predict``.

The server runs as a subprocess (the session's ``demo_server``); this module only talks to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from shipyard.protocol.grpc import model_service_pb2 as ms_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, SHARED, ServerProcess

# The seed article's proto, as written (no package, so the path is /ModelService/Predict).
SEED_PROTO = """\
syntax = "proto3";

// 定义模型推理服务
service ModelService {
  rpc Predict (ModelRequest) returns (ModelResponse);
}

// 请求数据结构
message ModelRequest {
  repeated float features = 1;
}

// 响应数据结构
message ModelResponse {
  float score = 1;
}
"""
PREDICT = "/ModelService/Predict"
ATOL = 1e-6  # float32 round-off; both sides run the same graph


def _session(model: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(DEMO_REPOSITORY / model / "1" / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])


def post(server: ServerProcess, path: str, doc: Any, method: str = "POST"
         ) -> tuple[int, Any]:
    data = None if method == "GET" else json.dumps(doc).encode()
    req = urllib.request.Request(f"http://{server.http_url}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            body = err.read()
        return err.code, json.loads(body) if body else None


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data.astype(np.float32)


@pytest.fixture(scope="module")
def risk() -> ort.InferenceSession:
    return _session("risk")


@pytest.fixture(scope="module")
def expected(risk: ort.InferenceSession, rows: np.ndarray) -> np.ndarray:
    """onnxruntime's score for every row, in-process."""
    (scores,) = risk.run(["score"], {"features": rows})
    return scores[:, 0]


@pytest.fixture(scope="module")
def channel(demo_server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(demo_server.grpc_url) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture(scope="module")
def predict(channel: grpc.Channel) -> Any:
    return channel.unary_unary(PREDICT, request_serializer=ms_pb2.ModelRequest.SerializeToString,
                               response_deserializer=ms_pb2.ModelResponse.FromString)


def _features(row: np.ndarray) -> list[float]:
    """float32 values as JSON numbers (exact: every float32 is a double)."""
    return [float(v) for v in row]


def _mnist_pixels(count: int = 6) -> tuple[np.ndarray, list[int]]:
    from PIL import Image

    test_dir = SHARED / "data" / "mnist_png" / "test"
    if not test_dir.is_dir():
        pytest.skip(f"MNIST PNGs not found at {test_dir}")
    images, labels = [], []
    for digit in range(count):
        f = sorted((test_dir / str(digit)).glob("*.png"))[0]
        with Image.open(f) as img:
            images.append(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
        labels.append(digit)
    return np.stack(images).reshape(count, 784).astype(np.float32), labels


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------


def test_predict_one_row(demo_server: ServerProcess, rows: np.ndarray,
                         expected: np.ndarray) -> None:
    for i in (0, 13, 81, 363, 568):  # confident and borderline rows
        status, body = post(demo_server, "/predict", {"features": _features(rows[i])})
        assert status == 200, body
        assert body["model_name"] == "risk" and body["model_version"] == "1"
        (score,) = body["result"]
        assert isinstance(score, float)
        assert score == pytest.approx(float(expected[i]), abs=ATOL)


def test_predict_rows(demo_server: ServerProcess, rows: np.ndarray,
                      expected: np.ndarray) -> None:
    batch = rows[10:60]
    status, body = post(demo_server, "/predict", {"features": [_features(r) for r in batch]})
    assert status == 200, body
    np.testing.assert_allclose(body["result"], expected[10:60], rtol=0, atol=ATOL)
    assert "labels" not in body  # risk has no labels


def test_predict_bare_list_of_rows(demo_server: ServerProcess, rows: np.ndarray,
                                   expected: np.ndarray) -> None:
    status, body = post(demo_server, "/predict", [_features(r) for r in rows[200:203]])
    assert status == 200, body
    np.testing.assert_allclose(body["result"], expected[200:203], rtol=0, atol=ATOL)
    status, body = post(demo_server, "/predict", _features(rows[300]))  # a bare single row
    assert status == 200, body
    np.testing.assert_allclose(body["result"], expected[300:301], rtol=0, atol=ATOL)


def test_predict_matches_labels(demo_server: ServerProcess, rows: np.ndarray) -> None:
    """The score is P(malignant); malignant is sklearn's target 0."""
    from sklearn.datasets import load_breast_cancer

    target = load_breast_cancer().target
    status, body = post(demo_server, "/predict", {"features": [_features(r) for r in rows[:256]]})
    assert status == 200, body
    predicted_malignant = np.array(body["result"]) > 0.5
    assert np.mean(predicted_malignant == (target[:256] == 0)) > 0.95


def test_model_predict_routes(demo_server: ServerProcess, rows: np.ndarray,
                              expected: np.ndarray) -> None:
    batch = [_features(r) for r in rows[5:9]]
    for path in ("/v2/models/risk/predict", "/v2/models/risk/versions/1/predict"):
        status, body = post(demo_server, path, {"features": batch})
        assert status == 200, (path, body)
        assert body["model_name"] == "risk"
        np.testing.assert_allclose(body["result"], expected[5:9], rtol=0, atol=ATOL)


def test_cnn_predict_logits_and_labels(demo_server: ServerProcess) -> None:
    pixels, digits = _mnist_pixels()
    (logits,) = _session("cnn").run(["logits"], {"image": pixels.reshape(-1, 1, 28, 28)})
    status, body = post(demo_server, "/v2/models/cnn/predict",
                        {"features": [_features(p) for p in pixels]})
    assert status == 200, body
    assert body["model_name"] == "cnn"
    result = np.array(body["result"])
    assert result.shape == (len(digits), 10)
    np.testing.assert_allclose(result, logits, rtol=1e-5, atol=1e-5)
    assert body["labels"] == [str(i) for i in logits.argmax(axis=1)]
    assert sum(label == str(d) for label, d in zip(body["labels"], digits, strict=True)) >= 5
    # probabilities beside the labels: the logits' softmax, by class name in class order
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)
    assert [list(p) for p in body["probabilities"]] == [[str(i) for i in range(10)]] * len(digits)
    np.testing.assert_allclose([list(p.values()) for p in body["probabilities"]], softmax,
                               rtol=1e-4, atol=1e-6)
    # one row of 784 pixels -> one row of 10 logits
    status, body = post(demo_server, "/v2/models/cnn/predict", {"features": _features(pixels[0])})
    assert status == 200, body
    assert np.array(body["result"]).shape == (1, 10)
    assert body["labels"] == [str(int(logits[0].argmax()))]


@pytest.mark.parametrize(("doc", "needle"), [
    ({"features": [1.0] * 29}, "30"),
    ({"features": [[1.0] * 30, [1.0] * 31]}, "row 1 has 31 value(s) but row 0 has 30"),
    ({"features": [[1.0] * 30, [1.0] * 29 + ["x"]]}, "row 1, column 29: 'x' is not a number"),
    ({"features": [[1.0] * 30, 5]}, "row 1 is 5, not a list of numbers"),
    ({"features": []}, "non-empty"),
    ({"features": "abc"}, "features"),
    ({"rows": [1.0] * 30}, "features"),
    ({"features": [1.0] * 30, "extra": 1}, "extra"),
    ({"features": ["a"] * 30}, "row 0, column 0: 'a' is not a number"),
])
def test_predict_bad_input(demo_server: ServerProcess, doc: Any, needle: str) -> None:
    status, body = post(demo_server, "/predict", doc)
    assert status == 400, body
    assert needle in body["error"]


def test_predict_unknown_model_and_method(demo_server: ServerProcess) -> None:
    status, body = post(demo_server, "/v2/models/nope/predict", {"features": [1.0] * 30})
    assert status == 404 and "nope" in body["error"]
    status, body = post(demo_server, "/predict", None, method="GET")
    assert status == 405 and "POST" in body["error"]


# --------------------------------------------------------------------------------------------
# gRPC ModelService.Predict
# --------------------------------------------------------------------------------------------


def test_grpc_predict(predict: Any, rows: np.ndarray, expected: np.ndarray) -> None:
    for i in (3, 41, 89, 255, 568):
        resp = predict(ms_pb2.ModelRequest(features=rows[i].tolist()), timeout=10)
        assert resp.score == pytest.approx(float(expected[i]), abs=ATOL)


def test_grpc_predict_other_model_by_metadata(predict: Any) -> None:
    pixels, _ = _mnist_pixels(2)
    (logits,) = _session("cnn").run(["logits"], {"image": pixels.reshape(-1, 1, 28, 28)})
    resp = predict(ms_pb2.ModelRequest(features=pixels[1].tolist()), timeout=10,
                   metadata=[("model", "cnn")])
    assert resp.score == pytest.approx(float(logits[1, 0]), abs=1e-5)


@pytest.mark.parametrize(("features", "code"), [
    ([1.0] * 29, grpc.StatusCode.INVALID_ARGUMENT),
    ([], grpc.StatusCode.INVALID_ARGUMENT),
])
def test_grpc_predict_errors(predict: Any, features: list[float], code: grpc.StatusCode
                             ) -> None:
    with pytest.raises(grpc.RpcError) as info:
        predict(ms_pb2.ModelRequest(features=features), timeout=10)
    assert info.value.code() == code
    assert info.value.details()


def test_grpc_predict_unknown_model(predict: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        predict(ms_pb2.ModelRequest(features=[1.0] * 30), timeout=10,
                metadata=[("model", "nope")])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


_CLIENT = """\
import json, sys
import grpc
import model_service_pb2, model_service_pb2_grpc

rows = json.load(sys.stdin)
with grpc.insecure_channel(sys.argv[1]) as channel:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    scores = [stub.Predict(model_service_pb2.ModelRequest(features=r), timeout=10).score
              for r in rows]
print(json.dumps({"scores": scores,
                  "full_name": model_service_pb2.DESCRIPTOR.services_by_name[
                      "ModelService"].methods_by_name["Predict"].full_name}))
"""


def test_seed_proto_as_written(tmp_path: Path, demo_server: ServerProcess, rows: np.ndarray,
                               expected: np.ndarray) -> None:
    """Code generated from the seed's proto at test time talks to the server unchanged."""
    (tmp_path / "model_service.proto").write_text(SEED_PROTO, encoding="utf-8")
    gen = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", str(tmp_path / "model_service.proto")],
        capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    assert (tmp_path / "model_service_pb2_grpc.py").is_file()
    script = tmp_path / "client.py"
    script.write_text(_CLIENT, encoding="utf-8")
    picked = [0, 38, 99, 291, 500]
    done = subprocess.run(
        [sys.executable, str(script), demo_server.grpc_url],
        input=json.dumps([rows[i].tolist() for i in picked]), capture_output=True, text=True,
        timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["full_name"] == "ModelService.Predict"
    np.testing.assert_allclose(out["scores"], expected[picked], rtol=0, atol=ATOL)
