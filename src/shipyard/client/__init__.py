"""Shipyard's Python client: sync and async, over REST and gRPC, with one interface.

    from shipyard.client import Client

    with Client("http://127.0.0.1:8000") as client:         # or "grpc://127.0.0.1:8001"
        [p] = client.predict("sms", ["WINNER! Claim your prize now"])
        p.label, p.probability                               # ("spam", 0.97)
        client.infer("risk", {"features": rows})             # {"score": array([...])}

It needs numpy, httpx, grpcio and protobuf (``pip install 'shipyard[client]'``), never the
server: the wire pieces come from :mod:`shipyard.protocol`. Failures raise the typed
exceptions of :mod:`shipyard.client.errors`; busy or unreachable servers are retried with
backoff and jitter (:class:`RetryPolicy`), within one deadline per call.
"""

from shipyard.client._client import DEFAULT_URL, AsyncClient, Client, Endpoint, parse_url
from shipyard.client._retry import RetryPolicy
from shipyard.client._vocab import Label, ModelInfo, Prediction, TensorInfo
from shipyard.client.errors import (
    AlreadyExists,
    ClientError,
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
    TlsError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "DEFAULT_URL",
    "AlreadyExists",
    "AsyncClient",
    "Client",
    "ClientError",
    "DeadlineExceeded",
    "Endpoint",
    "InternalError",
    "InvalidArgument",
    "Label",
    "ModelInfo",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Prediction",
    "ResourceExhausted",
    "RetryPolicy",
    "TensorInfo",
    "TlsError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "parse_url",
]
