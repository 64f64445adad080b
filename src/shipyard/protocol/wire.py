"""Tensor codecs the server and the client share: V2 JSON data, the V2 binary tensor format (HTTP
binary extension and gRPC ``raw_*_contents``), and the typed ``*_contents`` fields of the gRPC
messages. Pure numpy; no per-element Python loops except for BYTES.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any

import numpy as np

from shipyard.protocol.errors import InvalidInput, brief
from shipyard.protocol.types import DATATYPES, Array

__all__ = [
    "MAX_ELEMENTS",
    "NULLABLE",
    "check_datatype",
    "check_shape",
    "deadline_from_ms",
    "deadline_from_timeout_us",
    "decode_json_data",
    "decode_raw",
    "encode_raw",
    "to_json_data",
]


#: No tensor may claim more elements than this (guards against huge-shape requests).
MAX_ELEMENTS = 1 << 31
#: Longest timeout a request may ask for (one day)
MAX_TIMEOUT_US = 86_400 * 1_000_000
_LEN = struct.Struct("<I")


def check_datatype(name: str, datatype: Any) -> str:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        if datatype == "BF16":
            raise InvalidInput(
                f"input {name!r}: datatype BF16 is not supported by Shipyard's runtimes; "
                "send FP32 or FP16"
            )
        raise InvalidInput(
            f"input {name!r}: unknown datatype {brief(datatype)}; "
            f"expected one of {sorted(DATATYPES)}"
        )
    return str(datatype)


def deadline_from_timeout_us(value: Any) -> int | None:
    """The V2 ``timeout`` parameter (microseconds) as an absolute monotonic deadline."""
    if value is None:
        return None
    if (not isinstance(value, int) or isinstance(value, bool) or value <= 0
            or value > MAX_TIMEOUT_US):
        raise InvalidInput(
            f"parameter 'timeout' must be a positive integer of microseconds up to "
            f"{MAX_TIMEOUT_US} (one day), got {brief(value)}"
        )
    return time.monotonic_ns() + value * 1000


def deadline_from_ms(value: float, what: str, given: str) -> int:
    """A deadline ``value`` ms from now; raise unless 0 < value <= one day."""
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_US / 1000):
        raise InvalidInput(
            f"{what} must be a positive number of milliseconds up to {MAX_TIMEOUT_US // 1000} "
            f"(one day), got {brief(given)}"
        )
    return time.monotonic_ns() + int(value * 1e6)


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints whose product stays below MAX_ELEMENTS."""
    if type(shape) is not list and type(shape) is not tuple:
        raise InvalidInput(f"input {name!r}: shape must be a list of integers, got {brief(shape)}")
    for d in shape:
        if type(d) is not int:  # bool is not int here
            raise InvalidInput(
                f"input {name!r}: shape must be a list of integers, got {brief(shape)}")
    if len(shape) > 32:
        raise InvalidInput(f"input {name!r}: shape has {len(shape)} dimensions; at most 32")
    if shape:
        if max(shape) > MAX_ELEMENTS:
            raise InvalidInput(
                f"input {name!r}: shape {list(shape)} has a dimension above {MAX_ELEMENTS}"
            )
        if min(shape) < 0:
            raise InvalidInput(
                f"input {name!r}: shape {list(shape)} has a negative dimension; "
                "dimensions must be >= 0"
            )
        if math.prod(shape) > MAX_ELEMENTS:
            raise InvalidInput(
                f"input {name!r}: shape {list(shape)} claims more than {MAX_ELEMENTS} elements"
            )
    return tuple(shape)


def decode_raw(name: str, datatype: str, shape: tuple[int, ...], buf: bytes | memoryview) -> Array:
    """Bytes in the V2 binary layout -> array of ``shape`` (a zero-copy view when possible)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(name, shape, count, buf)
    dtype = DATATYPES[datatype]
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidInput(
            f"input {name!r}: binary data has {len(buf)} bytes, but shape {list(shape)} of "
            f"{datatype} needs {expected}; send exactly prod(shape) x {dtype.itemsize} bytes"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _decode_bytes(name: str, shape: tuple[int, ...], count: int, buf: bytes | memoryview) -> Array:
    view = memoryview(buf)
    items: list[bytes] = []
    pos, end = 0, len(view)
    while pos < end:
        if pos + 4 > end:
            raise InvalidInput(
                f"input {name!r}: BYTES data is truncated: a 4-byte length prefix starts at "
                f"offset {pos} but only {end - pos} byte(s) remain"
            )
        (n,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > end:
            raise InvalidInput(
                f"input {name!r}: BYTES element {len(items)} claims {n} bytes at offset {pos} "
                f"but only {end - pos} remain"
            )
        items.append(bytes(view[pos : pos + n]))
        pos += n
        if len(items) > count:
            break
    if len(items) != count:
        raise InvalidInput(
            f"input {name!r}: BYTES data holds {len(items)} element(s) but shape {list(shape)} "
            f"needs {count}"
        )
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def encode_raw(array: Array) -> bytes:
    """Array -> V2 binary layout (little-endian, row-major; BYTES length-prefixed)."""
    if array.dtype == object or array.dtype.kind in ("U", "S"):
        parts = []
        for item in array.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array).tobytes()


_KINDS_OK = {
    "BOOL": "b",
    "UINT8": "iu", "UINT16": "iu", "UINT32": "iu", "UINT64": "iu",
    "INT8": "iu", "INT16": "iu", "INT32": "iu", "INT64": "iu",
    "FP16": "iuf", "FP32": "iuf", "FP64": "iuf",
}
_EXPECTED = {"b": "true/false", "iu": "integers", "iuf": "numbers"}
#: datatypes whose JSON data may hold nulls when ``decode_json_data(nulls=True)``
NULLABLE = frozenset({"FP16", "FP32", "FP64", "BYTES"})


def decode_json_data(
    name: str, datatype: str, shape: tuple[int, ...], data: Any, *, nulls: bool = False
) -> Array:
    """V2 JSON ``data`` (flat, or nested exactly as ``shape``) -> array of ``shape``.

    A JSON null is refused unless ``nulls`` is True and the datatype is in :data:`NULLABLE`:
    then it becomes NaN (floating point) or None (BYTES), a missing value for the runtimes that
    take them (``Runtime.missing_values``)."""
    count = math.prod(shape)
    if not isinstance(data, list):
        data = [data]
    flat = _flatten(name, data, shape)
    if len(flat) != count:
        raise InvalidInput(
            f"input {name!r}: data has {len(flat)} element(s) but shape {list(shape)} "
            f"needs {count}"
        )
    nulls = nulls and datatype in NULLABLE
    if datatype == "BYTES":
        arr = np.empty(count, dtype=object)
        arr[:] = [None if v is None and nulls else _utf8(name, v) for v in flat]
        return arr.reshape(shape)
    if nulls:
        flat = [math.nan if v is None else v for v in flat]
    expected = _EXPECTED[_KINDS_OK[datatype]]
    try:
        raw = np.array(flat)
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - flat list
        raise InvalidInput(f"input {name!r}: data must be {expected}: {exc}") from exc
    dtype = DATATYPES[datatype]
    if raw.size and raw.dtype.kind not in _KINDS_OK[datatype]:
        if dtype.kind in "iu" and raw.dtype.kind in "fO":
            raw = _exact_integers(name, datatype, flat)  # big ints numpy read as floats
        elif dtype.kind == "f" and raw.dtype.kind == "O":
            raw = _big_numbers_as_floats(name, datatype, flat, expected)
        else:
            _raise_first_bad(name, datatype, flat, expected)
            raise InvalidInput(  # every element has the right kind: numpy could not hold one
                f"input {name!r}: a value is out of range for {datatype}")
    elif raw.size and datatype != "BOOL" and raw.dtype.kind in "iuf" and any(
        type(v) is bool for v in flat
    ):
        _raise_first_bad(name, datatype, flat, expected)  # true/false mixed into numbers
    if raw.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = raw.min().item(), raw.max().item()
        if lo < info.min or hi > info.max:
            raise InvalidInput(
                f"input {name!r}: value {lo if lo < info.min else hi} is out of range for "
                f"{datatype} [{info.min}, {info.max}]"
            )
    out = raw.astype(dtype, copy=False).reshape(shape)
    if raw.size and dtype.kind == "f" and dtype.itemsize < 8:
        overflow = np.isinf(out).reshape(-1) & np.isfinite(raw.astype(np.float64))
        if overflow.any():
            bad = flat[int(np.argmax(overflow))]
            raise InvalidInput(
                f"input {name!r}: value {brief(bad)} is out of range for {datatype} "
                f"(largest {np.finfo(dtype).max.item()})"
            )
    return out


def _raise_first_bad(name: str, datatype: str, flat: list[Any], expected: str) -> None:
    for i, v in enumerate(flat):
        if not _is_kind(v, datatype):
            raise InvalidInput(
                f"input {name!r}: {datatype} data must be {expected}, got {brief(v)} "
                f"(element {i})"
            )


def _is_kind(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if DATATYPES[datatype].kind in "iu":
        return isinstance(value, int)
    return isinstance(value, int | float)


def _exact_integers(name: str, datatype: str, flat: list[Any]) -> Array:
    """Integers outside INT64 (numpy reads them as floats): check exactly, in Python."""
    info = np.iinfo(DATATYPES[datatype])
    for i, v in enumerate(flat):
        if not _is_kind(v, datatype):
            raise InvalidInput(
                f"input {name!r}: {datatype} data must be integers, got {brief(v)} (element {i})"
            )
        if v < info.min or v > info.max:
            raise InvalidInput(
                f"input {name!r}: value {v} is out of range for {datatype} "
                f"[{info.min}, {info.max}]"
            )
    return np.array(flat, dtype=DATATYPES[datatype])


def _big_numbers_as_floats(name: str, datatype: str, flat: list[Any], expected: str) -> Array:
    """Numbers numpy keeps as objects (ints beyond 64 bits) converted exactly to float64."""
    _raise_first_bad(name, datatype, flat, expected)
    try:
        return np.array([float(v) for v in flat], dtype=np.float64)
    except OverflowError as exc:
        raise InvalidInput(f"input {name!r}: a value is too large for {datatype}") from exc


def _utf8(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {brief(value)}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"input {name!r}: string is not valid unicode: {exc}") from exc


def _flatten(name: str, data: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """A flat list stays as it is; a nested one must follow ``shape`` level by level."""
    if not any(isinstance(v, list) for v in data):
        return data
    level: list[Any] = [data]
    for depth, size in enumerate(shape):
        nxt: list[Any] = []
        for node in level:
            if not isinstance(node, list) or len(node) != size:
                got = f"{len(node)} element(s)" if isinstance(node, list) else repr(node)
                raise InvalidInput(
                    f"input {name!r}: a list at nesting depth {depth} of 'data' has {got} but "
                    f"shape {list(shape)} needs {size} there; nest lists exactly as the shape, "
                    "or send a flat list"
                )
            nxt.extend(node)
        level = nxt
    if any(isinstance(v, list) for v in level):
        raise InvalidInput(f"input {name!r}: 'data' is nested deeper than shape {list(shape)}")
    return level


def to_json_data(name: str, array: Array) -> list[Any]:
    """Array -> flat JSON list (BYTES as UTF-8 strings)."""
    flat = array.reshape(-1)
    if array.dtype == object:
        out = []
        for v in flat:
            if isinstance(v, bytes):
                try:
                    out.append(v.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise InvalidInput(
                        f"output {name!r} holds bytes that are not UTF-8, which JSON cannot "
                        "carry; request it with binary_data: true"
                    ) from exc
            else:
                out.append(str(v))
        return out
    if array.dtype == np.float16:
        flat = flat.astype(np.float32)
    result: list[Any] = flat.tolist()
    return result
