"""The IDX file format of MNIST and Fashion-MNIST, read with numpy (gzip or not).

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian ``uint32`` per dimension, then the values in C order, big-endian. Everything is checked
before it is trusted: the magic, the dimensions against the bytes actually present (a truncated
file or trailing bytes are refused), and gzip integrity. Errors are :class:`DataError` naming the
file, what is wrong and what a good file looks like.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.errors import DataError

__all__ = ["IDX_DTYPES", "read_idx"]

#: IDX type code -> numpy dtype (big-endian for the multi-byte ones).
IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP = b"\x1f\x8b"
_MAX_DIMS = 8
_ABOUT = ("an IDX file starts with 0x00 0x00, a type code (0x08 = unsigned byte) and the number "
          "of dimensions, then one big-endian uint32 per dimension")


def read_idx(path: str | Path, *, ndim: int | None = None) -> npt.NDArray[Any]:
    """The array held by the IDX file ``path`` (gzip-compressed or not, found by its content).

    ``ndim``, when given, is the number of dimensions the caller needs (3 for images, 1 for
    labels); another number is refused. Multi-byte values come back in native byte order.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if raw.startswith(_GZIP):
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"IDX file {path} is a damaged gzip file ({exc}); download or copy it again"
            ) from exc
    return _parse(raw, path, ndim)


def _parse(raw: bytes, path: Path, ndim: int | None) -> npt.NDArray[Any]:
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file: {len(raw)} bytes, shorter than the "
                        f"4-byte header; {_ABOUT}")
    zero, code, dims = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in IDX_DTYPES or not 1 <= dims <= _MAX_DIMS:
        raise DataError(f"{path} is not an IDX file: bad magic number 0x{raw[:4].hex()}; "
                        f"{_ABOUT}")
    if ndim is not None and dims != ndim:
        raise DataError(f"IDX file {path} has {dims} dimensions, expected {ndim} "
                        f"({'images [N, H, W]' if ndim == 3 else 'labels [N]'}); is it the "
                        "other file of the pair?")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, but its header alone "
                        f"needs {header}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataError(f"IDX file {path} is {what}: shape {list(shape)} of {dtype.name} needs "
                        f"{expected} bytes of data, the file has {got}; download or copy it "
                        "again")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)
