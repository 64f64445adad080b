"""One request on a connection of Shipyard's HTTP/1.1 server: its scope, its body as it arrives
(``receive``) and the writing of its answer (``send``), plus the bytes of the server's own
answers (status lines, error replies)."""

from __future__ import annotations

import asyncio
import http
from typing import TYPE_CHECKING

import orjson

from shipyard.serving.http.asgi import Message, Scope

if TYPE_CHECKING:
    from shipyard.serving.http._protocol import HttpProtocol

__all__ = ["CLOSE", "Request", "error_answer", "status_line"]

_STATUS_LINE = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus
}
CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINE.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def error_answer(status: int, message: str, date: bytes) -> bytes:
    """A whole answer of the server's own, in the app's error shape; it closes the connection."""
    body = orjson.dumps({"error": message})
    return b"".join((
        status_line(status), b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body), CLOSE, date, b"\r\n", body))


class Request:
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
        parts = [status_line(status)]
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
            parts.append(CLOSE)
        elif self.scope["http_version"] == "1.0":
            parts.append(_KEEP_ALIVE)
        parts.append(proto.server.date)
        parts.append(b"\r\n")
        return b"".join(parts)
