"""The client's typed exceptions: one class per :class:`~shipyard.protocol.errors.ErrorCode`,
each carrying the server's own message and the wire status it came with.

Statuses are read back through the tables the server answers with
(:mod:`shipyard.protocol.status`), so an HTTP 429 and a gRPC ``RESOURCE_EXHAUSTED`` are both
:class:`ResourceExhausted`. A server that cannot be reached is :class:`Unavailable`; a deadline
that passes, on the client or on the server, is :class:`DeadlineExceeded`; a TLS handshake that
fails for good (an untrusted certificate, mutual TLS refusing the client) is :class:`TlsError`.
"""

from __future__ import annotations

from shipyard.protocol.errors import ErrorCode
from shipyard.protocol.status import GRPC_STATUS_NAMES, HTTP_STATUS

__all__ = [
    "AlreadyExists",
    "ClientError",
    "DeadlineExceeded",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResourceExhausted",
    "TlsError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_for_grpc",
    "error_for_http",
]


class ClientError(Exception):
    """Base of every error the client raises for a call that failed."""

    code: ErrorCode | None = None
    """The protocol-free code (None: a status no table knows, e.g. a proxy's 502)."""

    def __init__(self, message: str, *, status: int | str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        """The server's message (or the client's, for a failure it saw itself)."""
        self.status = status
        """The HTTP status (int) or gRPC status code name (str) of the answer; None when no
        answer came (no connection, a deadline the client enforced)."""
        self.retry_after_s = retry_after_s
        """Seconds the server asked the client to wait (``Retry-After``), if it said."""
        self.attempts = 1
        """How many attempts were made before this error was raised."""


class InvalidArgument(ClientError, ValueError):
    """The request is malformed or does not match the model's inputs (HTTP 400)."""

    code = ErrorCode.INVALID_ARGUMENT


class NotFound(ClientError, LookupError):
    """No such model, version or route (HTTP 404)."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(ClientError):
    """The object to create exists already (HTTP 409)."""

    code = ErrorCode.ALREADY_EXISTS


class Unavailable(ClientError):
    """The server or the model cannot serve now: not reachable, loading, draining (HTTP 503,
    gRPC UNAVAILABLE). Retried by the default policy."""

    code = ErrorCode.UNAVAILABLE


class TlsError(Unavailable):
    """The TLS handshake failed for good: this client does not trust the server's certificate
    (pass ``ca_file``), the certificate is not for this host, or the server refused this
    client's certificate or the lack of one (mutual TLS: pass ``cert_file`` and ``key_file``).
    An :class:`Unavailable` (no answer came), but never retried: another attempt would fail
    the same way."""


class ResourceExhausted(ClientError):
    """The model's queue is full (HTTP 429, gRPC RESOURCE_EXHAUSTED). Retried by the default
    policy."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class PayloadTooLarge(ClientError):
    """The request is larger than the server takes (HTTP 413; over gRPC it reads as
    :class:`ResourceExhausted`)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class DeadlineExceeded(ClientError, TimeoutError):
    """The call's deadline passed (HTTP 504, gRPC DEADLINE_EXCEEDED, or the client's own
    timeout)."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Unauthenticated(ClientError):
    """The call needs a bearer token the client did not send, or sent wrong (HTTP 401)."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ClientError):
    """The server does not allow the call in its configuration (HTTP 403), e.g. load/unload
    without ``--model-control explicit``."""

    code = ErrorCode.PERMISSION_DENIED


class Unimplemented(ClientError):
    """The server does not offer the operation (HTTP 501, gRPC UNIMPLEMENTED) or the method
    (HTTP 405)."""

    code = ErrorCode.UNIMPLEMENTED


class InternalError(ClientError):
    """The server failed while running a valid request (HTTP 500, gRPC INTERNAL)."""

    code = ErrorCode.INTERNAL


_BY_CODE: dict[ErrorCode, type[ClientError]] = {
    cls.code: cls for cls in (InvalidArgument, NotFound, AlreadyExists, Unavailable,
                              ResourceExhausted, PayloadTooLarge, DeadlineExceeded,
                              Unauthenticated, PermissionDenied, Unimplemented, InternalError)
    if cls.code is not None
}
_BY_CODE[ErrorCode.METHOD_NOT_ALLOWED] = Unimplemented
_BY_HTTP: dict[int, ErrorCode] = {status: code for code, status in HTTP_STATUS.items()}
#: a gRPC status several codes share reads as the first of them here
_BY_GRPC: dict[str, ErrorCode] = {}
for _code in (ErrorCode.RESOURCE_EXHAUSTED, ErrorCode.UNIMPLEMENTED, *GRPC_STATUS_NAMES):
    _BY_GRPC.setdefault(GRPC_STATUS_NAMES[_code], _code)


def error_for_http(status: int, message: str, retry_after_s: float | None = None
                   ) -> ClientError:
    """The typed exception of an HTTP error answer."""
    code = _BY_HTTP.get(status)
    cls = _BY_CODE.get(code, ClientError) if code is not None else ClientError
    return cls(message, status=status, retry_after_s=retry_after_s)


def error_for_grpc(status_name: str, message: str, retry_after_s: float | None = None
                   ) -> ClientError:
    """The typed exception of a gRPC status (``grpc.StatusCode.name``)."""
    code = _BY_GRPC.get(status_name)
    cls = _BY_CODE.get(code, ClientError) if code is not None else ClientError
    return cls(message, status=status_name, retry_after_s=retry_after_s)
