"""``to_dtype``, ``normalize`` and ``layout``: whole-batch numpy arithmetic on stacked arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.transforms import _checks
from shipyard.transforms.base import Array, Batch, Specs, Step, datatype_of
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = ["Layout", "Normalize", "ToDtype"]

_DTYPES = ("float32", "float64", "float16", "uint8", "int32", "int64")
_LAYOUTS = ("NCHW", "NHWC")


def _numeric(step: str, array: Array) -> Array:
    if array.dtype.kind not in "biuf":
        raise TransformError(f"{step} takes numbers, got {array.dtype} items")
    return array


class ToDtype(Step):
    """Cast the batch to ``dtype``, multiplying by ``scale`` (``uint8`` pixels -> ``[0, 1]``
    floats with ``{dtype: float32, scale: 0.00392156862745098}``, that is 1/255).

    Parameters:
        dtype: ``"float32"`` (default), ``"float64"``, ``"float16"``, ``"uint8"``, ``"int32"``
            or ``"int64"``.
        scale: a finite number, default ``1.0``; other than 1 only with a float ``dtype``.

    The product is computed in ``dtype`` (``x.astype(dtype) * dtype(scale)``). A cast from float
    to an integer dtype refuses items holding NaN or infinity.
    """

    name = "to_dtype"

    def __init__(self, dtype: str = "float32", scale: float = 1.0) -> None:
        self.dtype = _checks.choice(self.name, "dtype", dtype, _DTYPES)
        self.scale = _checks.number(self.name, "scale", scale)
        if self.scale != 1.0 and not self.dtype.startswith("float"):
            raise StepConfigError(
                f"must be 1 for the integer dtype {self.dtype!r}; got {scale!r} "
                "(scale a float dtype, then cast)", f"{self.name}.scale"
            )

    def output_spec(self, input_spec: Specs) -> Specs:
        datatype, shape = _checks.single_spec(self.name, input_spec)
        if datatype == "BYTES":
            raise StepConfigError(f"takes numbers, but gets BYTES {list(shape)}", self.name)
        return (datatype_of(np.dtype(self.dtype)), shape)

    def __call__(self, batch: Batch) -> Batch:
        array = _numeric(self.name, _checks.dense(self.name, batch))
        dtype = np.dtype(self.dtype)
        if dtype.kind == "f":
            if self.scale == 1.0:
                return array.astype(dtype)
            scaled: Array = np.multiply(array, dtype.type(self.scale), dtype=dtype)
            return scaled
        if array.dtype.kind == "f":
            finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
            if not finite.all():
                index = int(np.argmin(finite))
                raise TransformError(f"holds NaN or infinity, which {self.dtype} cannot hold",
                                     index)
        return array.astype(dtype)


class Normalize(Step):
    """``(x - mean) / std`` per channel, in ``float32`` (``float64`` input stays ``float64``).

    Parameters:
        mean: one number per channel (or one number for all); required.
        std: one number > 0 per channel (or one number for all); required.
        channel_axis: the axis of the channels, default ``-1`` (``NHWC``; use ``1`` after
            ``layout: {to: NCHW}``). Ignored when ``mean`` and ``std`` have one number each.
    """

    name = "normalize"

    def __init__(self, mean: float | list[float], std: float | list[float],
                 channel_axis: int = -1) -> None:
        self.mean = _checks.float_list(self.name, "mean", mean)
        self.std = _checks.float_list(self.name, "std", std, positive=True)
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, int) or \
                channel_axis == 0:
            raise StepConfigError(
                f"must be a non-zero integer (axis 0 is the batch); got {channel_axis!r}",
                f"{self.name}.channel_axis",
            )
        self.channel_axis = channel_axis
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise StepConfigError(
                f"must have one number per channel like mean ({len(self.mean)}); got "
                f"{len(self.std)} numbers {list(self.std)}", f"{self.name}.std"
            )

    @property
    def channels(self) -> int:
        """How many channels the step expects (1 means any)."""
        return max(len(self.mean), len(self.std))

    def _axis(self, ndim: int) -> int:
        axis = self.channel_axis + ndim if self.channel_axis < 0 else self.channel_axis
        return axis if 0 < axis < ndim else -1

    def output_spec(self, input_spec: Specs) -> Specs:
        datatype, shape = _checks.single_spec(self.name, input_spec)
        if datatype == "BYTES":
            raise StepConfigError(f"takes numbers, but gets BYTES {list(shape)}", self.name)
        if self.channels > 1:
            axis = self._axis(len(shape))
            if axis < 0 or shape[axis] not in (-1, self.channels):
                raise StepConfigError(
                    f"has {self.channels} channels on axis {self.channel_axis}, but the input "
                    f"is {datatype} {list(shape)}", self.name
                )
        return ("FP64" if datatype == "FP64" else "FP32", shape)

    def __call__(self, batch: Batch) -> Batch:
        array = _numeric(self.name, _checks.dense(self.name, batch))
        dtype = np.dtype(np.float64 if array.dtype == np.float64 else np.float32)
        mean = np.asarray(self.mean, dtype=dtype)
        std = np.asarray(self.std, dtype=dtype)
        if self.channels > 1:
            axis = self._axis(array.ndim)
            if axis < 0 or array.shape[axis] != self.channels:
                raise TransformError(
                    f"normalize has {self.channels} channels on axis {self.channel_axis}, "
                    f"got shape {list(array.shape)}"
                )
            shape: list[Any] = [1] * array.ndim
            shape[axis] = self.channels
            mean = np.broadcast_to(mean, self.channels).reshape(shape)
            std = np.broadcast_to(std, self.channels).reshape(shape)
        else:
            mean, std = mean.reshape(()), std.reshape(())
        out = np.subtract(array, mean, dtype=dtype)
        out /= std
        return out


class Layout(Step):
    """Arrange images as ``NCHW`` or ``NHWC``; grey images ``[N, H, W]`` gain a channel of 1.

    Parameters:
        to: ``"NCHW"`` (default) or ``"NHWC"``.
        source: the layout of 4-d input, ``"NHWC"`` (default, what ``image_decode`` makes) or
            ``"NCHW"``.

    The result is C-contiguous.
    """

    name = "layout"

    def __init__(self, to: str = "NCHW", source: str = "NHWC") -> None:
        self.to = _checks.choice(self.name, "to", to, _LAYOUTS)
        self.source = _checks.choice(self.name, "source", source, _LAYOUTS)

    def _arrange(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 3:
            n, h, w = shape
            return (n, 1, h, w) if self.to == "NCHW" else (n, h, w, 1)
        if self.to == self.source:
            return shape
        return tuple(shape[i] for i in self._order())

    def _order(self) -> tuple[int, int, int, int]:
        return (0, 3, 1, 2) if self.to == "NCHW" else (0, 2, 3, 1)

    def output_spec(self, input_spec: Specs) -> Specs:
        datatype, shape = _checks.single_spec(self.name, input_spec)
        if len(shape) not in (3, 4):
            raise StepConfigError(
                f"takes images [N, H, W] or 4-d images, but gets {datatype} {list(shape)}",
                self.name,
            )
        return (datatype, self._arrange(shape))

    def __call__(self, batch: Batch) -> Batch:
        array = _checks.dense(self.name, batch)
        if array.ndim == 3:
            return np.ascontiguousarray(array).reshape(self._arrange(array.shape))
        if array.ndim != 4:
            raise TransformError(
                f"layout takes images [N, H, W] or 4-d images, got shape {list(array.shape)}"
            )
        if self.to == self.source:
            return np.ascontiguousarray(array)
        return np.ascontiguousarray(array.transpose(self._order()))
