"""The runtime contract (DESIGN.md, convention 4): every runtime passes this suite.

``load`` / ``metadata`` / ``predict`` / ``unload``, with runtime-specific exceptions translated
into Shipyard's errors where they leave the runtime. Today the only runtime is ONNX; a new one
adds its model builders to ``CASES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from onnx_models import add_sub_model, string_model

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput, ShipyardError
from shipyard.serving.runtimes import Runtime, create_runtime
from shipyard.serving.types import TensorSpec

#: backend -> (builder of a two-input FP32 model "add_sub", builder of a string model)
CASES: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path]]] = {
    "onnx": (lambda d: add_sub_model(d / "model.onnx"), lambda d: string_model(d / "model.onnx")),
}


def _runtime(backend: str, path: Path) -> Runtime:
    return create_runtime(path, ModelConfig.model_validate({"name": "m", "backend": backend}))


@pytest.mark.parametrize("backend", sorted(CASES))
def test_load_metadata_predict_unload(backend: str, tmp_path: Path) -> None:
    rt = _runtime(backend, CASES[backend][0](tmp_path))
    rt.load()
    inputs, outputs = rt.metadata()
    assert inputs == [TensorSpec("INPUT0", "FP32", (-1, 16)),
                      TensorSpec("INPUT1", "FP32", (-1, 16))]
    assert [o.name for o in outputs] == ["OUTPUT0", "OUTPUT1"]
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), np.float32)
    out0, out1 = rt.predict({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    np.testing.assert_array_equal(out0, a + b)
    np.testing.assert_array_equal(out1, a - b)
    (only1,) = rt.predict({"INPUT0": a, "INPUT1": b}, ["OUTPUT1"])
    np.testing.assert_array_equal(only1, a - b)
    rt.unload()


@pytest.mark.parametrize("backend", sorted(CASES))
def test_text_inputs_arrive_as_str(backend: str, tmp_path: Path) -> None:
    rt = _runtime(backend, CASES[backend][1](tmp_path))
    rt.load()
    (spec,), _ = rt.metadata()
    assert spec.datatype == "BYTES"
    text = np.array([["héllo"], [""]], dtype=object)
    (out,) = rt.predict({spec.name: text}, [rt.metadata()[1][0].name])
    assert [v if isinstance(v, str) else v.decode() for v in out.reshape(-1)] == ["héllo", ""]


@pytest.mark.parametrize("backend", sorted(CASES))
def test_unreadable_file_is_invalid_input(backend: str, tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(InvalidInput, match="cannot load"):
        _runtime(backend, bad).load()


@pytest.mark.parametrize("backend", sorted(CASES))
def test_runtime_errors_are_translated(backend: str, tmp_path: Path) -> None:
    rt = _runtime(backend, CASES[backend][0](tmp_path))
    rt.load()
    wrong = {"INPUT0": np.ones((2, 16), np.float64), "INPUT1": np.ones((2, 16), np.float32)}
    with pytest.raises(ShipyardError) as info:  # never onnxruntime's own exception types
        rt.predict(wrong, ["OUTPUT0"])
    assert isinstance(info.value, InvalidInput | InferenceFailed)
    assert "'m'" in info.value.message
