"""``ModelInferRequest`` / ``ModelInferResponse`` <-> core types."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from shipyard.serving.codecs import (
    check_datatype,
    check_shape,
    decode_json_data,
    decode_raw,
    encode_raw,
)
from shipyard.serving.errors import InvalidInput
from shipyard.serving.grpc.protos import kserve_pb2 as pb
from shipyard.serving.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor

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
            data = decode_raw(name, datatype, shape, raw[i])
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise InvalidInput(
                    f"input {name!r}: {datatype} has no typed contents field; "
                    "send it in raw_input_contents"
                )
            values = getattr(t.contents, field)
            if datatype == "BYTES":
                if len(values) != math.prod(shape):
                    raise InvalidInput(
                        f"input {name!r}: bytes_contents has {len(values)} element(s) but "
                        f"shape {list(shape)} needs {math.prod(shape)}"
                    )
                data = np.empty(len(values), dtype=object)
                data[:] = list(values)
                data = data.reshape(shape)
            else:
                data = decode_json_data(name, datatype, shape, list(values))
        inputs.append(Tensor(name, datatype, shape, data))
    outputs = None
    if msg.outputs:
        outputs = [RequestedOutput(o.name, True) for o in msg.outputs]
    params = parameters(msg.parameters) if msg.parameters else {}
    request = InferenceRequest(
        msg.model_name, msg.model_version, msg.id, inputs, outputs, params
    )
    timeout_us = params.get("timeout")
    if isinstance(timeout_us, int) and timeout_us > 0:
        request.deadline_ns = time.monotonic_ns() + timeout_us * 1000
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
