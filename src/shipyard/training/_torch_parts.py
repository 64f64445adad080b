"""Pieces of the torch loop: device and precision, batches, optimizer and schedule, seeds and
RNG states, checkpoints. Imports torch (only ``_torch_loop`` imports this module)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shipyard.errors import ConfigError, DataError, ExperimentError
from shipyard.training.torch import OptimizerConfig, ScheduleConfig, TorchTraining

# --- device and precision ------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a CUDA device is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device: 'cuda' but torch {torch.__version__} sees no CUDA device (CUDA build: "
            f"{torch.version.cuda or 'none'}); set device: auto or cpu, or install a CUDA "
            "build of torch on a GPU machine")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device: {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None = fp32, no autocast)."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError(
                f"precision: 'fp16' needs a CUDA device (the device is {device.type}; float16 "
                "training with gradient scaling is CUDA only); use precision: bf16 or fp32")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"precision: 'bf16' is not supported by {torch.cuda.get_device_name(device)}; use "
            "precision: fp16 or fp32")
    return torch.bfloat16


@contextlib.contextmanager
def cudnn_flags(deterministic: bool, device: torch.device) -> Iterator[None]:
    """cudnn's deterministic / benchmark flags for the fit (CUDA only), put back after."""
    if device.type != "cuda":
        yield
        return
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


# --- seeds and RNG states ------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every CUDA device too


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of one epoch: a function of (seed, epoch) only, so a resumed run
    shuffles its later epochs as the uninterrupted run does."""
    return (seed * 1_000_003 + epoch * 7_919) % 2**63


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and random in a worker follow torch's worker seed
    (itself drawn from the loader's seeded generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """python, numpy, torch and CUDA generator states, as tensors and plain values (so a
    checkpoint loads with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        # a generator state is a CPU ByteTensor; a checkpoint of a machine with more GPUs
        # than this one has states for devices that do not exist here
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


# --- batches -------------------------------------------------------------------------------

Batch = tuple[Any, torch.Tensor]
Shard = tuple[int, int]
"""(rank, world size) of a data-parallel process."""


def shard_order(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Process ``rank``'s part of a permutation: the permutation padded by wrapping around to
    a multiple of ``world`` (so every process gets the same number of examples and of
    batches, as torch's DistributedSampler does), then every ``world``-th index from
    ``rank``. The whole ``order`` when ``world`` is 1."""
    if world == 1:
        return order
    pad = -len(order) % world
    if pad:
        order = torch.cat([order, order.repeat(pad // len(order) + 1)[:pad]])
    return order[rank::world]


class ShardSampler(torch.utils.data.Sampler[int]):
    """A DataLoader sampler of one data-parallel process's shuffled shard: the permutation of
    (seed, epoch) cut by :func:`shard_order`; :meth:`set_epoch` picks the epoch."""

    def __init__(self, size: int, rank: int, world: int, seed: int) -> None:
        self.size, self.rank, self.world, self.seed, self.epoch = size, rank, world, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the next iteration as epoch ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = shard_order(torch.randperm(self.size, generator=gen), self.rank, self.world)
        return iter(order.tolist())


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    try:
        return torch.from_numpy(np.ascontiguousarray(array))
    except TypeError as exc:
        raise DataError(f"{what}: cannot make a tensor of {array.dtype} values ({exc})") from exc


def _labels(y: torch.Tensor, what: str) -> torch.Tensor:
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{what}: labels must be class indices (integers), got {y.dtype}; "
                        "encode the classes as 0..k-1")
    return y.long()


def is_pair(data: Any) -> bool:
    return isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data, Dataset)


def tensor_pair(data: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(X, y)`` for in-memory data (a pair of tensors/arrays or a two-tensor
    TensorDataset), else None (a Dataset to batch with a DataLoader)."""
    if isinstance(data, torch.utils.data.TensorDataset) and len(data.tensors) == 2:
        return data.tensors[0], data.tensors[1]
    if is_pair(data):
        x, y = _as_tensor(data[0], "inputs"), _as_tensor(data[1], "labels")
        if len(x) != len(y):
            raise DataError(f"inputs and labels differ in length: {len(x)} inputs, "
                            f"{len(y)} labels")
        return x, y
    return None


class TensorBatches:
    """Batches of in-memory tensors, held on the device and indexed there: one gather per
    batch, no DataLoader, no collation of single items."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                 device: torch.device, seed: int, channels_last: bool = False,
                 shard: Shard | None = None) -> None:
        if len(x) == 0:
            raise DataError("the data holds no examples")
        rank, world = shard or (0, 1)
        if world > 1 and not shuffle:  # evaluation: every world-th example, no padding
            x, y = x[rank::world], y[rank::world]
        self.x = x.to(device)
        if channels_last and self.x.dim() == 4:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = _labels(y, "labels").to(device)
        self.batch_size, self.shuffle, self.seed, self.device = batch_size, shuffle, seed, device
        self.rank, self.world = rank, world
        self.samples = math.ceil(len(self.x) / world) if shuffle else len(self.x)
        """Examples this process sees per epoch (its shard when data-parallel)."""
        self.channels_last = channels_last and self.x.dim() == 4

    def __len__(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n, bs = self.samples, self.batch_size
        if not self.shuffle:
            for i in range(0, n, bs):
                yield self.x[i:i + bs], self.y[i:i + bs]
            return
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = shard_order(torch.randperm(len(self.x), generator=gen), self.rank,
                            self.world).to(self.device)
        for i in range(0, n, bs):
            idx = order[i:i + bs]
            x = self.x[idx]
            if self.channels_last:  # a gather need not keep the layout; no-op when it did
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.y[idx]


def _to_device(value: Any, device: torch.device, non_blocking: bool,
               channels_last: bool = False) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.to(device, non_blocking=non_blocking)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        return value
    if isinstance(value, Mapping):
        return {k: _to_device(v, device, non_blocking) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device, non_blocking) for v in value)
    return value


def _whole_batch(batch: Any) -> Any:
    """The collate function of a Dataset that makes its batches itself."""
    return batch


class LoaderBatches:
    """Batches of a Dataset through a DataLoader whose shuffling and worker seeds follow
    (seed, epoch); the items are ``(input, label)``, or inputs alone when ``labelled`` is
    False (labels then come back empty)."""

    def __init__(self, dataset: Dataset[Any], batch_size: int, *, shuffle: bool,
                 device: torch.device, seed: int, num_workers: int, pin_memory: bool,
                 channels_last: bool = False, labelled: bool = True,
                 shard: Shard | None = None) -> None:
        self.generator = torch.Generator()
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError as exc:
            raise DataError("the Dataset has no len(); fit needs a map-style Dataset") from exc
        if size == 0:
            raise DataError("the data holds no examples")
        # a Dataset whose __getitems__ makes whole batches (ImageTensorDataset) is not
        # collated again; Subset passes __getitems__ through, so the flag of the original
        collate = _whole_batch if getattr(dataset, "collates_itself", False) else None
        rank, world = shard or (0, 1)
        self.sampler: ShardSampler | None = None
        if world > 1 and shuffle:
            self.sampler = ShardSampler(size, rank, world, seed)
        elif world > 1:  # evaluation: every world-th item, no padding
            dataset = torch.utils.data.Subset(dataset, range(rank, size, world))
        self.loader: DataLoader[Any] = DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and self.sampler is None,
            sampler=self.sampler, num_workers=num_workers, pin_memory=pin_memory,
            generator=self.generator, worker_init_fn=seed_worker, collate_fn=collate)
        self.samples = len(self.sampler) if self.sampler is not None else \
            len(dataset)  # type: ignore[arg-type]
        """Items this process sees per epoch (its shard when data-parallel)."""
        self.seed, self.device, self.labelled = seed, device, labelled
        self.non_blocking = pin_memory and device.type == "cuda"
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        for batch in self.loader:
            if not self.labelled:
                x = batch[0] if isinstance(batch, list | tuple) else batch
                yield _to_device(x, self.device, self.non_blocking, self.channels_last), \
                    torch.empty(0)
                continue
            if not (isinstance(batch, list | tuple) and len(batch) == 2):
                raise DataError("Dataset items must be (input, label) pairs; got a batch of "
                                f"{type(batch).__name__}"
                                + (f" with {len(batch)} parts" if isinstance(batch, list | tuple)
                                   else ""))
            x = _to_device(batch[0], self.device, self.non_blocking, self.channels_last)
            y = _labels(_as_tensor(batch[1], "labels"), "labels")
            yield x, y.to(self.device, non_blocking=self.non_blocking)


def batches(data: Any, batch_size: int, *, shuffle: bool, device: torch.device, seed: int = 0,
            num_workers: int = 0, pin_memory: bool = False, channels_last: bool = False,
            labelled: bool = True, shard: Shard | None = None) -> TensorBatches | LoaderBatches:
    """Batches of ``data`` on ``device``; ``shard`` = (rank, world size) gives a data-parallel
    process its part: with ``shuffle`` an equal-sized slice of each epoch's permutation (see
    :func:`shard_order`), without it every world-th example (evaluation; sizes may differ)."""
    pair = tensor_pair(data)
    if pair is not None:
        return TensorBatches(*pair, batch_size, shuffle=shuffle, device=device, seed=seed,
                             channels_last=channels_last, shard=shard)
    if not labelled and not isinstance(data, Dataset):
        x = _as_tensor(data, "inputs")
        return TensorBatches(x, torch.zeros(len(x), dtype=torch.long), batch_size,
                             shuffle=False, device=device, seed=seed)
    if not isinstance(data, Dataset):
        raise DataError(f"data must be a torch Dataset or an (X, y) pair of tensors or arrays, "
                        f"got {type(data).__name__}")
    return LoaderBatches(data, batch_size, shuffle=shuffle, device=device, seed=seed,
                         num_workers=num_workers, pin_memory=pin_memory,
                         channels_last=channels_last, labelled=labelled, shard=shard)


def call(model: Any, x: Any) -> torch.Tensor:
    """``model(x)``, or ``model(**x)`` for a dict of input tensors; the logits."""
    out = model(**x) if isinstance(x, Mapping) else model(x)
    if not isinstance(out, torch.Tensor):
        raise DataError(f"the model must return a logits tensor [batch, classes], got "
                        f"{type(out).__name__}")
    return out


# --- optimizer and schedule ----------------------------------------------------------------


def make_optimizer(model: torch.nn.Module, cfg: OptimizerConfig,
                   device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (requires_grad is False "
                          "everywhere); unfreeze some layers")
    fused = True if device.type == "cuda" else None  # one kernel for all parameters on CUDA
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                               fused=fused)
    kind = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TorchTraining,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped after every batch; None for a constant rate without warm-up."""
    s: ScheduleConfig = cfg.schedule
    total = cfg.epochs * steps_per_epoch
    if s.name == "one_cycle":
        cycle = not (cfg.optimizer.name == "sgd" and cfg.optimizer.momentum == 0)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.optimizer.lr, total_steps=total, pct_start=s.pct_start,
            cycle_momentum=cycle)
    warm = min(round(s.warmup_epochs * steps_per_epoch), total)
    if s.name == "none" and not warm:
        return None
    floor = min(s.min_lr / cfg.optimizer.lr, 1.0)
    per_step = s.step_size * steps_per_epoch

    def factor(step: int) -> float:  # the rate of batch ``step`` (0-based), relative to lr
        if step < warm:
            return (step + 1) / warm
        if s.name == "cosine":
            done = (step - warm) / max(1, total - warm)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        if s.name == "step":
            return float(s.gamma ** (step // per_step))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- checkpoints ---------------------------------------------------------------------------

_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.pt$")
BEST = "best.pt"
FORMAT = 1
# settings that may change between an interrupted run and its resume: where and how fast it
# runs, not what it computes
RESUMABLE = {"device", "num_workers", "pin_memory", "compile", "channels_last", "plot",
             "keep_checkpoints", "eval_batch_size"}


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch:04d}.pt"


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Per-epoch checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir()
             if (m := _EPOCH_FILE.match(p.name))]
    return sorted(found)


def on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested in dicts, lists and tuples) copied to the
    CPU; other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(on_cpu(v) for v in value)
    return value


def save(obj: Mapping[str, Any], path: Path) -> None:
    """torch.save through a temporary file, so a crash never leaves a torn checkpoint. Every
    tensor is saved from the CPU: the file loads on a machine without the training device
    (no ``map_location`` needed) and resumes on any device."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(on_cpu(dict(obj)), tmp)
    os.replace(tmp, path)


def prune(folder: Path, keep: int) -> None:
    for _, path in checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's state, every tensor on the CPU (``load_state_dict`` of the model and
    the optimizer copies them to the parameters' device; RNG states must be CPU tensors)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExperimentError(f"checkpoint {path} cannot be read ({exc}); delete it to resume "
                              "from the one before, or start a new run") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ExperimentError(f"checkpoint {path} is not a checkpoint of this training loop "
                              f"(format {FORMAT}); start a new run directory")
    return state


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume(saved: Mapping[str, Any], cfg: TorchTraining, path: Path) -> None:
    """The config must compute the same run as the checkpoint's; ``epochs`` may grow only
    when the schedule does not depend on it (none, step)."""
    allowed = set(RESUMABLE)
    if cfg.schedule.name in ("none", "step"):
        allowed.add("epochs")
    old, new = _flat(saved), _flat(cfg.model_dump(mode="json"))
    changed = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
               for key in sorted(old.keys() | new.keys())
               if key.split(".")[0] not in allowed and old.get(key) != new.get(key)]
    if changed:
        raise ConfigError(
            f"resume: the config differs from the one checkpoint {path} was written with ("
            + "; ".join(changed) + "); put those settings back, or start a new run directory")


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_model_state(model: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExperimentError(f"checkpoint {path} does not fit this model ({first}); resume "
                              "with the same model architecture, or start a new run") from exc


@dataclass
class Best:
    """Best-epoch tracking and the early-stopping counter (saved in checkpoints)."""

    monitor: str
    min_delta: float = 0.0
    value: float | None = None
    epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float | None, epoch: int) -> bool:
        """Whether ``value`` of ``epoch`` is a new best."""
        if value is None or not math.isfinite(value):
            self.bad_epochs += 1
            return False
        higher = self.monitor.endswith("accuracy")
        if self.value is None or (value > self.value + self.min_delta if higher
                                  else value < self.value - self.min_delta):
            self.value, self.epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def state(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "value": self.value, "epoch": self.epoch,
                "bad_epochs": self.bad_epochs}

    def load(self, state: Mapping[str, Any]) -> None:
        self.value, self.epoch, self.bad_epochs = (state["value"], state["epoch"],
                                                   state["bad_epochs"])
