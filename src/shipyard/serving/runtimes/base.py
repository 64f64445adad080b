"""The contract every runtime fulfils: ``load``, ``predict``, ``unload``, ``metadata``.

A runtime class also states the facts about its backend that the rest of the server reports:
its ``backend`` name (``config.yaml``'s ``backend:``), the file names it loads from a version
folder, Triton's ``platform`` and backend strings, the pip extra its framework comes with, and
the device it runs on. Exceptions of its framework are translated where they leave it, by class
(:attr:`Runtime.error_map`), never by reading their message text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput, ShipyardError
from shipyard.serving.types import Array, TensorSpec

__all__ = ["DeviceKind", "Runtime"]

DeviceKind = Literal["KIND_CPU", "KIND_GPU"]


class Runtime(ABC):
    """Executes one version of one model. ``predict`` is called from worker threads,
    never from the event loop, by up to ``config.instances`` threads at once (one runtime
    object serves all of a version's instances: a runtime whose framework is not thread-safe
    keeps one object per instance, as the python runtime does)."""

    #: ``config.yaml``'s ``backend:`` value
    backend: ClassVar[str]
    #: files of a version folder this runtime loads, in order of preference (the first that
    #: exists is used when ``default_model_filename`` is left out)
    filenames: ClassVar[tuple[str, ...]]
    #: Triton's ``platform`` (model metadata) and ``backend`` (model config) strings
    platform: ClassVar[str]
    triton_backend: ClassVar[str]
    #: the pip extra that brings this runtime's framework (None: part of ``shipyard[serve]``)
    extra: ClassVar[str | None] = None
    #: BYTES inputs arrive as ``str`` (decoded UTF-8, checked per request) when True, as
    #: ``bytes`` when False
    text_inputs: ClassVar[bool] = True
    #: the model file is code this runtime executes: it loads only with ``trust: true`` in the
    #: model's config.yaml (checked by :func:`~shipyard.serving.runtimes.create_runtime`, before
    #: the runtime exists)
    runs_model_code: ClassVar[bool] = False
    #: inputs may hold missing values: JSON nulls in FP16/FP32/FP64 data arrive as NaN and in
    #: BYTES data as None; when False a null is refused as the JSON decoder refuses it
    missing_values: ClassVar[bool] = False
    #: every tensor is one value per row (PMML's fields): shape ``[-1, 1]``, Triton's
    #: ``dims: [1]``; a request may also send such an input with one dimension (``[n]``), and
    #: a request whose inputs all have one dimension gets its ``[n, 1]`` outputs as ``[n]``
    fieldwise: ClassVar[bool] = False
    #: (framework exception class, Shipyard error class) pairs, most specific first; anything
    #: else raised by ``predict`` becomes InferenceFailed
    error_map: ClassVar[Sequence[tuple[type[BaseException], type[ShipyardError]]]] = ()

    def __init__(self, path: Path, config: ModelConfig) -> None:
        #: the model file (inside its version folder)
        self.path = path
        self.config = config

    @classmethod
    def platform_for(cls, filename: str) -> str:
        """Triton's ``platform`` string for one model file (a runtime that reads several
        formats names each; the default is :attr:`platform`)."""
        return cls.platform

    @property
    def device_kind(self) -> DeviceKind:
        """Where the model runs once loaded (reported in the model config)."""
        return "KIND_CPU"

    @abstractmethod
    def load(self) -> None:
        """Read the model file; raise ShipyardError (InvalidInput) with a clear message."""

    @abstractmethod
    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs with full shapes as the model file states them (-1 = dynamic)."""

    @abstractmethod
    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        """Run the model on validated inputs; return the named outputs in order. Exceptions
        are translated by :meth:`run` (through :attr:`error_map`)."""

    def warmup_batch_sizes(self) -> list[int]:
        """Batch sizes to run once before serving (besides the config's warm-up request);
        runtimes that compile per shape return the preferred batch sizes."""
        return []

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def run(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        """:meth:`predict` with the framework's exceptions translated into Shipyard's."""
        try:
            return self.predict(inputs, outputs)
        except ShipyardError:
            raise
        except Exception as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> ShipyardError:
        """The Shipyard error for a framework exception, by class (see :attr:`error_map`)."""
        for cls, error in self.error_map:
            if isinstance(exc, cls):
                return error(f"model {self.config.name!r}: {self.backend} runtime: {exc}")
        return InferenceFailed(f"model {self.config.name!r}: {self.backend} runtime failed: "
                               f"{type(exc).__name__}: {exc}")

    def options(self, schema: type[Any]) -> Any:
        """``config.parameters`` validated with the runtime's own pydantic ``schema``."""
        from pydantic import ValidationError

        from shipyard.serving.config import format_validation_error

        try:
            return schema.model_validate(self.config.parameters)
        except ValidationError as exc:
            raise InvalidInput(format_validation_error(
                exc, f"model {self.config.name!r}: parameters of the {self.backend} backend"
            )) from exc
