"""The loop behind :func:`shipyard.training.torch.fit` (and its predict / evaluate).

Per batch the loop does the forward, the loss, backward, an optional clip and the step, and
adds the batch's loss and correct count into device tensors: nothing reads a value back to the
host (no ``.item()``, no sync) except the progress display, at most every ``REFRESH_S``
seconds, and the end of the epoch.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from shipyard.errors import ConfigError, ExperimentError
from shipyard.training import _torch_parts as parts
from shipyard.training._torch_curves import curves_plot
from shipyard.training._torch_ddp import Group, write_digest
from shipyard.training.torch import (
    CHECKPOINT_DIR,
    CURVES_FILE,
    HISTORY_FILE,
    History,
    TorchTraining,
)

log = logging.getLogger("shipyard.training")

REFRESH_S = 0.25


class Display:
    """A rich progress bar per epoch on a terminal; one plain line per epoch on stderr when
    stderr is not a terminal; nothing with ``enabled=False``. Every epoch is logged."""

    def __init__(self, enabled: bool, epochs: int) -> None:
        self.epochs = epochs
        self._progress: Any = None
        self._task: Any = None
        self._plain = False
        self._next = 0.0
        if enabled:
            from rich.console import Console

            console = Console(stderr=True)
            if console.is_terminal:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._progress = Progress(
                    TextColumn("epoch {task.fields[epoch]}"), BarColumn(bar_width=20),
                    MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                    TimeElapsedColumn(), console=console, auto_refresh=False)
            else:
                self._plain = True

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, epoch: int, batches: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(
                "", total=batches, epoch=f"{epoch}/{self.epochs}", stats="")
            self._progress.refresh()
        self._next = time.perf_counter() + REFRESH_S

    def batch(self, losses: list[torch.Tensor], corrects: list[torch.Tensor],
              sizes: list[int], started: float) -> None:
        """After a batch: redraw at most every REFRESH_S (the only host sync within an
        epoch, and only on a terminal)."""
        if self._progress is None:
            return
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + REFRESH_S
        loss, correct, seen = _totals(losses, corrects, sizes)
        stats = (f"loss {loss:.4f}  acc {correct / seen:.3f}  "
                 f"{seen / max(now - started, 1e-9):,.0f}/s")
        self._progress.update(self._task, completed=len(sizes), stats=stats)
        self._progress.refresh()

    def end(self, done: int, line: str, stats: str) -> None:
        log.info("%s", line)
        if self._progress is not None:
            self._progress.update(self._task, completed=done, stats=stats)
            self._progress.refresh()
        elif self._plain:
            print(line, file=sys.stderr, flush=True)


def _summary(history: History, i: int, best: bool) -> str:
    parts_ = [f"train loss {history.train_loss[i]:.4f} acc {history.train_accuracy[i]:.3f}"]
    if history.val_loss[i] is not None:
        parts_.append(f"val loss {history.val_loss[i]:.4f} acc {history.val_accuracy[i]:.3f}")
    parts_.append(f"lr {history.lr[i]:.3g}  {history.samples_per_s[i]:,.0f} samples/s  "
                  f"{history.seconds[i]:.1f} s" + ("  *best" if best else ""))
    return "  ".join(parts_)


def _short(history: History, i: int, best: bool) -> str:
    """The finished epoch on its progress bar (narrow terminals)."""
    text = f"loss {history.train_loss[i]:.4f} acc {history.train_accuracy[i]:.3f}"
    if history.val_loss[i] is not None:
        text += f" | val {history.val_loss[i]:.4f} {history.val_accuracy[i]:.3f}"
    return text + f" | {history.samples_per_s[i]:,.0f}/s" + (" *" if best else "")


class _Step:
    """One optimizer step per batch: forward under autocast, loss, backward (scaled for
    fp16), optional clipping, step, schedule."""

    def __init__(self, net: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: torch.amp.GradScaler, cfg: TorchTraining, device: torch.device,
                 dtype: torch.dtype | None) -> None:
        self.net, self.optimizer, self.scheduler, self.scaler = net, optimizer, scheduler, scaler
        self.smoothing, self.clip = cfg.label_smoothing, cfg.grad_clip
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.device_type, self.dtype = device.type, dtype

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __call__(self, x: Any, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = parts.call(self.net, x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            if self.clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            if self.clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach(), logits.detach()


def _train_epoch(step: _Step, data: Any, epoch: int, display: Display,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None,
                 device: torch.device, group: Group) -> tuple[float, float, float, int, float]:
    """(mean loss, accuracy, lr of the last batch, samples, samples/s) of one training epoch,
    over all the processes of ``group`` (the samples and rates summed)."""
    step.net.train()
    losses: list[torch.Tensor] = []  # per batch, on the device; summed once at the end
    corrects: list[torch.Tensor] = []
    sizes: list[int] = []
    channels_last = bool(getattr(data, "channels_last", False))
    lr = step.optimizer.param_groups[0]["lr"]
    started = time.perf_counter()
    display.start(epoch, len(data))
    for x, y in data.epoch(epoch):
        if augment is not None:
            x = augment(x)
            if channels_last and isinstance(x, torch.Tensor) and x.dim() == 4:
                # the crop's gather and grid_sample return NCHW
                x = x.contiguous(memory_format=torch.channels_last)
        lr = step.optimizer.param_groups[0]["lr"]
        loss, logits = step(x, y)
        losses.append(loss)
        corrects.append((logits.argmax(1) == y).sum())
        sizes.append(y.shape[0])
        display.batch(losses, corrects, sizes, started)
    mean, correct, seen = _totals(losses, corrects, sizes)
    rate = seen / max(time.perf_counter() - started, 1e-9)
    if not group.parallel:
        return mean, correct / seen, float(lr), seen, rate
    loss_sum, correct, total, rate = group.sum([mean * seen, correct, seen, rate], device)
    return loss_sum / total, correct / total, float(lr), int(total), rate


def _totals(losses: list[torch.Tensor], corrects: list[torch.Tensor],
            sizes: list[int]) -> tuple[float, float, int]:
    """(mean loss, correct count, samples) of the batches so far: one host sync."""
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
    totals = torch.stack([torch.dot(torch.stack(losses).float(), weights),
                          torch.stack(corrects).sum().float()]).tolist()
    seen = sum(sizes)
    return totals[0] / seen, totals[1], seen


def _scores(net: Any, data: Any, device: torch.device,
            autocast: Callable[[], contextlib.AbstractContextManager[Any]],
            group: Group | None = None) -> tuple[float, float]:
    """(mean plain cross-entropy, accuracy) over labelled batches, in eval mode; with a
    ``group``, over every process's shard of the data."""
    was_training = net.training
    net.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    try:
        with torch.inference_mode():
            for x, y in data.epoch(0):
                with autocast():
                    logits = parts.call(net, x)
                loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                seen += y.shape[0]
    finally:
        net.train(was_training)
    totals = [loss_sum.item(), float(correct.item()), float(seen)]
    if group is not None:
        totals = group.sum(totals, device)
    return totals[0] / totals[2], totals[1] / totals[2]


def _pin(cfg: TorchTraining, device: torch.device) -> bool:
    return device.type == "cuda" if cfg.pin_memory == "auto" else bool(cfg.pin_memory)


def _resume_state(resume: bool, found: list[tuple[int, Path]],
                  group: Group) -> tuple[dict[str, Any] | None, str]:
    """The newest checkpoint's state when resuming (read by rank 0, sent to every process)
    and its file name; (None, "") without one."""
    state, name = None, ""
    if group.writer and resume and found:
        path = found[-1][1]
        state = parts.load(path)  # on the CPU: RNG states must be CPU tensors
        name = path.name
    return group.share((state, name)) if group.parallel else (state, name)


def _rng_for(state: dict[str, Any], group: Group, notes: list[str]) -> None:
    """Put back this process's RNG state of a checkpoint (rank 0's for a single process);
    a checkpoint of another world size has none for some ranks: they are seeded afresh."""
    ranks = state.get("rng_ranks")
    if not group.parallel and not ranks:
        parts.set_rng_state(state["rng"])
    elif ranks and len(ranks) == group.world:
        parts.set_rng_state(ranks[group.rank])
    else:
        saved = len(ranks) if ranks else 1
        parts.seed_everything(state["epoch"] * 100_003 + group.rank)
        notes.append(f"resume: the checkpoint was written by {saved} process(es), this run has "
                     f"{group.world}; the random streams (dropout, augmentation) and the "
                     "shuffling differ from an uninterrupted run")


def fit(model: torch.nn.Module, train_data: Any, val_data: Any, cfg: TorchTraining,
        run_dir: Path, *, augment: Callable[[torch.Tensor], torch.Tensor] | None,
        progress: bool, resume: bool) -> History:
    group = Group.detect(parts.resolve_device(cfg.device))
    device = group.device(parts.resolve_device(cfg.device))
    dtype = parts.autocast_dtype(cfg.precision, device)
    notes: list[str] = []
    channels_last = cfg.channels_last and device.type == "cuda"
    if cfg.channels_last and not channels_last:
        notes.append("channels_last ignored: it only helps on CUDA (device is cpu)")
    if cfg.early_stopping is not None and val_data is None:
        raise ConfigError(
            f"early_stopping: monitors {cfg.early_stopping.monitor}, but there is no "
            "validation data; give validation data or set early_stopping: null")
    if cfg.batch_size % group.world:
        raise ConfigError(
            f"training.batch_size: {cfg.batch_size} is the global batch, split evenly over "
            f"the {group.world} processes; set a multiple of {group.world}")
    folder = run_dir / CHECKPOINT_DIR
    found = parts.checkpoints(folder) if group.writer else []
    if found and not resume:
        raise ConfigError(
            f"run directory {run_dir} already holds checkpoints of a run ({found[-1][1].name}); "
            "resume it (resume=True) or train into a new run directory")

    pin = _pin(cfg, device)
    shard = (group.rank, group.world) if group.parallel else None
    train = parts.batches(train_data, cfg.batch_size // group.world, shuffle=True,
                          device=device, seed=cfg.seed, num_workers=cfg.num_workers,
                          pin_memory=pin, channels_last=channels_last, shard=shard)
    val = None if val_data is None else parts.batches(
        val_data, cfg.eval_batch_size or 2 * cfg.batch_size, shuffle=False, device=device,
        num_workers=cfg.num_workers, pin_memory=pin, channels_last=channels_last, shard=shard)

    parts.seed_everything(cfg.seed + group.rank)  # rank 0 (and a single process): cfg.seed
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    wrapped = group.wrap(model, device)
    net: Any = torch.compile(wrapped) if cfg.compile else wrapped
    # validation shards may differ in size: evaluate the bare model (DDP's forward would
    # broadcast buffers, a collective every process must join the same number of times)
    eval_net: Any = model if group.parallel else net
    optimizer = parts.make_optimizer(model, cfg.optimizer, device)
    scheduler = parts.make_scheduler(optimizer, cfg, len(train))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    monitor = (cfg.early_stopping.monitor if cfg.early_stopping is not None
               else "val_loss" if val is not None else "train_loss")
    best = parts.Best(monitor, cfg.early_stopping.min_delta if cfg.early_stopping else 0.0)
    history = History(monitor=monitor, device=str(device), precision=cfg.precision)
    start, finished = 0, False
    if group.parallel:
        procs = f"{group.world} processes" if group.world > 1 else "1 process"
        notes.append(f"data-parallel: {procs}, {cfg.batch_size // group.world} "
                     f"examples each per step (global batch {cfg.batch_size})")

    state, name = _resume_state(resume, found, group)
    if state is not None:
        parts.check_resume(state["config"], cfg, folder / name)
        parts.load_model_state(model, state["model"], folder / name)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        best.load(state["best"])
        _rng_for(state, group, notes)
        start, finished = state["epoch"], state["finished"]
        notes.append(f"resumed from {name} (epoch {start})")
        del state
    elif resume:
        notes.append("resume: no checkpoint found, started from epoch 1")
    history.notes += notes
    history.device, history.precision = str(device), cfg.precision
    for note in notes:
        log.info("%s", note)

    step = _Step(net, optimizer, scheduler, scaler, cfg, device, dtype)
    with parts.cudnn_flags(cfg.deterministic, device), \
            Display(progress and group.writer, cfg.epochs) as display:
        for epoch in range(start + 1, cfg.epochs + 1):
            if finished:
                break
            t0 = time.perf_counter()
            loss, acc, lr, _, rate = _train_epoch(step, train, epoch, display, augment,
                                                     device, group)
            group.sync_buffers(model)
            if not np.isfinite(loss):
                raise ExperimentError(
                    f"training loss became {loss} in epoch {epoch}; lower optimizer.lr "
                    f"(now {cfg.optimizer.lr}), set grad_clip, or use precision: fp32")
            v_loss, v_acc = _scores(eval_net, val, device, step.autocast, group) \
                if val is not None else (None, None)
            value = {"val_loss": v_loss, "val_accuracy": v_acc, "train_loss": loss}[monitor]
            improved = best.update(value, epoch)
            if improved and group.writer:
                parts.save({"format": parts.FORMAT, "epoch": epoch, "monitor": monitor,
                            "value": value, "model": model.state_dict()}, folder / parts.BEST)
            stop = (cfg.early_stopping is not None
                    and best.bad_epochs >= cfg.early_stopping.patience)
            history.epoch.append(epoch)
            history.train_loss.append(loss)
            history.train_accuracy.append(acc)
            history.val_loss.append(v_loss)
            history.val_accuracy.append(v_acc)
            history.lr.append(lr)
            history.samples_per_s.append(rate)
            history.seconds.append(time.perf_counter() - t0)
            history.best_epoch, history.stopped_early = best.epoch, stop
            rngs = group.gather(parts.rng_state()) if group.parallel else None
            if group.writer:
                parts.save({
                    "format": parts.FORMAT, "epoch": epoch, "finished": stop,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": None if scheduler is None else scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "best": best.state(),
                    "config": cfg.model_dump(mode="json"),
                    "history": history.to_dict(), "rng": parts.rng_state(),
                    "rng_ranks": rngs}, parts.checkpoint_path(folder, epoch))
                parts.prune(folder, cfg.keep_checkpoints)
                history.write(run_dir / HISTORY_FILE)
            i = len(history.epoch) - 1
            display.end(len(train), f"epoch {epoch}/{cfg.epochs}  "
                        + _summary(history, i, improved), _short(history, i, improved))
            if stop:
                log.info("early stopping: %s has not improved for %d epochs (best %s at "
                         "epoch %s)", monitor, best.bad_epochs, best.value, best.epoch)
                break

    if (cfg.early_stopping is not None and cfg.early_stopping.restore_best
            and best.epoch is not None):
        if group.writer and (folder / parts.BEST).exists():
            state = parts.load(folder / parts.BEST)
            parts.load_model_state(model, state["model"], folder / parts.BEST)
            history.restored_best = True
        history.restored_best = bool(group.share(history.restored_best))
        group.sync_model(model)
    if group.writer:
        history.write(run_dir / HISTORY_FILE)
        if cfg.plot and history.epoch:
            curves_plot(history, run_dir / CURVES_FILE)
    write_digest(model, group)
    return history


def _eval_model(model: torch.nn.Module, device: str) -> tuple[torch.nn.Module, torch.device]:
    dev = parts.resolve_device(device)
    return model.to(dev), dev


def predict(model: torch.nn.Module, data: Any, *, batch_size: int, device: str,
            probabilities: bool) -> np.ndarray:
    model, dev = _eval_model(model, device)
    source = parts.batches(data, batch_size, shuffle=False, device=dev,
                           labelled=parts.is_pair(data))
    out: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x, _ in source.epoch(0):
                logits = parts.call(model, x).float()
                if probabilities:
                    logits = torch.softmax(logits, dim=1)
                out.append(logits.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def evaluate(model: torch.nn.Module, data: Any, *, batch_size: int,
             device: str) -> dict[str, float]:
    model, dev = _eval_model(model, device)
    source = parts.batches(data, batch_size, shuffle=False, device=dev)
    loss, acc = _scores(model, source, dev, contextlib.nullcontext)
    return {"loss": loss, "accuracy": acc, "samples": float(source.samples)}
