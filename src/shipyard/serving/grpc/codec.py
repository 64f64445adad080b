"""``ModelInferRequest`` / ``ModelInferResponse`` <-> core types."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.serving.codecs import (
    check_datatype,
    check_shape,
    deadline_from_timeout_us,
    decode_raw,
    encode_raw,
)
from shipyard.serving.errors import InvalidInput
from shipyard.serving.grpc.protos import kserve_pb2 as pb
from shipyard.serving.types import (
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

__all__ = ["decode_infer_request", "encode_infer_response", "parameters"]

#: V2 datatype -> the InferTensorContents field that carries it
_CONTENTS = {
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


def _typed_contents(
    name: str, datatype: str, shape: tuple[int, ...], values: Any, field: str
) -> npt.NDArray[Any]:
    """A typed ``*_contents`` field -> array; the count is checked before any conversion."""
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: {field} has {len(values)} element(s) but shape {list(shape)} "
            f"needs {count}"
        )
    if datatype == "BYTES":
        data = np.empty(count, dtype=object)
        data[:] = list(values)
        return data.reshape(shape)
    dtype = DATATYPES[datatype]
    try:  # protobuf already typed the values; narrower ints are range-checked by numpy
        return np.fromiter(values, dtype=dtype, count=count).reshape(shape)
    except (OverflowError, ValueError):
        info = np.iinfo(dtype)
        bad = next(v for v in values if not info.min <= v <= info.max)
        raise InvalidInput(
            f"input {name!r}: value {bad} in {field} is out of range for {datatype} "
            f"[{info.min}, {info.max}]"
        ) from None


def decode_infer_request(msg: pb.ModelInferRequest, deadline_s: float | None) -> InferenceRequest:
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but there are {len(msg.inputs)} inputs; "
            "send one entry per input, in the order of 'inputs'"
        )
    if not msg.inputs:
        raise InvalidInput("request has no inputs; add at least one InferInputTensor")
    inputs = []
    for i, t in enumerate(msg.inputs):
        name = t.name
        datatype = check_datatype(name, t.datatype)
        shape = check_shape(name, list(t.shape))
        if raw:
            if t.HasField("contents") and t.contents.ListFields():
                raise InvalidInput(
                    f"input {name!r} sets contents but the request also carries "
                    "raw_input_contents; send every input in raw_input_contents or every one "
                    "in contents, not both (the protocol forbids contents with "
                    "raw_input_contents)"
                )
            data = decode_raw(name, datatype, shape, raw[i])
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise InvalidInput(
                    f"input {name!r}: {datatype} has no typed contents field; "
                    "send it in raw_input_contents"
                )
            data = _typed_contents(name, datatype, shape, getattr(t.contents, field), field)
        inputs.append(Tensor(name, datatype, shape, data))
    outputs = None
    if msg.outputs:
        outputs = [RequestedOutput(o.name, True, parameters(o.parameters) if o.parameters else {})
                   for o in msg.outputs]
    params = parameters(msg.parameters) if msg.parameters else {}
    request = InferenceRequest(
        msg.model_name, msg.model_version, msg.id, inputs, outputs, params
    )
    request.deadline_ns = deadline_from_timeout_us(params.get("timeout"))
    if deadline_s is not None:
        grpc_deadline = time.monotonic_ns() + int(deadline_s * 1e9)
        if request.deadline_ns is None or grpc_deadline < request.deadline_ns:
            request.deadline_ns = grpc_deadline
    return request


def encode_infer_response(response: InferenceResponse) -> pb.ModelInferResponse:
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for out in response.outputs:
        msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        msg.raw_output_contents.append(encode_raw(out.data))
    return msg
