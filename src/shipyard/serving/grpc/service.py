"""The gRPC servicers, registered as generic handlers on a ``grpc.aio`` server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from shipyard.protocol.grpc import kserve_pb2 as pb
from shipyard.protocol.grpc import model_service_pb2 as simple_pb
from shipyard.serving.control import Control
from shipyard.serving.describe import (
    model_config,
    model_metadata,
    model_statistics,
    server_metadata,
)
from shipyard.serving.errors import InvalidInput, ShipyardError
from shipyard.serving.grpc.codec import decode_infer_request, encode_infer_response, parameters
from shipyard.serving.grpc.errors import GRPC_STATUS
from shipyard.serving.logs import log_settings, update_log_settings
from shipyard.serving.overrides import load_override
from shipyard.serving.peers import Peers
from shipyard.serving.registry import ModelRegistry
from shipyard.serving.shm import SystemSharedMemory, cuda_shared_memory_refusal
from shipyard.serving.simple import features_request, first_score
from shipyard.serving.trace import trace_settings, update_trace_settings

__all__ = ["GrpcFrontend"]

log = logging.getLogger("shipyard.grpc")

#: requests of one ModelStreamInfer stream that may be running or answered but not yet sent;
#: beyond it the server stops reading the stream (gRPC flow control then holds the client back)
STREAM_WINDOW = 256

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _parse(message: Any, data: bytes) -> Any:
    """Request bytes as a ``message``; malformed ones raise InvalidInput (INVALID_ARGUMENT)."""
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise InvalidInput(
            f"request is not a valid {message.DESCRIPTOR.full_name} message: {exc}") from exc


def _log_refusal(exc: ShipyardError, what: str, request_id: str | None) -> grpc.StatusCode:
    """Log a request refused with ``exc`` (overload and shutdown at DEBUG); its status code."""
    code = GRPC_STATUS[exc.code]
    quiet = code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
    log.log(logging.DEBUG if quiet else logging.INFO, "%s -> %s: %s", what, code.name,
            exc.message, extra={"request_id": request_id})
    return code


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    rid = _metadata(context, "x-request-id")
    if rid is not None:
        context.set_trailing_metadata((("x-request-id", rid[:128]),))
    if isinstance(exc, ShipyardError):
        code = _log_refusal(exc, "gRPC call", rid)
        await context.abort(code, exc.message)
        raise  # pragma: no cover - abort always raises
    log.exception("unhandled error in a gRPC call")
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc!r}")
    raise  # pragma: no cover - abort always raises


def _guard(fn: Handler, message: Any, access: Control | None = None) -> Handler:
    """Parse the request bytes (malformed ones -> INVALID_ARGUMENT), call ``fn``, and turn
    every ShipyardError into its status code; with ``access``, check the auth token first
    (UNAUTHENTICATED before the request is parsed)."""

    async def wrapper(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            if access is not None:
                access.check_access(_authorization(context))
            return await fn(_parse(message, data), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return wrapper


def _metadata(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    return _metadata(context, "authorization")


class GrpcFrontend:
    """KServe V2 ``inference.GRPCInferenceService`` plus the seed's ``ModelService``."""

    def __init__(self, models: ModelRegistry, control: Control, *,
                 default_model: str | None = None, shm: SystemSharedMemory | None = None,
                 peers: Peers | None = None) -> None:
        self.models = models
        #: with ``--workers N``: the other workers (readiness, summed statistics)
        self.peers = peers
        self.control = control
        self.default_model = default_model
        self.shm = shm if shm is not None else SystemSharedMemory()
        self.accepting = True

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The generic handlers of both services; with an auth token every RPC but
        ServerLive and ServerReady checks it."""
        guard = self.control if self.control.auth else None

        def unary(fn: Handler, req: Any, resp: Any, *, open_: bool = False
                  ) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                _guard(fn, req, None if open_ else guard),
                response_serializer=resp.SerializeToString
            )

        v2 = {
            "ServerLive": unary(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse,
                                open_=True),
            "ServerReady": unary(self.server_ready, pb.ServerReadyRequest,
                                 pb.ServerReadyResponse, open_=True),
            "ModelReady": unary(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": unary(self.server_metadata, pb.ServerMetadataRequest,
                                    pb.ServerMetadataResponse),
            "ModelMetadata": unary(self.model_metadata, pb.ModelMetadataRequest,
                                   pb.ModelMetadataResponse),
            "ModelInfer": unary(self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelConfig": unary(self.model_config, pb.ModelConfigRequest,
                                 pb.ModelConfigResponse),
            "ModelStatistics": unary(self.model_statistics, pb.ModelStatisticsRequest,
                                     pb.ModelStatisticsResponse),
            "RepositoryIndex": unary(self.repository_index, pb.RepositoryIndexRequest,
                                     pb.RepositoryIndexResponse),
            "RepositoryModelLoad": unary(self.repository_load, pb.RepositoryModelLoadRequest,
                                         pb.RepositoryModelLoadResponse),
            "RepositoryModelUnload": unary(self.repository_unload,
                                           pb.RepositoryModelUnloadRequest,
                                           pb.RepositoryModelUnloadResponse),
            "SystemSharedMemoryStatus": unary(self.shm_status, pb.SystemSharedMemoryStatusRequest,
                                              pb.SystemSharedMemoryStatusResponse),
            "SystemSharedMemoryRegister": unary(self.shm_register,
                                                pb.SystemSharedMemoryRegisterRequest,
                                                pb.SystemSharedMemoryRegisterResponse),
            "SystemSharedMemoryUnregister": unary(self.shm_unregister,
                                                  pb.SystemSharedMemoryUnregisterRequest,
                                                  pb.SystemSharedMemoryUnregisterResponse),
            "CudaSharedMemoryStatus": unary(self.cuda_shm, pb.CudaSharedMemoryStatusRequest,
                                            pb.CudaSharedMemoryStatusResponse),
            "CudaSharedMemoryRegister": unary(self.cuda_shm, pb.CudaSharedMemoryRegisterRequest,
                                              pb.CudaSharedMemoryRegisterResponse),
            "CudaSharedMemoryUnregister": unary(self.cuda_shm,
                                                pb.CudaSharedMemoryUnregisterRequest,
                                                pb.CudaSharedMemoryUnregisterResponse),
            "TraceSetting": unary(self.trace_setting, pb.TraceSettingRequest,
                                  pb.TraceSettingResponse),
            "LogSettings": unary(self.log_settings, pb.LogSettingsRequest,
                                 pb.LogSettingsResponse),
        }
        v2["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            self.model_stream_infer,
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        )
        simple = {
            "Predict": unary(self.predict, simple_pb.ModelRequest, simple_pb.ModelResponse),
        }
        return [
            grpc.method_handlers_generic_handler("inference.GRPCInferenceService", v2),
            grpc.method_handlers_generic_handler("ModelService", simple),
        ]

    # -- health and metadata ------------------------------------------------------------------

    async def server_live(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.models.ready and self.accepting and (
            self.peers is None or self.peers.all_ready()))

    async def model_ready(self, request: pb.ModelReadyRequest, context: Any
                          ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.models.model_ready(request.name,
                                                                    request.version))

    async def server_metadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return json_format.ParseDict(  # type: ignore[no-any-return]
            server_metadata(), pb.ServerMetadataResponse())

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Any
                             ) -> pb.ModelMetadataResponse:
        mv = self.models.get(request.name, request.version)
        versions = [v.version for v in self.models.versions(request.name)]
        return json_format.ParseDict(  # type: ignore[no-any-return]
            model_metadata(mv, versions), pb.ModelMetadataResponse())

    async def model_config(self, request: pb.ModelConfigRequest, context: Any
                           ) -> pb.ModelConfigResponse:
        mv = self.models.get(request.name, request.version)
        return pb.ModelConfigResponse(
            config=json_format.ParseDict(model_config(mv), pb.ModelConfig()))

    async def model_statistics(self, request: pb.ModelStatisticsRequest, context: Any
                               ) -> pb.ModelStatisticsResponse:
        if request.name:
            chosen = ([self.models.get(request.name, request.version)] if request.version
                      else self.models.versions(request.name))
        else:
            chosen = self.models.all_versions()
        doc = {"model_stats": [model_statistics(mv, None if self.peers is None else
                                                self.peers.stats(mv.name, mv.version))
                               for mv in chosen]}
        return json_format.ParseDict(  # type: ignore[no-any-return]
            doc, pb.ModelStatisticsResponse())

    async def repository_index(self, request: pb.RepositoryIndexRequest, context: Any
                               ) -> pb.RepositoryIndexResponse:
        self.control.check(_authorization(context), "index")
        rows = await self.control.manager.index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return json_format.ParseDict(  # type: ignore[no-any-return]
            {"models": rows}, pb.RepositoryIndexResponse())

    async def repository_load(self, request: pb.RepositoryModelLoadRequest, context: Any
                              ) -> pb.RepositoryModelLoadResponse:
        self.control.check(_authorization(context), "load")
        name = _repository_model(request)
        override = load_override(name, parameters(request.parameters), files_base64=False)
        await self.control.load(name, override)
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

    async def repository_unload(self, request: pb.RepositoryModelUnloadRequest, context: Any
                                ) -> pb.RepositoryModelUnloadResponse:
        self.control.check(_authorization(context), "unload")
        name = _repository_model(request)
        await self.control.unload(name)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

    # -- shared memory ------------------------------------------------------------------------

    async def shm_status(self, request: pb.SystemSharedMemoryStatusRequest, context: Any
                         ) -> pb.SystemSharedMemoryStatusResponse:
        regions = {r["name"]: r for r in self.shm.status(request.name)}
        return json_format.ParseDict(  # type: ignore[no-any-return]
            {"regions": regions}, pb.SystemSharedMemoryStatusResponse())

    async def shm_register(self, request: pb.SystemSharedMemoryRegisterRequest, context: Any
                           ) -> pb.SystemSharedMemoryRegisterResponse:
        self.shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def shm_unregister(self, request: pb.SystemSharedMemoryUnregisterRequest,
                             context: Any) -> pb.SystemSharedMemoryUnregisterResponse:
        self.shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def cuda_shm(self, request: Any, context: Any) -> NoReturn:
        raise cuda_shared_memory_refusal()

    # -- logging and trace extensions --------------------------------------------------------

    async def trace_setting(self, request: pb.TraceSettingRequest, context: Any
                            ) -> pb.TraceSettingResponse:
        """Triton's TraceSetting: a read without settings, else an update (see trace.py)."""
        if request.model_name:
            self.models.versions(request.model_name)  # NOT_FOUND for an unknown model
        if request.settings:
            self.control.check_settings(_authorization(context), "trace settings")
            doc = update_trace_settings(
                {k: list(v.value) or None for k, v in request.settings.items()})
        else:
            doc = trace_settings()
        response = pb.TraceSettingResponse()
        for key, value in doc.items():
            response.settings[key].value.extend(value if isinstance(value, list) else [value])
        return response

    async def log_settings(self, request: pb.LogSettingsRequest, context: Any
                           ) -> pb.LogSettingsResponse:
        """Triton's LogSettings: a read without settings, else an update (see logs.py)."""
        if request.settings:
            self.control.check_settings(_authorization(context), "log settings")
            doc = update_log_settings(parameters(request.settings))
        else:
            doc = log_settings()
        response = pb.LogSettingsResponse()
        for key, value in doc.items():
            setting = response.settings[key]
            if isinstance(value, bool):
                setting.bool_param = value
            elif isinstance(value, int):
                setting.uint32_param = value
            else:
                setting.string_param = value
        return response

    # -- inference ----------------------------------------------------------------------------

    async def model_infer(self, request: pb.ModelInferRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> pb.ModelInferResponse:
        mv = self.models.get(request.model_name, request.model_version)
        core = decode_infer_request(request, context.time_remaining(), self.shm)
        return encode_infer_response(await mv.infer(core), core, self.shm)

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Triton's bidirectional stream: every ModelInferRequest read from the stream runs as
        soon as it arrives (so they batch with each other and with unary calls), and its answer
        is written when ready, not necessarily in request order: clients match answers by
        ``id``. A request that fails gets ``error_message`` (the same text as the unary call's
        status) and its ``id``; the stream goes on. The stream ends once the client has closed
        its side and every answer is written, or after the first request refused because the
        server is stopping. With an auth token, a stream without it ends at once with
        UNAUTHENTICATED."""
        if self.control.auth:
            try:
                self.control.check_access(_authorization(context))
            except ShipyardError as exc:
                await _abort(context, exc)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        running: set[asyncio.Task[None]] = set()

        async def answer(data: bytes) -> None:
            request_id = ""
            try:
                request = _parse(pb.ModelInferRequest, data)
                request_id = request.id
                response = await self.model_infer(request, context)
                answers.put_nowait(pb.ModelStreamInferResponse(infer_response=response))
            except ShipyardError as exc:
                _log_refusal(exc, "gRPC stream request", request_id)
                answers.put_nowait(_stream_error(exc.message, request_id))
            except Exception as exc:
                log.exception("unhandled error in a gRPC stream request")
                answers.put_nowait(_stream_error(f"internal error: {exc!r}", request_id))

        async def read() -> None:
            try:
                async for data in requests:
                    await window.acquire()
                    if not self.accepting:
                        answers.put_nowait(_stream_error(
                            "server is shutting down; send the remaining requests elsewhere",
                            _request_id(data)))
                        break
                    task = asyncio.create_task(answer(data))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    await asyncio.wait(set(running))
            finally:  # also when reading fails: the writer below must not wait forever
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await answers.get()
                if item is None:
                    break
                yield item
                window.release()
            await reader  # raises what the reader raised (e.g. a broken stream)
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    async def predict(self, request: simple_pb.ModelRequest,
                      context: grpc.aio.ServicerContext[Any, Any]) -> simple_pb.ModelResponse:
        named = _metadata(context, "model")
        mv = (self.models.get(named) if named
              else self.models.get_default(self.default_model))
        if not request.features:
            raise InvalidInput("ModelRequest.features is empty; send the model's feature values")
        response = await mv.infer(features_request(mv, list(request.features)))
        return simple_pb.ModelResponse(score=first_score(response))


def _repository_model(
    request: pb.RepositoryModelLoadRequest | pb.RepositoryModelUnloadRequest,
) -> str:
    """The model a load/unload names: ``model_name`` (Triton's field 2), else field 1, where the
    kserve SDK's proto puts the model name (Triton's ``repository_name``, which names a
    repository this server does not have)."""
    return request.model_name or request.repository_name


def _request_id(data: bytes) -> str:
    """The id of a serialised ModelInferRequest ('' when it does not parse)."""
    try:
        return str(pb.ModelInferRequest.FromString(data).id)
    except DecodeError:
        return ""


def _stream_error(message: str, request_id: str) -> pb.ModelStreamInferResponse:
    return pb.ModelStreamInferResponse(
        error_message=message, infer_response=pb.ModelInferResponse(id=request_id))
