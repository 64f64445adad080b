"""``POST /predict`` with images: multipart file uploads (curl, httpx) and base64 JSON, answered
with the top labels and their probabilities, checked against the model run in-process on the
same PNG files (PIL decode, onnxruntime, softmax)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, SHARED, ServerProcess, start_server

MNIST_TEST = SHARED / "data" / "mnist_png" / "test"
LABELS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def pngs() -> list[tuple[int, Path]]:
    if not MNIST_TEST.is_dir():
        pytest.skip(f"MNIST PNGs not found at {MNIST_TEST}")
    return [(d, sorted((MNIST_TEST / str(d)).glob("*.png"))[1]) for d in range(10)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo digits (top-3 postprocess) and cnn, plus 'digits_logits': the same pipeline
    without postprocess, so /predict ranks the labelled logits itself."""
    root = tmp_path_factory.mktemp("predict")
    for name in ("digits", "cnn"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    shutil.copytree(DEMO_REPOSITORY / "digits", root / "digits_logits")
    config = (root / "digits" / "config.yaml").read_text()
    head = config.split("postprocess:")[0]
    (root / "digits_logits" / "config.yaml").write_text(
        head + "labels:\n  logits: " + json.dumps(LABELS) + "\n")
    proc = start_server(root)
    yield proc
    proc.stop()


def expected(path: Path) -> np.ndarray:
    """The cnn's probabilities for one PNG, computed in this process."""
    session = ort.InferenceSession(str(DEMO_REPOSITORY / "cnn" / "1" / "model.onnx"))
    with Image.open(path) as img:
        x = np.asarray(img.convert("L").resize((28, 28)), dtype=np.float32) / 255.0
    (logits,) = session.run(None, {"image": x[None, None]})
    e = np.exp(logits[0] - logits[0].max())
    return e / e.sum()


def check(predictions: list[list[dict[str, Any]]], files: list[Path], k: int) -> None:
    assert len(predictions) == len(files)
    for row, path in zip(predictions, files, strict=True):
        probs = expected(path)
        order = np.argsort(-probs)[:k]
        assert [p["label"] for p in row] == [LABELS[i] for i in order]
        np.testing.assert_allclose([p["probability"] for p in row], probs[order], rtol=1e-4,
                                   atol=1e-6)


def _post(server: ServerProcess, path: str, body: bytes, content_type: str
          ) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://{server.http_url}{path}", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_curl_multipart_upload(server: ServerProcess, pngs: list[tuple[int, Path]]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    files = [p for _, p in pngs[:4]]
    cmd = ["curl", "-sS", "--fail-with-body", f"http://{server.http_url}/v2/models/digits/predict"]
    for f in files:
        cmd += ["-F", f"image=@{f}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["model_name"] == "digits"
    check(body["predictions"], files, 3)  # the model's own top_k step says 3
    assert body["labels"] == [str(d) for d, _ in pngs[:4]]


def test_httpx_multipart_with_top_k(server: ServerProcess, pngs: list[tuple[int, Path]]) -> None:
    files = [p for _, p in pngs]
    upload = [("file", (f.name, f.read_bytes(), "image/png")) for f in files]
    resp = httpx.post(f"http://{server.http_url}/v2/models/digits_logits/predict",
                      files=upload, data={"top_k": "2"}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    check(body["predictions"], files, 2)
    right = sum(label == str(d) for label, (d, _) in zip(body["labels"], pngs, strict=True))
    assert right >= 9


@pytest.mark.parametrize("model", ["digits", "digits_logits"])
def test_base64_json(server: ServerProcess, pngs: list[tuple[int, Path]], model: str) -> None:
    files = [p for _, p in pngs[:3]]
    images = [base64.b64encode(f.read_bytes()).decode() for f in files]
    images[1] = "data:image/png;base64," + images[1]  # as a browser's FileReader gives it
    status, body = _post(server, f"/v2/models/{model}/predict?top_k=3",
                         json.dumps({"images": images}).encode(), "application/json")
    assert status == 200, body
    check(body["predictions"], files, 3)
    status, one = _post(server, f"/v2/models/{model}/predict",
                        json.dumps({"image": images[0], "top_k": 1}).encode(),
                        "application/json")
    assert status == 200, one
    check(one["predictions"], files[:1], 1)


def test_default_top_k_for_labelled_logits(server: ServerProcess,
                                           pngs: list[tuple[int, Path]]) -> None:
    f = pngs[0][1]
    status, body = _post(server, "/v2/models/digits_logits/predict",
                         json.dumps({"image": base64.b64encode(f.read_bytes()).decode()}).encode(),
                         "application/json")
    assert status == 200, body
    check(body["predictions"], [f], 5)


@pytest.mark.parametrize(("path", "body", "ctype", "words"), [
    ("/v2/models/digits/predict", b'{"images": ["@@not base64@@"]}', "application/json",
     ["images[0]", "base64"]),
    ("/v2/models/digits/predict", b'{"images": []}', "application/json", ["images"]),
    ("/v2/models/digits/predict", b'{"images": ["aGVsbG8="], "features": [1]}',
     "application/json", ["features", "images"]),
    ("/v2/models/digits/predict?top_k=0", b'{"image": "aGVsbG8="}', "application/json",
     ["top_k", "positive"]),
    ("/v2/models/digits/predict", b'{"image": "aGVsbG8="}', "application/json",
     ["0"]),  # "hello" is no image: the pipeline names item 0
    ("/v2/models/cnn/predict", b'{"image": "aGVsbG8="}', "application/json",
     ["cnn", "BYTES", "/v2/models/cnn/infer"]),
    ("/v2/models/digits/predict", b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"
     b"\r\n--xx--\r\n", "multipart/form-data; boundary=xx", ["'a'", "filename"]),
    ("/v2/models/digits/predict", b"--xx--\r\n", "multipart/form-data; boundary=xx",
     ["parts"]),
    ("/v2/models/digits/predict", b"abc", "multipart/form-data", ["boundary"]),
])
def test_bad_bodies_are_400(server: ServerProcess, path: str, body: bytes, ctype: str,
                            words: list[str]) -> None:
    status, answer = _post(server, path, body, ctype)
    assert status == 400, answer
    for word in words:
        assert word in answer["error"], answer
    # and the server still answers a good request
    if MNIST_TEST.is_dir():
        seven = sorted((MNIST_TEST / "7").glob("*.png"))[0]
        ok = base64.b64encode(seven.read_bytes()).decode()
        status, answer = _post(server, "/v2/models/digits/predict",
                               json.dumps({"image": ok}).encode(), "application/json")
        assert status == 200 and answer["labels"] == ["7"], answer


def test_features_still_work(server: ServerProcess) -> None:
    status, body = _post(server, "/v2/models/cnn/predict",
                         json.dumps({"features": [[0.0] * 784]}).encode(), "application/json")
    assert status == 200, body
    assert len(body["result"]) == 1 and len(body["result"][0]) == 10
    assert body["labels"][0] in LABELS and "predictions" not in body
