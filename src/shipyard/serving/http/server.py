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

Modules: this one holds :class:`HttpServer` (listening sockets, the once-a-second tick, shutdown);
``_protocol.py`` one connection (``HttpProtocol``: requests in order, flow control, timeouts,
errors, closing); ``_parser.py`` its parsing (httptools callbacks, header limit, ASGI scope);
``_request.py`` one request's ``receive``/``send`` and the bytes of every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from email.utils import formatdate

from shipyard.serving.http._protocol import HttpProtocol
from shipyard.serving.http.asgi import ASGIApp

__all__ = ["HttpServer"]


class HttpServer:
    """Serves one ASGI app on listening sockets (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, keep_alive_s: float = 30.0,
                 max_header_bytes: int = 256 * 1024, header_timeout_s: float = 30.0,
                 body_timeout_s: float = 30.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.ssl_context = ssl_context
        #: the ASGI scope's ``scheme``
        self.scheme = "http" if ssl_context is None else "https"
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
        # TLS: the handshake must finish within header_timeout_s (a client that opens a
        # connection and says nothing is dropped); a failed one closes that connection alone
        server = await self.loop.create_server(
            lambda: HttpProtocol(self), sock=sock, backlog=2048, ssl=self.ssl_context,
            ssl_handshake_timeout=None if self.ssl_context is None else self.header_timeout_s)
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
