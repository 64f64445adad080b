"""KServe V2 over REST and gRPC, exercised with Triton's published clients against real servers.

Every server here is a ``shipyard serve`` subprocess; this process is only a client. It imports
``tritonclient.grpc`` and therefore must never import ``shipyard.serving.grpc`` (both register
the protobuf package ``inference``).
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, SHARED, ServerProcess, start_server
from onnx_models import (
    DATATYPES,
    add_sub_model,
    identity_model,
    sample,
    scale_model,
    write_repository,
)

MNIST = SHARED / "data" / "mnist_png"
PROTOCOLS = ["http", "grpc"]
# (protocol, binary tensors on HTTP)
TRANSPORTS = [("http", False), ("http", True), ("grpc", True)]
TRANSPORT_IDS = ["http-json", "http-binary", "grpc"]
DT_NAMES = [k for k, _, _ in DATATYPES]
UNICODE_STRINGS = ["", "hello", "héllo wörld", "日本語テキスト", "emoji 🚀✨", "", "Ω≈ç√∫",
                   "tab\tnew\nline", "quote \" and \\ backslash", "x" * 300, "ünïcödé", ""]


# --------------------------------------------------------------------------------------------
# helpers: a protocol-neutral view of the two Triton clients, and raw HTTP
# --------------------------------------------------------------------------------------------


class V2:
    """One Triton client (HTTP or gRPC) behind a common, plain-Python interface."""

    def __init__(self, protocol: str, server: ServerProcess, binary: bool = True) -> None:
        self.protocol = protocol
        self.binary = binary
        self.client: Any
        if protocol == "http":
            self.client = httpclient.InferenceServerClient(server.http_url)
        else:
            self.client = grpcclient.InferenceServerClient(server.grpc_url)

    def close(self) -> None:
        self.client.close()

    # -- health and metadata --------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        md = self.client.get_server_metadata()
        if self.protocol == "http":
            return dict(md)
        return {"name": md.name, "version": md.version, "extensions": list(md.extensions)}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        md = self.client.get_model_metadata(name, version)
        if self.protocol == "http":
            return dict(md)

        def tensors(ts: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts]

        return {"name": md.name, "versions": list(md.versions), "platform": md.platform,
                "inputs": tensors(md.inputs), "outputs": tensors(md.outputs)}

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """``{"name", "max_batch_size", "input": [...], "output": [...]}`` with enum names (an
        input's ``format`` too)."""
        if self.protocol == "http":
            cfg = self.client.get_model_config(name, version)
            return {"name": cfg["name"], "max_batch_size": cfg["max_batch_size"],
                    "input": [{"name": t["name"], "data_type": t["data_type"],
                               "format": t["format"], "dims": list(t["dims"])}
                              for t in cfg["input"]],
                    "output": [{"name": t["name"], "data_type": t["data_type"],
                                "dims": list(t["dims"])} for t in cfg["output"]]}
        cfg = self.client.get_model_config(name, version).config

        def tensors(ts: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "data_type": model_config_pb2.DataType.Name(t.data_type),
                     "dims": list(t.dims)} for t in ts]

        inputs = [{**t, "format": model_config_pb2.ModelInput.Format.Name(m.format)}
                  for t, m in zip(tensors(cfg.input), cfg.input, strict=True)]
        return {"name": cfg.name, "max_batch_size": cfg.max_batch_size,
                "input": inputs, "output": tensors(cfg.output)}

    def stats(self, name: str, version: str = "") -> list[dict[str, Any]]:
        """Per version: counts as ints (gRPC's int64 and HTTP's JSON numbers alike)."""
        if self.protocol == "http":
            rows = self.client.get_inference_statistics(name, version)["model_stats"]
            return [{"name": r["name"], "version": r["version"],
                     "inference_count": int(r["inference_count"]),
                     "execution_count": int(r["execution_count"]),
                     "success": int(r["inference_stats"]["success"]["count"]),
                     "fail": int(r["inference_stats"]["fail"]["count"]),
                     "queue": int(r["inference_stats"]["queue"]["count"]),
                     "success_ns": int(r["inference_stats"]["success"]["ns"]),
                     "last_inference": int(r["last_inference"])} for r in rows]
        rows = self.client.get_inference_statistics(name, version).model_stats
        return [{"name": r.name, "version": r.version,
                 "inference_count": r.inference_count, "execution_count": r.execution_count,
                 "success": r.inference_stats.success.count,
                 "fail": r.inference_stats.fail.count,
                 "queue": r.inference_stats.queue.count,
                 "success_ns": r.inference_stats.success.ns,
                 "last_inference": r.last_inference} for r in rows]

    # -- inference ------------------------------------------------------------------------

    def infer(
        self, model: str, arrays: dict[str, np.ndarray], datatypes: dict[str, str] | None = None,
        outputs: list[str] | None = None, version: str = "", request_id: str = "",
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Run one inference; return (outputs by name, response header as a dict)."""
        mod: Any = httpclient if self.protocol == "http" else grpcclient
        inputs = []
        for name, arr in arrays.items():
            dt = (datatypes or {}).get(name) or _datatype(arr)
            inp = mod.InferInput(name, list(arr.shape), dt)
            if self.protocol == "http":
                inp.set_data_from_numpy(arr, binary_data=self.binary)
            else:
                inp.set_data_from_numpy(arr)
            inputs.append(inp)
        requested = None
        if outputs is not None:
            if self.protocol == "http":
                requested = [mod.InferRequestedOutput(o, binary_data=self.binary)
                             for o in outputs]
            else:
                requested = [mod.InferRequestedOutput(o) for o in outputs]
        elif self.protocol == "http" and not self.binary:
            # with no outputs listed, tritonclient.http asks for binary_data_output
            raise ValueError("HTTP JSON needs the outputs listed")
        result = self.client.infer(model, inputs, model_version=version, outputs=requested,
                                   request_id=request_id)
        if self.protocol == "http":
            header = result.get_response()
            names = [o["name"] for o in header["outputs"]]
            meta = {"id": header.get("id", ""), "model_name": header["model_name"],
                    "model_version": header["model_version"], "outputs": header["outputs"]}
        else:
            resp = result.get_response()
            names = [o.name for o in resp.outputs]
            meta = {"id": resp.id, "model_name": resp.model_name,
                    "model_version": resp.model_version,
                    "outputs": [{"name": o.name, "datatype": o.datatype,
                                 "shape": list(o.shape)} for o in resp.outputs]}
        return {n: result.as_numpy(n) for n in names}, meta


def _datatype(arr: np.ndarray) -> str:
    if arr.dtype == np.object_:
        return "BYTES"
    return {np.dtype(n): k for k, _, n in DATATYPES}[arr.dtype]


def raw_http(server: ServerProcess, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange with urllib; returns (status, lower-cased headers, body)."""
    req = urllib.request.Request(f"http://{server.http_url}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def post_json(server: ServerProcess, path: str, doc: Any) -> tuple[int, dict[str, str], bytes]:
    return raw_http(server, "POST", path, json.dumps(doc).encode(),
                    {"Content-Type": "application/json"})


def _as_text(arr: np.ndarray) -> list[str]:
    """BYTES results come back as bytes (binary) or str (JSON): compare them as text."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_server(http_server: str) -> Iterator[ServerProcess]:
    """The demo repository (risk, cnn, digits, sms), on this round's HTTP server (the
    session's shared demo server runs the builtin one only)."""
    server = start_server(DEMO_REPOSITORY, "--http-server", http_server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clients(demo_server: ServerProcess) -> Iterator[dict[str, V2]]:
    """Clients of the demo server: http (binary), http-json, grpc."""
    made = {"http": V2("http", demo_server), "http-json": V2("http", demo_server, binary=False),
            "grpc": V2("grpc", demo_server)}
    yield made
    for c in made.values():
        c.close()


@pytest.fixture(scope="module")
def lab_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for everything not in the demo: an identity model per datatype (no
    config.yaml), add_sub, two versions of a scale model, and two broken models."""
    root = tmp_path_factory.mktemp("lab")
    models: dict[str, Any] = {
        f"id_{k.lower()}": (partial(identity_model, datatype_onnx=k), None) for k in DT_NAMES
    }
    models["graph_only"] = (partial(identity_model, datatype_onnx="INT16", name_in="pixels",
                                    name_out="echo", dims=(2, 3)), None)
    models["simple"] = (add_sub_model, {"backend": "onnx", "max_batch_size": 8})
    models["versioned"] = ({1: partial(scale_model, factor=1.0),
                            2: partial(scale_model, factor=2.0)},
                           {"max_batch_size": 4, "version_policy": {"all": True}})
    models["bad_config"] = (partial(identity_model, datatype_onnx="FP32"),
                            "max_batch_size: -3\nbogus_field: 1\n")
    write_repository(root, models)
    garbage = root / "garbage" / "1"
    garbage.mkdir(parents=True)
    (garbage / "model.onnx").write_bytes(b"this is not an ONNX model \x00\x01\x02\xff" * 8)
    return root


@pytest.fixture(scope="module")
def lab_server(lab_repository: Path, http_server: str) -> Iterator[ServerProcess]:
    server = start_server(lab_repository, "--http-server", http_server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab_clients(lab_server: ServerProcess) -> Iterator[dict[tuple[str, bool], V2]]:
    made = {t: V2(t[0], lab_server, binary=t[1]) for t in TRANSPORTS}
    yield made
    for c in made.values():
        c.close()


@pytest.fixture(scope="module")
def risk_session() -> ort.InferenceSession:
    return _session(DEMO_REPOSITORY / "risk" / "1" / "model.onnx")


@pytest.fixture(scope="module")
def cancer_rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data.astype(np.float32)


# --------------------------------------------------------------------------------------------
# health and metadata
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_live_and_ready(clients: dict[str, V2], protocol: str) -> None:
    c = clients[protocol].client
    assert c.is_server_live() is True
    assert c.is_server_ready() is True


def test_health_routes_raw(demo_server: ServerProcess) -> None:
    assert raw_http(demo_server, "GET", "/v2/health/live")[0] == 200
    assert raw_http(demo_server, "GET", "/v2/health/ready")[0] == 200
    assert raw_http(demo_server, "GET", "/v2/models/risk/ready")[0] == 200
    assert raw_http(demo_server, "GET", "/v2/models/nope/ready")[0] == 404
    status, headers, _ = raw_http(demo_server, "POST", "/v2/health/live")
    assert status == 405 and headers.get("allow") == "GET, HEAD"


def test_head_answers_like_get_without_a_body(demo_server: ServerProcess) -> None:
    for path in ("/v2/health/ready", "/v2/models/risk", "/v2/models/risk/config"):
        status, headers, body = raw_http(demo_server, "GET", path)
        h_status, h_headers, h_body = raw_http(demo_server, "HEAD", path)
        assert (h_status, h_body) == (200, b""), path
        assert status == 200 and int(h_headers["content-length"]) == len(body), path
        assert h_headers["content-type"] == headers["content-type"]
        assert body or path.endswith("/ready"), path  # a body that HEAD left out
    status, headers, _ = raw_http(demo_server, "HEAD", "/v2/models/risk/infer")
    assert status == 405 and headers.get("allow") == "POST"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_metadata(clients: dict[str, V2], protocol: str) -> None:
    from shipyard import __version__

    md = clients[protocol].server_metadata()
    assert md["name"] == "shipyard"
    assert md["version"] == __version__
    assert {"binary_tensor_data", "statistics", "model_configuration"} <= set(md["extensions"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_metadata(clients: dict[str, V2], protocol: str) -> None:
    risk = clients[protocol].model_metadata("risk")
    assert risk["name"] == "risk"
    assert risk["versions"] == ["1"]
    assert risk["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}]
    assert risk["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]
    cnn = clients[protocol].model_metadata("cnn")
    assert cnn["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert cnn["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    sms = clients[protocol].model_metadata("sms")
    assert sms["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    assert sms["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                              {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_metadata_matches_graph(clients: dict[str, V2], protocol: str) -> None:
    """What the server describes is what the ONNX file says (names, types, ranks)."""
    for model in ("risk", "cnn", "sms"):
        sess = _session(DEMO_REPOSITORY / model / "1" / "model.onnx")
        md = clients[protocol].model_metadata(model)
        assert [t["name"] for t in md["inputs"]] == [i.name for i in sess.get_inputs()]
        assert [t["name"] for t in md["outputs"]] == [o.name for o in sess.get_outputs()]
        assert [len(t["shape"]) for t in md["inputs"]] == [len(i.shape) for i in
                                                           sess.get_inputs()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_config(clients: dict[str, V2], protocol: str) -> None:
    risk = clients[protocol].model_config("risk")
    assert risk == {
        "name": "risk", "max_batch_size": 256,
        "input": [{"name": "features", "data_type": "TYPE_FP32", "format": "FORMAT_NONE",
                   "dims": [30]}],
        "output": [{"name": "score", "data_type": "TYPE_FP32", "dims": [1]}],
    }
    cnn = clients[protocol].model_config("cnn")
    assert cnn["max_batch_size"] == 64
    # the cnn declares its image layout (Triton's image_client reads it)
    assert cnn["input"] == [{"name": "image", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW",
                             "dims": [1, 28, 28]}]
    assert cnn["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_ready_and_explicit_version(clients: dict[str, V2], protocol: str) -> None:
    v2 = clients[protocol]
    c = v2.client
    assert c.is_model_ready("risk") is True
    assert c.is_model_ready("risk", "1") is True
    assert c.is_model_ready("cnn", "1") is True
    # an unknown model or version is simply not ready, on both protocols (as in Triton)
    assert c.is_model_ready("risk", "2") is False
    assert c.is_model_ready("nope") is False
    assert v2.model_metadata("risk", "1") == v2.model_metadata("risk")
    assert v2.model_config("risk", "1") == v2.model_config("risk")
    x = np.ones((1, 30), np.float32)
    out, meta = v2.infer("risk", {"features": x}, outputs=["score"], version="1")
    assert meta["model_name"] == "risk" and meta["model_version"] == "1"
    assert out["score"].shape == (1, 1)
    with pytest.raises(InferenceServerException, match="version"):
        v2.infer("risk", {"features": x}, outputs=["score"], version="7")


def test_explicit_version_raw_routes(demo_server: ServerProcess) -> None:
    status, _, body = raw_http(demo_server, "GET", "/v2/models/risk/versions/1")
    assert status == 200
    assert json.loads(body)["inputs"][0]["name"] == "features"
    assert raw_http(demo_server, "GET", "/v2/models/risk/versions/1/ready")[0] == 200
    status, _, body = raw_http(demo_server, "GET", "/v2/models/risk/versions/1/config")
    assert status == 200 and json.loads(body)["max_batch_size"] == 256
    status, _, body = raw_http(demo_server, "GET", "/v2/models/risk/versions/9")
    assert status == 404 and "version" in json.loads(body)["error"]
    status, _, body = post_json(demo_server, "/v2/models/risk/versions/1/infer", {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                    "data": [1.0] * 30}]})
    assert status == 200 and json.loads(body)["model_version"] == "1"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model(clients: dict[str, V2], protocol: str) -> None:
    v2 = clients[protocol]
    with pytest.raises(InferenceServerException, match="nope"):
        v2.model_metadata("nope")
    with pytest.raises(InferenceServerException):
        v2.infer("nope", {"features": np.ones((1, 30), np.float32)}, outputs=["score"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_statistics_grow(clients: dict[str, V2], cancer_rows: np.ndarray,
                               protocol: str) -> None:
    v2 = clients[protocol]
    (before,) = v2.stats("risk")
    assert before["name"] == "risk" and before["version"] == "1"
    batches = [cancer_rows[:1], cancer_rows[1:4], cancer_rows[4:9]]
    for rows in batches:
        v2.infer("risk", {"features": rows}, outputs=["score"])
    (after,) = v2.stats("risk", "1")
    assert after["success"] - before["success"] == len(batches)
    assert after["inference_count"] - before["inference_count"] == sum(len(b) for b in batches)
    assert 1 <= after["execution_count"] - before["execution_count"] <= len(batches)
    assert after["queue"] - before["queue"] == len(batches)
    assert after["fail"] == before["fail"]
    assert after["success_ns"] > before["success_ns"]
    assert after["last_inference"] >= before["last_inference"]
    assert abs(after["last_inference"] - time.time() * 1000) < 60_000  # ms since the epoch
    # the all-models form lists every demo model
    if protocol == "http":
        every = v2.client.get_inference_statistics()["model_stats"]
        names = sorted(r["name"] for r in every)
    else:
        names = sorted(r.name for r in v2.client.get_inference_statistics().model_stats)
    assert names == ["cnn", "digits", "risk", "sms"]


def test_failed_inference_is_counted(clients: dict[str, V2]) -> None:
    v2 = clients["http"]
    (before,) = v2.stats("risk")
    with pytest.raises(InferenceServerException, match="shape"):
        v2.infer("risk", {"features": np.ones((2, 29), np.float32)}, outputs=["score"])
    (after,) = v2.stats("risk")
    assert after["fail"] - before["fail"] == 1
    assert after["success"] == before["success"]


# --------------------------------------------------------------------------------------------
# inference on real data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["http-json", "http", "grpc"])
def test_risk_matches_onnxruntime(clients: dict[str, V2], risk_session: ort.InferenceSession,
                                  cancer_rows: np.ndarray, transport: str) -> None:
    rows = cancer_rows[:200]
    (expected,) = risk_session.run(["score"], {"features": rows})
    out, meta = clients[transport].infer("risk", {"features": rows}, outputs=["score"])
    got = out["score"]
    assert meta["model_name"] == "risk"
    assert got.dtype == np.float32 and got.shape == (200, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # a probability that separates the classes: malignant is sklearn's target 0
    from sklearn.datasets import load_breast_cancer

    target = load_breast_cancer().target[:200]
    accuracy = np.mean((got[:, 0] > 0.5) == (target == 0))
    assert accuracy > 0.95


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_risk_single_rows(clients: dict[str, V2], risk_session: ort.InferenceSession,
                          cancer_rows: np.ndarray, protocol: str) -> None:
    for i in (0, 13, 81, 291, 568):
        row = cancer_rows[i : i + 1]
        (expected,) = risk_session.run(["score"], {"features": row})
        out, _ = clients[protocol].infer("risk", {"features": row}, outputs=["score"])
        np.testing.assert_allclose(out["score"], expected, rtol=0, atol=1e-6)


def _mnist_images(per_digit: int = 2) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    test_dir = MNIST / "test"
    if not test_dir.is_dir():
        pytest.skip(f"MNIST PNGs not found at {test_dir}")
    images, labels = [], []
    for digit in range(10):
        files = sorted((test_dir / str(digit)).glob("*.png"))[:per_digit]
        for f in files:
            with Image.open(f) as img:
                images.append(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
            labels.append(digit)
    if not images:
        pytest.skip(f"no PNGs under {test_dir}")
    return np.stack(images)[:, None, :, :].astype(np.float32), np.array(labels)


@pytest.mark.parametrize("transport", ["http-json", "http", "grpc"])
def test_cnn_on_mnist_pngs(clients: dict[str, V2], transport: str) -> None:
    images, labels = _mnist_images()
    sess = _session(DEMO_REPOSITORY / "cnn" / "1" / "model.onnx")
    (expected,) = sess.run(["logits"], {"image": images})
    out, _ = clients[transport].infer("cnn", {"image": images}, outputs=["logits"])
    logits = out["logits"]
    assert logits.shape == (len(labels), 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    predicted = logits.argmax(axis=1)
    assert (predicted == labels).mean() >= 0.85, (predicted, labels)


@pytest.mark.parametrize("transport", ["http-json", "http", "grpc"])
def test_sms_on_raw_text(clients: dict[str, V2], transport: str) -> None:
    """The demo text model: raw UTF-8 strings as BYTES in (the server runs the declared
    chain), the class and P(ham), P(spam) out, as the steps + ONNX Runtime give them here."""
    import yaml

    from shipyard.transforms import apply_steps, build_steps

    texts = ["WINNER! You have won a £900 prize. Call 09061701461 to claim now",
             "FREE entry: txt WIN to 80086 for a chance to win £250 cash!",
             "Are we still on for lunch tomorrow?", "ok, see you at home tonight 😊",
             "Café at 5? Bring the book please."]
    sms = DEMO_REPOSITORY / "sms"
    config = yaml.safe_load((sms / "config.yaml").read_text(encoding="utf-8"))
    raw = np.array([t.encode() for t in texts], dtype=np.object_)
    chained = apply_steps(build_steps(config["preprocess"]), raw)
    rows = np.array([bytes(b).decode() for b in chained], dtype=np.object_).reshape(-1, 1)
    want_label, want_probs = _session(sms / "1" / "model.onnx").run(None, {"text": rows})
    out, meta = clients[transport].infer("sms", {"text": raw.reshape(-1, 1)},
                                         outputs=["label", "probabilities"])
    assert meta["model_name"] == "sms"
    np.testing.assert_array_equal(out["label"], want_label)
    np.testing.assert_allclose(out["probabilities"], want_probs, rtol=1e-4, atol=1e-6)
    assert out["label"].tolist() == [1, 1, 0, 0, 0]  # 1 = spam (config labels: ham, spam)
    assert (out["probabilities"][:2, 1] > 0.5).all() and (out["probabilities"][2:, 0] > 0.5).all()


# --------------------------------------------------------------------------------------------
# every datatype, through every transport (one server for all identity models)
# --------------------------------------------------------------------------------------------


def _datatype_sample(kserve: str) -> np.ndarray:
    if kserve == "BYTES":
        return np.array(UNICODE_STRINGS, dtype=np.object_).reshape(3, 4)
    return sample(kserve, (3, 4))


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORT_IDS)
@pytest.mark.parametrize("kserve", DT_NAMES)
def test_every_datatype_round_trips(lab_clients: dict[tuple[str, bool], V2],
                                    transport: tuple[str, bool], kserve: str) -> None:
    v2 = lab_clients[transport]
    x = _datatype_sample(kserve)
    model = f"id_{kserve.lower()}"
    out, meta = v2.infer(model, {"INPUT0": x}, datatypes={"INPUT0": kserve},
                         outputs=["OUTPUT0"])
    y = out["OUTPUT0"]
    assert meta["outputs"][0]["datatype"] == kserve
    assert [int(d) for d in meta["outputs"][0]["shape"]] == [3, 4]
    assert y.shape == (3, 4)
    if kserve == "BYTES":
        assert _as_text(y) == UNICODE_STRINGS
        if transport[1]:  # binary: the exact UTF-8 bytes come back
            assert [bytes(v) for v in y.reshape(-1)] == [s.encode() for s in UNICODE_STRINGS]
    else:
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_float_specials_round_trip_binary(lab_clients: dict[tuple[str, bool], V2],
                                          protocol: str) -> None:
    """NaN, infinities and -0.0 survive the binary encodings (JSON has no literals for them)."""
    for kserve, dtype in (("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)):
        x = np.array([[np.nan, np.inf, -np.inf, -0.0]], dtype=dtype)
        out, _ = lab_clients[(protocol, True)].infer(f"id_{kserve.lower()}", {"INPUT0": x},
                                                     outputs=["OUTPUT0"])
        y = out["OUTPUT0"]
        assert y.dtype == dtype
        assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf
        assert y[0, 3] == 0 and math.copysign(1.0, float(y[0, 3])) == -1.0


def test_uint64_above_int64_max_over_json(lab_server: ServerProcess) -> None:
    """UINT64 values >= 2**63 are valid JSON integers and must arrive exactly."""
    values = [0, 2**63, 2**64 - 1, 12345]
    status, _, body = post_json(lab_server, "/v2/models/id_uint64/infer", {
        "inputs": [{"name": "INPUT0", "datatype": "UINT64", "shape": [1, 4], "data": values}],
        "outputs": [{"name": "OUTPUT0"}]})
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == values


# typed InferTensorContents field per datatype (FP16 has none: it must travel raw)
_CONTENTS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


@pytest.mark.parametrize("kserve", sorted(_CONTENTS))
def test_grpc_typed_contents(lab_server: ServerProcess, kserve: str) -> None:
    """gRPC inputs in InferTensorContents (not raw_input_contents), as other clients send."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    from tritonclient.utils import deserialize_bytes_tensor

    x = _datatype_sample(kserve)
    req = service_pb2.ModelInferRequest(model_name=f"id_{kserve.lower()}", id="typed")
    tensor = req.inputs.add(name="INPUT0", datatype=kserve, shape=[3, 4])
    values = ([s.encode() for s in UNICODE_STRINGS] if kserve == "BYTES"
              else x.reshape(-1).tolist())
    getattr(tensor.contents, _CONTENTS[kserve]).extend(values)
    with grpc.insecure_channel(lab_server.grpc_url) as channel:
        resp = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=10)
    assert resp.id == "typed"
    (out,) = resp.outputs
    assert out.datatype == kserve and list(out.shape) == [3, 4]
    (raw,) = resp.raw_output_contents
    if kserve == "BYTES":
        got = deserialize_bytes_tensor(raw)
        assert [bytes(v).decode() for v in got] == UNICODE_STRINGS
    else:
        np.testing.assert_array_equal(np.frombuffer(raw, x.dtype).reshape(3, 4), x)


def test_grpc_fp16_needs_raw_contents(lab_server: ServerProcess) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    req = service_pb2.ModelInferRequest(model_name="id_fp16")
    tensor = req.inputs.add(name="INPUT0", datatype="FP16", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    with grpc.insecure_channel(lab_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in info.value.details()


def test_grpc_raw_and_typed_contents_together_are_refused(lab_server: ServerProcess) -> None:
    """The protocol: contents must not be set when raw_input_contents is (raw would win
    silently otherwise); an empty contents message next to raw is harmless."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    req = service_pb2.ModelInferRequest(model_name="id_fp32")
    tensor = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    req.raw_input_contents.append(x.tobytes())
    tensor.contents.SetInParent()  # present but empty: fine
    with grpc.insecure_channel(lab_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        resp = stub.ModelInfer(req, timeout=10)
        np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], np.float32),
                                      x.reshape(-1))
        tensor.contents.fp32_contents.extend([9.0, 9.0, 9.0, 9.0])
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details()
    assert "raw_input_contents" in details and "contents" in details and "INPUT0" in details


# --------------------------------------------------------------------------------------------
# outputs, binary_data_output, request id
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORT_IDS)
def test_requested_output_filtering(lab_clients: dict[tuple[str, bool], V2],
                                    transport: tuple[str, bool]) -> None:
    a = sample("FP32", (2, 16))
    b = np.flip(a, axis=1).copy() * np.float32(0.25)
    v2 = lab_clients[transport]
    out, meta = v2.infer("simple", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1"])
    assert list(out) == ["OUTPUT1"]
    assert [o["name"] for o in meta["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    out, _ = v2.infer("simple", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT0"])
    assert list(out) == ["OUTPUT0"]
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    out, _ = v2.infer("simple", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT1", "OUTPUT0"])
    assert sorted(out) == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    with pytest.raises(InferenceServerException, match="OUTPUT9"):
        v2.infer("simple", {"INPUT0": a, "INPUT1": b}, outputs=["OUTPUT9"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_all_outputs_when_none_requested(lab_clients: dict[tuple[str, bool], V2],
                                         protocol: str) -> None:
    a = sample("FP32", (1, 16))
    b = a * np.float32(3)
    out, _ = lab_clients[(protocol, True)].infer("simple", {"INPUT0": a, "INPUT1": b})
    assert sorted(out) == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def _split_binary(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], bytes]:
    hlen = int(headers["inference-header-content-length"])
    return json.loads(body[:hlen]), body[hlen:]


def test_binary_data_output_raw(lab_server: ServerProcess) -> None:
    a = sample("FP32", (1, 16))
    b = np.full((1, 16), 0.5, np.float32)
    inputs = [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": a.tolist()},
              {"name": "INPUT1", "datatype": "FP32", "shape": [1, 16], "data": b.tolist()}]
    url = "/v2/models/simple/infer"

    # no parameters: plain JSON
    status, headers, body = post_json(lab_server, url, {"inputs": inputs})
    assert status == 200, body
    assert "inference-header-content-length" not in headers
    doc = json.loads(body)
    data = {o["name"]: o["data"] for o in doc["outputs"]}
    np.testing.assert_array_equal(np.array(data["OUTPUT0"], np.float32).reshape(1, 16), a + b)

    # binary_data_output: every output binary, in order
    status, headers, body = post_json(lab_server, url, {
        "inputs": inputs, "parameters": {"binary_data_output": True}})
    assert status == 200, body
    assert headers["content-type"].startswith("application/octet-stream")
    doc, blob = _split_binary(headers, body)
    sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
    assert all("data" not in o for o in doc["outputs"])
    assert sizes == [64, 64] and len(blob) == 128
    got = {o["name"]: np.frombuffer(blob[i * 64 : (i + 1) * 64], "<f4").reshape(1, 16)
           for i, o in enumerate(doc["outputs"])}
    np.testing.assert_array_equal(got["OUTPUT0"], a + b)
    np.testing.assert_array_equal(got["OUTPUT1"], a - b)

    # per-output binary_data overrides the request-wide default
    status, headers, body = post_json(lab_server, url, {
        "inputs": inputs, "parameters": {"binary_data_output": True},
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}},
                    {"name": "OUTPUT1"}]})
    assert status == 200, body
    doc, blob = _split_binary(headers, body)
    by_name = {o["name"]: o for o in doc["outputs"]}
    np.testing.assert_array_equal(np.array(by_name["OUTPUT0"]["data"], np.float32),
                                  (a + b).reshape(-1))
    assert by_name["OUTPUT1"]["parameters"]["binary_data_size"] == 64
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4").reshape(1, 16), a - b)

    # and the other way round: JSON by default, one output asked for in binary
    status, headers, body = post_json(lab_server, url, {
        "inputs": inputs,
        "outputs": [{"name": "OUTPUT1", "parameters": {"binary_data": True}}]})
    assert status == 200, body
    doc, blob = _split_binary(headers, body)
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4").reshape(1, 16), a - b)


def test_binary_input_raw(lab_server: ServerProcess) -> None:
    """The binary tensor extension on the request side, built by hand."""
    a = sample("FP32", (2, 16))
    b = a * np.float32(2)
    header = json.dumps({
        "id": "raw-1",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 16],
                    "parameters": {"binary_data_size": a.nbytes}},
                   {"name": "INPUT1", "datatype": "FP32", "shape": [2, 16],
                    "parameters": {"binary_data_size": b.nbytes}}],
        "outputs": [{"name": "OUTPUT1"}]}).encode()
    body = header + a.tobytes() + b.tobytes()
    status, _, resp = raw_http(lab_server, "POST", "/v2/models/simple/infer", body, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header))})
    assert status == 200, resp
    doc = json.loads(resp)
    assert doc["id"] == "raw-1"
    np.testing.assert_array_equal(np.array(doc["outputs"][0]["data"], np.float32),
                                  (a - b).reshape(-1))
    # a length header that lies is a 400 with a message, not a crash
    status, _, resp = raw_http(lab_server, "POST", "/v2/models/simple/infer", body, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(body) + 5)})
    assert status == 400 and "Inference-Header-Content-Length" in json.loads(resp)["error"]


@pytest.mark.parametrize("transport", TRANSPORTS, ids=TRANSPORT_IDS)
def test_request_id_echoed(lab_clients: dict[tuple[str, bool], V2],
                           transport: tuple[str, bool]) -> None:
    a = sample("FP32", (1, 16))
    rid = f"req-{transport[0]}-{int(transport[1])}-ünï"
    _, meta = lab_clients[transport].infer("simple", {"INPUT0": a, "INPUT1": a},
                                           outputs=["OUTPUT0"], request_id=rid)
    assert meta["id"] == rid
    _, meta = lab_clients[transport].infer("simple", {"INPUT0": a, "INPUT1": a},
                                           outputs=["OUTPUT0"])
    assert meta["id"] == ""


# --------------------------------------------------------------------------------------------
# versions, models without config.yaml, broken models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_versions_are_told_apart(lab_clients: dict[tuple[str, bool], V2],
                                 protocol: str) -> None:
    v2 = lab_clients[(protocol, True)]
    x = sample("FP32", (3, 4))
    assert v2.model_metadata("versioned")["versions"] == ["2", "1"]
    for version, factor in (("1", 1.0), ("2", 2.0), ("", 2.0)):
        out, meta = v2.infer("versioned", {"INPUT0": x}, outputs=["OUTPUT0"], version=version)
        np.testing.assert_array_equal(out["OUTPUT0"], x * np.float32(factor))
        assert meta["model_version"] == (version or "2")
    s1 = v2.stats("versioned", "1")
    assert [r["version"] for r in s1] == ["1"]
    assert sorted(r["version"] for r in v2.stats("versioned")) == ["1", "2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_without_config_uses_graph(lab_clients: dict[tuple[str, bool], V2],
                                         protocol: str) -> None:
    v2 = lab_clients[(protocol, True)]
    md = v2.model_metadata("graph_only")
    assert md["inputs"] == [{"name": "pixels", "datatype": "INT16", "shape": [-1, 2, 3]}]
    assert md["outputs"] == [{"name": "echo", "datatype": "INT16", "shape": [-1, 2, 3]}]
    cfg = v2.model_config("graph_only")
    assert cfg["max_batch_size"] > 0  # every input has a dynamic first dimension
    assert cfg["input"] == [{"name": "pixels", "data_type": "TYPE_INT16", "format": "FORMAT_NONE",
                            "dims": [2, 3]}]
    assert cfg["output"] == [{"name": "echo", "data_type": "TYPE_INT16", "dims": [2, 3]}]
    assert v2.model_config("id_bytes")["input"][0]["data_type"] == "TYPE_STRING"
    x = sample("INT16", (2, 2, 3))
    out, _ = v2.infer("graph_only", {"pixels": x}, outputs=["echo"])
    np.testing.assert_array_equal(out["echo"], x)


def _index(server: ServerProcess) -> dict[str, dict[str, str]]:
    status, _, body = raw_http(server, "POST", "/v2/repository/index", b"{}",
                               {"Content-Type": "application/json"})
    assert status == 200, body
    rows = json.loads(body)
    assert isinstance(rows, list)
    return {r["name"]: r for r in rows}


def test_broken_models_do_not_stop_the_others(lab_server: ServerProcess,
                                              lab_clients: dict[tuple[str, bool], V2]) -> None:
    index = _index(lab_server)
    expected_good = {f"id_{k.lower()}" for k in DT_NAMES} | {"simple", "graph_only"}
    assert expected_good <= set(index)
    for name in expected_good:
        assert index[name]["state"] == "READY", index[name]

    garbage = index["garbage"]
    assert garbage["state"] != "READY"
    assert garbage["version"] == "1"
    assert "model.onnx" in garbage["reason"] or "load" in garbage["reason"].lower()

    bad = index["bad_config"]
    assert bad["state"] != "READY"
    assert "config.yaml" in bad["reason"]
    assert "max_batch_size" in bad["reason"] and "bogus_field" in bad["reason"]

    for protocol in PROTOCOLS:
        c = lab_clients[(protocol, True)].client
        assert c.is_model_ready("garbage") is False
        assert c.is_model_ready("bad_config") is False
        assert c.is_model_ready("simple") is True
    x = np.zeros((1, 4), np.float32)
    for transport in TRANSPORTS:
        with pytest.raises(InferenceServerException, match="garbage"):
            lab_clients[transport].infer("garbage", {"INPUT0": x}, outputs=["OUTPUT0"])
        out, _ = lab_clients[transport].infer("id_fp32", {"INPUT0": x + 1},
                                              outputs=["OUTPUT0"])
        np.testing.assert_array_equal(out["OUTPUT0"], x + 1)
    # the broken model's reason is in the server log too
    assert any("garbage" in line for line in lab_server.log)


def test_repository_index_grpc_agrees(lab_server: ServerProcess,
                                      lab_clients: dict[tuple[str, bool], V2]) -> None:
    raw = _index(lab_server)
    grpc_rows = lab_clients[("grpc", True)].client.get_model_repository_index().models
    got = {r.name: {"name": r.name, "version": r.version, "state": r.state, "reason": r.reason}
           for r in grpc_rows}
    assert got == raw
    http_rows = lab_clients[("http", True)].client.get_model_repository_index()
    assert {r["name"]: r for r in http_rows} == raw


# --------------------------------------------------------------------------------------------
# /metrics, /openapi.json, /docs
# --------------------------------------------------------------------------------------------


def _metrics(server: ServerProcess) -> dict[str, Any]:
    status, headers, body = raw_http(server, "GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _sample(families: dict[str, Any], family: str, sample_name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample_name}{labels} in family {family}")


def test_metrics(demo_server: ServerProcess, clients: dict[str, V2],
                 cancer_rows: np.ndarray) -> None:
    risk = {"model": "risk", "version": "1"}
    before = _metrics(demo_server)
    success0 = _sample(before, "shipyard_request_success", "shipyard_request_success_total",
                       **risk)
    req_count0 = _sample(before, "shipyard_request_duration_seconds",
                         "shipyard_request_duration_seconds_count", **risk)
    queue_count0 = _sample(before, "shipyard_queue_duration_seconds",
                           "shipyard_queue_duration_seconds_count", **risk)
    rows0 = _sample(before, "shipyard_batch_size", "shipyard_batch_size_sum", **risk)
    n = 7
    for i in range(n):
        clients["grpc" if i % 2 else "http"].infer(
            "risk", {"features": cancer_rows[i : i + 2]}, outputs=["score"])
    after = _metrics(demo_server)

    assert after["shipyard_request_success"].type == "counter"
    success = _sample(after, "shipyard_request_success", "shipyard_request_success_total",
                      **risk)
    assert success - success0 == n
    (stats,) = clients["http"].stats("risk")
    assert success == stats["success"]

    for family in ("shipyard_request_duration_seconds", "shipyard_queue_duration_seconds",
                   "shipyard_compute_duration_seconds", "shipyard_batch_size"):
        assert after[family].type == "histogram", family
        buckets = [s for s in after[family].samples
                   if s.name == f"{family}_bucket" and s.labels["model"] == "risk"]
        assert buckets and buckets[-1].labels["le"] == "+Inf"
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), f"{family} buckets are not cumulative"
        assert counts[-1] == _sample(after, family, f"{family}_count", **risk)
    req_count = _sample(after, "shipyard_request_duration_seconds",
                        "shipyard_request_duration_seconds_count", **risk)
    assert req_count - req_count0 == n
    queue_count = _sample(after, "shipyard_queue_duration_seconds",
                          "shipyard_queue_duration_seconds_count", **risk)
    assert queue_count - queue_count0 == n
    rows = _sample(after, "shipyard_batch_size", "shipyard_batch_size_sum", **risk)
    assert rows - rows0 == 2 * n
    assert _sample(after, "shipyard_compute_duration_seconds",
                   "shipyard_compute_duration_seconds_sum", **risk) > 0

    for gauge in ("shipyard_queue_depth", "shipyard_inflight_executions"):
        assert after[gauge].type == "gauge"
        assert _sample(after, gauge, gauge, **risk) == 0  # idle now
        assert _sample(after, gauge, gauge, model="cnn", version="1") == 0
    assert _sample(after, "shipyard_model_ready", "shipyard_model_ready", **risk) == 1


def test_metrics_text_names(demo_server: ServerProcess) -> None:
    """The exposition carries the series under their documented names."""
    _, _, body = raw_http(demo_server, "GET", "/metrics")
    text = body.decode()
    assert 'shipyard_request_success_total{model="risk",version="1"}' in text
    assert 'shipyard_request_duration_seconds_bucket{le="+Inf",model="risk",version="1"}' in text
    for name in ("shipyard_queue_duration_seconds", "shipyard_compute_duration_seconds",
                 "shipyard_batch_size", "shipyard_queue_depth",
                 "shipyard_inflight_executions"):
        assert f"# TYPE {name} " in text, name


def test_metrics_for_broken_models(lab_server: ServerProcess) -> None:
    families = _metrics(lab_server)
    ready = {(s.labels["model"], s.labels["version"]): s.value
             for s in families["shipyard_model_ready"].samples}
    assert ready[("garbage", "1")] == 0
    assert ready[("simple", "1")] == 1


def test_openapi_document(demo_server: ServerProcess) -> None:
    status, headers, body = raw_http(demo_server, "GET", "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert str(doc["openapi"]).startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    paths = doc["paths"]
    for p in ("/v2/models/{model_name}/infer", "/predict", "/v2/health/live",
              "/v2/health/ready", "/v2/models/{model_name}",
              "/v2/models/{model_name}/versions/{model_version}/infer", "/metrics"):
        assert p in paths, p
    assert "post" in paths["/v2/models/{model_name}/infer"]
    assert "post" in paths["/predict"]
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    schemas = doc.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        assert path.startswith("/")
        ops = {k: v for k, v in item.items() if k in methods}
        assert ops, path
        for op in ops.values():
            assert op["responses"], path
            for code in op["responses"]:
                assert code == "default" or code.isdigit(), (path, code)
        # every {param} in the template is declared as a path parameter
        declared = {p["name"] for op in ops.values() for p in op.get("parameters", [])
                    if p.get("in") == "path"}
        for part in path.split("/"):
            if part.startswith("{"):
                assert part.strip("{}") in declared, (path, part)
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_docs_page(demo_server: ServerProcess) -> None:
    status, headers, body = raw_http(demo_server, "GET", "/docs")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    text = body.decode()
    assert "<html" in text.lower() and "</html>" in text.lower()
    assert "openapi.json" in text
