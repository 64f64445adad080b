"""The gRPC server: a ``grpc.aio`` server carrying a :class:`GrpcFrontend`'s handlers on one
port (the counterpart of ``shipyard.serving.http.server.HttpServer``)."""

from __future__ import annotations

import grpc

from shipyard.serving.grpc.service import GrpcFrontend

__all__ = ["GrpcServer"]


class GrpcServer:
    """Serves one :class:`GrpcFrontend`; ``max_message_bytes`` bounds a received message."""

    def __init__(self, frontend: GrpcFrontend, *, max_message_bytes: int) -> None:
        self._server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_concurrent_streams", 1024),
        ])
        self._server.add_generic_rpc_handlers(frontend.handlers())

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = a free port) and serve; the port it listens on."""
        address = f"[{host}]" if ":" in host else host
        bound: int = self._server.add_insecure_port(f"{address}:{port}")
        await self._server.start()
        return bound

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new calls, let those in flight finish (up to ``grace_s``), then cancel them."""
        await self._server.stop(grace_s)
