"""Image runs end to end: train a tiny CNN on the shared MNIST PNG folder, publish it (PNG/JPEG
bytes, UINT8 NHWC pixels, FP32 NCHW tensors; ONNX and the torch runtime), serve it, and post
real PNG files over REST, gRPC and the ``/predict`` upload; every answer is checked against the
run's own model called in this process on the same files.

Only client libraries talk to the server; this process never imports ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from training_support import check_publish_on_serving_host
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import SHARED, ServerProcess, start_server

from shipyard.cli import app
from shipyard.training.config import load_experiment
from shipyard.training.run import Run
from shipyard.training.trainer import train_experiment

MNIST = SHARED / "data" / "mnist_png"
TINY_CNN = {"blocks": [{"channels": 8}, {"channels": 16}], "head": {"hidden": [32]}}
#: model name -> shipyard publish options
PUBLISHED = {
    "png": [],
    "pixels": ["--input", "uint8"],
    "tensor": ["--input", "fp32"],
    "png_torch": ["--backend", "torch"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    if not (MNIST / "train").is_dir():
        pytest.skip(f"MNIST PNGs not found at {MNIST}")
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))
    raw: dict[str, Any] = {
        "name": "mnist-tiny", "task": "multiclass",
        "data": {"source": str(MNIST), "size": [28, 28], "channels": 1, "limit": 400},
        "model": {"family": "torch", "architecture": "cnn", "params": TINY_CNN},
        "training": {"epochs": 2, "batch_size": 32},
    }
    try:
        exp, base = load_experiment(raw, [])
        return train_experiment(exp, base, output=tmp_path_factory.mktemp("mnist") / "run")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def server(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("repo")
    for name, options in PUBLISHED.items():
        result = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(repo),
                                          "--model", name, *options])
        assert result.exit_code == 0, result.output
    proc = start_server(repo)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return [sorted((MNIST / "test" / str(d)).glob("*.png"))[2] for d in range(10)]


def pixels(files: list[Path]) -> np.ndarray:
    """UINT8 [N, 28, 28, 1] as PIL reads the files."""
    return np.stack([np.asarray(Image.open(f).convert("L"))[:, :, None] for f in files])


def expected(run: Run, files: list[Path]) -> np.ndarray:
    """Softmax of the run's ONNX model, called here on the files scaled to [0, 1]."""
    session = ort.InferenceSession(str(run.path / "model.onnx"))
    x = pixels(files).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    (logits,) = session.run(None, {"image": x})
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return result


def check(labels: np.ndarray, scores: np.ndarray, probs: np.ndarray, rtol: float = 1e-4) -> None:
    """Top-k answers (labels BYTES [N, k], scores FP32 [N, k]) against probabilities [N, 10]."""
    k = labels.shape[1]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    assert [[x.decode() for x in row] for row in labels] == [[str(i) for i in r] for r in order]
    np.testing.assert_allclose(scores, np.take_along_axis(probs, order, axis=1), rtol=rtol,
                               atol=1e-6)


def test_published_configs(run: Run, server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        _check_configs(client)
    finally:
        client.close()


def _check_configs(client: Any) -> None:
    formats = {}
    for name in PUBLISHED:
        meta = client.get_model_metadata(name)
        config = client.get_model_config(name)
        formats[name] = (meta["inputs"][0]["datatype"], meta["inputs"][0]["shape"],
                         config["input"][0].get("format"))
        assert {o["name"] for o in meta["outputs"]} == {"indices", "scores", "labels"}
    assert formats["png"][:2] == ("BYTES", [-1, 1])
    assert formats["pixels"] == ("UINT8", [-1, 28, 28, 1], "FORMAT_NHWC")
    assert formats["tensor"] == ("FP32", [-1, 1, 28, 28], "FORMAT_NCHW")
    assert client.get_model_config("png_torch")["backend"] == "pytorch"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["png", "png_torch"])
def test_png_bytes(run: Run, server: ServerProcess, files: list[Path], protocol: str,
                   model: str) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(server.http_url if protocol == "http"
                                          else server.grpc_url)
    data = np.array([[f.read_bytes()] for f in files], dtype=np.object_)
    inp = module.InferInput("image", list(data.shape), "BYTES")
    inp.set_data_from_numpy(data)
    try:
        result = client.infer(model, [inp])
    finally:
        client.close()
    check(result.as_numpy("labels"), result.as_numpy("scores"), expected(run, files),
          rtol=1e-4 if model == "png" else 1e-3)


@pytest.mark.parametrize("model", ["pixels", "tensor"])
def test_raw_tensors(run: Run, server: ServerProcess, files: list[Path], model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    raw = pixels(files)
    if model == "pixels":
        data, datatype = raw, "UINT8"
    else:
        data, datatype = raw.astype(np.float32).transpose(0, 3, 1, 2) / 255.0, "FP32"
    inp = grpcclient.InferInput("image", list(data.shape), datatype)
    inp.set_data_from_numpy(np.ascontiguousarray(data))
    try:
        result = client.infer(model, [inp])
    finally:
        client.close()
    check(result.as_numpy("labels"), result.as_numpy("scores"), expected(run, files))


def test_predict_upload(run: Run, server: ServerProcess, files: list[Path]) -> None:
    upload = [("image", (f.name, f.read_bytes(), "image/png")) for f in files]
    resp = httpx.post(f"http://{server.http_url}/v2/models/png/predict", files=upload,
                      data={"top_k": "3"}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    labels = np.array([[p["label"].encode() for p in row] for row in body["predictions"]])
    scores = np.array([[p["probability"] for p in row] for row in body["predictions"]])
    check(labels, scores, expected(run, files))
    assert body["labels"] == [str(i) for i in expected(run, files).argmax(axis=1)]


def test_publish_refuses_bad_options(run: Run, tmp_path: Path) -> None:
    for options, word in ((["--input", "jpeg"], "--input"), (["--backend", "tf"], "--backend")):
        result = CliRunner().invoke(app, ["publish", str(run.path), "--repo",
                                          str(tmp_path / "models"), *options])
        assert result.exit_code == 2 and result.output.strip().count("\n") == 0, result.output
        assert word in result.output
    assert not (tmp_path / "models").exists()


def test_run_metrics_are_real(run: Run) -> None:
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert 0.1 < metrics["test"]["accuracy"] <= 1.0


def test_publish_on_a_serving_host(run: Run, tmp_path: Path) -> None:
    """A finished run publishes where the training stack is not installed, to the same files."""
    check_publish_on_serving_host(
        {name: (run.path, options) for name, options in PUBLISHED.items()}, tmp_path)
