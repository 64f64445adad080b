"""ONNX models through ONNX Runtime.

A graph that imports the ``ai.onnx.contrib`` domain (onnxruntime-extensions' operators: a text
model with its BPE tokenizer inside, ``shipyard publish --tokenizer graph``) gets that
package's custom-operator library registered before its session is made; the domains are read
from the file's ``opset_import`` fields without parsing the graph. Without the package such a
model fails to load, naming the model and ``pip install 'shipyard[text-graph]'``.

**Devices.** ``onnxruntime.providers`` empty (the default): CUDA when this ONNX Runtime has it
(the onnxruntime-gpu package), else CPU. Listed providers this build lacks are dropped with a
warning in the log; when none is left (``[CUDAExecutionProvider]``, which a Triton config's
``instance_group`` ``KIND_GPU`` means, with the CPU-only onnxruntime package) the model fails
to load, saying which providers there are. A session that ONNX Runtime had to start on another
provider than the first asked for (CUDA libraries that did not load) is logged too; the model
config's ``instance_group`` kind says where it really runs.
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from shipyard.serving.errors import InvalidInput
from shipyard.serving.runtimes.base import DeviceKind, Runtime
from shipyard.serving.types import Array, TensorSpec

__all__ = ["CONTRIB_DOMAIN", "OnnxRuntime", "opset_domains"]

log = logging.getLogger("shipyard.runtime.onnx")

#: the domain of onnxruntime-extensions' custom operators
CONTRIB_DOMAIN = "ai.onnx.contrib"
_OPSET_IMPORT = 8  # ModelProto.opset_import
_DOMAIN = 1  # OperatorSetIdProto.domain


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


def _varint(data: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes | mmap.mmap, start: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of the length-delimited fields of one protobuf message;
    other fields are skipped."""
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            out.append((number, pos, pos + size))
            pos += size
        else:
            raise ValueError(f"wire type {wire}")
    if pos != end:
        raise ValueError("truncated message")
    return out


def opset_domains(path: Path) -> set[str] | None:
    """The operator domains an ONNX file imports (``""`` is the default one), read from its
    top-level ``opset_import`` fields: the graph is skipped, not parsed. None when the file
    is not a readable protobuf (ONNX Runtime then says what is wrong with it)."""
    try:
        with path.open("rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            domains: set[str] = set()
            for number, start, end in _fields(data, 0, len(data)):
                if number != _OPSET_IMPORT:
                    continue
                domain = ""
                for inner, a, b in _fields(data, start, end):
                    if inner == _DOMAIN:
                        domain = data[a:b].decode("utf-8")
                domains.add(domain)
            return domains
    except (OSError, ValueError):  # empty, unreadable or not a protobuf
        return None


def _register_contrib(opts: ort.SessionOptions, model: str, path: Path) -> None:
    """onnxruntime-extensions' operators, for a graph that uses them."""
    from shipyard._ort_extensions import extensions_library

    library = extensions_library()
    if library is None:
        raise InvalidInput(
            f"model {model!r}: {str(path)!r} uses onnxruntime-extensions' operators (domain "
            f"{CONTRIB_DOMAIN}, e.g. a tokenizer inside the graph), which are not installed; "
            "pip install 'shipyard[text-graph]'"
        )
    opts.register_custom_ops_library(library)


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
        if CONTRIB_DOMAIN in (opset_domains(self.path) or ()):
            _register_contrib(opts, self.config.name, self.path)
        providers = self._providers(rt.providers)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise InvalidInput(
                f"model {self.config.name!r}: cannot load {str(self.path)!r}: {exc}"
            ) from exc
        used = self.session.get_providers()
        if providers and providers[0] not in used:  # e.g. CUDA's libraries did not load
            log.warning("model %s: onnxruntime.providers asks for %s first, but ONNX Runtime "
                        "runs it with %s (see its log for why)", self.config.name,
                        providers[0], used)
        self._inputs = [_spec(a, self.config.name) for a in self.session.get_inputs()]
        self._outputs = [_spec(a, self.config.name) for a in self.session.get_outputs()]

    def _providers(self, wanted: list[str]) -> list[str]:
        """The execution providers to ask for: ``onnxruntime.providers`` less those this
        build of ONNX Runtime lacks (logged; an error when none is left), or CUDA when
        available, then CPU."""
        available = ort.get_available_providers()
        if not wanted:
            return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                    if p in available]
        usable = [p for p in wanted if p in available]
        missing = [p for p in wanted if p not in available]
        hint = (" (CUDAExecutionProvider comes with the onnxruntime-gpu package, not "
                "onnxruntime)" if "CUDAExecutionProvider" in missing else "")
        if not usable:
            raise InvalidInput(
                f"model {self.config.name!r}: onnxruntime.providers is {wanted}, but this "
                f"ONNX Runtime ({ort.__version__}) has only {available}{hint}; list one of "
                "those, leave providers empty (CUDA when available, else CPU) or, for a "
                "Triton config, use instance_group kind KIND_CPU or KIND_AUTO")
        if missing:
            log.warning("model %s: onnxruntime.providers %s are not in this ONNX Runtime "
                        "(%s, which has %s)%s; running with %s", self.config.name, missing,
                        ort.__version__, available, hint, usable)
        return usable

    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        assert self.session is not None, "predict() before load()"
        return [np.asarray(r) for r in self.session.run(outputs, inputs)]

    def unload(self) -> None:
        self.session = None
