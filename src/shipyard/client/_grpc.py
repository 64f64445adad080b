"""The gRPC transport (KServe V2 ``inference.GRPCInferenceService``), sync and async, on one
channel each. The messages come from a private descriptor pool
(:func:`shipyard.protocol.grpc.pool.kserve_messages`), so the client works in a process that
also holds ``tritonclient.grpc`` or the kserve SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np

from shipyard.client._retry import check_in_time
from shipyard.client._tls import TlsConfig, handshake_error, refused_after_handshake
from shipyard.client._vocab import OutputRequest
from shipyard.client.errors import ClientError, DeadlineExceeded, error_for_grpc
from shipyard.protocol.errors import InvalidInput
from shipyard.protocol.grpc.contents import CONTENTS, set_parameter
from shipyard.protocol.grpc.pool import KServeMessages, kserve_messages
from shipyard.protocol.types import Array, datatype_of, numpy_dtype
from shipyard.protocol.wire import decode_raw, encode_raw

__all__ = ["AsyncGrpcTransport", "GrpcTransport"]

#: channel options: no client-side cap on answer size (the server caps requests)
_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]

#: rpc -> (request message, response message)
_RPCS = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
    "RepositoryIndex": ("RepositoryIndexRequest", "RepositoryIndexResponse"),
    "RepositoryModelLoad": ("RepositoryModelLoadRequest", "RepositoryModelLoadResponse"),
    "RepositoryModelUnload": ("RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"),
}


def _retry_after(metadata: Sequence[tuple[str, Any]] | None) -> float | None:
    for key, value in metadata or ():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _error(exc: grpc.RpcError, target: str, timeout_s: float | None,
           tls: TlsConfig | None = None, answered: bool = True) -> ClientError:
    """The typed exception of a failed call, with the server's message. Over TLS
    (``tls``), a handshake that failed is a TlsError; so is a connection closed before the
    first answer (``answered`` False), which is how mutual TLS refuses a client."""
    code: grpc.StatusCode = exc.code()
    details = exc.details() or code.name
    if tls is not None and code == grpc.StatusCode.UNAVAILABLE:
        if (failed := handshake_error(target, details, tls.cert_file)) is not None:
            return failed
        if not answered and "failed to connect" in details and "Socket closed" in details:
            return refused_after_handshake(target, tls.cert_file)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
        return DeadlineExceeded(f"no answer from {target} within {timeout_s:.3g} s"
                                if timeout_s is not None else f"no answer from {target}",
                                status=code.name)
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        details = f"cannot reach the server at {target}: {details}"
    try:
        trailing = exc.trailing_metadata()
    except Exception:  # a channel-level failure may carry none
        trailing = None
    return error_for_grpc(code.name, details, _retry_after(trailing))


def metadata_dict(msg: Any) -> dict[str, Any]:
    """A ModelMetadataResponse in the V2 JSON shape."""
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]
    return {"name": msg.name, "versions": list(msg.versions), "platform": msg.platform,
            "inputs": tensors(msg.inputs), "outputs": tensors(msg.outputs),
            "properties": dict(msg.properties)}


def infer_request(pb: KServeMessages, model: str, version: str, inputs: Mapping[str, Array],
                  outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
                  request_id: str) -> Any:
    """A ModelInferRequest with every input in ``raw_input_contents``."""
    msg = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        msg.inputs.add(name=name, datatype=datatype_of(array), shape=list(array.shape))
        msg.raw_input_contents.append(encode_raw(array))
    for o in outputs or ():
        out = msg.outputs.add(name=o.name)
        if o.classification:
            set_parameter(out.parameters, "classification", o.classification)
    for key, value in (parameters or {}).items():
        set_parameter(msg.parameters, key, value)
    return msg


def infer_outputs(msg: Any) -> dict[str, Array]:
    """The outputs of a ModelInferResponse (raw contents as zero-copy, read-only views)."""
    out: dict[str, Array] = {}
    raw = msg.raw_output_contents
    try:
        for i, t in enumerate(msg.outputs):
            shape = tuple(t.shape)
            if raw:
                out[t.name] = decode_raw(t.name, t.datatype, shape, raw[i])
                continue
            values = getattr(t.contents, CONTENTS[t.datatype])
            if t.datatype == "BYTES":
                data = np.empty(len(values), dtype=object)
                data[:] = list(values)
            else:
                data = np.asarray(values, dtype=numpy_dtype(t.datatype))
            out[t.name] = data.reshape(shape)
    except (KeyError, IndexError, ValueError, InvalidInput) as exc:
        raise ClientError(f"the server's ModelInfer answer is malformed: {exc}") from exc
    return out


class _Base:
    """What the sync and async gRPC transports share."""

    def __init__(self, target: str, secure: bool, tls: TlsConfig | None,
                 token: str | None, control_token: str | None) -> None:
        self.url = target
        self.display = f"{'grpcs' if secure else 'grpc'}://{target}"
        self.pb = kserve_messages()
        self._secure = secure
        self._tls = (tls if tls is not None else TlsConfig(True, None, None, None, None)
                     ) if secure else None
        #: whether any answer came yet (see :func:`_error`)
        self._answered = False
        self._md: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        control = control_token or token
        self._control_md: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {control}"),) if control else ())

    def _credentials(self) -> grpc.ChannelCredentials:
        tls = self._tls
        assert tls is not None
        return grpc.ssl_channel_credentials(root_certificates=tls.root_certificates,
                                            private_key=tls.private_key,
                                            certificate_chain=tls.certificate_chain)

    def _failed(self, exc: grpc.RpcError, timeout_s: float | None) -> ClientError:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            self._answered = True  # the server answered, with an error
        return _error(exc, self.display, timeout_s, self._tls, self._answered)

    def _method(self, channel: Any, rpc: str) -> Any:
        request, response = _RPCS[rpc]
        return channel.unary_unary(self.pb.method(rpc),
                                   request_serializer=getattr(self.pb, request).SerializeToString,
                                   response_deserializer=getattr(self.pb, response).FromString)


class GrpcTransport(_Base):
    """Blocking gRPC calls on one channel."""

    def __init__(self, target: str, *, secure: bool = False, tls: TlsConfig | None = None,
                 token: str | None = None, control_token: str | None = None) -> None:
        super().__init__(target, secure, tls, token, control_token)
        self.channel = (grpc.secure_channel(target, self._credentials(), options=_OPTIONS)
                        if secure else grpc.insecure_channel(target, options=_OPTIONS))
        self._calls: dict[str, Callable[..., Any]] = {
            rpc: self._method(self.channel, rpc) for rpc in _RPCS}

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def _call(self, rpc: str, request: Any, timeout_s: float | None,
              control: bool = False) -> Any:
        start = time.monotonic()
        try:
            answer = self._calls[rpc](request, timeout=timeout_s,
                                      metadata=self._control_md if control else self._md)
        except grpc.RpcError as exc:
            raise self._failed(exc, timeout_s) from exc
        self._answered = True
        check_in_time(start, timeout_s, self.display)
        return answer

    def live(self, timeout_s: float | None) -> bool:
        return bool(self._call("ServerLive", self.pb.ServerLiveRequest(), timeout_s).live)

    def ready(self, timeout_s: float | None) -> bool:
        return bool(self._call("ServerReady", self.pb.ServerReadyRequest(), timeout_s).ready)

    def server_metadata(self, timeout_s: float | None) -> dict[str, Any]:
        msg = self._call("ServerMetadata", self.pb.ServerMetadataRequest(), timeout_s)
        return {"name": msg.name, "version": msg.version, "extensions": list(msg.extensions)}

    def model_metadata(self, model: str, version: str, timeout_s: float | None
                       ) -> dict[str, Any]:
        return metadata_dict(self._call(
            "ModelMetadata", self.pb.ModelMetadataRequest(name=model, version=version),
            timeout_s))

    def model_ready(self, model: str, version: str, timeout_s: float | None) -> bool:
        return bool(self._call("ModelReady", self.pb.ModelReadyRequest(
            name=model, version=version), timeout_s).ready)

    def infer(self, model: str, version: str, inputs: Mapping[str, Array],
              outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
              request_id: str, timeout_s: float | None) -> dict[str, Array]:
        request = infer_request(self.pb, model, version, inputs, outputs, parameters,
                                request_id)
        return infer_outputs(self._call("ModelInfer", request, timeout_s))

    def repository_index(self, timeout_s: float | None) -> list[dict[str, Any]]:
        msg = self._call("RepositoryIndex", self.pb.RepositoryIndexRequest(), timeout_s,
                         control=True)
        return [{"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
                for m in msg.models]

    def load(self, model: str, timeout_s: float | None) -> None:
        self._call("RepositoryModelLoad", self.pb.RepositoryModelLoadRequest(model_name=model),
                   timeout_s, control=True)

    def unload(self, model: str, timeout_s: float | None) -> None:
        self._call("RepositoryModelUnload",
                   self.pb.RepositoryModelUnloadRequest(model_name=model), timeout_s,
                   control=True)


class AsyncGrpcTransport(_Base):
    """Awaitable gRPC calls on one ``grpc.aio`` channel, opened on first use (inside the event
    loop that uses it)."""

    def __init__(self, target: str, *, secure: bool = False, tls: TlsConfig | None = None,
                 token: str | None = None, control_token: str | None = None) -> None:
        super().__init__(target, secure, tls, token, control_token)
        self.channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Callable[..., Any]] = {}

    def _open(self) -> dict[str, Callable[..., Any]]:
        if self.channel is None:
            self.channel = (
                grpc.aio.secure_channel(self.url, self._credentials(), options=_OPTIONS)
                if self._secure else grpc.aio.insecure_channel(self.url, options=_OPTIONS))
            self._calls = {rpc: self._method(self.channel, rpc) for rpc in _RPCS}
        return self._calls

    async def close(self) -> None:
        """Close the channel."""
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    async def _call(self, rpc: str, request: Any, timeout_s: float | None,
                    control: bool = False) -> Any:
        start = time.monotonic()
        try:
            answer = await self._open()[rpc](request, timeout=timeout_s,
                                             metadata=self._control_md if control else self._md)
        except grpc.RpcError as exc:
            raise self._failed(exc, timeout_s) from exc
        self._answered = True
        check_in_time(start, timeout_s, self.display)
        return answer

    async def live(self, timeout_s: float | None) -> bool:
        return bool((await self._call("ServerLive", self.pb.ServerLiveRequest(),
                                      timeout_s)).live)

    async def ready(self, timeout_s: float | None) -> bool:
        return bool((await self._call("ServerReady", self.pb.ServerReadyRequest(),
                                      timeout_s)).ready)

    async def server_metadata(self, timeout_s: float | None) -> dict[str, Any]:
        msg = await self._call("ServerMetadata", self.pb.ServerMetadataRequest(), timeout_s)
        return {"name": msg.name, "version": msg.version, "extensions": list(msg.extensions)}

    async def model_metadata(self, model: str, version: str, timeout_s: float | None
                             ) -> dict[str, Any]:
        return metadata_dict(await self._call(
            "ModelMetadata", self.pb.ModelMetadataRequest(name=model, version=version),
            timeout_s))

    async def model_ready(self, model: str, version: str, timeout_s: float | None) -> bool:
        return bool((await self._call("ModelReady", self.pb.ModelReadyRequest(
            name=model, version=version), timeout_s)).ready)

    async def infer(self, model: str, version: str, inputs: Mapping[str, Array],
                    outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
                    request_id: str, timeout_s: float | None) -> dict[str, Array]:
        request = infer_request(self.pb, model, version, inputs, outputs, parameters,
                                request_id)
        return infer_outputs(await self._call("ModelInfer", request, timeout_s))

    async def repository_index(self, timeout_s: float | None) -> list[dict[str, Any]]:
        msg = await self._call("RepositoryIndex", self.pb.RepositoryIndexRequest(), timeout_s,
                               control=True)
        return [{"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
                for m in msg.models]

    async def load(self, model: str, timeout_s: float | None) -> None:
        await self._call("RepositoryModelLoad",
                         self.pb.RepositoryModelLoadRequest(model_name=model), timeout_s,
                         control=True)

    async def unload(self, model: str, timeout_s: float | None) -> None:
        await self._call("RepositoryModelUnload",
                         self.pb.RepositoryModelUnloadRequest(model_name=model), timeout_s,
                         control=True)
