"""The two errors of ``shipyard.transforms``.

:class:`TransformError` is about the data: one item of a batch (or the batch as a whole) cannot be
processed. The server answers it with HTTP 400 / gRPC ``INVALID_ARGUMENT``; training reports it as
bad data. :class:`StepConfigError` is about the declaration: a step's parameters are invalid, so the
model cannot be loaded (or the experiment cannot start). Neither carries a protocol status: the
frontends own that mapping.
"""

from __future__ import annotations

__all__ = ["StepConfigError", "TransformError"]


class TransformError(ValueError):
    """An item of a batch cannot be transformed.

    ``index`` is the item's position in the batch, or ``None`` when the batch as a whole is wrong
    (for example images of different sizes reaching a step that needs one size). ``reason`` is the
    message without the ``item <index>: `` prefix; ``str(error)`` carries the prefix.
    """

    def __init__(self, reason: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(reason if index is None else f"item {index}: {reason}")

    def __reduce__(self) -> tuple[type[TransformError], tuple[str, int | None]]:
        # Keep ``index`` across pickling (worker processes, multiprocessing data loaders).
        return (type(self), (self.reason, self.index))


class StepConfigError(ValueError):
    """A step's declaration or parameters are invalid.

    ``path`` names where, in the declared form: ``preprocess[2].resize.size``; it is empty for an
    error raised by a step's ``__init__`` before :func:`~shipyard.transforms.build_steps` adds it.
    ``reason`` is the message without the path.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)

    def __reduce__(self) -> tuple[type[StepConfigError], tuple[str, str]]:
        return (type(self), (self.reason, self.path))
