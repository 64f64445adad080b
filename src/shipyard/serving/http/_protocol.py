"""One connection of Shipyard's HTTP/1.1 server: the asyncio protocol that runs each parsed
request through the app (in order), flow control both ways, timeouts, errors and closing.

Parsing is :class:`~shipyard.serving.http._parser.RequestParser`'s; writing an answer is
:class:`~shipyard.serving.http._request.Request`'s. The behaviour as a whole is described in
``shipyard.serving.http.server``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from shipyard.serving.http._parser import RequestParser
from shipyard.serving.http._request import Request, error_answer

if TYPE_CHECKING:
    from shipyard.serving.http.server import HttpServer

__all__ = ["HIGH_WATER", "LINGER_S", "MAX_PIPELINED", "HttpProtocol"]

log = logging.getLogger("shipyard.http.server")

#: unread request-body bytes on one connection above which reading pauses
HIGH_WATER = 256 * 1024
#: parsed requests waiting behind the one being answered, above which reading pauses
MAX_PIPELINED = 16
#: after an error answer that ends a connection, how long to read and drop what the client
#: still sends before closing (seconds)
LINGER_S = 5.0


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.reader = RequestParser(self, server.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self.requests: deque[Request] = deque()  # [0] is being answered
        self.parsing: Request | None = None  # the request whose body is being parsed
        self.buffered = 0  # unread body bytes
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.dead = False  # the parser stopped: answer what is owed, then close
        self.error_reply: bytes | None = None
        self.idle_since: float | None = None
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
        self.reader.feed(data)
        if (self.idle_since is None and not self.requests and self.parsing is None
                and self.reader.headers_since is None):  # (a half-sent header section: 408)
            self.idle_since = self.loop.time()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drain()

    # -- what the parser found (RequestParser calls these) ------------------------------------

    def request_parsed(self, request: Request) -> None:
        """A request's header section ended: answer it now, or after those before it."""
        self.parsing = request
        self.requests.append(request)
        if len(self.requests) == 1:
            self._start(request)
        elif len(self.requests) > MAX_PIPELINED:
            self.pause_reading()

    def body_parsed(self, body: bytes) -> None:
        request = self.parsing
        if request is None or request.done or request.broken:
            return  # answered already (e.g. 404 before the body was read): dropped
        request.chunks.append(body)
        request.unread += len(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self.pause_reading()
        request.wake()

    def message_complete(self) -> None:
        request = self.parsing
        self.parsing = None
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

    def _start(self, request: Request) -> None:
        request.task = self.loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            await self.app(request.scope, request.receive, request.send)
        except asyncio.CancelledError:
            pass  # the server's grace period ended; the app had its chance to answer
        except Exception:
            log.exception("unhandled error in the HTTP app on %s %s",
                          request.scope["method"], request.scope["path"])
        finally:
            self._finished(request)

    def _finished(self, request: Request) -> None:
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

    def _error(self, status: int, message: str) -> bytes:
        return error_answer(status, message, self.server.date)

    def _write_error(self, request: Request, status: int, message: str) -> None:
        request.close_after = True
        request.done = True
        if self.transport is not None:
            self.transport.write(self._error(status, message))

    def stop_parsing(self, reply: bytes | None) -> None:
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
        since = self.reader.headers_since
        if (since is not None and since < header_limit
                and not self.requests):
            self.stop_parsing(self._error(
                408, f"request header section not complete within "
                f"{self.server.header_timeout_s:g} s; send the whole header section at once"))
            return
        body = self.parsing
        if (body is not None and body.waiter is not None and self.requests
                and self.requests[0] is body and not self.reading_paused
                and self.last_read < body_limit):
            self.stop_parsing(self._error(
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
