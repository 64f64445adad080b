"""Export: the fitted pipeline as one ONNX graph, its agreement check, and publishing."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "OnnxInterface",
    "Published",
    "check_agreement",
    "next_version",
    "onnx_feeds",
    "pipeline_to_onnx",
    "publish_model",
]

_WHERE = {
    "OnnxInterface": "onnx",
    "onnx_feeds": "onnx",
    "pipeline_to_onnx": "onnx",
    "check_agreement": "verify",
    "Published": "publish",
    "next_version": "publish",
    "publish_model": "publish",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'shipyard.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipyard.export.{module}"), name)
