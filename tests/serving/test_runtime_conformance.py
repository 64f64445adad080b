"""The runtime contract (DESIGN.md, convention 4): every registered runtime passes
:func:`shipyard.serving.runtimes.testing.check_runtime`. A new runtime adds its case here (or
calls the function from its own test module)."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
from onnx_models import add_sub_model, string_model

from shipyard.repository.config import Backend
from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InferenceFailed
from shipyard.serving.model import ModelVersion
from shipyard.serving.runtimes import RUNTIMES
from shipyard.serving.runtimes.testing import ConformanceCase, check_runtime
from shipyard.serving.types import InferenceRequest, Tensor

CASES = {
    "onnx": ConformanceCase("onnx", add_sub=add_sub_model, echo_text=string_model),
}


@pytest.mark.parametrize("backend", sorted(CASES))
def test_runtime_conforms(backend: str, tmp_path: Path) -> None:
    check_runtime(CASES[backend], tmp_path)


def test_every_config_backend_has_a_runtime() -> None:
    assert set(RUNTIMES) == set(typing.get_args(Backend)) - {"ensemble"}


def test_the_suite_catches_a_runtime_that_breaks_the_contract(tmp_path: Path) -> None:
    # an ONNX model whose outputs are swapped fails the add_sub rule
    def swapped(folder: Path) -> None:
        add_sub_model(folder / "model.onnx")
        import onnx

        model = onnx.load(folder / "model.onnx")
        for node in model.graph.node:  # Add now writes OUTPUT1, Sub OUTPUT0
            node.output[:] = [{"OUTPUT0": "OUTPUT1", "OUTPUT1": "OUTPUT0"}[o]
                              for o in node.output]
        onnx.save(model, folder / "model.onnx")

    with pytest.raises(AssertionError):
        check_runtime(ConformanceCase("onnx", add_sub=swapped), tmp_path)


def test_an_unbatched_output_is_refused_not_sliced(tmp_path: Path) -> None:
    """A model that says it batches but returns an output without the batch dimension must
    fail loudly (the batcher would slice it by rows)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "1").mkdir()
    onnx.save(model, tmp_path / "1" / "model.onnx")
    cfg = ModelConfig.model_validate({"name": "m", "max_batch_size": 8,
                                      "warmup": {"enabled": False}})
    mv = ModelVersion("m", 1, tmp_path / "1", cfg)
    mv.load()
    assert mv.ready, mv.reason
    data = np.ones((3, 4), np.float32)
    request = InferenceRequest("m", inputs=[Tensor("x", "FP32", (3, 4), data)])
    import asyncio

    async def call() -> None:
        try:
            with pytest.raises(InferenceFailed, match="output 'y' has shape \\[4\\]"):
                await mv.infer(request)
        finally:
            mv.unload()

    asyncio.run(call())


def test_warm_up_repeats_rows_up_to_each_runtime_batch_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ModelVersion warms up at each of the runtime's ``warmup_batch_sizes()`` (those within
    max_batch_size), repeating the warm-up request's rows, for any runtime."""
    from shipyard.serving.runtimes.onnx import OnnxRuntime

    add_sub_model(tmp_path / "1")
    seen: list[tuple[int, float]] = []
    predict = OnnxRuntime.predict

    def recording(self: OnnxRuntime, inputs: dict[str, np.ndarray], outputs: list[str]
                  ) -> list[np.ndarray]:
        seen.append((inputs["INPUT0"].shape[0], float(inputs["INPUT0"].sum())))
        return predict(self, inputs, outputs)

    monkeypatch.setattr(OnnxRuntime, "predict", recording)
    monkeypatch.setattr(OnnxRuntime, "warmup_batch_sizes", lambda self: [5, 3, 64])
    rows = [[1.0] * 16, [2.0] * 16]
    cfg = ModelConfig.model_validate({
        "name": "m", "max_batch_size": 8,
        "warmup": {"inputs": {n: {"shape": [2, 16], "data": rows}
                              for n in ("INPUT0", "INPUT1")}}})
    mv = ModelVersion("m", 1, tmp_path / "1", cfg)
    mv.load()
    assert mv.ready, mv.reason
    # the config's 2 rows, then rows 1,2,1 (sum 64) and 1,2,1,2,1 (sum 112); 64 > max_batch_size
    assert seen == [(2, 48.0), (3, 64.0), (5, 112.0)]
    mv.unload()
