"""The server's errors: :mod:`shipyard.protocol.errors`, re-exported."""

from shipyard.protocol.errors import (
    ErrorCode,
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
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
    "ModelNotFound",
    "ModelNotReady",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueFull",
    "RequestTimeout",
    "ServerShuttingDown",
    "ShipyardError",
    "Unauthenticated",
    "brief",
]
