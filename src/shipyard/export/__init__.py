"""Export: the fitted pipeline as one ONNX graph, its agreement check, and publishing."""

from __future__ import annotations

from shipyard._lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _WHERE)
