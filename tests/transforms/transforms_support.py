"""Helpers of the transforms tests: encoded images made with Pillow, batches of BYTES items."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from conftest import ROOT, SHARED
from PIL import Image

# The shared folder sits beside the checkout (/work/main -> /work/shared) or, for a git worktree
# under /work/wt/<name>, one level further up.
MNIST = next((base / "data" / "mnist_png" for base in (SHARED, ROOT.parent.parent / "shared")
              if (base / "data" / "mnist_png").is_dir()), SHARED / "data" / "mnist_png")


def encode(array: np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    """``array`` as PNG or JPEG bytes, made by Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def encode_image(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def batch(*items: Any) -> np.ndarray:
    """A 1-d object array holding ``items`` as they are (a BYTES batch)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def mnist_files(per_digit: int = 2) -> list[Path]:
    """A few real MNIST test images, ``per_digit`` of every digit, in a fixed order."""
    files: list[Path] = []
    for digit in range(10):
        files += sorted((MNIST / "test" / str(digit)).glob("*.png"))[:per_digit]
    assert len(files) == 10 * per_digit, f"MNIST PNGs missing under {MNIST}"
    return files


def png_claiming(width: int, height: int) -> bytes:
    """A real tiny PNG whose IHDR (CRC fixed) claims ``width`` x ``height`` pixels."""
    data = bytearray(encode(np.zeros((2, 2), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real tiny JPEG whose SOF0 header claims ``width`` x ``height`` pixels."""
    data = bytearray(encode(np.zeros((8, 8), np.uint8), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
