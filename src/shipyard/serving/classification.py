"""The V2 classification extension (Triton's): an output asked for with
``parameters.classification: k`` is answered as the top ``k`` classes of each row, as BYTES
strings ``"score:index"`` or, where ``config.yaml`` gives labels for that output,
``"score:index:label"``, best first."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.serving.errors import InvalidInput, brief
from shipyard.serving.types import Array

__all__ = ["classification_count", "classify"]


def classification_count(model: str, output: str, parameters: dict[str, Any]) -> int | None:
    """The ``classification`` parameter of a requested output: None when absent; a positive
    int, else InvalidInput naming the output and the value."""
    k = parameters.get("classification")
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(
            f"output {output!r} of model {model!r}: parameters.classification must be a "
            f"positive integer (the number of classes to return), got {brief(k)}"
        )
    return k


def classify(model: str, output: str, scores: Array, k: int, labels: list[str] | None,
             batched: bool) -> Array:
    """The top ``k`` classes of each row of ``scores`` (the last axis holds the classes)."""
    if scores.dtype.kind not in "fiub":
        raise InvalidInput(
            f"output {output!r} of model {model!r} is not numeric ({scores.dtype}); "
            "classification needs scores"
        )
    rows = scores.reshape(scores.shape[0], -1) if batched else scores.reshape(1, -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r in range(order.shape[0]):
        for j, idx in enumerate(order[r]):
            text = f"{float(rows[r, idx]):f}:{int(idx)}"
            if labels is not None and idx < len(labels):
                text += f":{labels[idx]}"
            out[r, j] = text.encode()
    return out if batched else out.reshape(k)
