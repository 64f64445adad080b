"""A model's own vocabulary over V2 tensors, on the client: items (rows of numbers, dicts of raw
columns, image files, texts) -> the model's input tensors, and its output tensors -> one
:class:`Prediction` per item, with labels and probabilities where the model names classes.

The same rules as the server's ``/predict`` (``serving/simple.py``), read from the model's
metadata only: the kind of item from ``properties["preprocess"]`` (:data:`ITEM_INPUTS`), the
labelled outputs from ``properties["labels.<output>"]``, whose labels the V2 classification
extension returns (``"score:index:label"``). Both transports go through here, so REST and gRPC
answer the same.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from shipyard.client.errors import InvalidArgument
from shipyard.protocol.items import ITEM_INPUTS, as_probabilities, column_problem
from shipyard.protocol.types import Array, numpy_dtype

__all__ = [
    "DEFAULT_TOP_K", "ItemKind", "Label", "ModelInfo", "OutputRequest", "Prediction",
    "TensorInfo", "encode_items", "output_requests", "predictions",
]

#: labels per item when the call does not say (capped by the classes there are), as /predict
DEFAULT_TOP_K = 5

#: what a model's items are: encoded image files, texts, objects of raw columns, rows of numbers
ItemKind = Literal["images", "texts", "columns", "rows"]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output of a model: name, V2 datatype, shape (-1 = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model's V2 metadata (``GET /v2/models/{m}``, gRPC ``ModelMetadata``)."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    properties: dict[str, str] = field(default_factory=dict)
    """The OIP's model properties (``backend``, ``preprocess``, ``labels.<output>``, ...)."""

    @classmethod
    def from_metadata(cls, doc: Mapping[str, Any]) -> ModelInfo:
        """From the V2 metadata JSON shape (both transports produce it)."""
        def tensors(key: str) -> tuple[TensorInfo, ...]:
            return tuple(TensorInfo(str(t["name"]), str(t["datatype"]),
                                    tuple(int(d) for d in t["shape"]))
                         for t in doc.get(key) or ())
        return cls(str(doc["name"]), tuple(str(v) for v in doc.get("versions") or ()),
                   str(doc.get("platform", "")), tensors("inputs"), tensors("outputs"),
                   {str(k): str(v) for k, v in (doc.get("properties") or {}).items()})

    @property
    def labelled(self) -> dict[str, int]:
        """Outputs whose classes config.yaml names, and how many there are."""
        out = {}
        for key, value in self.properties.items():
            if key.startswith("labels.") and value.isdigit():
                out[key[len("labels."):]] = int(value)
        return out

    @property
    def kind(self) -> ItemKind:
        """What :meth:`Client.predict` takes for this model (see :func:`encode_items`)."""
        if len(self.inputs) == 1 and self.inputs[0].datatype == "BYTES":
            first = self.properties.get("preprocess", "").split(",")[0]
            return "images" if ITEM_INPUTS.get(first) == "image" else "texts"
        if len(self.inputs) == 1:
            return "rows"
        return "columns"


class Label(NamedTuple):
    """One class of a prediction: its name and probability (None where the model gives a name
    but no score)."""

    label: str
    probability: float | None


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    """The answer for one item."""

    labels: tuple[Label, ...]
    """The likeliest classes, best first (empty where the model names no classes)."""
    outputs: dict[str, Array]
    """This item's row of every output. A labelled output's row holds its class scores in
    class order, as the classification extension returned them (6 decimals)."""

    @property
    def label(self) -> str | None:
        """The likeliest class (None where the model names no classes)."""
        return self.labels[0].label if self.labels else None

    @property
    def probability(self) -> float | None:
        """The probability of :attr:`label` (None without one)."""
        return self.labels[0].probability if self.labels else None

    @property
    def value(self) -> Any:
        """The first output's row as Python values: a number for one value (a regression, a
        score), else a list."""
        row = next(iter(self.outputs.values()))
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                  for v in row.reshape(-1).tolist()]
        return values[0] if len(values) == 1 else values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: ``label``, ``probability``, ``labels`` ([label, probability] pairs)
        and ``outputs`` (lists)."""
        return {
            "label": self.label, "probability": self.probability,
            "labels": [[lab.label, lab.probability] for lab in self.labels],
            "outputs": {k: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                            for v in a.reshape(-1).tolist()] for k, a in self.outputs.items()},
        }


class OutputRequest(NamedTuple):
    """An output to ask for; ``classification``: its top-k classes as ``score:index:label``."""

    name: str
    classification: int | None = None


def output_requests(info: ModelInfo) -> list[OutputRequest]:
    """Every output, a labelled one with all its classes (``classification``)."""
    labelled = info.labelled
    return [OutputRequest(o.name, labelled.get(o.name)) for o in info.outputs]


# items -> tensors ---------------------------------------------------------------------------


def _row_shape(spec: TensorInfo, n: int) -> tuple[int, ...]:
    """``[n]`` or ``[n, 1, ...]``: one item per row of a one-value-per-row input."""
    return (n, *[1 for _ in spec.shape[1:]]) if len(spec.shape) > 1 else (n,)


def _as_bytes(model: str, kind: str, i: int, item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if kind == "texts" and isinstance(item, str):
        return item.encode("utf-8")
    if kind == "images" and isinstance(item, str | os.PathLike):
        try:
            return Path(item).read_bytes()
        except OSError as exc:
            raise InvalidArgument(f"item {i} for model {model!r}: cannot read image file "
                                  f"{str(item)!r}: {exc.strerror}") from exc
    wanted = "a str (the text) or bytes" if kind == "texts" else "a file path or the bytes " \
             "of an encoded image (PNG/JPEG)"
    raise InvalidArgument(f"item {i} for model {model!r} must be {wanted}, got "
                          f"{type(item).__name__}")


def _category(value: Any) -> bytes:
    """A raw value for a text column: 1 and 1.0 both become "1" (as training wrote them)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return str(value).encode()
    if isinstance(value, float) and value.is_integer():
        return str(int(value)).encode()
    return str(value).encode("utf-8")


def _columns(info: ModelInfo, items: Any) -> list[Mapping[str, Any]] | Mapping[str, Any]:
    """Rows (a list of dicts) or columns (one dict of sequences, or a DataFrame)."""
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # a pandas DataFrame
        columns: Mapping[str, Any] = items.to_dict("list")
        return columns
    if isinstance(items, Mapping):
        return items
    if isinstance(items, Sequence) and all(isinstance(r, Mapping) for r in items):
        return list(items)
    raise InvalidArgument(
        f"model {info.name!r} takes raw columns {[s.name for s in info.inputs]}: pass a list "
        "of {column: value} dicts (one per row) or a dict of {column: [values]}")


def _encode_columns(info: ModelInfo, items: Any) -> dict[str, Array]:
    given = _columns(info, items)
    names = [s.name for s in info.inputs]
    if isinstance(given, Mapping):
        keys, n = list(given), len(next(iter(given.values()), []))
        values = {k: list(given[k]) for k in keys}
        if any(len(v) != n for v in values.values()):
            raise InvalidArgument(f"columns for model {info.name!r} differ in length: "
                                  f"{ {k: len(v) for k, v in values.items()} }")
        _check_columns(info, keys, names, "the columns")
    else:
        n = len(given)
        for i, row in enumerate(given):
            _check_columns(info, list(row), names, f"row {i}")
        values = {k: [row[k] for row in given] for k in names}
    if n == 0:
        raise InvalidArgument(f"no rows for model {info.name!r}: pass at least one")
    out = {}
    for spec in info.inputs:
        if any(d not in (1, -1) for d in spec.shape[1:]):
            raise InvalidArgument(
                f"model {info.name!r}: input {spec.name!r} has shape {list(spec.shape)}, not "
                "one value per row; call infer() with tensors")
        column = values[spec.name]
        shape = _row_shape(spec, n)
        if spec.datatype == "BYTES":
            arr = np.empty(n, dtype=object)
            arr[:] = [_category(v) for v in column]
        else:
            filled = [math.nan if v is None else v for v in column] \
                if spec.datatype.startswith("FP") else column
            try:
                arr = np.asarray(filled, dtype=numpy_dtype(spec.datatype))
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"column {spec.name!r} of model {info.name!r} takes "
                                      f"{spec.datatype} values: {exc}") from exc
        out[spec.name] = arr.reshape(shape)
    return out


def _check_columns(info: ModelInfo, given: list[str], names: list[str], where: str) -> None:
    problem = column_problem(given, names)
    if problem is not None:
        raise InvalidArgument(f"{where} for model {info.name!r}: {problem}")


def _encode_rows(info: ModelInfo, items: Any) -> dict[str, Array]:
    spec = info.inputs[0]
    try:
        rows = np.asarray(items, dtype=numpy_dtype(spec.datatype))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"model {info.name!r} takes rows of {spec.datatype} numbers for "
                              f"input {spec.name!r}: {exc}") from exc
    if rows.ndim == 0 or rows.shape[0] == 0:
        raise InvalidArgument(f"no rows for model {info.name!r}: pass a list of rows")
    per_row = spec.shape[1:]
    n = rows.shape[0]
    if all(d > 0 for d in per_row):
        expected = math.prod(per_row)
        if rows[0].size != expected:
            raise InvalidArgument(
                f"model {info.name!r} expects {expected} values per row (input {spec.name!r} "
                f"has shape {list(spec.shape)}), got {rows[0].size}")
        return {spec.name: rows.reshape((n, *per_row))}
    if rows.ndim == len(spec.shape):
        return {spec.name: rows}
    raise InvalidArgument(
        f"model {info.name!r}: rows of shape {list(rows.shape[1:])} do not fit input "
        f"{spec.name!r} {list(spec.shape)}; call infer() with tensors")


def encode_items(info: ModelInfo, items: Any) -> dict[str, Array]:
    """The model's input tensors for ``items``:

    - an image model (first preprocess step ``image_decode``): file paths or bytes;
    - a text model (one BYTES input): strings (or UTF-8 bytes);
    - a model of several inputs (raw columns): a list of ``{column: value}`` dicts, a dict of
      ``{column: [values]}`` or a DataFrame;
    - a model of one numeric input: rows of numbers (a list of lists, or an array).
    """
    kind = info.kind
    if kind in ("images", "texts"):
        if isinstance(items, str | bytes | os.PathLike):
            items = [items]
        if not isinstance(items, Sequence) or not items:
            raise InvalidArgument(f"model {info.name!r} takes a non-empty list of {kind}")
        data = np.empty(len(items), dtype=object)
        data[:] = [_as_bytes(info.name, kind, i, item) for i, item in enumerate(items)]
        spec = info.inputs[0]
        return {spec.name: data.reshape(_row_shape(spec, len(items)))}
    if kind == "columns":
        return _encode_columns(info, items)
    return _encode_rows(info, items)


# tensors -> predictions ---------------------------------------------------------------------


def _rows(a: Array) -> Array:
    """An output as rows: ``[n, ...]``; a 1-D array is n rows of one value."""
    return a.reshape(a.shape[0], -1) if a.ndim >= 1 else a.reshape(1, 1)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _classified(a: Array, count: int) -> tuple[Array, list[str]]:
    """Classification strings ``[n, count]`` -> scores ``[n, count]`` in class order and the
    class names."""
    rows = a.reshape(-1, count) if a.ndim != 2 else a
    scores = np.zeros(rows.shape, dtype=np.float64)
    names = [""] * rows.shape[1]
    for r in range(rows.shape[0]):
        for entry in rows[r]:
            score, index, *label = _text(entry).split(":", 2)
            scores[r, int(index)] = float(score)
            names[int(index)] = label[0] if label else index
    return scores, names


def _top(scores: Array, names: list[str], k: int) -> list[tuple[Label, ...]]:
    """Per row, the ``k`` likeliest classes; softmax first unless rows are probabilities."""
    scores = as_probabilities(scores)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [tuple(Label(names[int(i)], float(scores[r, i])) for i in order[r])
            for r in range(scores.shape[0])]


def predictions(info: ModelInfo, outputs: dict[str, Array], top_k: int | None = None
                ) -> list[Prediction]:
    """One :class:`Prediction` per item, the classes found as ``/predict`` finds them: a pair
    of outputs of names and scores of one shape (``top_k`` and ``labels`` postprocess steps),
    else an output the config labels (asked for with classification), else one output of
    names, else none."""
    labelled = info.labelled
    rows: dict[str, Array] = {}
    classified: list[tuple[Array, list[str]]] = []
    for name, a in outputs.items():
        if name in labelled and a.dtype == object:
            scores, names = _classified(a, labelled[name])
            rows[name] = scores
            classified.append((scores, names))
        else:
            rows[name] = _rows(a)
    n = next(iter(rows.values())).shape[0] if rows else 0
    ranked: list[tuple[Label, ...]] | None = None
    texts = [o for o, a in outputs.items() if a.dtype == object and a.ndim == 2
             and o not in labelled]
    numbers = [o for o, a in outputs.items() if a.dtype.kind == "f" and a.ndim == 2]
    for t in texts:
        for s in numbers:
            if outputs[s].shape == outputs[t].shape and ranked is None:
                width = outputs[s].shape[1]
                k = width if top_k is None else min(top_k, width)
                ranked = [tuple(Label(_text(outputs[t][r, j]), float(outputs[s][r, j]))
                                for j in range(k)) for r in range(n)]
    if ranked is None and classified:
        scores, names = classified[0]
        ranked = _top(scores, names, DEFAULT_TOP_K if top_k is None else top_k)
    if ranked is None and len(outputs) == 1:
        (a,) = outputs.values()
        if a.dtype == object and (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
            ranked = [(Label(_text(v), None),) for v in a.reshape(-1)]
    return [Prediction(ranked[r] if ranked is not None else (),
                       {name: rows[name][r] for name in rows}) for r in range(n)]
