"""The torch training loop shared by the image (CNN) and text (Transformer) experiments.

:class:`TorchTraining` says how to train (optimizer, schedule, precision, device, early stopping,
...); :func:`fit` trains a classifier with cross-entropy, validates every epoch, checkpoints
every epoch into ``run_dir/checkpoints/`` and can resume an interrupted run to the same final
weights; :func:`predict` and :func:`evaluate` use a trained model.

Importing this module does not import torch (the config and :class:`History` are plain
pydantic / dataclasses): the experiment schema can name :class:`TorchTraining` while a
scikit-learn run never loads torch. torch is imported when :func:`fit`, :func:`predict` or
:func:`evaluate` runs (the loop itself lives in ``_torch_loop``).

Data is a ``torch.utils.data.Dataset`` of ``(input, label)`` items (batched by a
``DataLoader``; the input may be a tensor or a dict of tensors, passed as ``model(**input)``)
or an in-memory ``(X, y)`` pair of tensors or numpy arrays (batched by indexing, on the
training device: no DataLoader, no per-item Python). Labels are class indices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "EarlyStopping",
    "History",
    "OptimizerConfig",
    "ScheduleConfig",
    "TorchTraining",
    "evaluate",
    "fit",
    "predict",
]

HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
CHECKPOINT_DIR = "checkpoints"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _named(value: Any) -> Any:
    """``optimizer: sgd`` is short for ``optimizer: {name: sgd}`` (same for ``schedule``)."""
    return {"name": value} if isinstance(value, str) else value


class OptimizerConfig(_Strict):
    """The optimizer and its hyper-parameters."""

    name: Literal["adam", "adamw", "sgd"] = "adamw"
    """adam, adamw (decoupled weight decay) or sgd."""
    lr: float = Field(1e-3, gt=0)
    """Learning rate (the peak rate of a one_cycle schedule)."""
    weight_decay: float = Field(0.0, ge=0)
    """L2 penalty (adam, sgd) or decoupled weight decay (adamw)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum of sgd (adam and adamw use their betas; one_cycle cycles either)."""
    nesterov: bool = False
    """Nesterov momentum (sgd with momentum > 0 only)."""

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _named(value)

    @model_validator(mode="after")
    def _check(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError(
                f"optimizer.nesterov: true needs name: sgd with momentum > 0 (got name "
                f"{self.name!r}, momentum {self.momentum}); set nesterov: false")
        return self


class ScheduleConfig(_Strict):
    """How the learning rate changes over training (updated after every batch)."""

    name: Literal["none", "cosine", "one_cycle", "step"] = "none"
    """none: constant; cosine: cosine decay from lr to min_lr over all batches; one_cycle:
    torch's OneCycleLR (up to lr over pct_start of the batches, then down; momentum cycles the
    other way); step: lr x gamma every step_size epochs."""
    warmup_epochs: float = Field(0.0, ge=0)
    """Linear warm-up from lr / (batches in warm-up) to lr over this many epochs (may be a
    fraction) before none, cosine or step takes over; one_cycle warms up by itself."""
    step_size: int = Field(1, ge=1)
    """Epochs between two multiplications by gamma (step)."""
    gamma: float = Field(0.1, gt=0, le=1)
    """Factor applied every step_size epochs (step)."""
    min_lr: float = Field(0.0, ge=0)
    """Learning rate at the end of a cosine schedule."""
    pct_start: float = Field(0.3, gt=0, lt=1)
    """Fraction of the batches spent raising the learning rate (one_cycle)."""

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _named(value)

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        if self.name == "one_cycle" and self.warmup_epochs:
            raise ValueError(
                f"schedule.warmup_epochs: {self.warmup_epochs} does not apply to one_cycle, "
                "which warms up by itself; set pct_start instead and warmup_epochs: 0")
        return self


class EarlyStopping(_Strict):
    """Stop when a validation metric has not improved for ``patience`` epochs."""

    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    """The validation metric watched (it also picks the best epoch and best.pt)."""
    patience: int = Field(5, ge=1)
    """Epochs without improvement before training stops."""
    min_delta: float = Field(0.0, ge=0)
    """Smallest change that counts as an improvement."""
    restore_best: bool = True
    """Load the best epoch's weights (best.pt) into the model at the end."""


class TorchTraining(_Strict):
    """How a torch classifier is trained by :func:`fit`."""

    epochs: int = Field(10, ge=1)
    """Passes over the training data (at most: early stopping may end sooner)."""
    batch_size: int = Field(64, ge=1)
    """Training examples per optimizer step, in all: under data-parallel training
    (``shipyard train --nproc-per-node N``) this is the global batch, and each of the N
    processes takes batch_size / N of it (it must divide evenly), so the steps per epoch, the
    learning rate and the schedule stay those of one process."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Examples per batch for validation; null = 2 x batch_size."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer (``optimizer: sgd`` is short for ``{name: sgd}``)."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """The learning-rate schedule (``schedule: cosine`` is short for ``{name: cosine}``)."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the training cross-entropy (validation loss is plain
    cross-entropy, so it stays comparable across settings)."""
    grad_clip: float | None = Field(None, gt=0)
    """Clip the global L2 norm of the gradients to this value before each step; null = off."""
    early_stopping: EarlyStopping | None = None
    """Stop early on a validation metric and restore the best weights; null = run all epochs
    (best.pt is still written, by validation loss)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: cuda when torch sees a CUDA device, else cpu."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """fp32; bf16: autocast to bfloat16 (CUDA or CPU); fp16: autocast to float16 with
    gradient scaling (CUDA only). Weights and optimizer state stay float32."""
    channels_last: bool = False
    """Use the channels_last memory format for the model and 4-d inputs (CUDA only: faster
    convolutions with tensor cores; ignored, with a note, on CPU)."""
    compile: bool = False
    """Train through ``torch.compile(model)`` (the first batches compile for a while)."""
    deterministic: bool = True
    """On CUDA: cudnn deterministic algorithms, no cudnn benchmark (reproducible
    convolutions, a little slower); false lets cudnn pick the fastest algorithms. Ops that
    accumulate with atomics on CUDA (an embedding's backward, index_add) stay
    nondeterministic either way; on CPU runs repeat bit for bit."""
    seed: int = Field(0, ge=0)
    """Seeds python's random, numpy and torch, the shuffling and the DataLoader workers."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes for Dataset inputs (in-memory tensors need none)."""
    pin_memory: bool | Literal["auto"] = "auto"
    """Pin DataLoader batches in page-locked memory; auto = when training on CUDA."""
    keep_checkpoints: int = Field(1, ge=1)
    """Per-epoch checkpoints kept in checkpoints/ (the newest; best.pt is kept besides)."""
    plot: bool = True
    """Draw the loss and accuracy curves into curves.png at the end."""

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str = "training") -> TorchTraining:
        """Validate a mapping (an experiment's section); mistakes raise ConfigError with one
        line per problem, named by its dotted path under ``where``."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            from shipyard.errors import ConfigError
            from shipyard.training.config import format_errors

            raise ConfigError(format_errors(exc, where)) from exc


@dataclass
class History:
    """What :func:`fit` did, one entry per epoch in each list (epochs count from 1).

    ``val_loss`` / ``val_accuracy`` are None without validation data. ``samples_per_s`` is
    the training throughput (images per second for image data; validation not counted);
    ``seconds`` is the epoch's training and validation."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    """Learning rate of the epoch's last batch."""
    seconds: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    """The epoch with the best ``monitor`` value (best.pt holds its weights)."""
    monitor: str = "val_loss"
    """The metric that picks the best epoch: val_loss, val_accuracy, or train_loss when there
    is no validation data."""
    stopped_early: bool = False
    restored_best: bool = False
    """Whether the model holds the best epoch's weights at the end (early stopping)."""
    device: str = ""
    precision: str = ""
    notes: list[str] = field(default_factory=list)
    """Settings that were adjusted or ignored, and resumes."""

    @property
    def best(self) -> dict[str, Any] | None:
        """The best epoch's row (None before the first epoch)."""
        if self.best_epoch is None:
            return None
        i = self.epoch.index(self.best_epoch)
        return {f.name: getattr(self, f.name)[i] for f in fields(self)
                if f.name in _PER_EPOCH}

    def summary(self, rate: str = "samples_per_s") -> dict[str, float | None]:
        """metrics.json's ``training`` section: epochs, best epoch, mean seconds per epoch,
        the mean training rate (named ``rate``: images_per_s, texts_per_s) and the total."""
        seconds = [s for s in self.seconds if s]
        rates = [r for r in self.samples_per_s if r]
        return {"epochs": float(len(self.epoch)),
                "best_epoch": None if self.best_epoch is None else float(self.best_epoch),
                "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
                rate: sum(rates) / len(rates) if rates else None,
                "seconds_total": float(sum(seconds))}

    def epoch_table(self, rate: str = "samples/s") -> list[str]:
        """The report's "Epochs" section (heading and Markdown table; [] before any epoch):
        losses, accuracies, seconds and the training rate, headed ``rate``."""
        if not self.epoch:
            return []
        from shipyard.evaluation.report import markdown_table

        rows = [[e, self.train_loss[i], self.train_accuracy[i], self.val_loss[i],
                 self.val_accuracy[i], self.seconds[i], round(self.samples_per_s[i])]
                for i, e in enumerate(self.epoch)]
        return ["## Epochs", "", *markdown_table(
            ["epoch", "train loss", "train acc", "val loss", "val acc", "seconds", rate], rows)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in _PER_EPOCH:  # JSON has no NaN
            data[key] = [None if isinstance(v, float) and not math.isfinite(v) else v
                         for v in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v)
                                  for k, v in data.items() if k in known}
        return cls(**values)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


_PER_EPOCH = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
              "seconds", "samples_per_s")

Augment = Callable[["torch.Tensor"], "torch.Tensor"]


def fit(
    model: torch.nn.Module,
    train_data: Any,
    val_data: Any,
    cfg: TorchTraining | Mapping[str, Any],
    run_dir: str | Path,
    *,
    augment: Augment | None = None,
    progress: bool = True,
    resume: bool = False,
) -> History:
    """Train ``model`` (a classifier returning logits) on ``train_data`` and return its history.

    ``train_data`` / ``val_data``: a Dataset of ``(input, label)`` or an ``(X, y)`` pair of
    tensors or arrays; ``val_data`` may be None (no validation; no early stopping). ``augment``
    is applied to every training input batch on the device (e.g. random flips); its
    randomness should come from torch's generator so it is seeded and resumable.

    Writes ``run_dir/checkpoints/epoch-NNNN.pt`` (model, optimizer, scheduler, grad scaler,
    history, RNG states) after every epoch, ``checkpoints/best.pt`` (the best epoch's weights),
    ``history.json`` and ``curves.png``. ``resume=True`` continues from the newest checkpoint
    (and starts afresh when there is none); with the same config it ends with the same
    weights as an uninterrupted run. ``progress``: a progress bar per epoch on a terminal,
    one line per epoch otherwise. The model is left on the training device.
    """
    from shipyard.training import _torch_loop

    if not isinstance(cfg, TorchTraining):
        cfg = TorchTraining.parse(cfg)
    return _torch_loop.fit(model, train_data, val_data, cfg, Path(run_dir), augment=augment,
                           progress=progress, resume=resume)


def predict(
    model: torch.nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: str = "auto",
    probabilities: bool = False,
) -> np.ndarray:
    """The model's outputs for ``data`` (a Dataset of inputs or ``(input, label)`` items, a
    tensor or array of inputs, or an ``(X, y)`` pair) as a float32 array, in order: logits, or
    softmax probabilities with ``probabilities=True``. Runs under ``torch.inference_mode`` in
    eval mode on ``device`` (auto | cpu | cuda; the model is moved there)."""
    from shipyard.training import _torch_loop

    return _torch_loop.predict(model, data, batch_size=batch_size, device=device,
                               probabilities=probabilities)


def evaluate(
    model: torch.nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "accuracy": ..., "samples": n}`` of the model on
    labelled ``data`` (a Dataset of ``(input, label)`` or an ``(X, y)`` pair)."""
    from shipyard.training import _torch_loop

    return _torch_loop.evaluate(model, data, batch_size=batch_size, device=device)
