"""The two tables that map :class:`~shipyard.protocol.errors.ErrorCode` to wire statuses: HTTP
status codes and gRPC status code names. The server's frontends answer with them and the
client reads them back (``shipyard.client.errors``): one owner for both directions."""

from __future__ import annotations

from shipyard.protocol.errors import ErrorCode

__all__ = ["GRPC_STATUS_NAMES", "HTTP_STATUS"]

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNIMPLEMENTED: 501,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}

#: the name of the ``grpc.StatusCode`` each code is answered with (names, so that this
#: package needs no grpc)
GRPC_STATUS_NAMES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    ErrorCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorCode.PERMISSION_DENIED: "PERMISSION_DENIED",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.METHOD_NOT_ALLOWED: "UNIMPLEMENTED",
    ErrorCode.ALREADY_EXISTS: "ALREADY_EXISTS",
    ErrorCode.PAYLOAD_TOO_LARGE: "RESOURCE_EXHAUSTED",
    ErrorCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    ErrorCode.INTERNAL: "INTERNAL",
    ErrorCode.UNIMPLEMENTED: "UNIMPLEMENTED",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
}
