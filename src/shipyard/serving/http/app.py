"""The REST frontend: a plain ASGI application (no framework on the hot path).

It only translates HTTP to :class:`InferenceRequest` and back; all decisions live in the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import math
import os
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from shipyard.protocol.wire import deadline_from_ms
from shipyard.serving.control import Control
from shipyard.serving.describe import (
    model_config,
    model_metadata,
    model_statistics,
    server_metadata,
)
from shipyard.serving.errors import (
    InvalidInput,
    MethodNotAllowed,
    PayloadTooLarge,
    ShipyardError,
    Unauthenticated,
)
from shipyard.serving.http.asgi import Message, Receive, Scope, Send
from shipyard.serving.http.codec import decode_infer_request, encode_infer_response, parse_json
from shipyard.serving.http.errors import HTTP_STATUS
from shipyard.serving.http.openapi import DOCS_HTML, openapi_document
from shipyard.serving.http.predict import parse_predict_form, parse_predict_json
from shipyard.serving.http.routes import ROUTES, Router
from shipyard.serving.logs import log_settings, update_log_settings
from shipyard.serving.metrics import CONTENT_TYPE, MetricsExporter
from shipyard.serving.model import ModelVersion
from shipyard.serving.overrides import load_override
from shipyard.serving.peers import Peers
from shipyard.serving.registry import ModelRegistry
from shipyard.serving.shm import SystemSharedMemory, cuda_shared_memory_refusal
from shipyard.serving.simple import predict_request, predict_result
from shipyard.serving.trace import trace_settings, update_trace_settings

__all__ = ["HttpApp"]

log = logging.getLogger("shipyard.http")


_JSON = b"application/json"
#: after a 413 on a streamed body, read and drop up to this much more so the client sees it
_DRAIN_AFTER_413 = 16 * 1024 * 1024
_OCTET = b"application/octet-stream"
#: the OIP's health bodies (the status code says the same: 200 or 503)
_LIVE = orjson.dumps({"live": True})
_READY = orjson.dumps({"ready": True})
_NOT_READY = orjson.dumps({"ready": False})
#: the fields of a system shared-memory register body (Triton's)
_REGISTER_KEYS = frozenset({"key", "offset", "byte_size"})


#: an HttpApp route method: ``(scope, receive, send, *parameters)``
Handler = Callable[..., Awaitable[None]]


class _Disconnected(Exception):
    pass


class HttpApp:
    """ASGI 3 application serving one :class:`ModelRegistry`."""

    def __init__(
        self, models: ModelRegistry, control: Control, *, default_model: str | None = None,
        max_body_bytes: int = 64 * 1024 * 1024, max_json_bytes: int = 16 * 1024 * 1024,
        shm: SystemSharedMemory | None = None, auth_metrics: bool = False,
        peers: Peers | None = None,
    ) -> None:
        self.models = models
        #: with ``--workers N``: the other workers (readiness, summed statistics)
        self.peers = peers
        self.shm = shm if shm is not None else SystemSharedMemory()
        self.control = control
        self.default_model = default_model
        self.max_body_bytes = max_body_bytes
        self.max_json_bytes = max_json_bytes
        self.metrics = MetricsExporter(models, peers)
        self.accepting = True
        self._openapi_json = orjson.dumps(openapi_document())
        guarded = _guarded_handlers(control.auth, auth_metrics)
        self._router: Router[tuple[Handler, bool]] = Router(
            ROUTES, lambda name: (getattr(self, "_" + name), name in guarded))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        headers = scope["shipyard.headers"] = dict(scope["headers"])
        rid = _request_id(headers)
        _REQUEST_ID.set((b"x-request-id", rid.encode()))  # this request's task only
        try:
            (handler, guarded), params = self._router.match(scope["method"], scope["path"])
            if guarded:
                auth = headers.get(b"authorization")
                self.control.check_access(None if auth is None else auth.decode("latin-1"))
            await handler(scope, receive, send, *params)
        except _Disconnected:
            return
        except asyncio.CancelledError:  # the grace period ended with this request unanswered
            with contextlib.suppress(Exception):
                await _send(send, 503, _err(
                    "server stopped before this request finished (grace period over); retry"))
            # answered: end the task normally (the server treats a cancelled task as unanswered)
        except ShipyardError as exc:
            status = HTTP_STATUS[exc.code]
            _log_error(scope, rid, status, exc.message)
            extra = None
            if isinstance(exc, PayloadTooLarge):
                extra = [(b"connection", b"close")]
            elif isinstance(exc, MethodNotAllowed):
                extra = [(b"allow", ", ".join(exc.allowed).encode())]
            elif isinstance(exc, Unauthenticated):
                extra = [(b"www-authenticate", b'Bearer realm="shipyard"')]
            await _send(send, status, _err(exc.message), extra=extra)
        except Exception as exc:  # last line of defence: log it, answer 500, keep serving
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"),
                          extra={"request_id": rid})
            await _send(send, 500, _err(f"internal error: {exc!r}"))

    # -- routes (the table is http/routes.py) --------------------------------------------------

    async def _server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, orjson.dumps(server_metadata()))

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, _LIVE)

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.models.ready and self.accepting and (self.peers is None
                                                     or self.peers.all_ready()):
            await _send(send, 200, _READY)
        else:
            await _send(send, 503, _NOT_READY)

    async def _all_stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = [self._statistics(mv) for mv in self.models.all_versions()]
        await _send(send, 200, orjson.dumps({"model_stats": stats}))

    def _statistics(self, mv: ModelVersion) -> dict[str, Any]:
        return model_statistics(mv, None if self.peers is None
                                else self.peers.stats(mv.name, mv.version))

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, self.metrics.render(), CONTENT_TYPE.encode())

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, self._openapi_json)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, DOCS_HTML.encode(), b"text/html; charset=utf-8")

    async def _model_metadata(self, scope: Scope, receive: Receive, send: Send, name: str,
                              version: str = "") -> None:
        mv = self.models.get(name, version)
        versions = [v.version for v in self.models.versions(name)]
        await _send(send, 200, orjson.dumps(model_metadata(mv, versions)))

    async def _model_ready(self, scope: Scope, receive: Receive, send: Send, name: str,
                           version: str = "") -> None:
        if version:
            failure = self.models.version_failure(name, version)
            if failure is not None:  # tried and failed: not ready (503), not unknown (404)
                return await _send(send, 503, orjson.dumps(
                    {"name": name, "ready": False, "reason": failure}))
            self.models.get(name, version)  # 404 for an unknown model or version
        else:
            self.models.versions(name)  # 404 for an unknown model
        if not self.models.model_ready(name, version):
            reason = self.models.not_ready_reason(name, version)
            return await _send(send, 503, orjson.dumps(
                {"name": name, "ready": False, "reason": reason}))
        await _send(send, 200, orjson.dumps({"name": name, "ready": True}))

    async def _model_config(self, scope: Scope, receive: Receive, send: Send, name: str,
                            version: str = "") -> None:
        await _send(send, 200, orjson.dumps(model_config(self.models.get(name, version))))

    async def _model_stats(self, scope: Scope, receive: Receive, send: Send, name: str,
                           version: str = "") -> None:
        chosen = [self.models.get(name, version)] if version else self.models.versions(name)
        doc = {"model_stats": [self._statistics(mv) for mv in chosen]}
        await _send(send, 200, orjson.dumps(doc))

    # -- repository extension -----------------------------------------------------------------

    async def _control(self, scope: Scope, receive: Receive, action: str) -> bytes:
        """Check the bearer token for ``action``, then read the request body."""
        headers = _headers(scope)
        auth = headers.get(b"authorization", b"").decode("latin-1") or None
        self.control.check(auth, action)
        return await self._body(receive, headers)

    async def _repository_index(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._control(scope, receive, "index")
        await _send(send, 200, orjson.dumps(await self.control.manager.index()))

    async def _repository_load(self, scope: Scope, receive: Receive, send: Send,
                               name: str) -> None:
        body = await self._control(scope, receive, "load")
        params: Any = {}
        if body.strip():
            doc = parse_json(body)
            if not isinstance(doc, dict) or set(doc) - {"parameters"}:
                raise InvalidInput(
                    "load request body must be {\"parameters\": {...}} (or empty); got "
                    + (f"field(s) {sorted(doc)}" if isinstance(doc, dict)
                       else type(doc).__name__))
            params = doc.get("parameters") or {}
            if not isinstance(params, dict):
                raise InvalidInput(
                    f"load 'parameters' must be an object, got {type(params).__name__}")
        override = load_override(name, params, files_base64=True)
        await self.control.load(name, override)
        await _send(send, 200, b"")

    async def _repository_unload(self, scope: Scope, receive: Receive, send: Send,
                                 name: str) -> None:
        await self._control(scope, receive, "unload")
        await self.control.unload(name)
        await _send(send, 200, b"")

    # -- shared memory ------------------------------------------------------------------------

    async def _shm_status(self, scope: Scope, receive: Receive, send: Send,
                          name: str = "") -> None:
        await _send(send, 200, orjson.dumps(self.shm.status(name)))

    async def _shm_register(self, scope: Scope, receive: Receive, send: Send,
                            name: str) -> None:
        doc = parse_json(await self._body(receive, _headers(scope), json=True))
        what = f"register body of system shared memory region {name!r}"
        if not isinstance(doc, dict):
            raise InvalidInput(
                f"{what} must be a JSON object {{\"key\", \"offset\", \"byte_size\"}}, got "
                f"{type(doc).__name__}")
        extra = set(doc) - _REGISTER_KEYS
        if extra:
            raise InvalidInput(
                f"{what}: unknown field(s) {sorted(extra)}; allowed: {sorted(_REGISTER_KEYS)}")
        for needed in ("key", "byte_size"):
            if needed not in doc:
                raise InvalidInput(f"{what} needs {needed!r}; send {{\"key\": \"/name\", "
                                   "\"offset\": 0, \"byte_size\": N}")
        self.shm.register(name, doc["key"], doc.get("offset", 0), doc["byte_size"])
        await _send(send, 200, b"")

    async def _shm_unregister(self, scope: Scope, receive: Receive, send: Send,
                              name: str = "") -> None:
        await self._body(receive, _headers(scope))
        self.shm.unregister(name)
        await _send(send, 200, b"")

    async def _cuda_shm(self, scope: Scope, receive: Receive, send: Send, *params: str) -> None:
        if scope["method"] == "POST":
            await self._body(receive, _headers(scope))
        raise cuda_shared_memory_refusal()

    # -- logging and trace extensions --------------------------------------------------------

    async def _settings_body(self, scope: Scope, receive: Receive, what: str) -> dict[str, Any]:
        """Check the token for changing ``what``; the body's settings ({} when empty)."""
        headers = _headers(scope)
        auth = headers.get(b"authorization", b"").decode("latin-1") or None
        self.control.check_settings(auth, what)
        body = await self._body(receive, headers, json=True)
        doc = parse_json(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise InvalidInput(f"{what} body must be a JSON object of settings, got "
                               f"{type(doc).__name__}")
        return doc

    async def _log_settings(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send(send, 200, orjson.dumps(log_settings()))

    async def _update_log_settings(self, scope: Scope, receive: Receive, send: Send) -> None:
        changes = await self._settings_body(scope, receive, "log settings")
        await _send(send, 200, orjson.dumps(update_log_settings(changes)))

    async def _trace_settings(self, scope: Scope, receive: Receive, send: Send,
                              name: str | None = None) -> None:
        if name is not None:
            self.models.versions(name)  # 404 for an unknown model
        await _send(send, 200, orjson.dumps(trace_settings()))

    async def _update_trace_settings(self, scope: Scope, receive: Receive, send: Send,
                                     name: str | None = None) -> None:
        if name is not None:
            self.models.versions(name)
        changes = await self._settings_body(scope, receive, "trace settings")
        await _send(send, 200, orjson.dumps(update_trace_settings(changes)))

    # -- inference ----------------------------------------------------------------------------

    async def _infer(self, scope: Scope, receive: Receive, send: Send, name: str,
                     version: str = "") -> None:
        self.models.get(name, version)  # 404 before reading a large body
        headers = _headers(scope)
        hlen = headers.get(b"inference-header-content-length")
        body = await self._body(receive, headers, json=hlen is None)
        json_size = _header_int(hlen)
        if json_size is not None and json_size > self.max_json_bytes:
            raise PayloadTooLarge(self._json_too_large(json_size))
        request = decode_infer_request(
            body, None if hlen is None else hlen.decode("latin-1"), name, version, self.shm)
        _timeout_header(headers, request)
        # resolve the version again now, with no await before it enters a queue: a hot reload
        # may have swapped versions while the body was read
        response = await self.models.get(name, version).infer(request)
        payload, header_len = encode_infer_response(request, response, self.shm)
        if header_len is None:
            await _send(send, 200, payload)
        else:
            await _send(send, 200, payload, _OCTET, extra=[
                (b"inference-header-content-length", str(header_len).encode())])

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str | None = None,
                       version: str = "") -> None:
        if name is None:  # POST /predict
            name = self.models.get_default(self.default_model, version).name  # 404 first
        self.models.get(name, version)  # 404 before reading the body
        headers = _headers(scope)
        query = scope.get("query_string", b"")
        ctype = headers.get(b"content-type", b"")
        if ctype.lower().startswith(b"multipart/form-data"):
            asked = parse_predict_form(ctype, await self._body(receive, headers), query)
        else:
            asked = parse_predict_json(
                parse_json(await self._body(receive, headers, json=True)), query)
        mv = self.models.get(name, version)
        request = predict_request(mv, asked)
        _timeout_header(headers, request)
        response = await mv.infer(request)
        await _send(send, 200, orjson.dumps(predict_result(mv, asked, response)))

    def _json_too_large(self, size: int) -> str:
        return (
            f"the JSON part of the request is {size} bytes, above the limit of "
            f"{self.max_json_bytes} bytes (server setting max_json_bytes: JSON numbers cost "
            "about 16x their size in memory); send large tensors with the binary tensor data "
            "extension (Inference-Header-Content-Length) or gRPC raw_input_contents"
        )

    async def _body(self, receive: Receive, headers: dict[bytes, bytes], *,
                    json: bool = False) -> bytes:
        """The request body: at most max_body_bytes, and max_json_bytes when it is all JSON."""
        limit = self.max_body_bytes
        declared = _header_int(headers.get(b"content-length"))
        if declared is not None:
            if declared > limit:
                raise PayloadTooLarge(
                    f"request body of {declared} bytes exceeds the limit of {limit} bytes "
                    "(server setting max_body_bytes)")
            if json and declared > self.max_json_bytes:
                # within max_body_bytes: read it away (bounded), so the client sees the 413
                await _discard(receive, {"more_body": True}, limit)
                raise PayloadTooLarge(self._json_too_large(declared))
        chunks = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _discard(receive, message, _DRAIN_AFTER_413)
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes (server setting "
                    "max_body_bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = headers.get(b"content-encoding")
        if encoding:
            body = _decompress(body, encoding, limit)
        if json and len(body) > self.max_json_bytes:
            raise PayloadTooLarge(self._json_too_large(len(body)))
        return body


def _guarded_handlers(auth: bool, auth_metrics: bool) -> frozenset[str]:
    """The handlers that check the auth token before they run (none without one); a handler
    that answers routes of different access is refused (the check is per handler)."""
    access: dict[str, str] = {}
    for route in ROUTES:
        if access.setdefault(route.handler, route.access) != route.access:
            raise ValueError(f"handler {route.handler!r} serves routes of different access")
    if not auth:
        return frozenset()
    return frozenset(name for name, how in access.items()
                     if how == "token" or (how == "metrics" and auth_metrics))


def _header_int(value: bytes | None) -> int | None:
    """A header's non-negative integer value; None when absent or not a plain short number."""
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


async def _discard(receive: Receive, message: Message, budget: int) -> None:
    """Read and drop the rest of a body (bounded in bytes and time), so a client that sends
    its whole body before reading gets our error reply instead of a broken pipe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while message.get("more_body", False) and budget > 0:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return
        budget -= len(message.get("body", b""))


def _decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc == b"identity":
        return body
    if enc not in (b"gzip", b"deflate"):
        raise InvalidInput(
            f"Content-Encoding {enc.decode('latin-1')!r} is not supported; use gzip or deflate")
    d = zlib.decompressobj(wbits=31 if enc == b"gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {enc.decode()} data: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not d.eof:
        raise InvalidInput(f"{enc.decode()} body is truncated (its end marker is missing)")
    if d.unused_data:
        raise InvalidInput(
            f"{len(d.unused_data)} byte(s) follow the end of the {enc.decode()} stream; send "
            "one compressed stream")
    return out


def _timeout_header(headers: dict[bytes, bytes], request: Any) -> None:
    raw = headers.get(b"timeout-ms")
    if raw is None:
        return
    given = raw.decode("latin-1")
    try:
        ms = float(given)
    except ValueError:
        ms = math.nan
    deadline = deadline_from_ms(ms, "header Timeout-Ms", given)
    if request.deadline_ns is None or deadline < request.deadline_ns:
        request.deadline_ns = deadline


def _headers(scope: Scope) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = scope["shipyard.headers"]  # built once in __call__
    return headers


def _err(message: str) -> bytes:
    return orjson.dumps({"error": message})


_ID_PREFIX = os.urandom(4).hex()
#: the X-Request-ID header of the request being answered (each ASGI request is its own task)
_REQUEST_ID: contextvars.ContextVar[tuple[bytes, bytes]] = contextvars.ContextVar(
    "shipyard_request_id", default=(b"x-request-id", b"")
)
_ids = itertools.count(1)


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's ``X-Request-ID`` when it is sane (<= 128 printable ASCII), else a new one."""
    value = headers.get(b"x-request-id")
    if value is not None:
        text: str = value.decode("latin-1")
        if 0 < len(text) <= 128 and text.isascii() and text.isprintable():
            return text
    return f"{_ID_PREFIX}-{next(_ids)}"


def _log_error(scope: Scope, rid: str, status: int, message: str) -> None:
    level = logging.DEBUG if status in (429, 503) else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "%s %s -> %d: %s", scope["method"], scope["path"], status, message,
                extra={"request_id": rid, "status": status})


async def _send(send: Send, status: int, body: bytes, content_type: bytes = _JSON,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               _REQUEST_ID.get()]
    if extra:
        headers.extend(extra)
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except (RuntimeError, OSError) as exc:  # the client hung up before our answer
        raise _Disconnected from exc


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
