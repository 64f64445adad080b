"""Shipyard's HTTP/1.1 server: an asyncio protocol on httptools that runs an ASGI application.

It replaces uvicorn on the hot path. Per request uvicorn builds a cycle object and a full scope,
runs flow-control bookkeeping and writes each response with two ``write()`` calls (head, then
body: two trips through the kernel's TCP stack on every answer). This server parses with the
same C parser (httptools, llhttp), builds a small ASGI scope and writes each response with one
``write()``. On the 2-core benchmark machine that alone is worth more than any other change to
the REST path (see docs/benchmarks.md).

Behaviour (each point is exercised by tests/serving/test_hostile.py and test_protocols.py):

* HTTP/1.0 and 1.1; keep-alive, closed after ``keep_alive_s`` idle; ``Connection: close``
  from either side; HEAD answers carry no body.
* Slow clients: a header section not complete ``header_timeout_s`` after its first byte, or a
  request body that the app waits for while no bytes arrive for ``body_timeout_s``, gets
  ``408`` and the connection closes (a client trickling bytes cannot hold a connection).
* Pipelining: requests on one connection are answered in order; at most ``MAX_PIPELINED``
  parsed requests wait (reading pauses beyond that).
* Request bodies (``Content-Length`` or chunked) stream to the app through ``receive()``;
  reading pauses while more than ``HIGH_WATER`` bytes wait unread. ``Expect: 100-continue``
  is answered when the app first asks for the body, so a request refused before that (413,
  404) never makes the client send its body.
* A request the parser rejects gets ``400`` (``431`` for a header section over
  ``max_header_bytes``), after the answers owed to the requests before it on the same
  connection; then the connection closes. Such closes linger: the server stops sending, reads
  and drops what the client still sends for up to ``LINGER_S``, then closes (closing a socket
  with unread bytes makes the kernel send a reset, which can destroy the answer before the
  client reads it). An upgrade request (WebSocket, h2c) is answered as
  plain HTTP/1.1 and the connection closes after it.
* An app that fails before answering gets a 500 from here; one that fails mid-answer gets its
  connection closed. A client that hangs up mid-request makes ``receive()`` return
  ``http.disconnect``; answers to it are dropped.
* :meth:`HttpServer.shutdown`: refuse new connections, close idle ones, let requests in flight
  finish within the grace period, then cancel what is left (the app answers those) and close.

The app must send well-formed header names and values: they are written as given (Shipyard's
own app is the only one this server runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools
import orjson

__all__ = ["ASGIApp", "HttpServer", "Message", "Receive", "Scope", "Send"]

log = logging.getLogger("shipyard.http.server")

# the ASGI 3 callables, as this server calls the app (and shipyard.serving.http.app implements it)
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: unread request-body bytes on one connection above which reading pauses
HIGH_WATER = 256 * 1024
#: parsed requests waiting behind the one being answered, above which reading pauses
MAX_PIPELINED = 16
#: after an error answer that ends a connection, how long to read and drop what the client
#: still sends before closing (seconds)
LINGER_S = 5.0

_STATUS_LINE = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus
}
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> bytes:
    line = _STATUS_LINE.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


class _HeadersTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _Request:
    """One request on a connection: its scope, its body as it arrives, its answer's state."""

    __slots__ = (
        "broken",
        "chunked",
        "chunks",
        "close_after",
        "complete",
        "done",
        "ended",
        "expect_continue",
        "head",
        "head_sent",
        "headers",
        "keep_alive",
        "muted",
        "proto",
        "scope",
        "started",
        "status",
        "task",
        "unread",
        "waiter",
    )

    def __init__(self, proto: HttpProtocol, scope: Scope, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.keep_alive = keep_alive
        self.head = scope["method"] == "HEAD"
        self.expect_continue = expect_continue
        self.chunks: list[bytes] = []
        self.unread = 0
        self.complete = False  # the whole body has been parsed
        self.broken = False  # the body will never complete (client gone or bad framing)
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # http.response.start received
        self.head_sent = False
        self.done = False  # the last body message was written
        self.chunked = False
        self.close_after = False
        self.ended = False  # receive() returned the last piece of the body
        self.muted = False  # the parser rejected the body: a 400 answers, not the app

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the ASGI callables ---------------------------------------------------------------------

    async def receive(self) -> Message:
        proto = self.proto
        if self.expect_continue:
            self.expect_continue = False
            if not self.started and proto.transport is not None and not self.broken:
                proto.transport.write(_CONTINUE)
                proto.last_read = proto.loop.time()  # the body timeout counts from here
        while not self.chunks and not self.complete and not self.broken:
            self.waiter = proto.loop.create_future()
            proto.resume_reading()  # the app waits for bytes: never leave reading paused
            await self.waiter
        if self.chunks:
            body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks.clear()
            proto.release(self.unread)
            self.unread = 0
            self.ended = self.complete
            return {"type": "http.request", "body": body, "more_body": not self.complete}
        if self.complete and not self.ended:
            self.ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # the whole body was delivered (or never will be): wait for the client to go away
        while not self.broken and not self.done:
            self.waiter = proto.loop.create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = message["status"]
            self.headers = message.get("headers", [])
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started or self.done:
            raise RuntimeError("http.response.body without a response in progress")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if not more:
            self.done = True
            self.wake()  # a receive() waiting for the end of the request returns now
        if self.muted:
            return  # the parser rejected this request's body: a 400 answers it
        proto = self.proto
        transport = proto.transport
        if not self.head_sent:
            self.head_sent = True
            data = self._head(body, more)
            if not self.head:
                data += self._frame(body, more) if self.chunked else body
        elif self.head:
            return
        else:
            data = self._frame(body, more) if self.chunked else body
        if transport is None or transport.is_closing():
            return  # the client went away: answers to it are dropped
        transport.write(data)
        if proto.writing_paused:
            await proto.drain()

    def _frame(self, body: bytes, more: bool) -> bytes:
        piece = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        return piece if more else piece + b"0\r\n\r\n"

    def _head(self, body: bytes, more: bool) -> bytes:
        proto = self.proto
        status = self.status
        parts = [_status_line(status)]
        bodiless = status < 200 or status in (204, 304)  # no body, no framing (RFC 9110)
        if bodiless:
            self.head = True
        length = bodiless
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                if bodiless and status != 304:
                    continue
                length = True
            elif lname == b"connection" and value.lower() == b"close":
                self.close_after = True
                continue
            elif lname == b"transfer-encoding":
                continue  # framing is this server's business
            parts += (name, b": ", value, b"\r\n")
        if not length:
            if more and self.scope["http_version"] == "1.0":
                self.close_after = True  # HTTP/1.0 has no chunks: the body ends at close
            elif more:
                self.chunked = not self.head
                if self.chunked:
                    parts.append(b"transfer-encoding: chunked\r\n")
            else:
                parts.append(b"content-length: %d\r\n" % len(body))
        if self.close_after or not self.keep_alive or proto.server.stopping:
            self.close_after = True
            parts.append(_CLOSE)
        elif self.scope["http_version"] == "1.0":
            parts.append(_KEEP_ALIVE)
        parts.append(proto.server.date)
        parts.append(b"\r\n")
        return b"".join(parts)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.requests: deque[_Request] = deque()  # [0] is being answered
        self.parsing: _Request | None = None  # the request whose body is being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        # the header-section limit, counted twice: exactly, from the parser's callbacks (a
        # section that ends within one read), and from the bytes read while a section is open
        # (httptools holds a header line until it ends, so an endless line never calls back)
        self.header_bytes = 0
        self.in_headers = True  # the next bytes belong to a request's header section
        self.raw_header_bytes = 0
        self.buffered = 0  # unread body bytes
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.dead = False  # the parser stopped: answer what is owed, then close
        self.error_reply: bytes | None = None
        self.idle_since: float | None = None
        self.headers_since: float | None = None  # a header section began then, not yet ended
        # loop time of the last bytes received (or of a 100 Continue, or of reading resumed)
        self.last_read = 0.0
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.server.connections[self] = None
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        name = transport.get_extra_info("sockname")
        self.sockname = (str(name[0]), int(name[1])) if isinstance(name, tuple) else None
        self.idle_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.pop(self, None)
        self.transport = None
        self.dead = True
        for request in self.requests:
            if not request.complete:
                request.broken = True
            request.wake()
        if self.parsing is not None:
            self.parsing.broken = True
            self.parsing.wake()
        self._wake_drain()
        self.server.check_idle()

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return  # also while lingering: dropped
        self.idle_since = None
        self.last_read = self.loop.time()
        if self.in_headers:  # bytes of a header section that has not ended (at least)
            self.raw_header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Shipyard speaks HTTP/1.1 only: answer the request as plain HTTP, then close
            # (the bytes after it belong to the other protocol)
            self._stop_parsing(None)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadersTooLarge):
                self._stop_parsing(self._too_large())
            elif isinstance(cause, _BadRequest):
                self._stop_parsing(self._error(400, f"malformed HTTP request: {cause}"))
            else:
                log.exception("HTTP parser callback failed")
                self._stop_parsing(self._error(500, "internal error while parsing the request"))
        except httptools.HttpParserError as exc:
            self._stop_parsing(self._error(400, f"malformed HTTP request: {exc}"))
        else:
            # httptools holds a header line until it ends: an endless one is caught here
            if self.in_headers and self.raw_header_bytes > self.server.max_header_bytes:
                self._stop_parsing(self._too_large())
        if (self.idle_since is None and not self.requests and self.parsing is None
                and self.headers_since is None):  # (a half-sent header section: 408, later)
            self.idle_since = self.loop.time()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drain()

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.headers_since = self.last_read

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.server.max_header_bytes:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.server.max_header_bytes:
            raise _HeadersTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise _BadRequest(f"invalid request target {self.url[:100]!r}") from None
        raw_path: bytes = parsed.path or b"/"
        if b"%" in raw_path or not raw_path.isascii():
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("ascii")
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _BadRequest(f"HTTP/{version} is not supported here; use HTTP/1.1")
        self.in_headers = False
        self.raw_header_bytes = 0
        self.headers_since = None
        headers = self.headers
        expect = False
        if version == "1.1":  # HTTP/1.0 has no 100 (Continue): RFC 9110 10.1.1
            for name, value in headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    expect = True
        scope: Scope = {
            "type": "http", "asgi": _ASGI, "http_version": version,
            "method": parser.get_method().decode("ascii", "replace"), "scheme": "http",
            "path": path, "raw_path": raw_path, "query_string": parsed.query or b"",
            "root_path": "", "headers": headers, "client": self.client,
            "server": self.sockname,
        }
        request = _Request(self, scope, parser.should_keep_alive(), expect)
        self.parsing = request
        self.requests.append(request)
        if len(self.requests) == 1:
            self._start(request)
        elif len(self.requests) > MAX_PIPELINED:
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is None or request.done or request.broken:
            return  # answered already (e.g. 404 before the body was read): dropped
        request.chunks.append(body)
        request.unread += len(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self.pause_reading()
        request.wake()

    def on_message_complete(self) -> None:
        request = self.parsing
        self.parsing = None
        self.in_headers = True
        self.raw_header_bytes = 0
        if request is not None:
            request.complete = True
            request.wake()

    # -- flow control -----------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
            self.last_read = self.loop.time()  # silence while paused was not the client's

    def release(self, nbytes: int) -> None:
        self.buffered -= nbytes
        if self.buffered <= HIGH_WATER and len(self.requests) <= MAX_PIPELINED:
            self.resume_reading()

    async def drain(self) -> None:
        if self.writing_paused and self.transport is not None:
            if self.drain_waiter is None:
                self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def _wake_drain(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- requests ---------------------------------------------------------------------------------

    def _start(self, request: _Request) -> None:
        request.task = self.loop.create_task(self._run(request))

    async def _run(self, request: _Request) -> None:
        try:
            await self.app(request.scope, request.receive, request.send)
        except asyncio.CancelledError:
            pass  # the server's grace period ended; the app had its chance to answer
        except Exception:
            log.exception("unhandled error in the HTTP app on %s %s",
                          request.scope["method"], request.scope["path"])
        finally:
            self._finished(request)

    def _finished(self, request: _Request) -> None:
        transport = self.transport
        if transport is not None and not request.done:
            if request.head_sent:  # a half-written answer: the connection cannot go on
                transport.close()
                return
            if not request.broken:
                self._write_error(request, 500, "internal error: the request got no answer")
        if self.requests and self.requests[0] is request:
            self.requests.popleft()
        if request.unread:
            self.release(request.unread)
            request.chunks.clear()
            request.unread = 0
        if transport is None:
            return
        if request.close_after:
            if request.complete or request.broken:
                transport.close()
            else:  # the client may still be sending the body: let it, so it reads the answer
                self._linger()
            return
        if self.requests:
            self._start(self.requests[0])
            if len(self.requests) <= MAX_PIPELINED and self.buffered <= HIGH_WATER:
                self.resume_reading()
            return
        if self.error_reply is not None:
            transport.write(self.error_reply)
            self._linger()
            return
        if request.broken:
            transport.close()
            return
        if self.server.stopping and self.parsing is None:
            transport.close()
            return
        self.resume_reading()
        if self.parsing is None:
            self.idle_since = self.loop.time()
        self.server.check_idle()

    def _too_large(self) -> bytes:
        return self._error(431, f"request header section exceeds {self.server.max_header_bytes} "
                           "bytes; send fewer or shorter headers")

    def _error(self, status: int, message: str) -> bytes:
        body = orjson.dumps({"error": message})  # the app's error shape
        return b"".join((
            _status_line(status), b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), _CLOSE, self.server.date, b"\r\n", body))

    def _write_error(self, request: _Request, status: int, message: str) -> None:
        request.close_after = True
        request.done = True
        if self.transport is not None:
            self.transport.write(self._error(status, message))

    def _stop_parsing(self, reply: bytes | None) -> None:
        """The parser cannot go on: answer the requests before this point, then ``reply``
        (if any), then close."""
        self.dead = True
        self.pause_reading()
        pending = self.parsing
        if pending is not None:  # its body will never complete
            self.parsing = None
            pending.broken = True
            if not pending.head_sent:
                pending.muted = True  # the 400 below answers it, not the app
            else:
                reply = None  # it was answered already: close after it, say nothing more
            pending.wake()
        if reply is None:
            if self.requests:
                self.requests[-1].close_after = True
            elif self.transport is not None:
                self.transport.close()
            return
        if self.requests:
            self.error_reply = reply
        elif self.transport is not None:
            self.transport.write(reply)
            self._linger()

    def _linger(self) -> None:
        """Close without destroying the answer just written: send FIN, drop whatever the client
        still sends (``dead`` makes data_received drop it) until it closes or LINGER_S pass."""
        transport = self.transport
        if transport is None:
            return
        self.dead = True
        pending, self.parsing = self.parsing, None
        if pending is not None:  # a body that will never be read now
            pending.broken = True
            pending.wake()
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.resume_reading()
        self.loop.call_later(LINGER_S, transport.close)

    def check_timeouts(self, header_limit: float, body_limit: float) -> None:
        """Answer 408 and close when a header section began before ``header_limit`` (loop
        time) and has not ended, or when the app waits for body bytes and none came since
        ``body_limit``. Only while the client holds things up: never while an earlier request
        is being answered or reading is paused."""
        if self.dead or self.transport is None:
            return
        if (self.headers_since is not None and self.headers_since < header_limit
                and not self.requests):
            self._stop_parsing(self._error(
                408, f"request header section not complete within "
                f"{self.server.header_timeout_s:g} s; send the whole header section at once"))
            return
        body = self.parsing
        if (body is not None and body.waiter is not None and self.requests
                and self.requests[0] is body and not self.reading_paused
                and self.last_read < body_limit):
            self._stop_parsing(self._error(
                408, f"request body: no bytes received for {self.server.body_timeout_s:g} s "
                "while the server waited for them; send the body without pauses"))

    # -- shutdown ---------------------------------------------------------------------------------

    def close_if_idle(self) -> bool:
        if self.transport is None:
            return True
        if not self.requests and self.parsing is None:
            self.transport.close()
            return True
        return False

    def cancel(self) -> None:
        for request in self.requests:
            if request.task is not None and not request.task.done():
                request.task.cancel()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HttpServer:
    """Serves one ASGI app on listening sockets (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, keep_alive_s: float = 30.0,
                 max_header_bytes: int = 256 * 1024, header_timeout_s: float = 30.0,
                 body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.keep_alive_s = keep_alive_s
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes = max_header_bytes
        self.loop = asyncio.get_running_loop()
        #: live connections, oldest first (a dict: ordered, so shutdown walks them in a fixed order)
        self.connections: dict[HttpProtocol, None] = {}
        self.stopping = False
        self.date = b""
        self._servers: list[asyncio.AbstractServer] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._tick()

    async def start(self, sock: socket.socket) -> None:
        server = await self.loop.create_server(
            lambda: HttpProtocol(self), sock=sock, backlog=2048)
        self._servers.append(server)

    def _tick(self) -> None:
        """Once a second: refresh the Date header, close connections idle too long, answer
        408 to clients too slow with a header section or a body."""
        now = time.time()
        self.date = b"date: %s\r\n" % formatdate(now, usegmt=True).encode()
        loop_now = self.loop.time()
        limit = loop_now - self.keep_alive_s
        header_limit = loop_now - self.header_timeout_s
        body_limit = loop_now - self.body_timeout_s
        for conn in list(self.connections):
            idle = conn.idle_since
            if idle is not None and idle < limit and conn.close_if_idle():
                continue
            conn.check_timeouts(header_limit, body_limit)
        self._tick_handle = self.loop.call_later(1.0 - now % 1.0, self._tick)

    def check_idle(self) -> None:
        if not self.stopping:
            return
        for conn in list(self.connections):
            conn.close_if_idle()
        if not self.connections:  # a closing connection counts until its data is flushed
            self._idle.set()

    def close_listeners(self) -> None:
        """Refuse new connections from now on."""
        for server in self._servers:
            server.close()

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_s``), close."""
        self.stopping = True
        self.close_listeners()
        self.check_idle()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        if self.connections:
            busy = list(self.connections)
            for conn in busy:
                conn.cancel()  # the app answers each with 503
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 1.0)
            for conn in list(self.connections):
                conn.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
