"""Server-side pipelines: declared preprocess/postprocess steps around a model, ensembles of
repository models, and the V2 classification extension.

The image pipeline serves the demo CNN from PNG bytes (real MNIST test images); every result is
checked against the same work done in process (Pillow decode, ONNX Runtime, numpy softmax).
"""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from conftest import DEMO_REPOSITORY, SHARED, ServerProcess, start_server
from onnx_models import identity_model
from PIL import Image

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.model import ModelVersion
from shipyard.serving.types import InferenceRequest, RequestedOutput, Tensor

CNN = DEMO_REPOSITORY / "cnn" / "1" / "model.onnx"
MNIST = SHARED / "data" / "mnist_png" / "test"
DIGITS = [str(d) for d in range(10)]
PRE = [
    {"image_decode": {"mode": "L"}},
    {"resize": {"size": [28, 28]}},
    {"to_dtype": {"dtype": "float32", "scale": 1 / 255}},
    {"layout": {"to": "NCHW"}},
]


def _pngs(n: int) -> tuple[list[bytes], list[int]]:
    if not MNIST.is_dir():
        pytest.skip(f"no MNIST PNGs under {MNIST}")
    files = sorted(MNIST.glob("*/*.png"))[:: max(1, len(list(MNIST.glob('*/*.png'))) // n)][:n]
    return [f.read_bytes() for f in files], [int(f.parent.name) for f in files]


def _reference(pngs: list[bytes]) -> np.ndarray:
    """What a client would do by hand: decode, scale, run the CNN."""
    x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("L"), np.float32) / 255
                  for b in pngs])[:, None]
    session = ort.InferenceSession(str(CNN), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": x})
    return np.asarray(logits)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _version(tmp: Path, config: dict[str, Any]) -> ModelVersion:
    folder = tmp / "1"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CNN, folder / "model.onnx")
    mv = ModelVersion("digits", 1, folder, ModelConfig.model_validate({"name": "digits",
                                                                        **config}))
    mv.load()
    assert mv.ready, mv.reason
    return mv


def _bytes_request(items: list[bytes], outputs: list[RequestedOutput] | None = None
                   ) -> InferenceRequest:
    data = np.array(items, dtype=object).reshape(-1, 1)
    return InferenceRequest("digits", inputs=[Tensor("image", "BYTES", (len(items), 1), data)],
                            outputs=outputs)


def test_image_pipeline_matches_in_process_work(tmp_path: Path) -> None:
    mv = _version(tmp_path, {"max_batch_size": 16, "preprocess": PRE,
                             "postprocess": [{"softmax": {}}],
                             "outputs": [{"name": "probabilities", "datatype": "FP32",
                                          "shape": [10]}]})
    assert [(s.name, s.datatype, s.shape) for s in mv.inputs] == [("image", "BYTES", (-1, 1))]
    assert [(s.name, s.datatype, s.shape) for s in mv.outputs] == [
        ("probabilities", "FP32", (-1, 10))]
    pngs, labels = _pngs(12)

    async def run() -> np.ndarray:
        try:
            response = await mv.infer(_bytes_request(pngs))
        finally:
            mv.unload()
        return response.outputs[0].data

    got = asyncio.run(run())
    want = _softmax(_reference(pngs))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (got.argmax(axis=1) == np.array(labels)).mean() >= 0.75  # the CNN reads digits


def _bomb() -> bytes:
    """A tiny PNG whose header claims 30000 x 30000 pixels."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    raw[8:33] = struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return bytes(raw)


def test_a_bad_item_fails_its_own_request_only(tmp_path: Path) -> None:
    """Requests merged into one batch: the bad ones get a 400 naming the item, the good ones
    their own results, nothing hangs."""
    mv = _version(tmp_path, {"max_batch_size": 16, "preprocess": PRE,
                             "dynamic_batching": {"max_queue_delay_us": 200_000,
                                                  "preferred_batch_sizes": [7]}})
    pngs, _ = _pngs(3)
    bad = {
        "not an image": [pngs[0], b"this is no image at all"],
        "truncated": [pngs[0][: len(pngs[0]) // 2]],
        "bomb": [pngs[1], pngs[2], _bomb()],
        "empty": [b""],
    }
    good = [[pngs[0]], [pngs[1], pngs[2]]]

    async def run() -> list[Any]:
        try:
            calls = [mv.infer(_bytes_request(items)) for items in [*good, *bad.values()]]
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
        finally:
            mv.unload()

    results = asyncio.run(run())
    want = _reference(pngs)
    np.testing.assert_allclose(results[0].outputs[0].data, want[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[1].outputs[0].data, want[1:], rtol=1e-5, atol=1e-5)
    errors = dict(zip(bad, results[2:], strict=True))
    for why, exc in errors.items():
        assert isinstance(exc, InvalidInput), (why, exc)
        assert "input 'image' of model 'digits'" in exc.message, exc.message
    assert "item 1" in errors["not an image"].message
    assert "item 0" in errors["truncated"].message
    assert "item 2" in errors["bomb"].message
    assert "item 0" in errors["empty"].message
    assert mv.stats.execution_count <= 2, "the requests did not share a batch"


def test_bad_step_declarations_name_the_step() -> None:
    with pytest.raises(ValueError, match=r"preprocess\[1\]\.resize\.sizee: unknown parameter"):
        ModelConfig.model_validate({"preprocess": [{"image_decode": {}},
                                                   {"resize": {"sizee": [2, 2]}}]})
    with pytest.raises(ValueError, match=r"unknown step 'blur'"):
        ModelConfig.model_validate({"postprocess": ["blur"]})


def test_a_pipeline_that_does_not_fit_the_model_is_not_served(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    shutil.copy(CNN, folder / "model.onnx")
    steps = PRE[:3]  # no layout: [N, 28, 28] for a model taking [N, 1, 28, 28]
    mv = ModelVersion("digits", 1, folder, ModelConfig.model_validate(
        {"name": "digits", "preprocess": steps}))
    mv.load()
    assert not mv.ready
    assert "preprocess makes shape [-1, 28, 28] for input 'image'" in mv.reason, mv.reason


# -- a real server: tritonclient over HTTP and gRPC ---------------------------------------------


def _write(root: Path, name: str, config: dict[str, Any], model: Path | None = None) -> None:
    (root / name / "1").mkdir(parents=True)
    if model is not None:
        shutil.copy(model, root / name / "1" / "model.onnx")
    (root / name / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("pipelines")
    _write(root, "digits", {"max_batch_size": 16, "preprocess": PRE,
                            "labels": {"logits": DIGITS}}, CNN)
    _write(root, "cnn", {"max_batch_size": 16}, CNN)
    decode = root / "decode.onnx"
    identity_model(decode, np.float32, name_in="pixels", name_out="pixels_out",
                   dims=(1, 28, 28))
    _write(root, "decode", {"max_batch_size": 16, "preprocess": PRE}, decode)
    _write(root, "reader", {
        "backend": "ensemble", "max_batch_size": 16,
        "inputs": [{"name": "png", "datatype": "BYTES", "shape": [1]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [10]}],
        "labels": {"logits": DIGITS},
        "ensemble": {"steps": [
            {"model": "decode", "inputs": {"image": "png"}, "outputs": {"pixels_out": "x"}},
            {"model": "cnn", "inputs": {"image": "x"}, "outputs": {"logits": "logits"}},
        ]},
    })
    proc = start_server(root)
    yield proc
    proc.stop()


def _triton_inputs(module: Any, name: str, pngs: list[bytes]) -> Any:
    inp = module.InferInput(name, [len(pngs), 1], "BYTES")
    inp.set_data_from_numpy(np.array(pngs, dtype=object).reshape(-1, 1))
    return inp


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tritonclient_sends_png_bytes(server: ServerProcess, protocol: str) -> None:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    module: Any = thttp if protocol == "http" else tgrpc
    url = server.http_url if protocol == "http" else server.grpc_url
    client = module.InferenceServerClient(url)
    pngs, _ = _pngs(5)
    want = _reference(pngs)
    meta = client.get_model_metadata("digits")
    meta = meta if isinstance(meta, dict) else {"inputs": [
        {"name": i.name, "datatype": i.datatype, "shape": list(i.shape)} for i in meta.inputs]}
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1, 1]}]
    for model, input_name in (("digits", "image"), ("reader", "png")):
        result = client.infer(model, [_triton_inputs(module, input_name, pngs)])
        np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    # classification: top 3 as "score:index:label", best first
    top = client.infer("digits", [_triton_inputs(module, "image", pngs)],
                       outputs=[module.InferRequestedOutput("logits", class_count=3)])
    classes = top.as_numpy("logits")
    assert classes.shape == (5, 3)
    for row, scores in zip(classes, want, strict=True):
        parts = [c.decode().split(":") for c in row]
        assert [int(p[1]) for p in parts] == list(np.argsort(-scores)[:3])
        assert [p[2] for p in parts] == [DIGITS[int(p[1])] for p in parts]
        np.testing.assert_allclose([float(p[0]) for p in parts], np.sort(scores)[::-1][:3],
                                   rtol=1e-4)


def test_errors_name_the_item_and_the_member(server: ServerProcess) -> None:
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    client = thttp.InferenceServerClient(server.http_url)
    pngs, _ = _pngs(1)
    for model, name in (("digits", "image"), ("reader", "png")):
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [_triton_inputs(thttp, name, [pngs[0], b"GIF89a no"])])
        text = str(info.value)
        assert "400" in text or "item 1" in text, text
        assert "item 1" in text, text
    assert "model 'decode'" in text and "ensemble 'reader'" in text, text
    # the server still serves after bad input
    result = client.infer("digits", [_triton_inputs(thttp, "image", pngs)])
    assert result.as_numpy("logits").shape == (1, 10)


def test_classification_needs_a_positive_count(server: ServerProcess) -> None:
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    client = thttp.InferenceServerClient(server.http_url)
    pngs, _ = _pngs(1)
    out = thttp.InferRequestedOutput("logits")
    out._parameters["classification"] = 0
    with pytest.raises(InferenceServerException, match="positive integer"):
        client.infer("digits", [_triton_inputs(thttp, "image", pngs)], outputs=[out])


def test_ensemble_config_and_members_statistics(server: ServerProcess) -> None:
    import tritonclient.http as thttp

    client = thttp.InferenceServerClient(server.http_url)
    assert client.get_model_config("reader")["platform"] == "ensemble"
    assert client.get_model_metadata("digits")["platform"] == "onnxruntime_onnx"
    stats = client.get_inference_statistics("decode")["model_stats"][0]
    assert stats["inference_count"] >= 1  # members count their own requests


# -- text: normalise + tokenise on the server ---------------------------------------------------

TEXT_STEPS = [{"text_normalize": {"lowercase": True}},
              {"tokenize": {"path": "tokenizer.json", "max_length": 8}}]


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["free entry in a weekly competition", "call me when you get home",
              "you have won a prize", "see you at lunch"]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    tok.save(str(path))


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("text")
    ids = root / "ids.onnx"
    identity_model(ids, np.int64, name_in="input_ids", name_out="ids", dims=(8,))
    _write(root, "spam", {"max_batch_size": 8, "preprocess": TEXT_STEPS}, ids)
    _tokenizer(root / "spam" / "1" / "tokenizer.json")
    _write(root, "digits_top", {
        "max_batch_size": 16, "preprocess": PRE,
        "postprocess": [{"softmax": {}}, {"top_k": {"k": 3}}, {"labels": {"labels": DIGITS}}],
    }, CNN)
    proc = start_server(root)
    yield proc, root
    proc.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_text_pipeline_tokenises_on_the_server(text_server: Any, protocol: str) -> None:
    """Raw strings in; the server's ids equal the same transforms run in process (the code the
    training half runs), and a text longer than max_length is refused naming its item."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp
    from tritonclient.utils import InferenceServerException

    from shipyard.transforms import apply_steps, build_steps

    server, root = text_server
    module: Any = thttp if protocol == "http" else tgrpc
    client = module.InferenceServerClient(server.http_url if protocol == "http"
                                          else server.grpc_url)
    # the third is full-width "call me": NFKC folds it
    texts = ["You have WON a prize", "see you at lunch", "\uff43\uff41\uff4c\uff4c me"]
    batch = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)
    result = client.infer("spam", [_triton_inputs(module, "text", [t.encode() for t in texts])])
    want = apply_steps(build_steps(TEXT_STEPS, base_dir=root / "spam" / "1"), batch.reshape(-1))
    np.testing.assert_array_equal(result.as_numpy("ids"), want)
    assert len(set(map(tuple, want.tolist()))) == 3, "the texts tokenised to the same ids"
    long = "you " * 20
    with pytest.raises(InferenceServerException, match="item 1"):
        client.infer("spam", [_triton_inputs(module, "text", [b"see you", long.encode()])])


def test_postprocess_top_k_and_labels(text_server: Any) -> None:
    import tritonclient.http as thttp

    server, _ = text_server
    client = thttp.InferenceServerClient(server.http_url)
    meta = client.get_model_metadata("digits_top")
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "indices": "INT64", "scores": "FP32", "labels": "BYTES"}
    pngs, _ = _pngs(4)
    result = client.infer("digits_top", [_triton_inputs(thttp, "image", pngs)])
    probs = _softmax(_reference(pngs))
    order = np.argsort(-probs, axis=1)[:, :3]
    np.testing.assert_array_equal(result.as_numpy("indices"), order)
    np.testing.assert_allclose(result.as_numpy("scores"),
                               np.take_along_axis(probs, order, axis=1), rtol=1e-5, atol=1e-6)
    assert [[v.decode() for v in row] for row in result.as_numpy("labels")] == \
        [[DIGITS[i] for i in row] for row in order]


def test_an_ensemble_picks_up_a_member_reload(tmp_path: Path) -> None:
    """poll mode: a new version of a member serves the ensemble's next requests."""
    import functools

    import tritonclient.http as thttp
    from conftest import wait_until
    from onnx_models import scale_model, write_repository

    root = write_repository(tmp_path / "repo", {
        "scale": ({1: functools.partial(scale_model, factor=2.0)}, {"max_batch_size": 8}),
    })
    _write(root, "twice", {
        "backend": "ensemble", "max_batch_size": 8,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [4]}],
        "ensemble": {"steps": [
            {"model": "scale", "inputs": {"INPUT0": "x"}, "outputs": {"OUTPUT0": "h"}},
            {"model": "scale", "inputs": {"INPUT0": "h"}, "outputs": {"OUTPUT0": "y"}},
        ]},
    })
    proc = start_server(root, "--model-control", "poll", "--poll-interval", "0.2")
    try:
        client = thttp.InferenceServerClient(proc.http_url)
        x = np.ones((2, 4), np.float32)

        def ask() -> float:
            inp = thttp.InferInput("x", [2, 4], "FP32")
            inp.set_data_from_numpy(x)
            return float(client.infer("twice", [inp]).as_numpy("y")[0, 0])

        assert ask() == 4.0
        staging = root / "scale" / ".tmp-2"
        scale_model(staging / "model.onnx", factor=3.0)
        staging.rename(root / "scale" / "2")
        wait_until(lambda: ask() == 9.0, timeout=20)
        assert {ask() for _ in range(10)} == {9.0}, "a request mixed member versions"
    finally:
        proc.stop()


def test_the_demo_digits_model_reads_png_files(demo_server: ServerProcess) -> None:
    import tritonclient.http as thttp

    client = thttp.InferenceServerClient(demo_server.http_url)
    pngs, labels = _pngs(20)
    result = client.infer("digits", [_triton_inputs(thttp, "image", pngs)])
    order = np.argsort(-_reference(pngs), axis=1)[:, :3]
    np.testing.assert_array_equal(result.as_numpy("indices"), order)
    best = [int(row[0].decode()) for row in result.as_numpy("labels")]
    assert np.mean(np.array(best) == np.array(labels)) >= 0.8, (best, labels)


def test_an_ensemble_with_broken_wiring_is_not_served(tmp_path: Path) -> None:
    from shipyard.serving.ensemble import EnsembleVersion
    from shipyard.serving.registry import ModelRegistry

    def version(steps: list[dict[str, Any]]) -> EnsembleVersion:
        config = ModelConfig.model_validate({
            "name": "e", "backend": "ensemble",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [4]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [4]}],
            "ensemble": {"steps": steps}})
        ev = EnsembleVersion("e", 1, tmp_path, config, registry=ModelRegistry(tmp_path))
        ev.load()
        return ev

    reads = version([{"model": "a", "inputs": {"INPUT0": "nope"}, "outputs": {"OUTPUT0": "y"}}])
    assert not reads.ready and "reads ['nope']" in reads.reason, reads.reason
    never = version([{"model": "a", "inputs": {"INPUT0": "x"}, "outputs": {"OUTPUT0": "h"}}])
    assert not never.ready and "output(s) ['y']" in never.reason, never.reason
    ok = version([{"model": "a", "inputs": {"INPUT0": "x"}, "outputs": {"OUTPUT0": "y"}}])
    assert ok.ready and [s.shape for s in ok.inputs] == [(-1, 4)]
    with pytest.raises(ValueError, match="needs both 'backend: ensemble'"):
        ModelConfig.model_validate({"backend": "ensemble"})
