"""One small error hierarchy with protocol-free codes.

Frontends map :class:`ErrorCode` to HTTP statuses and gRPC codes in exactly one table each
(``http/errors.py``, ``grpc/errors.py``). Messages name the object, the bad value and the fix.
"""

from __future__ import annotations

import reprlib
from enum import StrEnum
from typing import Any

__all__ = [
    "AlreadyExists",
    "ErrorCode",
    "InferenceFailed",
    "InvalidInput",
    "MethodNotAllowed",
    "ModelNotFound",
    "ModelNotReady",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueFull",
    "RegionNotFound",
    "RequestTimeout",
    "ServerShuttingDown",
    "ShipyardError",
    "Unauthenticated",
    "Unimplemented",
    "brief",
]

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def brief(value: Any) -> str:
    """A short, bounded repr of a client-supplied value, for error messages (deeply nested or
    huge values never blow up a message)."""
    try:
        return _REPR.repr(value)
    except (RecursionError, ValueError):  # pragma: no cover - reprlib bounds the depth
        return "<unprintable value>"


class ErrorCode(StrEnum):
    """Protocol-free error codes (names follow gRPC's status codes)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"


class ShipyardError(Exception):
    """Base of every error the server reports to a client."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ShipyardError):
    """The request is malformed or does not match the model's inputs."""

    code = ErrorCode.INVALID_ARGUMENT


class PayloadTooLarge(ShipyardError):
    """The request body is larger than the configured limit."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class ModelNotFound(ShipyardError):
    """No such model, or no such version of it."""

    code = ErrorCode.NOT_FOUND


class ModelNotReady(ShipyardError):
    """The model exists but cannot serve now (failed to load, loading, unloading)."""

    code = ErrorCode.UNAVAILABLE


class ServerShuttingDown(ShipyardError):
    """The server is draining and accepts no new work."""

    code = ErrorCode.UNAVAILABLE


class QueueFull(ShipyardError):
    """The model's queue is full: the request is refused at once (backpressure)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class RequestTimeout(ShipyardError):
    """The request's deadline passed before it could run."""

    code = ErrorCode.DEADLINE_EXCEEDED


class PermissionDenied(ShipyardError):
    """The call is not allowed in this server's configuration."""

    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(ShipyardError):
    """A protected endpoint was called without the right bearer token."""

    code = ErrorCode.UNAUTHENTICATED


class InferenceFailed(ShipyardError):
    """The runtime failed while executing a request that passed validation."""

    code = ErrorCode.INTERNAL


class RegionNotFound(ShipyardError):
    """No shared-memory region of that name is registered (its status was asked for)."""

    code = ErrorCode.NOT_FOUND


class AlreadyExists(ShipyardError):
    """The object to create exists already (a shared-memory region of that name)."""

    code = ErrorCode.ALREADY_EXISTS


class Unimplemented(ShipyardError):
    """The server does not offer this operation (CUDA shared memory)."""

    code = ErrorCode.UNIMPLEMENTED


class NotFound(ShipyardError):
    """No route answers this path."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, path: str) -> None:
        super().__init__(f"no route {path!r}; see /docs for the API")
        self.path = path


class MethodNotAllowed(ShipyardError):
    """The route exists but does not answer this method; ``allowed`` lists those it does."""

    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method {method} not allowed; use {', '.join(allowed)}")
        self.method = method
        self.allowed = allowed
