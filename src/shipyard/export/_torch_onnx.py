"""A torch image classifier as ``model.onnx`` (dynamo exporter, dynamic batch dimension).

Private: the optimisation benchmark and tests use it to get the float model that
:mod:`shipyard.export.quantize` starts from; a run's own export writes the same kind of file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from shipyard.errors import ExportError

__all__ = ["export_image_classifier"]


def export_image_classifier(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                            input_name: str = "image", output_name: str = "logits") -> Path:
    """Write ``model`` (in eval mode) taking ``[N, C, H, W]`` float32 to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    training = model.training
    model.eval()
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # torch 2.13's exporter warns about its own internals and prints its progress
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    except Exception as exc:
        raise ExportError(f"torch.onnx.export of {type(model).__name__} failed: "
                          f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    finally:
        model.train(training)
        quiet.setLevel(level)
    if program is None:
        raise ExportError(f"torch.onnx.export of {type(model).__name__} returned nothing")
    program.save(str(path))
    return path
