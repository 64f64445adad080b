"""The contract every runtime fulfils: ``load``, ``predict``, ``unload``, ``metadata``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy.typing as npt

from shipyard.serving.config import ModelConfig
from shipyard.serving.types import TensorSpec

__all__ = ["Runtime", "create_runtime"]

Array = npt.NDArray[Any]


class Runtime(ABC):
    """Executes one version of one model. ``predict`` is called from worker threads,
    never from the event loop, and at most once at a time per runtime instance."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.path = path
        self.config = config

    @abstractmethod
    def load(self) -> None:
        """Read the model file; raise ShipyardError (InvalidInput) with a clear message."""

    @abstractmethod
    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs with full shapes as the model file states them (-1 = dynamic)."""

    @abstractmethod
    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        """Run the model on validated inputs (BYTES inputs arrive as object arrays of ``str``);
        return the named outputs in order. Raise InferenceFailed or InvalidInput, never a
        runtime-specific exception."""

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def create_runtime(path: Path, config: ModelConfig) -> Runtime:
    """The runtime for ``config.backend``."""
    if config.backend == "onnx":
        from shipyard.serving.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, config)
    raise ValueError(f"unknown backend {config.backend!r}")  # pragma: no cover - pydantic
