"""``Client`` and ``AsyncClient``: one interface over REST and gRPC, chosen by the URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from shipyard.client._grpc import AsyncGrpcTransport, GrpcTransport
from shipyard.client._rest import AsyncRestTransport, RestTransport
from shipyard.client._retry import RetryPolicy, retry_async, retry_sync
from shipyard.client._tls import tls_config
from shipyard.client._vocab import (
    ModelInfo,
    OutputRequest,
    Prediction,
    encode_items,
    output_requests,
    predictions,
)
from shipyard.client.errors import InvalidArgument
from shipyard.protocol.types import Array, datatype_of

__all__ = ["DEFAULT_URL", "AsyncClient", "Client", "Endpoint", "parse_url"]

#: where ``shipyard serve`` listens for REST by default
DEFAULT_URL = "http://127.0.0.1:8000"
#: gRPC's port when a ``grpc://`` URL gives none (the server's default)
DEFAULT_GRPC_PORT = 8001

T = TypeVar("T")
Protocol_ = Literal["rest", "grpc"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a client connects: protocol, ``host:port`` and whether over TLS."""

    protocol: Protocol_
    target: str
    tls: bool

    @property
    def url(self) -> str:
        """The URL again, normalised (``http://host:port``, ``grpcs://host:port``)."""
        scheme = {("rest", False): "http", ("rest", True): "https",
                  ("grpc", False): "grpc", ("grpc", True): "grpcs"}[self.protocol, self.tls]
        return f"{scheme}://{self.target}"


def parse_url(url: str) -> Endpoint:
    """``http://``/``https://`` (REST), ``grpc://``/``grpcs://`` (gRPC); a bare ``host:port``
    is REST. Raises InvalidArgument for another scheme or a URL without a host."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise InvalidArgument(f"URL {url!r} has scheme {parts.scheme!r}; use http://, "
                              "https://, grpc:// or grpcs://")
    if not parts.hostname:
        raise InvalidArgument(f"URL {url!r} has no host; e.g. http://127.0.0.1:8000 or "
                              "grpc://127.0.0.1:8001")
    if parts.path not in ("", "/"):
        raise InvalidArgument(f"URL {url!r} has a path ({parts.path!r}); give the server's "
                              "root, e.g. http://127.0.0.1:8000")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"URL {url!r}: {exc}") from exc
    grpc_ = scheme.startswith("grpc")
    tls = scheme in ("https", "grpcs")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None:
        port = DEFAULT_GRPC_PORT if grpc_ else (443 if tls else 80)
    return Endpoint("grpc" if grpc_ else "rest", f"{host}:{port}", tls)


def _arrays(inputs: Mapping[str, Any]) -> dict[str, Array]:
    """Inputs as numpy arrays of V2 datatypes (str and bytes as BYTES)."""
    if not inputs:
        raise InvalidArgument("infer() needs at least one input: {name: array}")
    out = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        try:
            datatype_of(array)
        except KeyError:
            raise InvalidArgument(f"input {name!r}: numpy dtype {array.dtype} has no V2 "
                                  "datatype; use bool, (u)int8-64, float16/32/64, str or "
                                  "bytes") from None
        out[name] = array
    return out


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise InvalidArgument(f"top_k must be a positive integer (labels per item), "
                              f"got {top_k!r}")


class _Transport(Protocol):
    url: str

    def close(self) -> Any: ...
    def live(self, timeout_s: float | None) -> Any: ...
    def ready(self, timeout_s: float | None) -> Any: ...
    def server_metadata(self, timeout_s: float | None) -> Any: ...
    def model_metadata(self, model: str, version: str, timeout_s: float | None) -> Any: ...
    def model_ready(self, model: str, version: str, timeout_s: float | None) -> Any: ...
    def infer(self, model: str, version: str, inputs: Mapping[str, Array],
              outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
              request_id: str, timeout_s: float | None) -> Any: ...
    def repository_index(self, timeout_s: float | None) -> Any: ...
    def load(self, model: str, timeout_s: float | None) -> Any: ...
    def unload(self, model: str, timeout_s: float | None) -> Any: ...


class _Common:
    """Settings both clients share."""

    def __init__(self, url: str, token: str | None, control_token: str | None,
                 timeout_s: float | None, retry: RetryPolicy | None,
                 ca_file: str | Path | None, verify: bool, cert_file: str | Path | None,
                 key_file: str | Path | None, asynchronous: bool) -> None:
        self.endpoint = parse_url(url)
        """Where this client connects."""
        self.timeout_s = timeout_s
        """Default deadline of a call in seconds, all its retries included (None: none)."""
        self.retry = retry if retry is not None else RetryPolicy()
        """When failed calls are tried again."""
        self._models: dict[tuple[str, str], ModelInfo] = {}
        grpc_ = self.endpoint.protocol == "grpc"
        tls = tls_config(self.endpoint.url, self.endpoint.tls, grpc_, ca_file, verify,
                         cert_file, key_file)
        transport: _Transport
        if grpc_:
            kind = AsyncGrpcTransport if asynchronous else GrpcTransport
            transport = kind(self.endpoint.target, secure=self.endpoint.tls, tls=tls,
                             token=token, control_token=control_token)
        else:
            rest = AsyncRestTransport if asynchronous else RestTransport
            transport = rest(self.endpoint.url, token=token, control_token=control_token,
                             tls=tls)
        self._transport = transport

    @property
    def protocol(self) -> Protocol_:
        """``rest`` or ``grpc``."""
        return self.endpoint.protocol

    @property
    def url(self) -> str:
        """The server's URL (normalised)."""
        return self.endpoint.url

    def _timeout(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s

    def _forget(self, model: str) -> None:
        for key in [k for k in self._models if k[0] == model]:
            del self._models[key]


class Client(_Common):
    """A blocking client of a Shipyard (or any KServe V2) server.

    ``url`` picks the protocol: ``http://host:port`` / ``https://`` for REST (one
    ``httpx.Client``, its connections kept alive), ``grpc://host:port`` / ``grpcs://`` for gRPC
    (one channel). ``token`` is sent as ``Authorization: Bearer`` (the server's
    ``--auth-token``); ``control_token`` (else ``token``) for load and unload.

    TLS (https, grpcs): ``ca_file`` is the PEM CA that signed the server's certificate (default:
    certifi's CAs for REST, gRPC's own roots); ``verify=False`` skips checking it (REST only).
    ``cert_file`` and ``key_file`` (both or neither) are this client's PEM certificate chain
    and its unencrypted PEM key, presented to a server that requires client certificates
    (mutual TLS, ``--tls-client-ca``). A file that cannot be read, a key that is not the
    certificate's or an encrypted key raise InvalidArgument here; a handshake that fails
    (the server's certificate not trusted, the client's refused) raises
    :class:`~shipyard.client.errors.TlsError`, which is never retried.

    Every call has a deadline of ``timeout_s`` (all retries included) and is retried per
    ``retry``.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None,
                 control_token: str | None = None, timeout_s: float | None = 60.0,
                 retry: RetryPolicy | None = None, ca_file: str | Path | None = None,
                 verify: bool = True, cert_file: str | Path | None = None,
                 key_file: str | Path | None = None) -> None:
        super().__init__(url, token, control_token, timeout_s, retry, ca_file, verify,
                         cert_file, key_file, False)
        self._t: Any = self._transport

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (pool) or channel."""
        self._t.close()

    def _run(self, what: str, timeout_s: float | None, call: Callable[[float | None], T]) -> T:
        return retry_sync(self.retry, what, self._timeout(timeout_s), call)

    def live(self, *, timeout_s: float | None = None) -> bool:
        """Whether the server is live."""
        return bool(self._run("live", timeout_s, self._t.live))

    def ready(self, *, timeout_s: float | None = None) -> bool:
        """Whether the server is ready (False while it loads or drains)."""
        return bool(self._run("ready", timeout_s, self._t.ready))

    def server_metadata(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``name``, ``version`` and ``extensions`` of the server."""
        return self._run(
            "server metadata", timeout_s, self._t.server_metadata)

    def model(self, model: str, version: str = "", *, timeout_s: float | None = None
              ) -> ModelInfo:
        """The model's metadata (asked once, then remembered until it is loaded or unloaded
        through this client)."""
        key = (model, version)
        if key not in self._models:
            doc = self._run(f"metadata of model {model!r}", timeout_s,
                            lambda t: self._t.model_metadata(model, version, t))
            self._models[key] = ModelInfo.from_metadata(doc)
        return self._models[key]

    def model_ready(self, model: str, version: str = "", *, timeout_s: float | None = None
                    ) -> bool:
        """Whether the model (or that version) is ready; NotFound for an unknown one."""
        return bool(self._run(f"readiness of model {model!r}", timeout_s,
                              lambda t: self._t.model_ready(model, version, t)))

    def models(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """The repository index: ``name``, ``version``, ``state`` and ``reason`` of each
        model the server knows."""
        return self._run(
            "repository index", timeout_s, self._t.repository_index)

    def load(self, model: str, *, timeout_s: float | None = None) -> None:
        """Load (or reload) a model (explicit model control; the control token)."""
        self._forget(model)
        self._run(f"load of model {model!r}", timeout_s, lambda t: self._t.load(model, t))

    def unload(self, model: str, *, timeout_s: float | None = None) -> None:
        """Unload a model after its queued requests finish (explicit model control)."""
        self._forget(model)
        self._run(f"unload of model {model!r}", timeout_s, lambda t: self._t.unload(model, t))

    def infer(self, model: str, inputs: Mapping[str, Any], *, outputs: Sequence[str] | None = None,
              version: str = "", parameters: Mapping[str, Any] | None = None,
              request_id: str = "", timeout_s: float | None = None) -> dict[str, Array]:
        """V2 inference: ``{name: array}`` in, ``{name: array}`` out (every output, or those
        named in ``outputs``). Arrays of str or bytes travel as BYTES."""
        arrays = _arrays(inputs)
        wanted = None if outputs is None else [OutputRequest(o) for o in outputs]
        return self._run(
            f"inference of model {model!r}", timeout_s,
            lambda t: self._t.infer(model, version, arrays, wanted, parameters, request_id, t))

    def predict(self, model: str, items: Any, *, top_k: int | None = None, version: str = "",
                timeout_s: float | None = None) -> list[Prediction]:
        """The model's own vocabulary: a list of items in, one :class:`Prediction` per item
        out, with its likeliest labels and their probabilities where the model names classes.

        Items are file paths or bytes (image models), strings (text models), ``{column:
        value}`` dicts or one dict of columns (tabular models with raw columns), or rows of
        numbers (a model of one numeric input). ``top_k``: labels per item (default 5, or the
        model's own top_k step)."""
        _check_top_k(top_k)
        info = self.model(model, version, timeout_s=timeout_s)
        arrays = encode_items(info, items)
        wanted = output_requests(info)
        outputs = self._run(f"prediction of model {model!r}", timeout_s,
                            lambda t: self._t.infer(model, version, arrays, wanted, None, "", t))
        return predictions(info, outputs, top_k)


class AsyncClient(_Common):
    """The awaitable twin of :class:`Client` (same arguments, same methods, awaited): one
    ``httpx.AsyncClient`` or one ``grpc.aio`` channel."""

    def __init__(self, url: str = "http://127.0.0.1:8000", *, token: str | None = None,
                 control_token: str | None = None, timeout_s: float | None = 60.0,
                 retry: RetryPolicy | None = None, ca_file: str | Path | None = None,
                 verify: bool = True, cert_file: str | Path | None = None,
                 key_file: str | Path | None = None) -> None:
        super().__init__(url, token, control_token, timeout_s, retry, ca_file, verify,
                         cert_file, key_file, True)
        self._t: Any = self._transport

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool or channel."""
        await self._t.close()

    async def _run(self, what: str, timeout_s: float | None,
                   call: Callable[[float | None], Awaitable[T]]) -> T:
        return await retry_async(self.retry, what, self._timeout(timeout_s), call)

    async def live(self, *, timeout_s: float | None = None) -> bool:
        """Whether the server is live."""
        return await self._run("live", timeout_s, self._t.live)

    async def ready(self, *, timeout_s: float | None = None) -> bool:
        """Whether the server is ready."""
        return await self._run("ready", timeout_s, self._t.ready)

    async def server_metadata(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """``name``, ``version`` and ``extensions`` of the server."""
        return await self._run(
            "server metadata", timeout_s, self._t.server_metadata)

    async def model(self, model: str, version: str = "", *, timeout_s: float | None = None
                    ) -> ModelInfo:
        """The model's metadata (remembered, as :meth:`Client.model`)."""
        key = (model, version)
        if key not in self._models:
            doc = await self._run(f"metadata of model {model!r}", timeout_s,
                                  lambda t: self._t.model_metadata(model, version, t))
            self._models[key] = ModelInfo.from_metadata(doc)
        return self._models[key]

    async def model_ready(self, model: str, version: str = "", *,
                          timeout_s: float | None = None) -> bool:
        """Whether the model (or that version) is ready."""
        return await self._run(
            f"readiness of model {model!r}", timeout_s,
            lambda t: self._t.model_ready(model, version, t))

    async def models(self, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """The repository index."""
        return await self._run(
            "repository index", timeout_s, self._t.repository_index)

    async def load(self, model: str, *, timeout_s: float | None = None) -> None:
        """Load (or reload) a model."""
        self._forget(model)
        await self._run(f"load of model {model!r}", timeout_s,
                        lambda t: self._t.load(model, t))

    async def unload(self, model: str, *, timeout_s: float | None = None) -> None:
        """Unload a model."""
        self._forget(model)
        await self._run(f"unload of model {model!r}", timeout_s,
                        lambda t: self._t.unload(model, t))

    async def infer(self, model: str, inputs: Mapping[str, Any], *,
                    outputs: Sequence[str] | None = None, version: str = "",
                    parameters: Mapping[str, Any] | None = None, request_id: str = "",
                    timeout_s: float | None = None) -> dict[str, Array]:
        """V2 inference, as :meth:`Client.infer`."""
        arrays = _arrays(inputs)
        wanted = None if outputs is None else [OutputRequest(o) for o in outputs]
        return await self._run(
            f"inference of model {model!r}", timeout_s,
            lambda t: self._t.infer(model, version, arrays, wanted, parameters, request_id, t))

    async def predict(self, model: str, items: Any, *, top_k: int | None = None,
                      version: str = "", timeout_s: float | None = None) -> list[Prediction]:
        """The model's own vocabulary, as :meth:`Client.predict`."""
        _check_top_k(top_k)
        info = await self.model(model, version, timeout_s=timeout_s)
        arrays = encode_items(info, items)
        wanted = output_requests(info)
        outputs = await self._run(
            f"prediction of model {model!r}", timeout_s,
            lambda t: self._t.infer(model, version, arrays, wanted, None, "", t))
        return predictions(info, outputs, top_k)
