"""The server's errors: :mod:`shipyard.protocol.errors`, re-exported."""

from shipyard.protocol.errors import (
    ErrorCode,
    InferenceFailed,
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QueueFull,
    RequestTimeout,
    ServerShuttingDown,
    ShipyardError,
    Unauthenticated,
    brief,
)

__all__ = [
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
    "RequestTimeout",
    "ServerShuttingDown",
    "ShipyardError",
    "Unauthenticated",
    "brief",
]
