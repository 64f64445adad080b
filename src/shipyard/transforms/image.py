"""``image_decode``: PNG or JPEG bytes -> uint8 pixels, with the header checked before decoding.

Pillow is used through its PNG and JPEG plug-in classes directly rather than ``Image.open``: that
keeps other formats out, and it skips Pillow's global ``MAX_IMAGE_PIXELS`` check (which warns
or raises depending on a process-wide setting) in favour of this step's own ``max_pixels``,
checked on the size the header claims, before any pixel is decoded.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin

from shipyard.transforms import _checks
from shipyard.transforms.base import Array, Batch, Spec, Specs, Step
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = ["ImageDecode", "ragged"]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_MODES = ("L", "RGB")
_WIDE = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit (and 32-bit int) greyscale


def ragged(items: list[Array]) -> Array:
    """A batch of images: one stacked array if they share a shape, else a 1-d object array
    holding each item's array (which ``resize`` and ``center_crop`` accept)."""
    if items and all(item.shape == items[0].shape for item in items):
        return np.stack(items)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


class ImageDecode(Step):
    """Decode PNG or JPEG bytes into ``uint8`` pixels: ``(N, H, W)`` for ``mode: L``,
    ``(N, H, W, 3)`` for ``mode: RGB``.

    Parameters:
        mode: ``"L"`` (grey) or ``"RGB"``; default ``"RGB"``. Images of another mode are
            converted: alpha is dropped (not composited), palettes are expanded, 16-bit grey is
            scaled to 8 bits (``value >> 8``).
        max_pixels: the largest ``width * height`` the header may claim; default ``4096 * 4096``.

    Items of different sizes come out as a 1-d object array of per-item arrays; declare
    ``resize`` or ``center_crop`` next to make one array. EXIF orientation is not applied.
    """

    name = "image_decode"

    def __init__(self, mode: str = "RGB", max_pixels: int = 4096 * 4096) -> None:
        self.mode = _checks.choice(self.name, "mode", mode, _MODES)
        self.max_pixels = _checks.positive_int(self.name, "max_pixels", max_pixels)

    def input_spec(self) -> Spec:
        return ("BYTES", (-1,))

    def output_spec(self, input_spec: Specs) -> Specs:
        _, shape = _checks.single_spec(self.name, input_spec, ("BYTES",))
        if len(shape) != 1:
            raise StepConfigError(
                f"takes one encoded image per item (shape [-1]), but gets {list(shape)}",
                self.name,
            )
        pixels = (shape[0], -1, -1) if self.mode == "L" else (shape[0], -1, -1, 3)
        return ("UINT8", pixels)

    def __call__(self, batch: Batch) -> Batch:
        array = _checks.single(self.name, batch)
        if array.ndim != 1:
            raise TransformError(
                f"{self.name} takes one encoded image per item (shape [N]), got shape "
                f"{list(array.shape)}"
            )
        return ragged([self._decode(i, item) for i, item in enumerate(array)])

    def _decode(self, index: int, item: Any) -> Array:
        if isinstance(item, np.bytes_):
            item = bytes(item)
        if not isinstance(item, bytes | bytearray | memoryview):
            raise TransformError(
                f"expected the bytes of a PNG or JPEG image, got {type(item).__name__}", index
            )
        data = bytes(item)
        if not data:
            raise TransformError("empty bytes; expected a PNG or JPEG image", index)
        image = _open(data, index)
        width, height = image.size
        if width * height > self.max_pixels:
            raise TransformError(
                f"image claims {width}x{height} = {width * height} pixels, more than "
                f"max_pixels={self.max_pixels} (image_decode.max_pixels)",
                index,
            )
        try:
            image.load()
            return np.asarray(_convert(image, self.mode))
        except Exception as exc:
            kind = image.format or "image"
            raise TransformError(
                f"cannot decode the {kind} image: {_reason(exc)}", index
            ) from exc
        finally:
            image.close()


def _open(data: bytes, index: int) -> ImageFile.ImageFile:
    plugin: type[ImageFile.ImageFile]
    if data.startswith(_PNG):
        plugin = PngImagePlugin.PngImageFile
    elif data.startswith(_JPEG):
        plugin = JpegImagePlugin.JpegImageFile
    else:
        raise TransformError(
            f"not a PNG or JPEG image (unknown signature {data[:8]!r})", index
        )
    try:
        return plugin(io.BytesIO(data))
    except Exception as exc:
        kind = "PNG" if plugin is PngImagePlugin.PngImageFile else "JPEG"
        raise TransformError(f"not a valid {kind} image ({_reason(exc)})", index) from exc


def _convert(image: Image.Image, mode: str) -> Image.Image:
    if image.mode == mode:
        return image
    if image.mode in _WIDE:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(wide.astype(np.uint8)).convert(mode)
    # Transparency is dropped with the alpha channel; popping it first avoids Pillow's warnings
    # about palette transparency that cannot be carried into L or RGB.
    image.info.pop("transparency", None)
    return image.convert(mode)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
