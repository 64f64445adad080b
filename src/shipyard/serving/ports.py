"""Binding the server's ports, and checking them before start-up. No grpc, no event loop:
the command line imports this to refuse a port in use in one line before anything starts."""

from __future__ import annotations

import socket

from shipyard.serving.config import ServerSettings

__all__ = ["bind_socket", "port_problem"]


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True
          ) -> socket.socket:
    """A TCP socket bound to ``host:port``, listening and non-blocking unless ``listen`` is
    False; with ``reuse_port``, other processes (the workers of ``--workers N``) may bind the
    same port (``SO_REUSEPORT``: the kernel spreads connections over the listening ones)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off only for sockets that say so (with Nagle
    # on, a response written while the previous one is unacknowledged stalls ~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
            sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def port_problem(settings: ServerSettings) -> str | None:
    """Why the server could not listen on its ports (one line naming the port and the fix),
    or None when both can be bound now: the command line checks this before start-up so a
    port in use is a one-line error rather than a traceback from inside the event loop."""
    host = settings.host
    if settings.http_port == settings.grpc_port != 0:
        return (f"--http-port and --grpc-port are both {settings.http_port}: give them "
                "different ports")
    held: list[socket.socket] = []
    try:
        for flag, port in (("--http-port", settings.http_port),
                           ("--grpc-port", settings.grpc_port)):
            try:
                held.append(bind_socket(host, port, listen=False))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                return (f"cannot listen on {host}:{port} ({flag}): {reason}; stop what holds "
                        f"it or pass a free {flag} (0 = any free port)")
    finally:
        for sock in held:
            sock.close()
    return None
