"""ONNX Runtime's execution providers (``onnxruntime.providers``) with the CPU-only
onnxruntime package: CUDA asked for alone is a clear load error, CUDA before CPU a logged
fallback; the model config then reports where the model runs. (With onnxruntime-gpu on a GPU
machine, tests/gpu/test_serving_cuda.py checks the CUDA side.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx_models import add_sub_model

from shipyard.repository.triton import config_from_json
from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.runtimes import create_runtime
from shipyard.serving.runtimes.base import Runtime

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(),
    reason="this onnxruntime has the CUDA provider (onnxruntime-gpu)")


def _runtime(folder: Path, config: ModelConfig) -> Runtime:
    add_sub_model(folder / "model.onnx")
    return create_runtime(folder, config)


def _config(**fields: Any) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "backend": "onnx", **fields})


def test_cuda_alone_without_the_cuda_provider_is_a_clear_load_error(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, _config(onnxruntime={"providers": ["CUDAExecutionProvider"]}))
    with pytest.raises(InvalidInput) as info:
        rt.load()
    message = info.value.message
    assert "model 'm'" in message and "['CUDAExecutionProvider']" in message, message
    assert "onnxruntime-gpu" in message and "CPUExecutionProvider" in message, message


def test_a_triton_kind_gpu_onnx_model_fails_to_load_saying_why(tmp_path: Path) -> None:
    config = config_from_json(
        '{"backend": "onnxruntime", "instance_group": [{"kind": "KIND_GPU", "count": 1}]}',
        "m", "the load request")
    assert config.onnxruntime.providers == ["CUDAExecutionProvider"]
    with pytest.raises(InvalidInput, match=r"KIND_CPU or KIND_AUTO"):
        _runtime(tmp_path, config).load()


def test_cuda_then_cpu_falls_back_to_cpu_with_a_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime(tmp_path, _config(onnxruntime={
        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}))
    with caplog.at_level(logging.WARNING, logger="shipyard.runtime.onnx"):
        rt.load()  # and no UserWarning from onnxruntime (warnings are errors here)
    assert "model m: onnxruntime.providers ['CUDAExecutionProvider'] are not in this ONNX " \
        "Runtime" in caplog.text, caplog.text
    assert rt.device_kind == "KIND_CPU"
    a = np.ones((2, 16), np.float32)
    (out,) = rt.run({"INPUT0": a, "INPUT1": a}, ["OUTPUT0"])
    np.testing.assert_array_equal(out, 2 * a)


def test_default_providers_load_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rt = _runtime(tmp_path, _config())
    with caplog.at_level(logging.WARNING, logger="shipyard.runtime.onnx"):
        rt.load()
    assert caplog.text == ""
    assert rt.device_kind == "KIND_CPU"
