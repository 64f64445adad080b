"""The gRPC server: a ``grpc.aio`` server carrying a :class:`GrpcFrontend`'s handlers on one
port (the counterpart of ``shipyard.serving.http.server.HttpServer``)."""

from __future__ import annotations

import grpc

from shipyard.serving.grpc.service import GrpcFrontend
from shipyard.serving.tls import TlsFiles

__all__ = ["GrpcServer"]


class GrpcServer:
    """Serves one :class:`GrpcFrontend`; ``max_message_bytes`` bounds a received message;
    with ``tls`` the port speaks TLS only (mutual when ``tls`` has a client CA); with
    ``reuse_port`` other processes may listen on the same port (``SO_REUSEPORT``)."""

    def __init__(self, frontend: GrpcFrontend, *, max_message_bytes: int,
                 tls: TlsFiles | None = None, reuse_port: bool = False) -> None:
        self._tls = tls
        self._server = grpc.aio.server(options=[
            # on only for --workers N: the workers share the port; alone, a port already in
            # use must be an error
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_concurrent_streams", 1024),
        ])
        self._server.add_generic_rpc_handlers(frontend.handlers())

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = a free port) and serve; the port it listens on."""
        address = f"[{host}]" if ":" in host else host
        if self._tls is None:
            bound: int = self._server.add_insecure_port(f"{address}:{port}")
        else:
            credentials = grpc.ssl_server_credentials(
                [(self._tls.key, self._tls.cert)], root_certificates=self._tls.client_ca,
                require_client_auth=self._tls.mutual)
            bound = self._server.add_secure_port(f"{address}:{port}", credentials)
        await self._server.start()
        return bound

    async def shutdown(self, grace_s: float) -> None:
        """Refuse new calls, let those in flight finish (up to ``grace_s``), then cancel them."""
        await self._server.stop(grace_s)
