"""The torch runtime (``shipyard.serving.runtimes.torch``): the conformance suite for both file
formats (``model.pt2``, ``model.pt``), metadata, options, errors, lazy import of torch, warm-up
at the preferred batch sizes, and a real ``shipyard serve`` driven by tritonclient over REST and
gRPC."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from conftest import ROOT, start_server  # noqa: E402
from torch_models import (  # noqa: E402
    ADD_SUB_TENSORS,
    CNN_TENSORS,
    AddSub,
    DictOut,
    add_sub_pt,
    add_sub_pt2,
    add_sub_pt2_aot,
    cnn_pt,
    cnn_pt2,
    cnn_pt2_aot,
    save_pt,
    save_pt2,
    small_cnn,
)

from shipyard.serving.config import ModelConfig  # noqa: E402
from shipyard.serving.errors import InferenceFailed, InvalidInput  # noqa: E402
from shipyard.serving.model import ModelVersion  # noqa: E402
from shipyard.serving.runtimes import create_runtime  # noqa: E402
from shipyard.serving.runtimes.testing import ConformanceCase, check_runtime  # noqa: E402
from shipyard.serving.runtimes.torch import TorchRuntime  # noqa: E402
from shipyard.serving.types import InferenceRequest, Tensor  # noqa: E402

SRC = ROOT / "src"


def _runtime(folder: Path, **config: Any) -> TorchRuntime:
    cfg = ModelConfig.model_validate({"name": "m", "backend": "torch", **config})
    rt = create_runtime(folder, cfg)
    assert isinstance(rt, TorchRuntime)
    return rt


def _child(code: str, *, tests_on_path: bool = False) -> subprocess.CompletedProcess[str]:
    paths = [str(SRC), *([str(ROOT / "tests")] if tests_on_path else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=ROOT)


# -- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pt2", "pt2 eager", "pt2 script", "pt2 aot", "pt"])
def test_torch_runtime_conforms(fmt: str, tmp_path: Path) -> None:
    if fmt.startswith("pt2"):
        execution = fmt.partition(" ")[2] or "auto"
        case = ConformanceCase("torch", add_sub=add_sub_pt2_aot if execution == "aot"
                               else add_sub_pt2, echo_text=None,
                               config={"parameters": {"execution": execution}})
    else:
        case = ConformanceCase("torch", add_sub=add_sub_pt, echo_text=None,
                               config=ADD_SUB_TENSORS)
    check_runtime(case, tmp_path)


def test_pt2_is_preferred_and_platforms_are_truthful(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    add_sub_pt(tmp_path)
    rt = _runtime(tmp_path)
    assert rt.path.name == "model.pt2"
    assert TorchRuntime.platform_for("model.pt2") == "torch_export"
    assert TorchRuntime.platform_for("model.pt") == "pytorch_libtorch"


def test_importing_the_runtime_does_not_import_torch(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    res = _child(f"""
        import sys
        import shipyard.serving.runtimes.torch
        from pathlib import Path
        from shipyard.serving.config import ModelConfig
        from shipyard.serving.runtimes import RUNTIMES, create_runtime, runtime_class
        classes = [runtime_class(b) for b in RUNTIMES]
        rt = create_runtime(Path({str(tmp_path)!r}), ModelConfig(name="m"))
        assert type(rt).__name__ == "TorchRuntime", rt
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_without_torch_loading_names_the_extra(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    res = _child(f"""
        import sys
        sys.modules["torch"] = None  # import torch raises ImportError
        from pathlib import Path
        from shipyard.serving.config import ModelConfig
        from shipyard.serving.errors import InvalidInput
        from shipyard.serving.runtimes import create_runtime
        try:
            create_runtime(Path({str(tmp_path)!r}), ModelConfig(name="x")).load()
        except InvalidInput as exc:
            print(exc.message)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        "model 'x' needs the torch runtime: pip install 'shipyard[torch]'"), res.stdout


def test_both_formats_load_without_the_training_code(tmp_path: Path) -> None:
    """A fresh process that cannot import the models' classes (tests/ is off its path) loads
    both files and gets the same numbers."""
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.inference_mode():
        expected = small_cnn(0)(torch.from_numpy(x)).numpy()
    cnn_pt2(tmp_path / "pt2")
    cnn_pt(tmp_path / "pt")
    np.save(tmp_path / "x.npy", x)
    res = _child(f"""
        import sys, json
        from pathlib import Path
        import numpy as np
        from shipyard.serving.config import ModelConfig
        from shipyard.serving.runtimes import create_runtime
        tmp = Path({str(tmp_path)!r})
        x = np.load(tmp / "x.npy")
        out = {{}}
        for fmt, cfg in (("pt2", {{}}), ("pt", {CNN_TENSORS!r})):
            rt = create_runtime(tmp / fmt, ModelConfig.model_validate({{"name": "m", **cfg}}))
            rt.load()
            name = rt.metadata()[1][0].name
            out[fmt] = rt.run({{rt.metadata()[0][0].name: x}}, [name])[0].tolist()
        assert "torch_models" not in sys.modules
        assert not any("SmallCNN" in dir(m) for m in list(sys.modules.values()))
        print(json.dumps(out))
    """)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    for fmt in ("pt2", "pt"):
        np.testing.assert_allclose(np.array(got[fmt]), expected, rtol=1e-5, atol=1e-5)


# -- metadata -----------------------------------------------------------------------------------


def test_pt2_metadata_comes_from_the_program(tmp_path: Path) -> None:
    cnn_pt2(tmp_path)
    rt = _runtime(tmp_path)
    rt.load()
    inputs, outputs = rt.metadata()
    assert [(s.name, s.datatype, s.shape) for s in inputs] == [("image", "FP32",
                                                                 (-1, 1, 28, 28))]
    assert [(s.name, s.datatype, s.shape) for s in outputs] == [("OUTPUT0", "FP32", (-1, 10))]
    assert rt.device_kind == "KIND_CPU"


def test_pt2_outputs_take_dict_keys_or_the_configs_names(tmp_path: Path) -> None:
    save_pt2(DictOut(), (torch.ones(2, 4),), tmp_path / "dict")
    rt = _runtime(tmp_path / "dict")
    rt.load()
    assert [s.name for s in rt.metadata()[1]] == ["total", "double"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    double, total = rt.run({"x": x}, ["double", "total"])
    np.testing.assert_allclose(double, 2 * x)
    np.testing.assert_allclose(total, x.sum(1, keepdims=True))

    add_sub_pt2(tmp_path / "renamed")
    outs = [{"name": n, "datatype": "FP32", "shape": [16]} for n in ("sum", "diff")]
    rt = _runtime(tmp_path / "renamed", outputs=outs)
    rt.load()
    assert [s.name for s in rt.metadata()[1]] == ["sum", "diff"]
    with pytest.raises(InvalidInput, match="declares 1 outputs"):
        _runtime(tmp_path / "renamed", outputs=outs[:1]).load()


def test_pt_needs_inputs_and_outputs_in_config(tmp_path: Path) -> None:
    add_sub_pt(tmp_path)
    with pytest.raises(InvalidInput, match=r"add inputs and outputs to config\.yaml"):
        _runtime(tmp_path).load()
    with pytest.raises(InvalidInput, match=r"add outputs to config\.yaml"):
        _runtime(tmp_path, inputs=ADD_SUB_TENSORS["inputs"]).load()


def test_pt_dict_outputs_map_by_name(tmp_path: Path) -> None:
    save_pt(DictOut(), (torch.ones(2, 4),), tmp_path)
    rt = _runtime(tmp_path, inputs=[{"name": "x", "datatype": "FP32", "shape": [4]}],
                  outputs=[{"name": "double", "datatype": "FP32", "shape": [4]},
                           {"name": "total", "datatype": "FP32", "shape": [1]}])
    rt.load()
    x = np.ones((3, 4), np.float32)
    double, total = rt.run({"x": x}, ["double", "total"])
    assert double.shape == (3, 4) and total.shape == (3, 1)
    np.testing.assert_allclose(total, 4.0)


def test_exported_dimension_ranges_are_checked(tmp_path: Path) -> None:
    save_pt2(AddSub(), (torch.ones(2, 16), torch.ones(2, 16)), tmp_path,
             batch=torch.export.Dim("batch", min=1, max=8))
    rt = _runtime(tmp_path)
    rt.load()
    nine = np.ones((9, 16), np.float32)
    with pytest.raises(InvalidInput, match=r"dimension 0 is 9, the exported program takes 1\.\.8"):
        rt.run({"INPUT0": nine, "INPUT1": nine}, ["OUTPUT0"])
    with pytest.raises(InvalidInput, match="for the same exported dimension"):
        rt.run({"INPUT0": nine[:3], "INPUT1": nine[:4]}, ["OUTPUT0"])


# -- execution -------------------------------------------------------------------------------


class Reshaping(torch.nn.Module):
    """A graph that computes a size from its input (``x.shape[0]``: a SymInt node)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 2).reshape(x.shape[0], -1)


@pytest.mark.parametrize("execution", ["auto", "eager", "script", "aot", "aot packaged"])
def test_every_execution_answers_what_torch_answers(execution: str, tmp_path: Path) -> None:
    (cnn_pt2_aot if execution == "aot packaged" else cnn_pt2)(tmp_path)
    rt = _runtime(tmp_path, max_batch_size=16,
                  parameters={"execution": execution.split()[0]})
    rt.load()
    assert rt.execution == ("script" if execution == "auto" else execution.split()[0])
    x = np.random.default_rng(2).standard_normal((16, 1, 28, 28)).astype(np.float32)
    with torch.inference_mode():
        expected = small_cnn(0)(torch.from_numpy(x)).numpy()
    for rows in (16, 3, 1):  # other batch sizes than the traced one
        (out,) = rt.run({"image": x[:rows]}, ["OUTPUT0"])
        np.testing.assert_allclose(out, expected[:rows], rtol=1e-5, atol=1e-5)


def test_script_needs_a_graph_without_computed_sizes(tmp_path: Path) -> None:
    save_pt2(Reshaping(), (torch.ones(2, 2, 3),), tmp_path)
    with pytest.raises(InvalidInput, match=r"execution: script cannot run this program: node "
                       r".* computes a size from the inputs; use execution: eager"):
        _runtime(tmp_path, parameters={"execution": "script"}).load()
    rt = _runtime(tmp_path)  # auto
    rt.load()
    assert rt.execution == "eager"
    x = np.ones((5, 2, 3), np.float32)
    np.testing.assert_array_equal(rt.run({"x": x}, ["OUTPUT0"])[0], 2 * x.reshape(5, 6))


def test_script_keeps_dict_outputs(tmp_path: Path) -> None:
    save_pt2(DictOut(), (torch.ones(2, 4),), tmp_path)
    rt = _runtime(tmp_path, parameters={"execution": "script"})
    rt.load()
    double, total = rt.run({"x": np.ones((3, 4), np.float32)}, ["double", "total"])
    np.testing.assert_allclose(double, 2.0)
    np.testing.assert_allclose(total, 4.0)


def test_execution_options_that_cannot_apply_are_refused(tmp_path: Path) -> None:
    add_sub_pt(tmp_path / "pt")
    with pytest.raises(InvalidInput, match=r"execution: aot needs a torch.export program"):
        _runtime(tmp_path / "pt", parameters={"execution": "aot"}, **ADD_SUB_TENSORS).load()
    add_sub_pt2(tmp_path / "pt2")
    with pytest.raises(InvalidInput, match=r"compile and execution: script exclude"):
        _runtime(tmp_path / "pt2", parameters={"execution": "script", "compile": True}).load()
    with pytest.raises(InvalidInput, match=r"execution: aot runs the program as exported"):
        _runtime(tmp_path / "pt2", parameters={"execution": "aot", "dtype": "bfloat16"}).load()
    rt = _runtime(tmp_path / "pt2", parameters={"compile": True})
    rt.load()
    assert rt.execution == "eager"  # auto with compile: torch.compile wraps the eager module


# -- options and errors ---------------------------------------------------------------------


def test_options_are_validated(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    with pytest.raises(InvalidInput, match=r"parameters of the torch backend: speed: unknown"):
        _runtime(tmp_path, parameters={"speed": "max"}).load()
    with pytest.raises(InvalidInput, match="device"):
        _runtime(tmp_path, parameters={"device": "tpu"}).load()
    with pytest.raises(InvalidInput, match="dtype"):
        _runtime(tmp_path, parameters={"dtype": "int8"}).load()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    with pytest.raises(InvalidInput, match="sees no CUDA device"):
        _runtime(tmp_path, parameters={"device": "cuda:0"}).load()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_cuda_graphs_are_ignored_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    add_sub_pt2(tmp_path)
    rt = _runtime(tmp_path, parameters={"cuda_graphs": True, "device": "auto"},
                  dynamic_batching={"preferred_batch_sizes": [4]})
    with caplog.at_level(logging.INFO, logger="shipyard.runtime.torch"):
        rt.load()
    assert "cuda_graphs ignored" in caplog.text
    assert rt.device_kind == "KIND_CPU"


def test_compile_needs_pt2(tmp_path: Path) -> None:
    add_sub_pt(tmp_path)
    with pytest.raises(InvalidInput, match=r"compile needs a torch.export program"):
        _runtime(tmp_path, parameters={"compile": True}, **ADD_SUB_TENSORS).load()


def test_bfloat16_computes_in_bf16_and_answers_fp32(tmp_path: Path) -> None:
    cnn_pt2(tmp_path)
    rt = _runtime(tmp_path, parameters={"dtype": "bfloat16", "threads": 2})
    rt.load()
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    (out,) = rt.run({"image": x}, ["OUTPUT0"])
    assert out.dtype == np.float32
    with torch.inference_mode():
        expected = small_cnn(0)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, atol=0.05, rtol=0.05)
    assert torch.get_num_threads() == 2


def test_errors_are_translated_by_class(tmp_path: Path) -> None:
    add_sub_pt2(tmp_path)
    rt = _runtime(tmp_path)
    for exc, want in ((TypeError("t"), InvalidInput), (ValueError("v"), InvalidInput),
                      (IndexError("i"), InvalidInput), (RuntimeError("r"), InferenceFailed),
                      (KeyError("k"), InferenceFailed)):
        got = rt.translate(exc)
        assert type(got) is want, (exc, got)
        assert "'m'" in got.message


# -- ModelVersion: warm-up at the preferred batch sizes -------------------------------------


def test_warm_up_runs_each_preferred_batch_size(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    add_sub_pt2(tmp_path / "1")
    seen: list[int] = []
    predict = TorchRuntime.predict

    def recording(self: TorchRuntime, inputs: dict[str, Any], outputs: list[str]) -> Any:
        seen.append(inputs["INPUT0"].shape[0])
        return predict(self, inputs, outputs)

    monkeypatch.setattr(TorchRuntime, "predict", recording)
    cfg = ModelConfig.model_validate({
        "name": "m", "max_batch_size": 8,
        "dynamic_batching": {"preferred_batch_sizes": [8, 3, 16]},
        "warmup": {"inputs": {n: {"shape": [2, 16], "data": [1.0] * 32}
                              for n in ("INPUT0", "INPUT1")}}})
    mv = ModelVersion("m", 1, tmp_path / "1", cfg)
    mv.load()
    assert mv.ready, mv.reason
    assert seen == [2, 3, 8]  # the config's rows, then each size up to max_batch_size

    async def one() -> None:
        try:
            x = np.ones((1, 16), np.float32)
            resp = await mv.infer(InferenceRequest("m", inputs=[
                Tensor("INPUT0", "FP32", (1, 16), x), Tensor("INPUT1", "FP32", (1, 16), x)]))
            np.testing.assert_allclose(resp.outputs[0].data, 2 * x)
        finally:
            mv.unload()

    asyncio.run(one())


# -- a real server ------------------------------------------------------------------------------


def test_real_server_serves_torch_over_rest_and_grpc(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    cnn_pt2(repo / "cnn" / "1")
    (repo / "cnn" / "config.yaml").write_text(yaml.safe_dump(
        {"max_batch_size": 16, "dynamic_batching": {"preferred_batch_sizes": [4, 8]}}))
    cnn_pt(repo / "cnn_ts" / "1")
    (repo / "cnn_ts" / "config.yaml").write_text(yaml.safe_dump(
        {"max_batch_size": 16, **CNN_TENSORS}))
    module = small_cnn(0)
    rng = np.random.default_rng(7)
    server = start_server(repo)
    try:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        for model, platform, in_name, out_name in (
                ("cnn", "torch_export", "image", "OUTPUT0"),
                ("cnn_ts", "pytorch_libtorch", "image", "logits")):
            md = http.get_model_metadata(model)
            assert md["platform"] == platform
            assert md["inputs"] == [{"name": in_name, "datatype": "FP32",
                                     "shape": [-1, 1, 28, 28]}]
            assert md["outputs"] == [{"name": out_name, "datatype": "FP32", "shape": [-1, 10]}]
            assert grpc.get_model_metadata(model).platform == platform
            cfg = http.get_model_config(model)
            assert cfg["platform"] == platform and cfg["backend"] == "pytorch"
            assert cfg["instance_group"][0]["kind"] == "KIND_CPU"
            gcfg = grpc.get_model_config(model).config
            assert gcfg.platform == platform
            assert gcfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
            for rows in (1, 7):
                x = rng.standard_normal((rows, 1, 28, 28)).astype(np.float32)
                with torch.inference_mode():
                    expected = module(torch.from_numpy(x)).numpy()
                for binary in (True, False):
                    inp = httpclient.InferInput(in_name, list(x.shape), "FP32")
                    inp.set_data_from_numpy(x, binary_data=binary)
                    out = httpclient.InferRequestedOutput(out_name, binary_data=binary)
                    got = http.infer(model, [inp], outputs=[out]).as_numpy(out_name)
                    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
                ginp = grpcclient.InferInput(in_name, list(x.shape), "FP32")
                ginp.set_data_from_numpy(x)
                got = grpc.infer(model, [ginp]).as_numpy(out_name)
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        http.close()
        grpc.close()
    finally:
        server.stop()
