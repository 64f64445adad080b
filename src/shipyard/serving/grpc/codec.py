"""``ModelInferRequest`` / ``ModelInferResponse`` <-> core types."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.protocol.grpc import kserve_pb2 as pb
from shipyard.protocol.grpc.contents import CONTENTS as _CONTENTS
from shipyard.protocol.grpc.contents import parameters
from shipyard.protocol.wire import (
    check_datatype,
    check_shape,
    deadline_from_timeout_us,
    decode_raw,
    encode_raw,
)
from shipyard.serving.errors import InvalidInput
from shipyard.serving.shm import NO_REGIONS, SystemSharedMemory, output_places, shm_ref
from shipyard.serving.types import (
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

__all__ = ["decode_infer_request", "encode_infer_response", "parameters"]


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


def decode_infer_request(msg: pb.ModelInferRequest, deadline_s: float | None,
                         shm: SystemSharedMemory | None = None) -> InferenceRequest:
    """A ModelInferRequest -> InferenceRequest. As in Triton, ``raw_input_contents`` holds
    one entry per input that is not in shared memory, in the order of ``inputs``."""
    if not msg.inputs:
        raise InvalidInput("request has no inputs; add at least one InferInputTensor")
    regions = shm if shm is not None else NO_REGIONS
    raw = msg.raw_input_contents
    tensor_params = [parameters(t.parameters) if t.parameters else {} for t in msg.inputs]
    refs = [shm_ref(p, f"input {t.name!r}") if p else None
            for t, p in zip(msg.inputs, tensor_params, strict=True)]
    plain = sum(ref is None for ref in refs)
    if raw and len(raw) != plain:
        in_shm = len(msg.inputs) - plain
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but there are {len(msg.inputs)} inputs"
            + (f", {in_shm} of them in shared memory" if in_shm else "")
            + f"; send one entry per input not in shared memory ({plain}), in the order of "
            "'inputs'"
        )
    inputs = []
    index = 0
    for t, iparams, ref in zip(msg.inputs, tensor_params, refs, strict=True):
        name = t.name
        datatype = check_datatype(name, t.datatype)
        shape = check_shape(name, list(t.shape))
        typed = t.HasField("contents") and bool(t.contents.ListFields())
        if ref is not None:
            if typed:
                raise InvalidInput(
                    f"input {name!r} has shared_memory_region and also contents; send its "
                    "data one way only")
            data = regions.read_input(name, datatype, shape, ref)
        elif raw:
            if typed:
                raise InvalidInput(
                    f"input {name!r} sets contents but the request also carries "
                    "raw_input_contents; send every input in raw_input_contents or every one "
                    "in contents, not both (the protocol forbids contents with "
                    "raw_input_contents)"
                )
            data = decode_raw(name, datatype, shape, raw[index])
            index += 1
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise InvalidInput(
                    f"input {name!r}: {datatype} has no typed contents field; "
                    "send it in raw_input_contents"
                )
            data = _typed_contents(name, datatype, shape, getattr(t.contents, field), field)
        inputs.append(Tensor(name, datatype, shape, data, iparams))
    outputs = None
    if msg.outputs:
        outputs = [RequestedOutput(o.name, True, parameters(o.parameters) if o.parameters else {})
                   for o in msg.outputs]
        regions.check_outputs(outputs)
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


def encode_infer_response(response: InferenceResponse,
                          request: InferenceRequest | None = None,
                          shm: SystemSharedMemory | None = None) -> pb.ModelInferResponse:
    """An InferenceResponse -> ModelInferResponse. An output the request asked for in shared
    memory is written there and answered, as in Triton, with its parameters and an empty
    ``raw_output_contents`` entry (so the entries stay one per output)."""
    places = output_places(request.outputs) if request is not None and shm is not None else {}
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for out in response.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        ref = places.get(out.name)
        if ref is None:
            msg.raw_output_contents.append(encode_raw(out.data))
            continue
        assert shm is not None
        for key, value in shm.write_output(out, ref).items():
            if isinstance(value, str):
                tensor.parameters[key].string_param = value
            else:
                tensor.parameters[key].int64_param = value
        msg.raw_output_contents.append(b"")
    return msg
