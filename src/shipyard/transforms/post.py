"""``softmax``, ``top_k`` and ``labels``: a model's scores -> probabilities -> classes -> names."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.transforms import _checks
from shipyard.transforms.base import Array, Batch, Specs, Step
from shipyard.transforms.errors import StepConfigError, TransformError

__all__ = ["Labels", "Softmax", "TopK"]


def _scores(step: str, batch: Batch) -> Array:
    array = _checks.single(step, batch)
    if array.dtype.kind not in "biuf" or array.ndim < 2:
        raise TransformError(
            f"{step} takes scores [N, classes], got {array.dtype} {list(array.shape)}"
        )
    return array


def _scores_spec(step: str, spec: Specs) -> tuple[str, tuple[int, ...]]:
    datatype, shape = _checks.single_spec(step, spec)
    if datatype in ("BYTES", "BOOL") or len(shape) < 2:
        raise StepConfigError(f"takes scores [N, classes], but gets {datatype} {list(shape)}",
                              step)
    return datatype, shape


class Softmax(Step):
    """``exp(x - max) / sum(exp(x - max))`` along the last axis (stable for large scores).

    No parameters. ``float64`` input stays ``float64``; anything else comes out ``float32``.
    """

    name = "softmax"

    def __init__(self) -> None:
        pass

    def output_spec(self, input_spec: Specs) -> Specs:
        datatype, shape = _scores_spec(self.name, input_spec)
        return ("FP64" if datatype == "FP64" else "FP32", shape)

    def __call__(self, batch: Batch) -> Batch:
        array = _scores(self.name, batch)
        dtype = np.float64 if array.dtype == np.float64 else np.float32
        x: Array = array.astype(dtype, copy=True)
        if x.shape[-1] == 0:
            return x
        x -= x.max(axis=-1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
        return x


class TopK(Step):
    """The ``k`` best classes of every row, best first: ``{indices: int64, scores}``, both
    ``[N, k]`` (ties go to the lower index; NaN scores rank last).

    Parameters:
        k: how many classes, an integer >= 1; default ``1``. More than the model has is refused.
    """

    name = "top_k"

    def __init__(self, k: int = 1) -> None:
        self.k = _checks.positive_int(self.name, "k", k)

    def output_spec(self, input_spec: Specs) -> Specs:
        datatype, shape = _scores_spec(self.name, input_spec)
        if len(shape) != 2:
            raise StepConfigError(f"takes scores [N, classes], but gets {list(shape)}", self.name)
        if shape[1] != -1 and shape[1] < self.k:
            raise StepConfigError(f"k={self.k} is more than the {shape[1]} classes", self.name)
        return {"indices": ("INT64", (shape[0], self.k)), "scores": (datatype, (shape[0], self.k))}

    def __call__(self, batch: Batch) -> Batch:
        array = _scores(self.name, batch)
        if array.ndim != 2:
            raise TransformError(f"top_k takes scores [N, classes], got {list(array.shape)}")
        if array.shape[1] < self.k:
            raise TransformError(f"top_k.k={self.k} is more than the {array.shape[1]} classes")
        keys = -array.astype(np.float64) if array.dtype.kind in "biu" else -array
        order = np.argsort(keys, axis=1, kind="stable")[:, : self.k]
        scores = np.take_along_axis(array, order, axis=1)
        return {"indices": order.astype(np.int64), "scores": scores}


class Labels(Step):
    """Class names for class numbers; out come UTF-8 BYTES.

    Parameters:
        labels: the class names, position = class number; required, non-empty strings.

    Input: scores ``[N, classes]`` (floats) -> the name of each row's best class ``[N]``;
    class numbers (integers, any shape) -> their names, same shape; the dict of ``top_k``
    -> the same dict with ``labels`` added beside ``indices`` and ``scores``. A class number
    outside ``labels`` is refused with its item's index.
    """

    name = "labels"

    def __init__(self, labels: list[str]) -> None:
        if not isinstance(labels, list | tuple) or not labels or \
                not all(isinstance(x, str) for x in labels):
            raise StepConfigError(f"must be a non-empty list of strings; got {labels!r}",
                                  f"{self.name}.labels")
        self.labels = tuple(labels)

    def _names(self) -> Array:
        names = getattr(self, "names_", None)
        if names is None:
            names = np.empty(len(self.labels), dtype=object)
            names[:] = [label.encode("utf-8") for label in self.labels]
            self.names_ = names
        return names

    def output_spec(self, input_spec: Specs) -> Specs:
        if isinstance(input_spec, dict):
            if "indices" not in input_spec:
                raise StepConfigError(
                    f"takes a dict with 'indices' (from top_k), but gets {sorted(input_spec)}",
                    self.name)
            return {**input_spec, "labels": ("BYTES", input_spec["indices"][1])}
        datatype, shape = _checks.single_spec(self.name, input_spec)
        if datatype.startswith("FP"):
            _scores_spec(self.name, input_spec)
            return ("BYTES", shape[:-1])
        if datatype.startswith(("INT", "UINT")):
            return ("BYTES", shape)
        raise StepConfigError(f"takes scores or class numbers, but gets {datatype}", self.name)

    def __call__(self, batch: Batch) -> Batch:
        if isinstance(batch, dict):
            if "indices" not in batch:
                raise TransformError(f"labels takes a dict with 'indices', got {sorted(batch)}")
            return {**batch, "labels": self._lookup(batch["indices"])}
        array = _checks.single(self.name, batch)
        if array.dtype.kind == "f":
            return self._lookup(np.argmax(_scores(self.name, array), axis=-1))
        return self._lookup(array)

    def _lookup(self, indices: Any) -> Array:
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TransformError(f"labels takes class numbers, got {indices.dtype}")
        flat = indices.reshape(len(indices), -1) if indices.ndim else indices.reshape(1, 1)
        bad = (flat < 0) | (flat >= len(self.labels))
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            value = int(flat[row][bad[row]][0])
            raise TransformError(
                f"class number {value} is not in labels (0..{len(self.labels) - 1})",
                row if indices.ndim else None,
            )
        names: Array = self._names()[indices]
        return names
