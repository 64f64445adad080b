"""The inference server. Imports nothing from the training half of Shipyard."""

from shipyard.serving.config import ModelConfig, ServerSettings
from shipyard.serving.errors import ShipyardError
from shipyard.serving.types import InferenceRequest, InferenceResponse, Tensor

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "ModelConfig",
    "ServerSettings",
    "ShipyardError",
    "Tensor",
]
