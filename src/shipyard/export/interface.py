"""The served interface of an exported scikit-learn model, as ``run.json`` keeps it: plain
data, so reading a run (to publish it on a serving host) needs neither onnx nor pandas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["OnnxInterface"]


@dataclass(frozen=True)
class OnnxInterface:
    """The served interface of an exported model."""

    input: Literal["columns", "matrix"] = "columns"
    """One input per raw column, or one FP32 matrix."""
    input_name: str = "features"
    """Name of the matrix input."""
    outputs: tuple[str, ...] = ("label", "probabilities")
    """Graph outputs in order."""
    score_index: int = -1
    """Column of ``probabilities`` that ``score`` takes."""
