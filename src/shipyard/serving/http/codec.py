"""KServe V2 REST request/response bodies: JSON and the binary tensor data extension."""

from __future__ import annotations

from typing import Any

import orjson

from shipyard.protocol.wire import (
    NULLABLE,
    check_datatype,
    check_shape,
    deadline_from_timeout_us,
    decode_json_data,
    decode_raw,
    encode_raw,
    to_json_data,
)
from shipyard.serving.errors import InvalidInput, brief
from shipyard.serving.shm import NO_REGIONS, SystemSharedMemory, output_places, shm_ref
from shipyard.serving.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor

__all__ = ["decode_infer_request", "encode_infer_response", "parse_json"]

#: the fields the V2 protocol defines; others (the kserve SDK's top-level ``model_name``, say)
#: are accepted and ignored, as the OIP schema does not forbid extra properties
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "datatype", "shape", "parameters", "data"})


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _ignored(obj: dict[str, Any], known: frozenset[str]) -> str:
    """For a message about a missing field: the fields of ``obj`` that were ignored, which may
    be the missing one misspelt ("" when there are none)."""
    extra = sorted(set(obj) - known)
    return f" (ignored unknown field(s) {brief(extra)})" if extra else ""


def _decode_data(name: str, datatype: str, shape: tuple[int, ...], data: Any
                 ) -> tuple[Any, str | None]:
    """JSON data and, when it holds nulls and nothing else wrong, the decoder's refusal of
    them: the model decides (``Runtime.missing_values``). Costs nothing unless refused."""
    try:
        return decode_json_data(name, datatype, shape, data), None
    except InvalidInput as refused:
        if datatype not in NULLABLE:
            raise
        try:
            filled = decode_json_data(name, datatype, shape, data, nulls=True)
        except InvalidInput:
            raise refused from None
        return filled, refused.message


def decode_infer_request(
    body: bytes, header_length: str | None, model: str, version: str,
    shm: SystemSharedMemory | None = None,
) -> InferenceRequest:
    """Body of ``POST /v2/models/{m}/infer`` -> InferenceRequest (binary parts zero-copy;
    inputs whose parameters name a ``shared_memory_region`` are read from ``shm``)."""
    regions = shm if shm is not None else NO_REGIONS
    binary = memoryview(b"")
    if header_length is not None:
        try:
            hlen = int(header_length)
        except ValueError:
            hlen = -1
        if hlen < 0 or hlen > len(body):
            raise InvalidInput(
                f"header Inference-Header-Content-Length is {brief(header_length)} but the body "
                f"has {len(body)} bytes; it must be the byte length of the JSON part"
            )
        view = memoryview(body)
        doc = parse_json(view[:hlen], "JSON header of the binary request")
        binary = view[hlen:]
    else:
        doc = parse_json(body)
    doc = _mapping(doc, "request body")
    params = _mapping(doc.get("parameters"), "request 'parameters'")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise InvalidInput("request needs 'inputs': a non-empty list of input tensors"
                           + ("" if "inputs" in doc else _ignored(doc, _REQUEST_KEYS)))
    rid = doc.get("id", "")
    if not isinstance(rid, str):
        raise InvalidInput(f"request 'id' must be a string, got {brief(rid)}")
    inputs = []
    pos = 0
    for i, item in enumerate(inputs_doc):
        if not isinstance(item, dict):
            _mapping(item, f"inputs[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"inputs[{i}] needs a 'name' string, got {brief(name)}")
        datatype = check_datatype(name, item.get("datatype"))
        shape = check_shape(name, item.get("shape"))
        iparams = item.get("parameters")
        if iparams is None:
            iparams = {}
        elif not isinstance(iparams, dict):
            _mapping(iparams, f"input {name!r} 'parameters'")
        size = iparams.get("binary_data_size")
        null_refusal: str | None = None
        ref = shm_ref(iparams, f"input {name!r}") if iparams else None
        if ref is not None:
            if size is not None or "data" in item:
                raise InvalidInput(
                    f"input {name!r} has shared_memory_region and also "
                    f"{'binary_data_size' if size is not None else 'data'}; send its data "
                    "one way only")
            data = regions.read_input(name, datatype, shape, ref)
        elif size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(
                    f"input {name!r}: binary_data_size must be a non-negative integer, "
                    f"got {brief(size)}"
                )
            if pos + size > len(binary):
                raise InvalidInput(
                    f"input {name!r}: binary_data_size {size} runs past the end of the binary "
                    f"part ({len(binary) - pos} bytes left); check Inference-Header-Content-Length"
                )
            if "data" in item:
                raise InvalidInput(f"input {name!r} has both 'data' and binary_data_size")
            data = decode_raw(name, datatype, shape, binary[pos : pos + size])
            pos += size
        else:
            if "data" not in item:
                raise InvalidInput(
                    f"input {name!r} has no 'data' and no parameters.binary_data_size"
                    + _ignored(item, _INPUT_KEYS)
                )
            data, null_refusal = _decode_data(name, datatype, shape, item["data"])
        inputs.append(Tensor(name, datatype, shape, data, iparams, null_refusal))
    if pos != len(binary):
        raise InvalidInput(
            f"binary part has {len(binary) - pos} byte(s) that no input claims; "
            "the binary_data_size values must add up to the bytes after the JSON header"
        )
    outputs = None
    if doc.get("outputs") is not None:
        outs = doc["outputs"]
        if not isinstance(outs, list):
            raise InvalidInput("request 'outputs' must be a list")
        outputs = []
        for j, out in enumerate(outs):
            if not isinstance(out, dict):
                _mapping(out, f"outputs[{j}]")
            oname = out.get("name")
            if not isinstance(oname, str):
                raise InvalidInput(f"outputs[{j}] needs a 'name' string, got {brief(oname)}")
            oparams = out.get("parameters")
            if oparams is None:
                oparams = {}
            elif not isinstance(oparams, dict):
                _mapping(oparams, f"output {oname!r} 'parameters'")
            b = oparams.get("binary_data")
            outputs.append(RequestedOutput(oname, None if b is None else bool(b), oparams))
        regions.check_outputs(outputs)
    request = InferenceRequest(model, version, rid, inputs, outputs, params)
    request.deadline_ns = deadline_from_timeout_us(params.get("timeout"))
    return request


def encode_infer_response(
    request: InferenceRequest, response: InferenceResponse,
    shm: SystemSharedMemory | None = None,
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header length. An output asked
    for in shared memory is written there and answered with its name, datatype and shape."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    wanted = {o.name: o.binary for o in request.outputs} if request.outputs else {}
    places = output_places(request.outputs) if shm is not None else {}
    outputs = []
    blobs = []
    for out in response.outputs:
        binary = wanted.get(out.name)
        if binary is None:
            binary = binary_default
        entry: dict[str, Any] = {
            "name": out.name, "datatype": out.datatype, "shape": list(out.shape),
        }
        ref = places.get(out.name)
        if ref is not None:  # as Triton: no data and no parameters (the C++ client, so
            assert shm is not None  # perf_analyzer, wants binary_data_size in any parameters)
            shm.write_output(out, ref)
        elif binary:
            blob = encode_raw(out.data)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = to_json_data(out.name, out.data)
        outputs.append(entry)
    # "id" is always there ("" when the request gave none): the OIP response schema (and the
    # kserve SDK's InferenceResponse model) requires it
    doc: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": outputs,
    }
    header = orjson.dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
