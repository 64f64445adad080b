"""The seed's simple API, protocol-free: rows of features in, one result per row out; or
items (encoded images, texts) in, the top labels of each with their probabilities out.

``POST /predict {"features": [...]}`` and gRPC ``ModelService.Predict`` both go through here,
and so do the image and text bodies of ``/predict`` (``http/predict.py`` reads them): each
item becomes one row of the model's one BYTES input (``[n, 1]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shipyard.protocol.items import as_probabilities, column_problem
from shipyard.protocol.wire import decode_json_data
from shipyard.serving.errors import InvalidInput, brief
from shipyard.serving.model import ModelVersion
from shipyard.serving.pipeline import ITEM_INPUTS
from shipyard.serving.types import Array, InferenceRequest, InferenceResponse, Tensor, numpy_dtype
from shipyard.transforms import apply_steps
from shipyard.transforms.post import TopK

__all__ = [
    "ItemKind", "PredictInput", "features_request", "features_result", "first_score",
    "item_kind", "items_request", "predict_request", "predict_result",
]

#: labels per item when the request does not say (capped by the classes there are)
DEFAULT_TOP_K = 5

#: what the items of a /predict body are: encoded image files or UTF-8 texts
ItemKind = Literal["images", "texts"]

#: the /predict body of each kind of item, for messages
_ITEM_BODIES: dict[str, str] = {
    "images": '{"images": ["<base64>", ...]} (encoded PNG/JPEG files)',
    "texts": '{"text": "..."} or {"text": ["...", ...]}',
}
#: the preprocess steps that take each kind of item, for messages
_STEPS_OF: dict[str, str] = {"images": "an image_decode", "texts": "a text_normalize or tokenize"}
#: the kind of item a model takes, told by its first preprocess step
_STEP_KINDS: dict[str, ItemKind] = {
    step: "images" if item == "image" else "texts" for step, item in ITEM_INPUTS.items()}


@dataclass
class PredictInput:
    """What a /predict body asked for: ``features`` (the seed's rows), or ``items`` (one per
    row of the model's BYTES input: encoded image files when ``kind`` is ``"images"``, UTF-8
    texts when it is ``"texts"``), and how many labels per item (None: the default)."""

    features: Any = None
    #: the items, as bytes (a text UTF-8 encoded); None for a features body
    items: list[bytes] | None = None
    #: what the items are (for messages and for refusing the wrong kind)
    kind: ItemKind = "images"
    #: labels per item (None: the model's own top_k step, else :data:`DEFAULT_TOP_K`)
    top_k: int | None = None


def predict_request(model: ModelVersion, asked: PredictInput) -> InferenceRequest:
    """The inference request of a /predict body."""
    if asked.items is None:
        return features_request(model, asked.features)
    return items_request(model, asked.items, asked.kind)


def _first_step(model: ModelVersion) -> str | None:
    """The name of the model's first preprocess step (None without one)."""
    pipeline = model.pipeline
    return pipeline.pre[0].name if pipeline is not None and pipeline.pre else None


def item_kind(model: ModelVersion) -> ItemKind | None:
    """The kind of item ``model`` takes, as its first preprocess step tells (``image_decode``:
    images; ``text_normalize``, ``tokenize``: texts); None when no step tells."""
    return _STEP_KINDS.get(_first_step(model) or "")


def _body_for(model: ModelVersion) -> str:
    """The /predict body ``model`` takes, for messages."""
    if len(model.inputs) == 1 and model.inputs[0].datatype == "BYTES":
        kind = item_kind(model)
        if kind is not None:
            return _ITEM_BODIES[kind]
        return f"{_ITEM_BODIES['texts']} (texts) or {_ITEM_BODIES['images']}"
    if len(model.inputs) == 1:
        return '{"features": [...]} (a row of numbers or a list of rows)'
    return ('{"features": {"column": value, ...}} (an object of column values, or a list of '
            "them)")


def items_request(model: ModelVersion, items: list[bytes], kind: ItemKind) -> InferenceRequest:
    """Items (encoded images or UTF-8 texts) -> the model's one BYTES input, one item per row
    (``[n, 1]``). A model whose first preprocess step takes the other kind of item
    (``image_decode``; ``text_normalize``, ``tokenize``) refuses them, naming its body."""
    if len(model.inputs) != 1 or model.inputs[0].datatype != "BYTES":
        described = ", ".join(f"{s.datatype} {s.name!r} {_fmt(s.shape)}" for s in model.inputs)
        raise InvalidInput(
            f"model {model.name!r} takes {described}, not {kind}: /predict sends {kind} to a "
            f"model with one BYTES input (e.g. one whose config.yaml declares "
            f"{_STEPS_OF[kind]} preprocess step); send this model {_body_for(model)}, or "
            f"tensors to /v2/models/{model.name}/infer")
    first = _first_step(model)
    takes = item_kind(model)
    if takes is not None and takes != kind:
        raise InvalidInput(
            f"model {model.name!r} takes {takes} (its first preprocess step is {first}), not "
            f"{kind}; send {_ITEM_BODIES[takes]}")
    spec = model.inputs[0]
    n = len(items)
    shape: tuple[int, ...] = (n, *[1 for _ in spec.shape[1:]]) if len(spec.shape) > 1 else (n,)
    data = np.empty(n, dtype=object)
    data[:] = items
    return InferenceRequest(model.name, str(model.version), inputs=[
        Tensor(spec.name, "BYTES", shape, data.reshape(shape))
    ])


def predict_result(model: ModelVersion, asked: PredictInput, response: InferenceResponse
                   ) -> dict[str, Any]:
    """The answer to a /predict body: for items (images, texts), ``predictions`` (per item,
    the top labels with their probabilities, best first) and ``labels`` (the best of each);
    for features, as :func:`features_result`.

    Where the outputs hold names but no scores (a ``labels`` postprocess step on scores),
    each prediction is ``{"label": name}`` alone; where they hold neither, the answer is that
    of features."""
    if asked.items is None:
        return features_result(model, response)
    ranked = _ranked(model, response, asked.top_k)
    if ranked is None:
        names = _names_only(response)
        if names is None:  # outputs that hold no class scores: plain values, as for features
            return features_result(model, response)
        return {
            "model_name": model.name, "model_version": str(model.version),
            "predictions": [[{"label": label}] for label in names], "labels": names,
        }
    return {
        "model_name": model.name, "model_version": str(model.version),
        "predictions": [[{"label": label, "probability": p} for label, p in row]
                        for row in ranked],
        "labels": [row[0][0] if row else None for row in ranked],
    }


def _names_only(response: InferenceResponse) -> list[str] | None:
    """One name per row from the only output, when it is BYTES ``[n]`` or ``[n, 1]``."""
    if len(response.outputs) != 1:
        return None
    data = response.outputs[0].data
    if data.dtype != object or data.ndim not in (1, 2) or (data.ndim == 2 and data.shape[1] != 1):
        return None
    return [_text(v) for v in data.reshape(-1)]


def _ranked(model: ModelVersion, response: InferenceResponse, top_k: int | None
            ) -> list[list[tuple[str, float]]] | None:
    """Per row, (label, probability) best first, from either a labels + scores pair of
    outputs (the top_k and labels postprocess steps) or one output of class scores that the
    config labels (softmax applied unless the rows already are probabilities; e.g. the
    ``probabilities`` of a scikit-learn classifier exported with skl2onnx)."""
    outs = response.outputs
    texts = [o for o in outs if o.data.dtype == object and o.data.ndim == 2]
    numbers = [o for o in outs if o.data.dtype.kind == "f" and o.data.ndim == 2]
    for t in texts:
        for s in numbers:
            if s.data.shape == t.data.shape:
                k = s.data.shape[1] if top_k is None else min(top_k, s.data.shape[1])
                return [[(_text(t.data[r, j]), float(s.data[r, j])) for j in range(k)]
                        for r in range(s.data.shape[0])]
    for s in numbers:
        names = model.config.labels.get(s.name)
        if not names or s.data.shape[1] != len(names):
            continue
        k = min(DEFAULT_TOP_K if top_k is None else top_k, len(names))
        best = apply_steps([TopK(k)], as_probabilities(s.data))
        assert isinstance(best, dict)  # top_k answers {indices, scores}
        return [[(names[int(i)], float(p)) for i, p in zip(idx, row, strict=True)]
                for idx, row in zip(best["indices"], best["scores"], strict=True)]
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def features_request(model: ModelVersion, features: Any) -> InferenceRequest:
    """The simple API's ``features`` -> an inference request for ``model``.

    Accepted: one row of numbers, a list of rows, one object ``{"column": value}`` or a list of
    objects (models with one input per raw column, e.g. exported tabular pipelines)."""
    if isinstance(features, dict) or (
        isinstance(features, list) and features and isinstance(features[0], dict)
    ):
        rows = features if isinstance(features, list) else [features]
        return _columns_request(model, rows)
    if not isinstance(features, list) or not features:
        raise InvalidInput(
            "'features' must be a non-empty list of numbers (one row), a list of rows, or an "
            f"object of column values; got {brief(features)}"
        )
    nested = isinstance(features[0], list)
    width = len(features[0]) if nested else len(features)
    n = len(features) if nested else 1
    try:
        rows_arr = decode_json_data("features", "FP64", (n, width), features)
    except InvalidInput as exc:  # say which row and column, not which tensor and datatype
        raise InvalidInput(_rows_problem(features if nested else [features]) or exc.message
                           ) from exc
    return _rows_request(model, rows_arr)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _rows_problem(rows: list[Any]) -> str | None:
    """The first row or value of list-of-rows ``features`` that cannot be a row of numbers,
    in the user's terms (rows and columns), or None when each one looks right."""
    width = len(rows[0]) if isinstance(rows[0], list) else 0
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            return (f"'features' row {i} is {brief(row)}, not a list of numbers; send every row "
                    "as a list of numbers (or every row as an object of column values)")
        if len(row) != width:
            return (f"'features' row {i} has {len(row)} value(s) but row 0 has {width}; every "
                    "row needs the same number of values")
        for j, value in enumerate(row):
            if not _is_number(value):
                return (f"'features' row {i}, column {j}: {brief(value)} is not a number; "
                        "send numbers only")
    return None


def _column_problem(spec_name: str, datatype: str, values: list[Any]) -> str | None:
    """The first value of column ``spec_name`` (one per row) that the column cannot take, in
    the user's terms (row and column), or None when each one looks right."""
    for i, value in enumerate(values):
        if datatype == "BYTES":
            if not (isinstance(value, str | bool) or _is_number(value) or value is None):
                return (f"'features' row {i}, column {spec_name!r}: {brief(value)} is not a "
                        "text or number value; send one string (or number) per column")
        elif datatype.startswith("FP"):
            if not (_is_number(value) or value is None):
                return (f"'features' row {i}, column {spec_name!r}: {brief(value)} is not a "
                        "number; send a number (or null for a missing value)")
        elif datatype == "BOOL":
            if not isinstance(value, bool):
                return (f"'features' row {i}, column {spec_name!r}: {brief(value)} is not "
                        "true or false")
        elif not (_is_number(value) and float(value).is_integer()):
            return (f"'features' row {i}, column {spec_name!r}: {brief(value)} is not a "
                    "whole number; send an integer")
    return None


def _rows_request(model: ModelVersion, rows: Array) -> InferenceRequest:
    """Shape a 2-D float array of rows into the model's single numeric input."""
    if len(model.inputs) != 1:
        raise InvalidInput(
            f"model {model.name!r} has {len(model.inputs)} inputs "
            f"{[s.name for s in model.inputs]}; send 'features' as an object of column values "
            f"({{\"{model.inputs[0].name}\": ...}}) or use /v2/models/{model.name}/infer"
        )
    spec = model.inputs[0]
    if spec.datatype in ("BYTES", "BOOL"):
        instead = (f"send {_body_for(model)} to /v2/models/{model.name}/predict, or tensors to"
                   if spec.datatype == "BYTES" else "use")
        raise InvalidInput(
            f"model {model.name!r} takes {spec.datatype} input {spec.name!r}; 'features' carries "
            f"numbers: {instead} /v2/models/{model.name}/infer instead"
        )
    if spec.datatype.startswith(("INT", "UINT")) and not np.isfinite(rows).all():
        raise InvalidInput(
            f"'features' holds NaN or infinity, which integer input {spec.name!r} cannot take")
    n, width = rows.shape
    per_row = spec.shape[1:]
    if all(d > 0 for d in per_row):
        expected = int(np.prod(per_row)) if per_row else 1
        if width != expected:
            raise InvalidInput(
                f"'features' of model {model.name!r} expects {expected} values per row "
                f"(input {spec.name!r} has shape {_fmt(spec.shape)}), got {width}"
            )
        shape: tuple[int, ...] = (n, *per_row)
    elif len(spec.shape) == 2:
        shape = (n, width)
    else:
        raise InvalidInput(
            f"model {model.name!r}: input {spec.name!r} has shape {_fmt(spec.shape)} with "
            "several dynamic dimensions, so rows of features cannot be shaped into it; "
            f"use /v2/models/{model.name}/infer"
        )
    if model.max_batch_size == 0 and spec.shape and spec.shape[0] > 0 and spec.shape[0] != n:
        raise InvalidInput(
            f"model {model.name!r} takes exactly {spec.shape[0]} row(s) per request, got {n}"
        )
    data = rows.astype(numpy_dtype(spec.datatype), copy=False).reshape(shape)
    return InferenceRequest(model.name, str(model.version), inputs=[
        Tensor(spec.name, spec.datatype, shape, data)
    ])


def _columns_request(model: ModelVersion, rows: list[Any]) -> InferenceRequest:
    """Objects of column values -> one [n, 1] tensor per model input."""
    names = [s.name for s in model.inputs]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"'features' row {i} must be an object of column values")
        problem = column_problem(row, names)
        if problem is not None:
            raise InvalidInput(f"'features' row {i} for model {model.name!r}: {problem}")
    n = len(rows)
    tensors = []
    for spec in model.inputs:
        per_row = spec.shape[1:]
        if any(d not in (1, -1) for d in per_row):
            raise InvalidInput(
                f"model {model.name!r}: input {spec.name!r} has shape {_fmt(spec.shape)}, not "
                "one value per row; send rows as lists or use /v2/models/{m}/infer"
            )
        shape = (n, *[1 for _ in per_row])
        raw = [row[spec.name] for row in rows]
        values = raw
        if spec.datatype == "BYTES":
            values = [_as_category(v) for v in values]
        elif spec.datatype.startswith("FP"):
            values = [float("nan") if v is None else v for v in values]
        try:
            data = decode_json_data(spec.name, spec.datatype, shape, values)
        except InvalidInput as exc:  # say which row and column, not which tensor and datatype
            raise InvalidInput(_column_problem(spec.name, spec.datatype, raw) or exc.message
                               ) from exc
        tensors.append(Tensor(spec.name, spec.datatype, shape, data))
    return InferenceRequest(model.name, str(model.version), inputs=tensors)


def _as_category(value: Any) -> Any:
    """A JSON value for a text column: 1 and 1.0 both become "1" (as training wrote them)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


def features_result(model: ModelVersion, response: InferenceResponse) -> dict[str, Any]:
    """``{"result": [...one entry per row...]}``; plus, for an output of class scores that the
    config labels, ``labels`` (the best class of each row) and ``probabilities`` (per row,
    ``{label: probability}`` in the config's class order)."""
    out = response.outputs[0]
    data = out.data
    rows = data.shape[0] if data.ndim else 1
    flat = data.reshape(rows, -1)
    if data.dtype == object:
        values = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in flat]
    else:
        values = flat.tolist()
    result: list[Any] = [row[0] if len(row) == 1 else row for row in values]
    body: dict[str, Any] = {
        "model_name": model.name, "model_version": str(model.version), "result": result,
    }
    for labelled in response.outputs:
        names = model.config.labels.get(labelled.name)
        scores = labelled.data
        if names and scores.dtype != object and scores.ndim >= 1:
            scores = scores.reshape(scores.shape[0], -1)
            if scores.shape[1] == len(names):
                body["labels"] = [names[i] for i in np.argmax(scores, axis=1)]
                probs = as_probabilities(scores)
                body["probabilities"] = [
                    {name: float(p) for name, p in zip(names, row, strict=True)}
                    for row in probs]
                break
    return body


def first_score(response: InferenceResponse) -> float:
    """The first element of the first output (the gRPC ModelResponse.score)."""
    data = response.outputs[0].data
    if data.size == 0 or data.dtype == object:
        raise InvalidInput(
            f"model {response.model_name!r}: output {response.outputs[0].name!r} is not numeric "
            "or empty, so it has no score"
        )
    return float(data.reshape(-1)[0])
