"""The typed parts of the KServe V2 gRPC messages both halves read and write: which
``InferTensorContents`` field carries each datatype, and ``map<string, InferParameter>``
to and from plain dicts. Works on messages of any descriptor pool; imports no generated module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTENTS", "parameters", "set_parameter"]

#: V2 datatype -> the ``InferTensorContents`` field that carries it (FP16 has none: raw only)
CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict."""
    out = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which else None
    return out


def set_parameter(params: Any, key: str, value: bool | int | float | str) -> None:
    """Set ``params[key]`` (a ``map<string, InferParameter>``) to ``value``, in the field of its
    type (bool, int64, double, string)."""
    entry = params[key]
    if isinstance(value, bool):
        entry.bool_param = value
    elif isinstance(value, int):
        entry.int64_param = value
    elif isinstance(value, float):
        entry.double_param = value
    elif isinstance(value, str):
        entry.string_param = value
    else:
        raise TypeError(f"parameter {key!r}: {type(value).__name__} is not bool, int, float "
                        "or str")
