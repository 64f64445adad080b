"""uvicorn as the alternative to Shipyard's own HTTP/1.1 server (``http_server: uvicorn``).

The same ASGI app, the same listening socket and the same calls as
:class:`~shipyard.serving.http.server.HttpServer` (``start(sock)``, ``shutdown(grace_s)``),
served by ``uvicorn.Server`` with its httptools protocol, without its access log, lifespan,
proxy-header rewriting, ``server`` header or signal handlers (Shipyard's server owns those).
uvicorn has no header-section or body timeouts and no header-size limit of its own; it answers
what its parser rejects with its own plain-text 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import uvicorn

from shipyard.serving.http.asgi import ASGIApp

__all__ = ["UvicornServer"]


class UvicornServer:
    """Serves one ASGI app on a listening socket with ``uvicorn.Server``."""

    def __init__(self, app: ASGIApp, *, keep_alive_s: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        tls: dict[str, Any] = {}
        if ssl_context is not None:  # the context Shipyard built, the same as the builtin's
            tls["ssl_context_factory"] = lambda config, default: ssl_context
        self.config = uvicorn.Config(
            app, http="httptools", ws="none", lifespan="off", access_log=False,
            log_config=None, proxy_headers=False, server_header=False,
            timeout_keep_alive=max(1, round(keep_alive_s)), backlog=2048, **tls,
        )
        self.config.load()
        self.server = uvicorn.Server(self.config)
        self.server.lifespan = self.config.lifespan_class(self.config)
        self.stopping = False
        self._ticking: asyncio.Task[None] | None = None

    @property
    def connections(self) -> set[Any]:
        """The live connections (uvicorn's protocol objects)."""
        connections: set[Any] = self.server.server_state.connections
        return connections

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (bound and listening); call once."""
        await self.server.on_tick(0)  # the Date header, before the first answer
        await self.server.startup(sockets=[sock])
        # uvicorn's once-a-tenth-of-a-second loop: Date header, and the end once should_exit
        self._ticking = asyncio.get_running_loop().create_task(self.server.main_loop())

    def close_listeners(self) -> None:
        """Refuse new connections from now on."""
        for server in getattr(self.server, "servers", []):
            server.close()

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_s``), then cancel what is
        left (the app answers those) and close."""
        self.stopping = True
        self.server.should_exit = True
        if self._ticking is not None:
            self._ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticking
        # (typed int; uvicorn hands it to asyncio.wait_for, which takes fractions of a second)
        self.config.timeout_graceful_shutdown = grace_s  # type: ignore[assignment]
        await self.server.shutdown()
        # uvicorn does not wait for the tasks it cancelled: let their 503 answers go out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while self.server.server_state.tasks and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
