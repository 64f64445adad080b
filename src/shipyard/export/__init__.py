"""Export: the fitted pipeline as one ONNX graph, its agreement check, publishing, and the
optimisations (INT8 quantisation, pruning, their comparison)."""

from __future__ import annotations

from shipyard._lazy import lazy_dir, lazy_exports

__all__ = [
    "AccuracyCheck",
    "ArrayCalibrationReader",
    "Comparison",
    "OnnxInterface",
    "Published",
    "QuantizeResult",
    "check_agreement",
    "compare_onnx",
    "next_version",
    "onnx_feeds",
    "pipeline_to_onnx",
    "prune_channels",
    "prune_unstructured",
    "publish_model",
    "quantize_onnx",
    "sparsity",
]

_WHERE = {
    "OnnxInterface": "onnx",
    "onnx_feeds": "onnx",
    "pipeline_to_onnx": "onnx",
    "check_agreement": "verify",
    "Published": "publish",
    "next_version": "publish",
    "publish_model": "publish",
    "AccuracyCheck": "quantize",
    "ArrayCalibrationReader": "quantize",
    "QuantizeResult": "quantize",
    "quantize_onnx": "quantize",
    "prune_channels": "prune",
    "prune_unstructured": "prune",
    "sparsity": "prune",
    "Comparison": "compare",
    "compare_onnx": "compare",
}


__getattr__ = lazy_exports(__name__, _WHERE)
__dir__ = lazy_dir(globals(), __all__)
