"""ONNX models through ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from shipyard.serving.errors import InvalidInput
from shipyard.serving.runtimes.base import DeviceKind, Runtime
from shipyard.serving.types import Array, TensorSpec

__all__ = ["OnnxRuntime"]


_ONNX_TO_V2 = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _spec(arg: Any, model: str) -> TensorSpec:
    datatype = _ONNX_TO_V2.get(arg.type)
    if datatype is None:
        raise InvalidInput(
            f"model {model!r}: tensor {arg.name!r} has type {arg.type}, which Shipyard cannot "
            f"serve; supported: {sorted(_ONNX_TO_V2)}"
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


class OnnxRuntime(Runtime):
    """One ``onnxruntime.InferenceSession``."""

    backend = "onnx"
    filenames = ("model.onnx",)
    platform = "onnxruntime_onnx"
    triton_backend = "onnxruntime"
    error_map = (
        (ort_errors.InvalidArgument, InvalidInput),
        (ort_errors.InvalidGraph, InvalidInput),
        (ort_errors.InvalidProtobuf, InvalidInput),
    )

    session: ort.InferenceSession | None = None

    @property
    def device_kind(self) -> DeviceKind:
        used = self.session.get_providers() if self.session is not None else []
        return "KIND_GPU" if used and used[0] != "CPUExecutionProvider" else "KIND_CPU"

    def load(self) -> None:
        opts = ort.SessionOptions()
        rt = self.config.onnxruntime
        opts.intra_op_num_threads = rt.intra_op_threads
        opts.inter_op_num_threads = rt.inter_op_threads
        opts.graph_optimization_level = _LEVELS[rt.graph_optimization_level]
        opts.log_severity_level = 3
        available = ort.get_available_providers()
        providers = rt.providers or [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
        ]
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidInput(
                f"model {self.config.name!r}: cannot load {str(self.path)!r}: {exc}"
            ) from exc
        self._inputs = [_spec(a, self.config.name) for a in self.session.get_inputs()]
        self._outputs = [_spec(a, self.config.name) for a in self.session.get_outputs()]

    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        assert self.session is not None, "predict() before load()"
        return [np.asarray(r) for r in self.session.run(outputs, inputs)]

    def unload(self) -> None:
        self.session = None
