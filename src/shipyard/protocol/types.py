"""Protocol-free request and response types, backed by numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DATATYPES",
    "Array",
    "InferenceRequest",
    "InferenceResponse",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "datatype_of",
    "numpy_dtype",
]

Array = npt.NDArray[Any]

#: KServe V2 datatype -> numpy dtype. BYTES tensors are object arrays of ``bytes``.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

_BY_NUMPY: dict[np.dtype[Any], str] = {v: k for k, v in DATATYPES.items()}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype; raises KeyError for an unknown one."""
    return DATATYPES[datatype]


def datatype_of(array: Array) -> str:
    """The V2 datatype of a numpy array (unicode and bytes arrays are BYTES)."""
    if array.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    return _BY_NUMPY[array.dtype]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: name, V2 datatype, full shape (-1 = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(slots=True)
class Tensor:
    """A named tensor. ``data`` already has ``shape`` and the dtype of ``datatype``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Array
    parameters: dict[str, Any] = field(default_factory=dict)
    #: set when the JSON data held nulls (decoded as NaN, or None for BYTES): the refusal a
    #: model whose runtime takes no missing values answers with
    null_refusal: str | None = None


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` is None when the client did not say."""

    name: str
    binary: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """One inference call, whichever protocol it came in on."""

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: absolute deadline on ``time.monotonic_ns()``'s clock, or None
    deadline_ns: int | None = None


@dataclass(slots=True)
class InferenceResponse:
    """The result of one inference call."""

    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
