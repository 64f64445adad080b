"""The one table that maps error codes to gRPC status codes (named in
:mod:`shipyard.protocol.status`, which the client reads too)."""

from __future__ import annotations

import grpc

from shipyard.protocol.status import GRPC_STATUS_NAMES
from shipyard.serving.errors import ErrorCode

__all__ = ["GRPC_STATUS"]

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    code: grpc.StatusCode[name] for code, name in GRPC_STATUS_NAMES.items()
}
