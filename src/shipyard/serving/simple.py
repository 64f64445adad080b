"""The seed's simple API, protocol-free: rows of features in, one result per row out.

``POST /predict {"features": [...]}`` and gRPC ``ModelService.Predict`` both go through here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.serving.errors import InvalidInput
from shipyard.serving.registry import ModelVersion
from shipyard.serving.types import InferenceRequest, InferenceResponse, Tensor, numpy_dtype

__all__ = ["features_request", "features_result", "first_score"]

Array = npt.NDArray[Any]


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def features_request(model: ModelVersion, rows: Array) -> InferenceRequest:
    """Shape a 2-D float array of rows into the model's single numeric input."""
    if len(model.inputs) != 1:
        raise InvalidInput(
            f"model {model.name!r} has {len(model.inputs)} inputs "
            f"{[s.name for s in model.inputs]}; 'features' needs a model with one input: "
            f"use /v2/models/{model.name}/infer instead"
        )
    spec = model.inputs[0]
    if spec.datatype in ("BYTES", "BOOL"):
        raise InvalidInput(
            f"model {model.name!r} takes {spec.datatype} input {spec.name!r}; 'features' carries "
            f"numbers: use /v2/models/{model.name}/infer instead"
        )
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


def features_result(model: ModelVersion, response: InferenceResponse) -> dict[str, Any]:
    """``{"result": [...one entry per row...]}``; plus ``labels`` for classification outputs."""
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
    labels = model.config.labels.get(out.name)
    if labels and data.dtype != object and flat.shape[1] == len(labels):
        body["labels"] = [labels[i] for i in np.argmax(flat, axis=1)]
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
