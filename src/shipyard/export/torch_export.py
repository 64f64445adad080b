"""A trained torch image or text classifier as ``model.onnx`` (and ``model.pt2``), checked
against torch.

The served image graph takes ``image`` ``float32`` ``[N, C, H, W]`` (pixels in [0, 1], or
already normalised when normalisation is a declared preprocessing step); the text graph takes
``input_ids`` ``int64`` ``[N, L]`` (the ``tokenize`` step's output, ``L`` its ``max_length``).
Both return ``logits`` ``[N, classes]``; the batch dimension is dynamic.
:func:`export_image_classifier` and :func:`export_text_classifier` write both files and return
the JSON record of ``export.json``: tensors, opset, and the agreement of ONNX Runtime (and the
reloaded ``torch.export`` program) with torch on the test split.
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

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "TEXT_INPUT_NAME", "ServedImageModel",
           "ServedTextModel", "export_image_classifier", "export_text_classifier",
           "onnx_model", "save_onnx"]

INPUT_NAME = "image"
"""The image classifier's input."""
TEXT_INPUT_NAME = "input_ids"
"""The text classifier's input (the ``tokenize`` step's output name)."""
OUTPUT_NAME = "logits"
"""Both classifiers' output."""


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


class ServedTextModel(nn.Module):
    """``net`` with the served names: ``forward(input_ids)`` (``int64`` ``[N, L]``); returns
    ``{"logits": ...}`` when ``named``."""

    def __init__(self, net: nn.Module, *, named: bool = False) -> None:
        super().__init__()
        self.net = net
        self.named = named

    def forward(self, input_ids: torch.Tensor) -> Any:
        """``net``'s logits of ``input_ids`` (named when ``named``)."""
        logits = self.net(input_ids)
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
               max_batch_size: int = 0, input_name: str = INPUT_NAME,
               dims: dict[int, Any] | None = None) -> Any:
    """``module`` (in eval mode, taking one tensor: ``image`` [N, C, H, W] by default) as an
    ONNX ModelProto with input ``input_name`` and output ``logits``: the dynamo exporter, one
    file's worth (no external data), the batch dimension dynamic up to ``max_batch_size``
    (0: any), the other dimensions those of ``example`` unless ``dims`` makes them dynamic
    too (``{1: torch.export.Dim(...)}``)."""
    training = module.training
    module.eval()
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            program = torch.onnx.export(
                module, (example,), dynamo=True, external_data=False, opset_version=opset,
                verbose=False, input_names=[input_name], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: _batch_dim(max_batch_size), **(dims or {})},))  # by position
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
    A file that cannot be made is recorded (``error``), not raised, like the tabular export.
    ``net`` is moved to the CPU in the standard (contiguous) layout: a model trained on CUDA,
    in channels_last, exports and saves as one trained on the CPU."""
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    served = ServedImageModel(net, mean, std).eval()
    example = _example(x_test)
    expected = _torch_logits(served, x_test)
    record: dict[str, Any] = {"converted": False, "file": onnx_file, "reference": "torch"}
    if onnx_file is not None:
        inputs = [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *x_test.shape[1:]],
                   "format": "FORMAT_NCHW"}]
        record.update(_onnx_file(served, example, x_test, expected, run_dir / onnx_file,
                                 INPUT_NAME, inputs, opset=opset, max_batch_size=max_batch_size,
                                 tolerance=tolerance, metadata=metadata, split=split,
                                 extra={"normalize_in_graph": mean is not None}))
    if program_file is not None:
        record["torch_program"] = _save_program(
            ServedImageModel(net, mean, std, named=True).eval(), INPUT_NAME, example, x_test,
            expected, run_dir / program_file, max_batch_size, tolerance)
    return record


def export_text_classifier(
    net: nn.Module, ids_test: np.ndarray, run_dir: Path, *, opset: int, tolerance: float,
    max_batch_size: int, onnx_file: str | None = "model.onnx",
    program_file: str | None = "model.pt2", metadata: dict[str, str] | None = None,
    split: str = "test", dynamic_length: bool = False, pad_id: int = 0,
) -> dict[str, Any]:
    """Export the text classifier ``net`` (on the CPU, in eval mode) and check the files on
    ``ids_test`` (the graph's input: ``int64`` token ids ``[N, L]``, ``L`` the ``tokenize``
    step's ``max_length``; ``N`` is dynamic up to ``max_batch_size``). ``L`` is fixed in the
    graph, or with ``dynamic_length`` any length from 1 to ``L``: then the
    server's ``tokenize`` step can pad a batch to its longest text only (``padding: longest``),
    and the check also runs every batch of ``max_batch_size`` rows cut to its longest row
    (``pad_id`` is padding). The record has the shape of :func:`export_image_classifier`'s; a
    file that cannot be made is recorded (``error``), not raised."""
    ids_test = np.ascontiguousarray(ids_test)
    if ids_test.ndim != 2 or ids_test.dtype != np.int64:
        raise ExportError(f"export_text_classifier ids_test must be int64 [N, L] token ids, got "
                          f"{ids_test.dtype} {list(ids_test.shape)}; pass the tokenize step's "
                          "output")
    net = net.to("cpu").eval()
    served = ServedTextModel(net).eval()
    example = _example(ids_test)
    expected = _torch_logits(served, ids_test)
    record: dict[str, Any] = {"converted": False, "file": onnx_file, "reference": "torch"}
    length = int(ids_test.shape[1])
    dims = {1: torch.export.Dim("length", min=1, max=length)} \
        if dynamic_length and length > 2 else None
    if onnx_file is not None:
        inputs = [{"name": TEXT_INPUT_NAME, "datatype": "INT64",
                   "shape": [-1, -1 if dims else length]}]
        record.update(_onnx_file(served, example, ids_test, expected, run_dir / onnx_file,
                                 TEXT_INPUT_NAME, inputs, opset=opset,
                                 max_batch_size=max_batch_size, tolerance=tolerance,
                                 metadata=metadata, split=split, dims=dims))
        if dims and record.get("converted"):
            _check_cut_batches(record, run_dir / onnx_file, ids_test, expected, pad_id,
                               max_batch_size or 64, tolerance)
    if program_file is not None:
        record["torch_program"] = _save_program(
            ServedTextModel(net, named=True).eval(), TEXT_INPUT_NAME, example, ids_test,
            expected, run_dir / program_file, max_batch_size, tolerance, dims=dims)
    record["dynamic_length"] = bool(dims)
    return record


def _check_cut_batches(record: dict[str, Any], path: Path, ids: np.ndarray,
                       expected: np.ndarray, pad_id: int, batch: int, tolerance: float) -> None:
    """ONNX Runtime on each batch of ``ids`` cut to its longest row (what ``padding:
    longest`` sends) against the full-length torch logits; folded into the agreement."""
    from shipyard.export.verify import onnx_session

    session = onnx_session(path.read_bytes())
    got = []
    for i in range(0, len(ids), batch):
        rows = ids[i:i + batch]
        width = max(2, int((rows != pad_id).sum(1).max(initial=0)))
        got.append(session.run([OUTPUT_NAME], {TEXT_INPUT_NAME: rows[:, :width]})[0])
    cut = _compare(np.concatenate(got), expected, tolerance)
    agreement = record["agreement"]
    agreement["cut_to_longest"] = {"batch": batch, "max_abs_diff": cut["max_abs_diff"],
                                   "label_mismatches": cut["label_mismatches"]}
    agreement["passed"] = bool(agreement["passed"] and cut["passed"])


def _example(x: np.ndarray) -> tuple[torch.Tensor]:
    """The export example: two rows of ``x`` (a batch of 1 would specialise the batch size)."""
    example = torch.from_numpy(np.ascontiguousarray(x[:2]))
    if example.shape[0] < 2:
        example = example.repeat(2, *([1] * (example.dim() - 1)))
    return (example,)


def _onnx_file(served: nn.Module, example: tuple[torch.Tensor], x_test: np.ndarray,
               expected: np.ndarray, path: Path, input_name: str,
               inputs: list[dict[str, Any]], *, opset: int, max_batch_size: int,
               tolerance: float, metadata: dict[str, str] | None, split: str,
               extra: dict[str, Any] | None = None,
               dims: dict[int, Any] | None = None) -> dict[str, Any]:
    """Export ``served`` to ``path`` and check ONNX Runtime against ``expected`` on
    ``x_test``: the record's ONNX part (``converted``, ``bytes``, ``opset``, ``inputs``,
    ``outputs``, ``extra``, ``agreement``), or its ``error``."""
    try:
        model = onnx_model(served, example[0], opset=opset, max_batch_size=max_batch_size,
                           input_name=input_name, dims=dims)
        import onnx

        if metadata:
            onnx.helper.set_model_props(model, dict(metadata))
        model.producer_name = "shipyard"
        data = model.SerializeToString()
    except Exception as exc:  # the exporter raises many kinds; the run keeps its weights
        first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        return {"error": f"export: torch.onnx.export failed: {type(exc).__name__}: "
                         f"{first}; the weights are in the run (model_state.pt)"}
    path.write_bytes(data)
    from shipyard.export.onnx import default_opset
    from shipyard.export.verify import onnx_session

    session = onnx_session(data)
    got = np.concatenate([session.run([OUTPUT_NAME], {input_name: x_test[i:i + 512]})[0]
                          for i in range(0, len(x_test), 512)])
    return {"converted": True, "bytes": len(data), "opset": default_opset(model),
            "inputs": inputs,
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                         "shape": [-1, int(expected.shape[1])]}],
            **(extra or {}),
            "agreement": {"split": split, "rows": len(x_test), "tolerance": tolerance,
                          "outputs": [OUTPUT_NAME], **_compare(got, expected, tolerance)}}


def _save_program(named: nn.Module, input_name: str, example: tuple[torch.Tensor],
                  x_test: np.ndarray, expected: np.ndarray, path: Path, max_batch_size: int,
                  tolerance: float, dims: dict[int, Any] | None = None) -> dict[str, Any]:
    """``torch.export`` ``named`` (a served model whose forward argument is ``input_name``
    and which returns ``{"logits": ...}``: what the torch runtime serves) and check the
    reloaded program on a slice of the test split (in batches of at most ``max_batch_size``,
    the bound the program was exported with)."""
    try:
        with _quiet():
            program = torch.export.export(
                named, example, dynamic_shapes={input_name: {0: _batch_dim(max_batch_size),
                                                             **(dims or {})}})
            torch.export.save(program, path)
            loaded = torch.export.load(path).module()
            rows = min(len(x_test), 256)
            step = min(max_batch_size, rows) if max_batch_size else rows  # its batch bound
            with torch.inference_mode():
                got = np.concatenate([
                    loaded(torch.from_numpy(x_test[i:min(i + step, rows)]))[OUTPUT_NAME].numpy()
                    for i in range(0, rows, step)])
    except Exception as exc:  # as above: recorded, the ONNX file is still served
        first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        return {"file": None, "error": f"torch.export failed: {type(exc).__name__}: {first}"}
    return {"file": path.name, "bytes": path.stat().st_size, "rows_checked": rows,
            **_compare(got, expected[:rows], tolerance)}
