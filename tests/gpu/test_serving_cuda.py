"""The serving half on a CUDA device: the torch runtime with ``device: cuda`` / ``auto``,
``dtype`` float32 / float16 / bfloat16 and ``cuda_graphs``, the conformance suite on CUDA, ONNX
Runtime asked for its CUDA provider, and one real ``shipyard serve`` answering tritonclient
over REST and gRPC from the GPU.

Every test takes the ``cuda`` fixture (``tests/gpu/conftest.py``): it skips without a CUDA
device. The references are the same weights run on the CPU, in float64 (the truth) and by the
runtime itself with ``device: cpu`` (what a CPU server answers). Tolerances, as
``|got - want| <= ATOL + RTOL * |want|`` on the CNN's logits (|logits| <= ~0.12 for these
normal-random images):

- float32 (``TOL``): atol 5e-4, rtol 1e-3. Not 1e-6: cuDNN runs float32 convolutions in TF32
  by default (``torch.backends.cudnn.allow_tf32``), a 10-bit mantissa; rounding every
  convolution's operands to TF32 moved these logits by up to 5e-5 in a float64 simulation.
- float16: atol 2e-3, rtol 1e-2 (the model in float16 on the CPU: up to 6e-5 off;
  cuBLAS may also sum split-K partials in float16, ``allow_fp16_reduced_precision_reduction``).
- bfloat16: atol 5e-3, rtol 2e-2 (in bfloat16 on the CPU: up to 6.4e-4 off).

Each is 8-30x what the simulation gave and ~1/25 of the largest logit or less: a wrong device,
a stale CUDA-graph buffer or a missing cast misses by far more (another image's logits differ
by ~0.05).

Expected time on one H200 (estimated, not yet measured there): the in-process tests 1-3 s each
(a ``torch.export.load`` and a trace per runtime; ~30 s in all with CUDA start-up), the server
15-25 s to start (its own Python, torch and CUDA, four models, one CUDA-graph capture), its
three tests a few seconds. About 45-65 s for the file.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import http_call, start_server  # noqa: E402  (tests/conftest.py)
from torch import Tensor, nn  # noqa: E402
from torch_models import (  # noqa: E402
    ADD_SUB_TENSORS,
    CNN_TENSORS,
    add_sub_pt,
    add_sub_pt2,
    cnn_pt,
    cnn_pt2,
    save_pt2,
    small_cnn,
)

from shipyard.serving.config import ModelConfig  # noqa: E402
from shipyard.serving.errors import InvalidInput  # noqa: E402
from shipyard.serving.runtimes import create_runtime  # noqa: E402
from shipyard.serving.runtimes.testing import ConformanceCase, check_runtime  # noqa: E402
from shipyard.serving.runtimes.torch import TorchRuntime  # noqa: E402

#: what a model on the GPU reports as its instance_group kind
GPU_KIND = "KIND_GPU"
#: (atol, rtol) per compute dtype; see the module docstring
TOL = {"float32": (5e-4, 1e-3), "float16": (2e-3, 1e-2), "bfloat16": (5e-3, 2e-2)}
#: the output's name per file format (model.pt2: from the program; model.pt: CNN_TENSORS)
OUT = {"pt2": "OUTPUT0", "pt": "logits"}


def _images(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 1, 28, 28)).astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    """The CNN's logits in float64 on the CPU (the weights of ``small_cnn(0)``, which
    ``cnn_pt2`` and ``cnn_pt`` save)."""
    with torch.inference_mode():
        out: np.ndarray = small_cnn(0).double()(torch.from_numpy(x).double()).numpy()
    return out


def _close(got: np.ndarray, want: np.ndarray, dtype: str, what: str) -> None:
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def _runtime(folder: Path, device: str, **config: Any) -> TorchRuntime:
    """A loaded torch runtime for the CNN in ``folder`` (``max_batch_size`` 16)."""
    parameters = {"device": device, **config.pop("parameters", {})}
    tensors = CNN_TENSORS if (folder / "model.pt").exists() else {}
    cfg = ModelConfig.model_validate({"name": "cnn", "backend": "torch", "max_batch_size": 16,
                                      **tensors, **config, "parameters": parameters})
    rt = create_runtime(folder, cfg)
    assert isinstance(rt, TorchRuntime)
    rt.load()
    return rt


def _output(rt: TorchRuntime, fmt: str, x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """One run; checks what every answer must be: a host numpy array of the declared
    dtype (FP32), one row of 10 logits per image, finite."""
    (out,) = rt.run({"image": x}, [OUT[fmt]])
    assert type(out) is np.ndarray, type(out)
    assert out.dtype == np.float32, out.dtype
    assert out.shape == (x.shape[0], 10), out.shape
    assert np.isfinite(out).all(), f"{dtype}: non-finite logits {out}"
    return out


@pytest.fixture(scope="module")
def cnn_files(cuda: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CNN as ``model.pt2`` and as ``model.pt``, one folder each."""
    root = tmp_path_factory.mktemp("cuda_cnn")
    cnn_pt2(root / "pt2")
    cnn_pt(root / "pt")
    return {"pt2": root / "pt2", "pt": root / "pt"}


@pytest.fixture(scope="module")
def cpu_answers(cnn_files: dict[str, Path]) -> dict[str, np.ndarray]:
    """What the runtime answers on the CPU (``device: cpu``) for ``_images(16, 0)``."""
    x = _images(16, 0)
    out = {}
    for fmt, folder in cnn_files.items():
        rt = _runtime(folder, "cpu")
        out[fmt] = _output(rt, fmt, x)
        rt.unload()
    return out


# -- the torch runtime on CUDA ------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "device"), [("pt2", "fixture"), ("pt2", "auto"),
                                             ("pt", "cuda"), ("pt", "auto")])
def test_torch_runtime_runs_on_cuda_and_answers_what_the_cpu_answers(
        fmt: str, device: str, cuda: str, cnn_files: dict[str, Path],
        cpu_answers: dict[str, np.ndarray]) -> None:
    gc.collect()
    before = torch.cuda.memory_allocated(0)
    rt = _runtime(cnn_files[fmt], cuda if device == "fixture" else device)
    assert rt.device_kind == GPU_KIND
    params = list(rt._module.parameters())
    assert params and {str(p.device) for p in params} == {"cuda:0"}, \
        {str(p.device) for p in params}
    assert {p.dtype for p in params} == {torch.float32}
    assert torch.cuda.memory_allocated(0) > before  # the weights are in GPU memory
    x = _images(16, 0)
    want = _reference(x)
    for rows in (16, 5, 1):
        got = _output(rt, fmt, x[:rows])
        _close(got, cpu_answers[fmt][:rows], "float32", f"{fmt} {device} {rows} rows vs cpu")
        _close(got, want[:rows], "float32", f"{fmt} {device} {rows} rows vs float64")
    rt.unload()


@pytest.mark.parametrize(("fmt", "dtype"), [("pt2", "bfloat16"), ("pt2", "float16"),
                                            ("pt", "bfloat16")])
def test_reduced_precision_on_cuda_answers_float32_within_its_tolerance(
        fmt: str, dtype: str, cuda: str, cnn_files: dict[str, Path],
        cpu_answers: dict[str, np.ndarray]) -> None:
    rt = _runtime(cnn_files[fmt], cuda, parameters={"dtype": dtype})
    assert rt.device_kind == GPU_KIND
    assert {p.dtype for p in rt._module.parameters()} == {getattr(torch, dtype)}
    x = _images(16, 0)
    want = _reference(x)
    for rows in (16, 3):
        got = _output(rt, fmt, x[:rows], dtype)  # declared FP32: cast back on the way out
        _close(got, want[:rows], dtype, f"{fmt} {dtype} {rows} rows vs float64")
        _close(got, cpu_answers[fmt][:rows], dtype, f"{fmt} {dtype} {rows} rows vs cpu")
    rt.unload()


class WithConstants(nn.Module):
    """``x + torch.tensor([1., 2.]) + torch.ones(len(x), 2)``: exported, a lifted tensor
    constant and an ``aten.ones`` node with ``device=cpu`` baked in, neither of which
    ``Module.to("cuda")`` moves."""

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + torch.tensor([1.0, 2.0]) + torch.ones(x.shape[0], 2)
        return out


def test_a_program_with_constants_and_factory_ops_runs_on_cuda(cuda: str,
                                                               tmp_path: Path) -> None:
    save_pt2(WithConstants(), (torch.zeros(2, 2),), tmp_path)
    rt = _runtime(tmp_path, cuda)
    assert rt.device_kind == GPU_KIND
    assert rt.execution == "eager"  # x.shape[0] is a size computed from the input
    x = np.random.default_rng(4).standard_normal((3, 2)).astype(np.float32)
    (out,) = rt.run({"x": x}, ["OUTPUT0"])
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_allclose(out, x + np.array([1.0, 2.0], np.float32) + 1.0, rtol=1e-6)
    rt.unload()


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ``torch.cuda.CUDAGraph.replay`` calls (one entry per call)."""
    calls: list[int] = []
    original = torch.cuda.CUDAGraph.replay

    def counting(self: Any) -> Any:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", counting)
    return calls


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_graphs_answer_as_the_eager_path_and_refill_their_buffers(
        dtype: str, cuda: str, cnn_files: dict[str, Path], replays: list[int],
        caplog: pytest.LogCaptureFixture) -> None:
    folder = cnn_files["pt2"]
    batching = {"dynamic_batching": {"preferred_batch_sizes": [8, 4, 32]}}  # 32 > max 16
    with caplog.at_level(logging.INFO, logger="shipyard.runtime.torch"):
        graphs = _runtime(folder, cuda, parameters={"dtype": dtype, "cuda_graphs": True},
                          **batching)
    assert "captured CUDA graphs for batch sizes [4, 8]" in caplog.text, caplog.text
    eager = _runtime(folder, cuda, parameters={"dtype": dtype}, **batching)
    assert graphs.device_kind == eager.device_kind == GPU_KIND
    x = _images(16, 1)
    want = _reference(x)
    # captured sizes, sizes padded up to the next captured one, sizes above the largest
    for rows, replayed in ((4, True), (3, True), (8, True), (5, True), (11, False),
                           (16, False)):
        replays.clear()
        got = _output(graphs, "pt2", x[:rows], dtype)
        assert len(replays) == (1 if replayed else 0), (rows, len(replays))
        _close(got, _output(eager, "pt2", x[:rows], dtype), dtype, f"{rows} rows vs eager")
        _close(got, want[:rows], dtype, f"{rows} rows vs float64")
    # two different batches in a row at a captured size: the static input is refilled
    a, b = _images(4, 2), _images(4, 3)
    want_a, want_b = _reference(a), _reference(b)
    replays.clear()
    got_a = _output(graphs, "pt2", a, dtype)
    kept = got_a.copy()
    got_b = _output(graphs, "pt2", b, dtype)
    assert len(replays) == 2
    _close(got_a, want_a, dtype, "first batch")
    _close(got_b, want_b, dtype, "second batch at the same captured size")
    assert np.abs(got_b - got_a).max() > 2 * TOL[dtype][0], "the second answer is the first"
    np.testing.assert_array_equal(got_a, kept)  # an answer is a copy, not the static output
    # a smaller batch after a full one: the padding rows are zeroed, the answer sliced
    got_c = _output(graphs, "pt2", b[:1], dtype)
    _close(got_c, want_b[:1], dtype, "1 row after 4 at the captured size 4")
    graphs.unload()
    eager.unload()


# -- the conformance suite on CUDA --------------------------------------------------------


@pytest.mark.parametrize("case", ["pt2", "pt2 eager", "pt2 cuda graphs", "pt"])
def test_torch_runtime_conforms_on_cuda(case: str, cuda: str, tmp_path: Path,
                                        replays: list[int]) -> None:
    parameters: dict[str, Any] = {"device": cuda}
    config: dict[str, Any] = {}
    if case == "pt2 eager":
        parameters["execution"] = "eager"
    if case == "pt2 cuda graphs":  # rows 1 and 2 replay the graph of 2, 5 runs eagerly
        parameters["cuda_graphs"] = True
        config = {"max_batch_size": 8, "dynamic_batching": {"preferred_batch_sizes": [2]}}
    if case == "pt":
        config = dict(ADD_SUB_TENSORS)
    check_runtime(ConformanceCase(
        "torch", add_sub=add_sub_pt if case == "pt" else add_sub_pt2, echo_text=None,
        config={**config, "parameters": parameters}), tmp_path)
    # the suite runs 1, 2 and 5 rows, then 5 again: graphs replay for 1 and 2 only
    assert len(replays) == (2 if case == "pt2 cuda graphs" else 0), len(replays)


# -- ONNX Runtime asked for CUDA ----------------------------------------------------------


def test_onnx_on_a_gpu_machine_runs_on_cuda_or_says_why_not(
        cuda: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort
    from onnx_models import add_sub_model

    add_sub_model(tmp_path / "model.onnx")

    def load(providers: list[str]) -> Any:
        cfg = ModelConfig.model_validate({"name": "m", "backend": "onnx",
                                          "onnxruntime": {"providers": providers}})
        rt = create_runtime(tmp_path, cfg)
        rt.load()
        return rt

    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.full((2, 16), 0.5, np.float32)
    if "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu
        rt = load(["CUDAExecutionProvider"])
        assert rt.device_kind == GPU_KIND
        out0, out1 = rt.run({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
        np.testing.assert_allclose(out0, a + b, rtol=1e-6)
        np.testing.assert_allclose(out1, a - b, rtol=1e-6)
        return
    with pytest.raises(InvalidInput, match=r"'m'.*CUDAExecutionProvider.*onnxruntime-gpu"):
        load(["CUDAExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="shipyard.runtime.onnx"):
        rt = load(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert "not in this ONNX Runtime" in caplog.text
    assert rt.device_kind == "KIND_CPU"
    out0, _ = rt.run({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_allclose(out0, a + b, rtol=1e-6)


# -- one real server ------------------------------------------------------------------------

#: the served models: (format, parameters, compute dtype)
SERVED = {
    "cnn_graphs": ("pt2", {"device": "cuda:0", "cuda_graphs": True}, "float32"),
    "cnn_auto": ("pt2", {}, "float32"),  # device: auto
    "cnn_ts": ("pt", {"device": "cuda"}, "float32"),
    "cnn_bf16": ("pt2", {"device": "cuda:0", "dtype": "bfloat16"}, "bfloat16"),
}


@pytest.fixture(scope="module")
def server(cuda: str, cnn_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Any]:
    """``shipyard serve`` with the CNN four ways on the GPU (:data:`SERVED`)."""
    repo = tmp_path_factory.mktemp("cuda_repo")
    for name, (fmt, parameters, _) in SERVED.items():
        version = repo / name / "1"
        version.mkdir(parents=True)
        file = "model.pt2" if fmt == "pt2" else "model.pt"
        (version / file).write_bytes((cnn_files[fmt] / file).read_bytes())
        config: dict[str, Any] = {"max_batch_size": 16,
                                  "dynamic_batching": {"preferred_batch_sizes": [4, 8]}}
        if parameters:
            config["parameters"] = parameters
        if fmt == "pt":
            config.update(CNN_TENSORS)
        (repo / name / "config.yaml").write_text(yaml.safe_dump(config))
    started = start_server(repo, timeout=90)
    yield started
    started.stop()


def test_served_models_report_kind_gpu(server: Any) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import model_config_pb2

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for name in SERVED:
            status, _, body = http_call(server, "GET", f"/v2/models/{name}/config")
            assert status == 200, body
            doc = json.loads(body)
            assert [g["kind"] for g in doc["instance_group"]] == [GPU_KIND], (name, doc)
            kind = grpc.get_model_config(name).config.instance_group[0].kind
            assert kind == model_config_pb2.ModelInstanceGroup.Kind.Value(GPU_KIND), (name, kind)
    finally:
        grpc.close()


def test_served_cuda_models_answer_what_the_cpu_runtime_answers(
        server: Any, cpu_answers: dict[str, np.ndarray]) -> None:
    """REST binary through the project's client, REST JSON as a plain V2 document, gRPC
    through tritonclient. (Not tritonclient.http: it needs geventhttpclient <= 2.0.2, which
    has no wheel for the GPU machine's Python 3.12; its REST client is tested on the CPU.)"""
    import tritonclient.grpc as grpcclient

    from shipyard.client import Client

    rest = Client(f"http://{server.http_url}")
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    x = _images(16, 0)  # cpu_answers' images
    try:
        for name, (fmt, _, dtype) in SERVED.items():
            out_name = OUT[fmt]
            for rows in (1, 4, 7, 16):  # a captured size, a padded one, above the largest
                batch = x[:rows]
                want = cpu_answers[fmt][:rows]
                got = rest.infer(name, {"image": batch})[out_name]
                assert got.dtype == np.float32 and got.shape == (rows, 10)
                _close(got, want, dtype, f"{name} REST binary {rows} rows")
                doc = {"inputs": [{"name": "image", "datatype": "FP32",
                                   "shape": list(batch.shape),
                                   "data": batch.ravel().tolist()}]}
                status, _, body = http_call(server, "POST", f"/v2/models/{name}/infer",
                                            json.dumps(doc).encode(),
                                            {"Content-Type": "application/json"})
                assert status == 200, body
                (answer,) = [o for o in json.loads(body)["outputs"] if o["name"] == out_name]
                assert answer["datatype"] == "FP32" and answer["shape"] == [rows, 10]
                got = np.asarray(answer["data"], np.float32).reshape(rows, 10)
                _close(got, want, dtype, f"{name} REST JSON {rows} rows")
                ginp = grpcclient.InferInput("image", list(batch.shape), "FP32")
                ginp.set_data_from_numpy(batch)
                got = grpc.infer(name, [ginp]).as_numpy(out_name)
                assert got.dtype == np.float32 and got.shape == (rows, 10)
                _close(got, want, dtype, f"{name} gRPC {rows} rows")
    finally:
        rest.close()
        grpc.close()


def test_a_bad_input_on_cuda_is_the_callers_error(server: Any,
                                                  cpu_answers: dict[str, np.ndarray]) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException


    def post(name: str, shape: list[int], datatype: str) -> tuple[int, dict[str, Any]]:
        data = np.zeros(shape, np.float32).ravel().tolist()
        doc = {"inputs": [{"name": "image", "datatype": datatype, "shape": shape,
                           "data": data}]}
        status, _, body = http_call(server, "POST", f"/v2/models/{name}/infer",
                                    json.dumps(doc).encode(),
                                    {"Content-Type": "application/json"})
        return status, json.loads(body)

    for name in ("cnn_graphs", "cnn_ts"):
        status, doc = post(name, [2, 1, 27, 28], "FP32")
        assert status == 400, (name, status, doc)
        assert "[-1, 1, 28, 28]" in doc["error"], doc
        status, doc = post(name, [2, 1, 28, 28], "FP64")
        assert status == 400, (name, status, doc)
        status, doc = post(name, [17, 1, 28, 28], "FP32")  # above max_batch_size
        assert 400 <= status < 500, (name, status, doc)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        ginp = grpcclient.InferInput("image", [2, 1, 27, 28], "FP32")
        ginp.set_data_from_numpy(np.zeros((2, 1, 27, 28), np.float32))
        with pytest.raises(InferenceServerException) as info:
            grpc.infer("cnn_graphs", [ginp])
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT", info.value
        # the model still answers, right, after the refusals
        x = _images(16, 0)[:4]
        ginp = grpcclient.InferInput("image", [4, 1, 28, 28], "FP32")
        ginp.set_data_from_numpy(x)
        got = grpc.infer("cnn_graphs", [ginp]).as_numpy("OUTPUT0")
        _close(got, cpu_answers["pt2"][:4], "float32", "after the bad requests")
    finally:
        grpc.close()
