"""Parameter checks for steps' ``__init__`` and batch checks for their ``__call__``.

Every parameter error is a :class:`StepConfigError` whose path is ``<step>.<param>`` and whose
reason names the allowed values and the bad one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shipyard.transforms.base import Array, Batch, Spec, Specs
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = [
    "boolean",
    "choice",
    "dense",
    "float_list",
    "number",
    "positive_int",
    "single",
    "single_spec",
    "size_pair",
]


def _fail(step: str, param: str, expected: str, value: Any) -> StepConfigError:
    return StepConfigError(f"must be {expected}; got {value!r}", f"{step}.{param}")


def choice(step: str, param: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    if isinstance(value, bool) or value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise _fail(step, param, f"one of {names}", value)
    return value


def boolean(step: str, param: str, value: Any) -> bool:
    """``value`` if it is ``true`` or ``false`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise _fail(step, param, "true or false", value)
    return value


def positive_int(step: str, param: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise _fail(step, param, f"an integer >= {minimum}", value)
    return int(value)


def number(step: str, param: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a float if it is a finite number (and > 0 when ``positive``)."""
    ok = not isinstance(value, bool) and isinstance(value, int | float | np.number)
    if ok:
        value = float(value)
        ok = bool(np.isfinite(value)) and (value > 0 or not positive)
    if not ok:
        raise _fail(step, param, "a finite number > 0" if positive else "a finite number", value)
    return float(value)


def size_pair(step: str, param: str, value: Any) -> tuple[int, int]:
    """``[height, width]`` (or one integer for a square) as a tuple of positive ints."""
    expected = "[height, width] with two integers >= 1 (or one integer for a square)"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = [value, value]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(step, param, expected, value)
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in value):
        raise _fail(step, param, expected, value)
    return int(value[0]), int(value[1])


def float_list(step: str, param: str, value: Any, *, positive: bool = False) -> tuple[float, ...]:
    """A non-empty list of finite numbers (one number is a list of one)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    expected = "a non-empty list of finite numbers" + (" > 0" if positive else "")
    if not isinstance(value, list | tuple) or not value:
        raise _fail(step, param, expected, value)
    try:
        return tuple(number(step, param, v, positive=positive) for v in value)
    except StepConfigError:
        raise _fail(step, param, expected, list(value)) from None


def single(step: str, batch: Batch) -> Array:
    """The batch as one array; a dict batch (several tensors) is refused."""
    if isinstance(batch, dict):
        names = ", ".join(sorted(batch))
        raise TransformError(f"{step} takes one tensor, got several ({names})")
    if not isinstance(batch, np.ndarray):
        raise TransformError(f"{step} takes a numpy array, got {type(batch).__name__}")
    return batch


def dense(step: str, batch: Batch) -> Array:
    """The batch as one array of one item shape; a ragged batch of images is refused."""
    array = single(step, batch)
    if array.dtype == object and array.ndim == 1 and len(array) and isinstance(
        array[0], np.ndarray
    ):
        shapes = {item.shape for item in array}
        if len(shapes) == 1:
            return np.stack(list(array))
        first = array[0].shape
        other = next(i for i, item in enumerate(array) if item.shape != first)
        raise TransformError(
            f"{step} needs images of one size, got {_hw(first)} (item 0) and "
            f"{_hw(array[other].shape)} (item {other}); declare resize or center_crop before it"
        )
    return array


def _hw(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def single_spec(step: str, spec: Specs, datatypes: Sequence[str] | None = None) -> Spec:
    """``spec`` if it is one tensor's spec (of one of ``datatypes`` when given)."""
    if isinstance(spec, dict):
        raise StepConfigError(f"takes one tensor, but the step before it makes {sorted(spec)}",
                              step)
    datatype, shape = spec
    if datatypes is not None and datatype not in datatypes:
        raise StepConfigError(
            f"takes {' or '.join(datatypes)} input, but gets {datatype} {list(shape)}", step
        )
    return datatype, tuple(shape)
