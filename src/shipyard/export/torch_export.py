"""A trained torch image classifier as ``model.onnx`` (and ``model.pt2``), checked against torch.

The served graph takes ``image`` ``float32`` ``[N, C, H, W]`` (pixels in [0, 1], or already
normalised when normalisation is a declared preprocessing step) and returns ``logits``
``[N, classes]``; the batch dimension is dynamic. :func:`export_image_classifier` writes both
files and returns the JSON record of ``export.json``: tensors, opset, and the agreement of ONNX
Runtime (and the reloaded ``torch.export`` program) with torch on the test split.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shipyard.errors import ExportError

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ServedImageModel", "export_image_classifier",
           "onnx_model", "save_onnx"]

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class ServedImageModel(nn.Module):
    """``net`` with the served names: ``forward(image)``; normalises first when given mean and
    std (normalisation inside the graph); returns ``{"logits": ...}`` when ``named``."""

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *, named: bool = False) -> None:
        super().__init__()
        self.net = net
        self.named = named
        self.normalize = mean is not None and std is not None
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(list(mean or [0.0])).reshape(shape))
        self.register_buffer("std", torch.tensor(list(std or [1.0])).reshape(shape))

    def forward(self, image: torch.Tensor) -> Any:
        if self.normalize:
            mean, std = self.get_buffer("mean"), self.get_buffer("std")
            image = (image - mean) / std
        logits = self.net(image)
        return {OUTPUT_NAME: logits} if self.named else logits


@contextmanager
def _quiet() -> Iterator[None]:
    """torch 2.13's exporter warns about its own internals and logs that torchvision is
    missing; neither is news to the user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _batch_dim(max_batch_size: int) -> Any:
    return torch.export.Dim("batch", min=1, max=max(max_batch_size, 2) if max_batch_size else
                            (2**31 - 2))


def onnx_model(module: nn.Module, example: torch.Tensor, *, opset: int = 18,
               max_batch_size: int = 0) -> Any:
    """``module`` (in eval mode, taking ``image`` [N, C, H, W]) as an ONNX ModelProto with
    output ``logits``: the dynamo exporter, one file's worth (no external data), the batch
    dimension dynamic up to ``max_batch_size`` (0: any)."""
    training = module.training
    module.eval()
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            program = torch.onnx.export(
                module, (example,), dynamo=True, external_data=False, opset_version=opset,
                verbose=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: _batch_dim(max_batch_size)},))  # by position: any arg name
    finally:
        module.train(training)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    return program.model_proto


def save_onnx(module: nn.Module, example: torch.Tensor, path: str | Path, *,
              opset: int = 18) -> Path:
    """:func:`onnx_model` of ``module`` written to ``path`` (what the optimisation steps start
    from); a failed export raises ExportError naming the module."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = onnx_model(module, example, opset=opset)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"torch.onnx.export of {type(module).__name__} failed: "
                          f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    path.write_bytes(model.SerializeToString())
    return path


def _torch_logits(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).float().numpy())
    return np.concatenate(out)


def _compare(got: np.ndarray, expected: np.ndarray, tolerance: float) -> dict[str, Any]:
    diff = float(np.abs(got - expected).max(initial=0.0))
    same = got.argmax(1) == expected.argmax(1)
    return {"max_abs_diff": diff, "labels_identical": bool(same.all()),
            "label_mismatches": int((~same).sum()),
            "passed": bool(diff <= tolerance and same.all())}


def export_image_classifier(
    net: nn.Module, x_test: np.ndarray, run_dir: Path, *, opset: int, tolerance: float,
    max_batch_size: int, mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None, onnx_file: str | None = "model.onnx",
    program_file: str | None = "model.pt2", metadata: dict[str, str] | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """Export ``net`` (on the CPU, in eval mode) and check the files on ``x_test`` (the graph's
    input: ``float32`` ``[N, C, H, W]``). ``mean``/``std`` put normalisation into the graph.
    A file that cannot be made is recorded (``error``), not raised, like the tabular export."""
    net = net.to("cpu").eval()
    served = ServedImageModel(net, mean, std).eval()
    example = (torch.from_numpy(np.ascontiguousarray(x_test[:2])),)
    if example[0].shape[0] < 2:
        example = (example[0].repeat(2, 1, 1, 1),)
    expected = _torch_logits(served, x_test)
    record: dict[str, Any] = {"converted": False, "file": onnx_file, "reference": "torch"}
    shape = [-1, *x_test.shape[1:]]
    classes = int(expected.shape[1])
    if onnx_file is not None:
        try:
            model = onnx_model(served, example[0], opset=opset, max_batch_size=max_batch_size)
            import onnx

            if metadata:
                onnx.helper.set_model_props(model, dict(metadata))
            model.producer_name = "shipyard"
            data = model.SerializeToString()
        except Exception as exc:  # the exporter raises many kinds; the run keeps its weights
            first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
            record["error"] = (f"export: torch.onnx.export failed: {type(exc).__name__}: "
                               f"{first}; the weights are in the run (model_state.pt)")
        else:
            (run_dir / onnx_file).write_bytes(data)
            from shipyard.export.onnx import default_opset
            from shipyard.export.verify import onnx_session

            session = onnx_session(data)
            got = np.concatenate([session.run([OUTPUT_NAME], {INPUT_NAME: x_test[i:i + 512]})[0]
                                  for i in range(0, len(x_test), 512)])
            record.update(
                converted=True, bytes=len(data), opset=default_opset(model),
                inputs=[{"name": INPUT_NAME, "datatype": "FP32", "shape": shape,
                         "format": "FORMAT_NCHW"}],
                outputs=[{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, classes]}],
                normalize_in_graph=mean is not None,
                agreement={"split": split, "rows": len(x_test), "tolerance": tolerance,
                           "outputs": [OUTPUT_NAME], **_compare(got, expected, tolerance)})
    if program_file is not None:
        record["torch_program"] = _save_program(net, mean, std, example, x_test, expected,
                                                run_dir / program_file, max_batch_size,
                                                tolerance)
    return record


def _save_program(net: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None,
                  example: tuple[torch.Tensor], x_test: np.ndarray, expected: np.ndarray,
                  path: Path, max_batch_size: int, tolerance: float) -> dict[str, Any]:
    """``torch.export`` the model with named input and output (what the torch runtime
    serves) and check the reloaded program on a slice of the test split."""
    named = ServedImageModel(net, mean, std, named=True).eval()
    try:
        with _quiet():
            program = torch.export.export(
                named, example, dynamic_shapes={INPUT_NAME: {0: _batch_dim(max_batch_size)}})
            torch.export.save(program, path)
            loaded = torch.export.load(path).module()
            rows = min(len(x_test), 256)
            with torch.inference_mode():
                got = loaded(torch.from_numpy(x_test[:rows]))[OUTPUT_NAME].numpy()
    except Exception as exc:  # as above: recorded, the ONNX file is still served
        first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        return {"file": None, "error": f"torch.export failed: {type(exc).__name__}: {first}"}
    return {"file": path.name, "bytes": path.stat().st_size, "rows_checked": rows,
            **_compare(got, expected[:rows], tolerance)}
