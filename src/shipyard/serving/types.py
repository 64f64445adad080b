"""The server's request and response types: :mod:`shipyard.protocol.types`, re-exported."""

from shipyard.protocol.types import (
    DATATYPES,
    Array,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
    datatype_of,
    numpy_dtype,
)

__all__ = [
    "DATATYPES",
    "Array",
    "InferenceRequest",
    "InferenceResponse",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "datatype_of",
    "numpy_dtype",
]
