"""Tiny torch model builders for tests and benchmarks (helpers, not tests).

The ``model.pt2`` builders save an ``ExportedProgram`` (``torch.export.save``) with a dynamic
batch dimension (``torch.export.Dim``); the ``model.pt`` builders save TorchScript
(``torch.jit.save``). Each takes a version folder (created if needed) and writes the file there;
``path`` may also name the file itself. Importing this module imports torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

BATCH = torch.export.Dim("batch", min=1, max=1024)


class AddSub(nn.Module):
    """The conformance suite's ``add_sub``: (INPUT0 + INPUT1, INPUT0 - INPUT1)."""

    def forward(self, INPUT0: torch.Tensor, INPUT1: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return INPUT0 + INPUT1, INPUT0 - INPUT1


class DictOut(nn.Module):
    """One input ``x`` [-1, 4]; returns ``{"total": x.sum(1, keepdim), "double": 2 * x}``."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": x.sum(1, keepdim=True), "double": x * 2}


class SmallCNN(nn.Module):
    """A few conv layers on 1x28x28 images -> 10 logits (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.c3 = nn.Conv2d(16, 16, 3, padding=1, stride=2)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(image))
        x = torch.relu(self.c2(x))
        x = torch.relu(self.c3(x))
        return self.fc(x.flatten(1))


def small_cnn(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN().eval()


def _file(path: Path, name: str) -> Path:
    path = Path(path)
    if path.suffix in (".pt", ".pt2"):
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path.mkdir(parents=True, exist_ok=True)
    return path / name


def save_pt2(module: nn.Module, example: tuple[Any, ...], path: Path,
             batch: Any = BATCH, aot: bool = False) -> Path:
    """``torch.export`` ``module`` with every input's first dimension dynamic. ``aot``: also
    compile it with AOTInductor (CPU; seconds, needs a C++ compiler) and write both into the
    one PT2 archive, the program (for metadata) beside the compiled code (for
    ``execution: aot``)."""
    names = list(module.forward.__code__.co_varnames[1: 1 + len(example)])
    program = torch.export.export(module, example,
                                  dynamic_shapes={n: {0: batch} for n in names})
    target = _file(path, "model.pt2")
    if not aot:
        torch.export.save(program, target)
        return target
    from torch.export.pt2_archive._package import package_pt2

    with warnings.catch_warnings():  # torch 2.13's compiler warns about its own internals
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        files = torch._inductor.aot_compile(program.module(), example,
                                            options={"aot_inductor.package": True})
    package_pt2(target, exported_programs=program, aoti_files=files)
    return target


def save_pt(module: nn.Module, example: tuple[Any, ...], path: Path) -> Path:
    """TorchScript by tracing (``strict=False`` so dict outputs trace too)."""
    with warnings.catch_warnings():  # torch 2.13: torch.jit.* is deprecated (DeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, example, strict=False)
        target = _file(path, "model.pt")
        torch.jit.save(traced, str(target))
    return target


def _pair(rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, 16), torch.randn(rows, 16)


def add_sub_pt2(folder: Path) -> None:
    save_pt2(AddSub(), _pair(), folder)


def add_sub_pt(folder: Path) -> None:
    save_pt(AddSub(), _pair(), folder)


#: config.yaml inputs/outputs of the TorchScript add_sub
ADD_SUB_TENSORS: dict[str, Any] = {
    "inputs": [{"name": f"INPUT{i}", "datatype": "FP32", "shape": [16]} for i in (0, 1)],
    "outputs": [{"name": f"OUTPUT{i}", "datatype": "FP32", "shape": [16]} for i in (0, 1)],
}


def cnn_pt2(folder: Path, seed: int = 0) -> Path:
    return save_pt2(small_cnn(seed), (torch.randn(2, 1, 28, 28),), folder)


def cnn_pt2_aot(folder: Path, seed: int = 0) -> Path:
    """The CNN as one ``model.pt2`` with the program and its AOTInductor code."""
    return save_pt2(small_cnn(seed), (torch.randn(2, 1, 28, 28),), folder, aot=True)


def add_sub_pt2_aot(folder: Path) -> None:
    save_pt2(AddSub(), _pair(), folder, aot=True)


def cnn_pt(folder: Path, seed: int = 0) -> Path:
    return save_pt(small_cnn(seed), (torch.randn(2, 1, 28, 28),), folder)


#: config.yaml inputs/outputs of the TorchScript CNN
CNN_TENSORS: dict[str, Any] = {
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [10]}],
}
