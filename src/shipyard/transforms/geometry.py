"""``resize`` and ``center_crop``: images of any size in, one ``[N, height, width(, C)]`` array out.

Both take what ``image_decode`` makes, a stacked array or a ragged batch (a 1-d object array of
per-item arrays), and always give one stacked array.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from shipyard.transforms import _checks
from shipyard.transforms.base import Array, Batch, Specs, Step
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = ["CenterCrop", "Resize"]

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
}


def _items(step: str, batch: Batch) -> list[Array]:
    """The batch's images, each ``(H, W)`` or ``(H, W, C)``."""
    array = _checks.single(step, batch)
    if array.dtype == object and array.ndim == 1:
        items = list(array)
        for i, item in enumerate(items):
            if not isinstance(item, np.ndarray) or item.ndim not in (2, 3):
                got = list(item.shape) if isinstance(item, np.ndarray) else type(item).__name__
                raise TransformError(f"{step} takes an image (H, W) or (H, W, C), got {got}", i)
        return items
    if array.ndim not in (3, 4):
        raise TransformError(
            f"{step} takes images [N, H, W] or [N, H, W, C], got shape {list(array.shape)}"
        )
    return list(array)


def _stack(items: list[Array], dtype: np.dtype[np.generic], shape: tuple[int, ...]) -> Array:
    out = np.empty((len(items), *shape), dtype=dtype) if items else np.empty((0, *shape), dtype)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _image_spec(step: str, spec: Specs, size: tuple[int, int], datatype: str | None) -> Specs:
    dtype, shape = _checks.single_spec(step, spec)
    if len(shape) not in (3, 4):
        raise StepConfigError(
            f"takes images [N, H, W] or [N, H, W, C], but gets {dtype} {list(shape)}", step
        )
    return (datatype or dtype, (shape[0], *size, *shape[3:]))


class Resize(Step):
    """Resize every image to ``size`` with Pillow, one item at a time (Pillow's C loops).

    Parameters:
        size: ``[height, width]`` (or one integer for a square); required.
        interpolation: ``"bilinear"`` (default), ``"nearest"`` or ``"bicubic"``.

    ``uint8`` images keep ``uint8`` (and Pillow's rounding); float images are resized per
    channel as ``float32`` and come out ``float32``. An image already of ``size`` is left as it
    is. The aspect ratio is not kept: declare ``center_crop`` after a larger resize for that.
    """

    name = "resize"

    def __init__(self, size: int | list[int] | tuple[int, int],
                 interpolation: str = "bilinear") -> None:
        self.size = _checks.size_pair(self.name, "size", size)
        self.interpolation = _checks.choice(self.name, "interpolation", interpolation,
                                            tuple(_RESAMPLING))

    def output_spec(self, input_spec: Specs) -> Specs:
        dtype, _ = _checks.single_spec(self.name, input_spec)
        if dtype not in ("UINT8", "FP16", "FP32", "FP64"):
            raise StepConfigError(f"takes UINT8 or float images, but gets {dtype}", self.name)
        return _image_spec(self.name, input_spec, self.size, None if dtype == "UINT8" else "FP32")

    def __call__(self, batch: Batch) -> Batch:
        items = _items(self.name, batch)
        if not items:
            array = _checks.single(self.name, batch)
            dtype = np.dtype(np.uint8) if array.dtype in (np.uint8, object) else np.float32
            return np.empty((0, *self.size, *array.shape[3:]), dtype)
        resample = _RESAMPLING[self.interpolation]
        out = [self._resize(i, item, resample) for i, item in enumerate(items)]
        first = out[0]
        for i, item in enumerate(out):
            if item.shape != first.shape or item.dtype != first.dtype:
                raise TransformError(
                    f"resize needs images of one kind, got {first.dtype} {list(first.shape)} "
                    f"(item 0) and {item.dtype} {list(item.shape)}", i
                )
        return _stack(out, first.dtype, first.shape)

    def _resize(self, index: int, item: Array, resample: Image.Resampling) -> Array:
        height, width = self.size
        if item.dtype == np.uint8:
            if item.shape[:2] == (height, width):
                return item
            if item.ndim == 2 or item.shape[2] in (3, 4):
                image = Image.fromarray(np.ascontiguousarray(item))
                return np.asarray(image.resize((width, height), resample))
        elif item.dtype.kind != "f":
            raise TransformError(f"resize takes uint8 or float images, got {item.dtype}", index)
        if item.shape[:2] == (height, width):
            return item if item.dtype == np.uint8 else item.astype(np.float32)
        planes = item[..., None] if item.ndim == 2 else item
        resized = [
            _plane(planes[..., c], (width, height), resample) for c in range(planes.shape[2])
        ]
        stacked = np.stack(resized, axis=-1)
        if item.dtype == np.uint8:
            stacked = np.clip(np.rint(stacked), 0, 255).astype(np.uint8)
        return stacked[..., 0] if item.ndim == 2 else stacked


def _plane(plane: Array, size: tuple[int, int], resample: Image.Resampling) -> Array:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(image.resize(size, resample), dtype=np.float32)


class CenterCrop(Step):
    """Cut the central ``size`` out of every image (offsets rounded as torchvision does).

    Parameters:
        size: ``[height, width]`` (or one integer for a square); required.

    An image smaller than ``size`` in either dimension is refused with its index: declare
    ``resize`` before ``center_crop`` when images may be small.
    """

    name = "center_crop"

    def __init__(self, size: int | list[int] | tuple[int, int]) -> None:
        self.size = _checks.size_pair(self.name, "size", size)

    def output_spec(self, input_spec: Specs) -> Specs:
        return _image_spec(self.name, input_spec, self.size, None)

    def __call__(self, batch: Batch) -> Batch:
        array = _checks.single(self.name, batch)
        if array.dtype != object and array.ndim in (3, 4):
            return np.ascontiguousarray(self._crop(0, array, batched=True))
        items = _items(self.name, batch)
        out = [self._crop(i, item, batched=False) for i, item in enumerate(items)]
        kinds = {(item.dtype, item.shape[2:]) for item in out}
        if len(kinds) > 1:
            raise TransformError(f"center_crop needs images of one kind, got {sorted(kinds)}")
        return _stack(out, out[0].dtype, out[0].shape) if out else array

    def _crop(self, index: int, item: Array, *, batched: bool) -> Array:
        offset = 1 if batched else 0
        height, width = item.shape[offset:offset + 2]
        crop_h, crop_w = self.size
        if height < crop_h or width < crop_w:
            raise TransformError(
                f"image {height}x{width} is smaller than center_crop.size {crop_h}x{crop_w}; "
                "declare resize before center_crop",
                None if batched else index,
            )
        top = round((height - crop_h) / 2.0)
        left = round((width - crop_w) / 2.0)
        if batched:
            return item[:, top:top + crop_h, left:left + crop_w]
        return item[top:top + crop_h, left:left + crop_w]
