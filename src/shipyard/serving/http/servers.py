"""The HTTP servers that can run :class:`~shipyard.serving.http.app.HttpApp`, chosen by the
``http_server`` setting: ``builtin`` (Shipyard's own HTTP/1.1 server, the default for its
measured gain) or ``uvicorn``. Each module is imported only when it is chosen."""

from __future__ import annotations

import importlib.util
import socket
import ssl
from typing import Literal, Protocol

from shipyard.serving.http.asgi import ASGIApp

__all__ = ["HttpListener", "HttpServerKind", "http_server", "missing"]

HttpServerKind = Literal["builtin", "uvicorn"]


class HttpListener(Protocol):
    """What the composition root needs of an HTTP server."""

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (bound, listening, non-blocking)."""

    async def shutdown(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace_s``), close."""


def missing(kind: HttpServerKind) -> str | None:
    """Why ``kind`` cannot run here (a package is not installed), or None when it can."""
    if kind == "uvicorn" and importlib.util.find_spec("uvicorn") is None:
        return ("http_server 'uvicorn' needs the uvicorn package, which is not installed: "
                "pip install 'shipyard[serve]', or use --http-server builtin")
    return None


def http_server(kind: HttpServerKind, app: ASGIApp, *, keep_alive_s: float = 30.0,
                ssl_context: ssl.SSLContext | None = None) -> HttpListener:
    """A server of ``kind`` for ``app`` (not started); https only with ``ssl_context``."""
    problem = missing(kind)
    if problem is not None:
        raise RuntimeError(problem)
    if kind == "uvicorn":
        from shipyard.serving.http.uvicorn_server import UvicornServer

        return UvicornServer(app, keep_alive_s=keep_alive_s, ssl_context=ssl_context)
    from shipyard.serving.http.server import HttpServer

    return HttpServer(app, keep_alive_s=keep_alive_s, ssl_context=ssl_context)
