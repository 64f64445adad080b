"""Runs the kserve SDK (PyPI ``kserve``) against a running Shipyard server, in a process of its
own: ``import kserve`` registers the protobuf package ``inference``, as tritonclient.grpc (which
the pytest process imports) and Shipyard's own stubs do, and no two of them load in one process.

    python tests/kserve_probe.py '{"command": "rest", ...}'

prints one JSON object: what each step returned, or ``{"error": "..."}`` for a step that raised,
so that the calling test (tests/serving/test_kserve_sdk.py) says which step failed and how.
Commands: ``rest`` (InferenceRESTClient, and the V2 bodies validated with the SDK's pydantic
models), ``grpc`` (InferenceGRPCClient and the SDK's gRPC stub), ``control`` (load/unload
through the SDK's stub on an explicit-control server) and ``properties`` (Shipyard's own stub:
the SDK's proto has no ModelMetadataResponse.properties yet).
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

Step = Callable[[], Awaitable[Any]]


async def _run(steps: dict[str, Step]) -> dict[str, Any]:
    """Each step's JSON-able result, or its exception as ``{"error": ...}``."""
    out: dict[str, Any] = {}
    for name, step in steps.items():
        try:
            out[name] = await step()
        except Exception as exc:  # reported to the test, which fails with it
            out[name] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc(limit=4)}
    return out


def _inputs(rows: list[list[float]], binary: bool) -> list[Any]:
    import numpy as np
    from kserve import InferInput

    x = np.asarray(rows, dtype=np.float32)
    inp = InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return [inp]


def _outputs(response: Any) -> dict[str, Any]:
    return {"model_name": response.model_name, "id": response.id,
            "outputs": {o.name: {"datatype": o.datatype, "shape": list(o.shape),
                                 "data": o.as_numpy().tolist()} for o in response.outputs}}


def _validate(model: Any, body: bytes) -> dict[str, Any]:
    """``body`` checked against one of the SDK's pydantic models."""
    from pydantic import ValidationError

    try:
        return {"valid": True, "doc": model.model_validate_json(body).model_dump()}
    except ValidationError as exc:
        return {"valid": False, "why": str(exc), "body": body[:2000].decode("latin-1")}


async def rest(cmd: dict[str, Any]) -> dict[str, Any]:
    import httpx
    from kserve import InferenceRESTClient, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput
    from kserve.protocol.rest import v2_datamodels as dm

    base, model, rows = cmd["url"], cmd["model"], cmd["rows"]
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    raw = httpx.AsyncClient(base_url=base, timeout=30)

    async def infer(binary_in: bool, binary_out: bool, rid: str | None = None) -> Any:
        outputs = ([RequestedOutput("score", parameters={"binary_data": True})]
                   if binary_out else None)
        request = InferRequest(model, _inputs(rows, binary_in), request_id=rid,
                               request_outputs=outputs)
        return _outputs(await client.infer(base, request, model_name=model))

    async def body(path: str, schema: Any) -> dict[str, Any]:
        response = await raw.get(path)
        return {"status": response.status_code,
                "content_type": response.headers.get("content-type"),
                **_validate(schema, response.content)}

    async def infer_body() -> dict[str, Any]:
        request = InferRequest(model, _inputs(rows, False), request_id="body-check")
        doc, _ = request.to_rest()  # what the SDK sends: it must fit the SDK's own model too
        sent = _validate(dm.InferenceRequest, json.dumps(doc).encode())
        response = await raw.post(f"/v2/models/{model}/infer", json=doc)
        no_id = await raw.post(f"/v2/models/{model}/infer",
                               json={"inputs": doc["inputs"]})
        return {"request": sent, "status": response.status_code,
                "response": _validate(dm.InferenceResponse, response.content),
                "response_without_request_id": _validate(dm.InferenceResponse, no_id.content)}

    async def http_error(path_model: str, rows_: list[list[float]]) -> dict[str, Any]:
        request = InferRequest(path_model, _inputs(rows_, False))
        try:
            await client.infer(base, request, model_name=path_model)
        except httpx.HTTPStatusError as exc:
            return {"status": exc.response.status_code, "message": str(exc)}
        return {"status": 200, "message": "no error"}

    steps: dict[str, Step] = {
        "is_server_live": lambda: client.is_server_live(base),
        "is_server_ready": lambda: client.is_server_ready(base),
        "is_model_ready": lambda: client.is_model_ready(base, model),
        "is_unknown_model_ready": lambda: client.is_model_ready(base, "no-such-model"),
        "infer_json": lambda: infer(False, False, "json-1"),
        "infer_binary_in": lambda: infer(True, False),
        "infer_binary_out": lambda: infer(False, True),
        "infer_binary_both": lambda: infer(True, True),
        "server_metadata": lambda: body("/v2", dm.ServerMetadataResponse),
        "model_metadata": lambda: body(f"/v2/models/{model}", dm.ModelMetadataResponse),
        "version_metadata": lambda: body(f"/v2/models/{model}/versions/1",
                                         dm.ModelMetadataResponse),
        "live": lambda: body("/v2/health/live", dm.ServerLiveResponse),
        "ready": lambda: body("/v2/health/ready", dm.ServerReadyResponse),
        "model_ready": lambda: body(f"/v2/models/{model}/ready", dm.ModelReadyResponse),
        "version_ready": lambda: body(f"/v2/models/{model}/versions/1/ready",
                                      dm.ModelReadyResponse),
        "infer_body": infer_body,
        "unknown_model_error": lambda: http_error("no-such-model", rows),
        "bad_shape_error": lambda: http_error(model, [row[:-1] for row in rows]),
    }
    try:
        return await _run(steps)
    finally:
        await client.close()
        await raw.aclose()


async def grpc_(cmd: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf import json_format
    from kserve import InferenceGRPCClient, InferRequest
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    url, model, rows = cmd["url"], cmd["model"], cmd["rows"]
    client = InferenceGRPCClient(url, timeout=30)
    stub = client._client_stub  # the SDK's own stub: it has no metadata methods of its own

    async def infer(binary: bool) -> Any:
        request = InferRequest(model, _inputs(rows, binary), request_id="grpc-1")
        return _outputs(await client.infer(request))

    async def message(call: Any, request: Any) -> Any:
        return json_format.MessageToDict(await call(request, timeout=30),
                                         preserving_proto_field_name=True)

    async def unknown_model() -> Any:
        import grpc

        try:
            ready = await client.is_model_ready("no-such-model")
        except grpc.RpcError as exc:
            return {"code": exc.code().name, "details": exc.details()}
        return {"code": "OK", "ready": ready}

    steps: dict[str, Step] = {
        "is_server_live": client.is_server_live,
        "is_server_ready": client.is_server_ready,
        "is_model_ready": lambda: client.is_model_ready(model),
        "is_unknown_model_ready": unknown_model,
        "infer_contents": lambda: infer(False),
        "infer_raw": lambda: infer(True),
        "server_metadata": lambda: message(stub.ServerMetadata, pb.ServerMetadataRequest()),
        "model_metadata": lambda: message(stub.ModelMetadata,
                                          pb.ModelMetadataRequest(name=model)),
    }
    try:
        return await _run(steps)
    finally:
        await client.close()


async def control(cmd: dict[str, Any]) -> dict[str, Any]:
    import grpc
    import httpx
    from google.protobuf import json_format
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferRequest, RESTConfig
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    base, url, model, rows = cmd["http_url"], cmd["grpc_url"], cmd["model"], cmd["rows"]
    auth = (("authorization", f"Bearer {cmd['token']}"),)
    grpc_client = InferenceGRPCClient(url, timeout=30)
    rest_client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    stub = grpc_client._client_stub

    async def call(method: Any, request: Any, metadata: Any = auth) -> Any:
        try:
            answer = await method(request, metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return {"code": exc.code().name, "details": exc.details()}
        return {"code": "OK", **json_format.MessageToDict(answer,
                                                         preserving_proto_field_name=True)}

    async def ready() -> Any:
        from kserve.protocol.rest import v2_datamodels as dm

        out = {"rest": await rest_client.is_model_ready(base, model),
               "grpc": await grpc_client.is_model_ready(model)}
        async with httpx.AsyncClient() as raw:
            r = await raw.get(f"{base}/v2/models/{model}/ready")
        return {**out, "status": r.status_code, **_validate(dm.ModelReadyResponse, r.content)}

    async def infer() -> Any:
        request = InferRequest(model, _inputs(rows, False))
        response = await rest_client.infer(base, request, model_name=model)
        return _outputs(response)

    async def server_ready() -> Any:
        from kserve.protocol.rest import v2_datamodels as dm

        async with httpx.AsyncClient() as raw:
            r = await raw.get(f"{base}/v2/health/ready")
        out: dict[str, Any] = {"status": r.status_code,
                               **_validate(dm.ServerReadyResponse, r.content),
                               "grpc": await grpc_client.is_server_ready()}
        try:
            out["rest"] = await rest_client.is_server_ready(base)
        except httpx.HTTPStatusError as exc:  # the SDK raises for any status but 2xx
            out["rest"] = f"HTTPStatusError {exc.response.status_code}"
        return out

    steps: dict[str, Step] = {
        "before": ready,
        "load_without_token": lambda: call(stub.RepositoryModelLoad,
                                           pb.RepositoryModelLoadRequest(model_name=model), ()),
        "load": lambda: call(stub.RepositoryModelLoad,
                             pb.RepositoryModelLoadRequest(model_name=model)),
        "loaded": ready,
        "infer": infer,
        "unload_without_token": lambda: call(stub.RepositoryModelUnload,
                                             pb.RepositoryModelUnloadRequest(model_name=model),
                                             ()),
        "unload": lambda: call(stub.RepositoryModelUnload,
                               pb.RepositoryModelUnloadRequest(model_name=model)),
        "unloaded": ready,
        "load_unknown": lambda: call(stub.RepositoryModelLoad,
                                     pb.RepositoryModelLoadRequest(model_name="no-such-model")),
        "server_ready": server_ready,
        # the model the server was started with (--load-model): without it, it is not ready
        "unload_required": lambda: call(stub.RepositoryModelUnload,
                                        pb.RepositoryModelUnloadRequest(
                                            model_name=cmd["required"])),
        "server_not_ready": server_ready,
    }
    try:
        return await _run(steps)
    finally:
        await grpc_client.close()
        await rest_client.close()


async def properties(cmd: dict[str, Any]) -> dict[str, Any]:
    import grpc
    from google.protobuf import json_format

    from shipyard.protocol.grpc import kserve_pb2 as pb

    async with grpc.aio.insecure_channel(cmd["url"]) as channel:
        method = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=pb.ModelMetadataRequest.SerializeToString,
            response_deserializer=pb.ModelMetadataResponse.FromString)
        out = {}
        for model in cmd["models"]:
            answer = await method(pb.ModelMetadataRequest(name=model), timeout=30)
            out[model] = json_format.MessageToDict(answer, preserving_proto_field_name=True)
        return out


COMMANDS = {"rest": rest, "grpc": grpc_, "control": control, "properties": properties}

if __name__ == "__main__":
    command = json.loads(sys.argv[1])
    result = asyncio.run(COMMANDS[command["command"]](command))
    print(json.dumps(result))
