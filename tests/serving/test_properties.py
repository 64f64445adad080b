"""Property-based tests (hypothesis) of the tensor codecs, in process.

* ``codecs.encode_raw`` / ``codecs.decode_raw`` round-trip every datatype and any shape, BYTES
  with arbitrary binary elements; any buffer either decodes (and re-encodes to itself) or is
  refused with ``InvalidInput``.
* ``codecs.decode_json_data`` accepts exactly the data that matches shape and datatype (compared
  with a small reference model of the rules) and otherwise raises ``InvalidInput``, never another
  exception type.
* ``codecs.check_shape`` / ``codecs.check_datatype``: same contract for arbitrary values.
* ``http.codec.decode_infer_request`` with arbitrary bytes, arbitrary JSON and mutated binary
  requests: only ``InvalidInput`` may escape, and what it accepts is consistent.

Hypothesis keeps no example database (``database=None``): nothing is written into the repository.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from shipyard.protocol.wire import (
    MAX_ELEMENTS,
    check_datatype,
    check_shape,
    decode_json_data,
    decode_raw,
    encode_raw,
)
from shipyard.serving.errors import InvalidInput
from shipyard.serving.http.codec import decode_infer_request
from shipyard.serving.types import DATATYPES, InferenceRequest, datatype_of

T = TypeVar("T")

#: modest and deterministic enough for CI; no example database in the repository
PROPS = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMERIC = [dt for dt in DATATYPES if dt != "BYTES"]
INTS = [dt for dt in NUMERIC if DATATYPES[dt].kind in "iu"]
FLOATS = ["FP16", "FP32", "FP64"]


#: short reprs for failure messages (schemathesis' pytest plugin, when installed, patches
#: Hypothesis' printer so that falsifying examples print as blanks: the messages carry them)
SHORT = reprlib.Repr()
SHORT.maxlevel, SHORT.maxlist, SHORT.maxdict, SHORT.maxstring, SHORT.maxother = 4, 8, 6, 60, 60


def call(fn: Callable[..., T], *args: Any) -> T:
    """Call a codec; any exception but InvalidInput fails the test, naming the input.

    numpy's floating-point warnings are silenced: a cast that overflows warns (``overflow
    encountered in cast``), which this suite's ``-W error`` would turn into an exception that
    the server never sees."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args)
    except InvalidInput:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{fn.__name__}{SHORT.repr(args)} raised {type(exc).__name__}: "
            f"{SHORT.repr(str(exc))}; only InvalidInput may escape") from exc


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------

shapes = npst.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)

#: JSON-like values: what a JSON parser (or a protobuf repeated field) can hand the codecs
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=20,
)


def element_strategy(datatype: str) -> st.SearchStrategy[Any]:
    """JSON elements that are valid for ``datatype``."""
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=10)  # no lone surrogates by default
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    largest = int(np.finfo(dtype).max)
    width = 8 * dtype.itemsize
    # ints stay within what numpy holds as int64/uint64: bigger ones are left to the
    # "exactly what matches" test below
    return st.one_of(st.floats(width=width),
                     st.integers(-min(largest, 2**63), min(largest, 2**64 - 1)))


def nest(flat: list[Any], shape: tuple[int, ...]) -> Any:
    """A flat list nested exactly as ``shape`` (row-major)."""
    if not shape:
        return flat[0]
    step = math.prod(shape[1:])
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def valid_json_tensors(draw: st.DrawFn) -> tuple[str, tuple[int, ...], Any, list[Any]]:
    """(datatype, shape, data as a client sends it, the flat elements)."""
    datatype = draw(st.sampled_from(sorted(DATATYPES)))
    shape = draw(npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    flat = draw(st.lists(element_strategy(datatype), min_size=math.prod(shape),
                         max_size=math.prod(shape)))
    form = draw(st.sampled_from(["flat", "nested", "scalar"]))
    if form == "nested" and shape:
        data: Any = nest(flat, shape)
    elif form == "scalar" and len(flat) == 1:
        data = flat[0]
    else:
        data = flat
    return datatype, shape, data, flat


# --------------------------------------------------------------------------------------------
# a reference model of decode_json_data's rules
# --------------------------------------------------------------------------------------------


def _nested(node: Any, dims: tuple[int, ...]) -> list[Any] | None:
    if not dims:
        return None if isinstance(node, list) else [node]
    if not isinstance(node, list) or len(node) != dims[0]:
        return None
    out: list[Any] = []
    for child in node:
        part = _nested(child, dims[1:])
        if part is None:
            return None
        out.extend(part)
    return out


def element_ok(datatype: str, value: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype == "BYTES":
        if not isinstance(value, str):
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return isinstance(value, int) and int(info.min) <= value <= int(info.max)
    if not isinstance(value, int | float):
        return False
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float64
        return False
    if not math.isfinite(as_float):
        return True  # NaN and infinities are legal float values
    with np.errstate(over="ignore"):
        return bool(np.isfinite(dtype.type(as_float)))


def reference(datatype: str, shape: tuple[int, ...], data: Any) -> list[Any] | None:
    """The flat elements when ``data`` is acceptable for (datatype, shape), else None."""
    items = data if isinstance(data, list) else [data]
    flat = items if not any(isinstance(v, list) for v in items) else _nested(items, shape)
    if flat is None or len(flat) != math.prod(shape):
        return None
    if not all(element_ok(datatype, v) for v in flat):
        return None
    return flat


def assert_decoded(out: np.ndarray, datatype: str, shape: tuple[int, ...],
                   flat: list[Any]) -> None:
    assert out.shape == shape
    assert out.dtype == DATATYPES[datatype]
    got = out.reshape(-1).tolist()
    if datatype == "BYTES":
        assert got == [v.encode("utf-8") for v in flat]
    elif DATATYPES[datatype].kind == "f":
        with np.errstate(over="ignore"):
            want = np.array([float(v) for v in flat], np.float64).astype(DATATYPES[datatype])
        np.testing.assert_array_equal(out.reshape(-1), want)
    else:
        assert got == flat


def decode_or_refuse(datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray | None:
    """decode_json_data's result, or None when it raised InvalidInput (anything else fails)."""
    try:
        return call(decode_json_data, "x", datatype, shape, data)
    except InvalidInput:
        return None


# --------------------------------------------------------------------------------------------
# raw (binary) layout
# --------------------------------------------------------------------------------------------


@PROPS
@given(array=npst.arrays(dtype=st.sampled_from([DATATYPES[dt] for dt in NUMERIC]), shape=shapes),
       transpose=st.booleans())
def test_raw_round_trip_every_datatype(array: np.ndarray, transpose: bool) -> None:
    if transpose:
        array = array.T  # a non-contiguous view
    datatype = datatype_of(array)
    blob = encode_raw(array)
    assert len(blob) == array.size * array.dtype.itemsize
    out = decode_raw("x", datatype, array.shape, blob)
    assert out.shape == array.shape and out.dtype == array.dtype
    assert out.tobytes() == np.ascontiguousarray(array).tobytes()  # bit-exact, NaNs too
    assert decode_raw("x", datatype, array.shape, memoryview(blob)).tobytes() == blob


@PROPS
@given(shape=npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), data=st.data())
def test_raw_round_trip_bytes_with_arbitrary_elements(shape: tuple[int, ...],
                                                      data: st.DataObject) -> None:
    n = math.prod(shape)
    items = data.draw(st.lists(st.binary(max_size=40), min_size=n, max_size=n))
    array = np.empty(n, dtype=object)
    array[:] = items
    array = array.reshape(shape)
    blob = encode_raw(array)
    assert len(blob) == 4 * n + sum(map(len, items))
    out = decode_raw("x", "BYTES", shape, blob)
    assert out.shape == shape and out.dtype == object
    assert out.reshape(-1).tolist() == items


@PROPS
@given(texts=st.lists(st.text(max_size=10), min_size=1, max_size=6))
def test_raw_encodes_text_as_utf8(texts: list[str]) -> None:
    # str objects, as ONNX Runtime returns string outputs (a numpy 'U' array would already have
    # dropped trailing NUL characters when it was built)
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    out = decode_raw("x", "BYTES", array.shape, encode_raw(array))
    assert out.tolist() == [t.encode("utf-8") for t in texts]


@PROPS
@given(datatype=st.sampled_from(sorted(DATATYPES)), shape=shapes,
       buf=st.binary(max_size=256))
def test_raw_decode_of_any_buffer_decodes_or_refuses(datatype: str, shape: tuple[int, ...],
                                                     buf: bytes) -> None:
    """Any bytes: either the right layout (and it re-encodes to exactly ``buf``) or
    InvalidInput; a fixed-size type decodes exactly when the length is prod(shape) x size."""
    try:
        out = decode_raw("x", datatype, shape, buf)
    except InvalidInput:
        if datatype != "BYTES":
            assert len(buf) != math.prod(shape) * DATATYPES[datatype].itemsize
        return
    assert out.shape == shape
    assert encode_raw(out) == buf
    if datatype != "BYTES":
        assert len(buf) == math.prod(shape) * DATATYPES[datatype].itemsize


# --------------------------------------------------------------------------------------------
# JSON data
# --------------------------------------------------------------------------------------------


@PROPS
@given(case=valid_json_tensors())
def test_json_data_accepts_every_matching_tensor(
        case: tuple[str, tuple[int, ...], Any, list[Any]]) -> None:
    datatype, shape, data, flat = case
    assert reference(datatype, shape, data) is not None  # the reference agrees it is valid
    out = call(decode_json_data, "x", datatype, shape, data)
    assert_decoded(out, datatype, shape, flat)


@PROPS
@example(datatype="INT32", shape=(2,), data=[1, True])
@example(datatype="FP32", shape=(2,), data=[0.5, True])
@example(datatype="FP32", shape=(1,), data=[2**64])
@example(datatype="FP64", shape=(1,), data=[2**1100])
@given(datatype=st.sampled_from(sorted(DATATYPES)),
       shape=npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
       data=json_values)
def test_json_data_accepts_exactly_what_matches(datatype: str, shape: tuple[int, ...],
                                                data: Any) -> None:
    """Arbitrary JSON values: decoded exactly when the reference rules accept them, otherwise
    InvalidInput and never another exception type."""
    expected = reference(datatype, shape, data)
    out = decode_or_refuse(datatype, shape, data)
    what = f"{datatype} {list(shape)} data {SHORT.repr(data)}"
    if expected is None:
        assert out is None, f"accepted {what}, which does not match"
    else:
        assert out is not None, f"refused {what}, which matches"
        assert_decoded(out, datatype, shape, expected)


@PROPS
@example(case=("INT16", (2,), [0, 0], [0, 0]), intruder=False, position=0)
@example(case=("FP32", (1,), [0.5], [0.5]), intruder=2**64, position=0)
@given(case=valid_json_tensors(), intruder=json_scalars, position=st.integers(0, 1000))
def test_json_data_with_one_element_swapped(
        case: tuple[str, tuple[int, ...], Any, list[Any]], intruder: Any, position: int) -> None:
    """A valid tensor with one element replaced by any scalar (a bool among numbers, a huge
    int, a string, None, NaN...): accepted exactly when the element is legal."""
    datatype, shape, _, flat = case
    assume(flat)
    flat = list(flat)
    flat[position % len(flat)] = intruder
    expected = reference(datatype, shape, flat)
    out = decode_or_refuse(datatype, shape, flat)
    what = f"{intruder!r} in {datatype} {list(shape)} data {SHORT.repr(flat)}"
    if expected is None:
        assert out is None, f"accepted {what}"
    else:
        assert out is not None, f"refused {what}"
        assert_decoded(out, datatype, shape, expected)


@PROPS
@given(case=valid_json_tensors(), other=npst.array_shapes(min_dims=0, max_dims=3, max_side=4))
def test_json_data_with_the_wrong_shape_is_refused(
        case: tuple[str, tuple[int, ...], Any, list[Any]], other: tuple[int, ...]) -> None:
    datatype, _, data, flat = case
    assume(math.prod(other) != len(flat))
    assert decode_or_refuse(datatype, other, data) is None


# --------------------------------------------------------------------------------------------
# shapes and datatypes
# --------------------------------------------------------------------------------------------

dims = st.one_of(st.integers(-5, 10), st.integers(-(2**64), 2**64),
                 st.sampled_from([MAX_ELEMENTS, MAX_ELEMENTS + 1, 46_341, 65_536]))
shape_values = st.one_of(
    st.lists(dims, max_size=6), st.lists(dims, max_size=6).map(tuple),
    st.lists(st.just(1), min_size=30, max_size=40), json_values,
)


def shape_ok(shape: Any) -> bool:
    if not isinstance(shape, list | tuple):
        return False
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return False
    return (len(shape) <= 32 and all(0 <= d <= MAX_ELEMENTS for d in shape)
            and math.prod(shape) <= MAX_ELEMENTS)


@PROPS
@example(shape=[[[[1]]]])
@given(shape=shape_values)
def test_check_shape_accepts_exactly_bounded_int_lists(shape: Any) -> None:
    try:
        out = call(check_shape, "x", shape)
    except InvalidInput:
        assert not shape_ok(shape), f"refused a valid shape {SHORT.repr(shape)}"
        return
    assert shape_ok(shape), f"accepted {SHORT.repr(shape)}"
    assert out == tuple(shape)


@pytest.mark.parametrize("depth", [100, 1000])
def test_check_shape_refuses_deeply_nested_lists(depth: int) -> None:
    """A JSON parser hands over lists nested up to ~1000 deep (orjson's limit is 1024): the
    error message must not recurse into them (repr() of such a list raises RecursionError)."""
    shape: Any = []
    for _ in range(depth):
        shape = [shape]
    with pytest.raises(InvalidInput):
        call(check_shape, "x", shape)


@PROPS
@example(datatype=[])
@example(datatype={"FP32": 1})
@given(datatype=st.one_of(st.sampled_from([*DATATYPES, "BF16", "fp32", "FP32 ", ""]),
                          json_values))
def test_check_datatype_accepts_exactly_the_v2_names(datatype: Any) -> None:
    try:
        out = call(check_datatype, "x", datatype)
    except InvalidInput:
        assert not (isinstance(datatype, str) and datatype in DATATYPES)
        return
    assert isinstance(datatype, str) and datatype in DATATYPES and out == datatype


# --------------------------------------------------------------------------------------------
# http.codec.decode_infer_request
# --------------------------------------------------------------------------------------------

header_lengths = st.one_of(st.none(), st.integers(-3, 400).map(str), st.text(max_size=6))


def check_request(request: InferenceRequest) -> None:
    """What decode_infer_request accepts is internally consistent."""
    assert isinstance(request, InferenceRequest) and request.inputs
    for tensor in request.inputs:
        assert tensor.datatype in DATATYPES
        assert tensor.data.shape == tensor.shape
        assert tensor.data.dtype == DATATYPES[tensor.datatype]
        assert math.prod(tensor.shape) <= MAX_ELEMENTS


def decode_request(body: bytes, header_length: str | None) -> None:
    try:
        request = call(decode_infer_request, body, header_length, "m", "")
    except InvalidInput:
        return
    check_request(request)


@PROPS
@given(body=st.binary(max_size=300), header_length=header_lengths)
def test_decode_infer_request_arbitrary_bytes(body: bytes, header_length: str | None) -> None:
    decode_request(body, header_length)


@PROPS
@example(doc={"inputs": [{"name": "a", "datatype": {}, "shape": [1], "data": [1]}]},
         header_length=None, tail=b"")
@given(doc=json_values, header_length=st.one_of(st.none(), st.just("exact")),
       tail=st.binary(max_size=40))
def test_decode_infer_request_arbitrary_json(doc: Any, header_length: str | None,
                                             tail: bytes) -> None:
    head = json.dumps(doc).encode()
    if header_length is None:
        decode_request(head, None)
    else:
        decode_request(head + tail, str(len(head)))


junk = st.one_of(json_values, st.sampled_from([-1, 2**63, 2**64 - 1, 1.5, "", "FP32", True]))


@st.composite
def tensor_docs(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A request input, usually well formed, with any one field perturbed; and its binary
    payload when it uses binary_data_size."""
    datatype = draw(st.sampled_from(sorted(DATATYPES)))
    shape = draw(npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    n = math.prod(shape)
    doc: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "\u00e9"])),
                           "datatype": datatype, "shape": list(shape)}
    blob = b""
    if draw(st.booleans()):
        doc["data"] = draw(st.lists(element_strategy(datatype), min_size=n, max_size=n))
    else:
        if datatype == "BYTES":
            items = draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n))
            blob = b"".join(len(x).to_bytes(4, "little") + x for x in items)
        else:
            blob = draw(st.binary(min_size=n * DATATYPES[datatype].itemsize,
                                  max_size=n * DATATYPES[datatype].itemsize))
        doc["parameters"] = {"binary_data_size": len(blob)}
    key = draw(st.sampled_from([None, "name", "datatype", "shape", "data", "parameters",
                                "binary_data_size", "extra"]))
    if key == "binary_data_size":
        doc["parameters"] = {"binary_data_size": draw(junk)}
    elif key == "extra":
        doc[draw(st.text(max_size=4))] = draw(junk)
    elif key is not None:
        doc[key] = draw(junk)
    return doc, blob


@st.composite
def binary_requests(draw: st.DrawFn) -> tuple[bytes, str | None]:
    tensors = draw(st.lists(tensor_docs(), min_size=0, max_size=3))
    doc: dict[str, Any] = {"inputs": [t for t, _ in tensors]}
    if draw(st.booleans()):
        doc["id"] = draw(st.one_of(st.text(max_size=5), junk))
    if draw(st.booleans()):
        doc["parameters"] = draw(st.one_of(
            st.fixed_dictionaries({"timeout": junk}),
            st.dictionaries(st.text(max_size=4), junk, max_size=3), junk))
    if draw(st.booleans()):
        doc["outputs"] = draw(st.one_of(
            st.lists(st.fixed_dictionaries({"name": st.one_of(st.text(max_size=3), junk)}),
                     max_size=2), junk))
    head = json.dumps(doc).encode()
    blob = b"".join(b for _, b in tensors)
    blob += draw(st.sampled_from([b"", b"", b"\0", b"\xff" * 7]))
    hlen = draw(st.one_of(st.just(len(head)), st.integers(-2, len(head) + len(blob) + 2)))
    if not any(b for _, b in tensors) and draw(st.booleans()):
        return head, None  # plain JSON
    return head + blob, str(hlen)


@PROPS
@example(request=(b'{"inputs": [{"name": "a", "datatype": ["FP32"], "shape": [1], "data": [1]}]}',
                  None))
@given(request=binary_requests())
def test_decode_infer_request_perturbed_requests(request: tuple[bytes, str | None]) -> None:
    body, header_length = request
    decode_request(body, header_length)
