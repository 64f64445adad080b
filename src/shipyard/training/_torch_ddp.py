"""The process group :func:`shipyard.training.torch.fit` trains in (torch.distributed).

:meth:`Group.detect` finds it: an initialised ``torch.distributed`` group, or the environment
torchrun's elastic agent gives each worker (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...),
from which it initialises one (gloo on CPU; NCCL on CUDA, each process on its own
``cuda:LOCAL_RANK``, so a node takes at most one process per GPU). A launched process is in a
group even when it is the only one (``--nproc-per-node 1``: DDP and NCCL at world size 1); a
process nobody launched is a group of one whose every method does nothing, so the loop has
one code path. Imports torch (only
``_torch_loop`` imports this module).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from shipyard.errors import ConfigError, ExperimentError
from shipyard.training.distributed import DEFAULT_PORT, ENV_DIGESTS

if TYPE_CHECKING:
    from shipyard.training.distributed import Launch

__all__ = ["Group", "check_gpus", "cuda_device", "elastic_run", "launched", "state_digest"]


class Group:
    """``rank`` and ``world`` of this process; collectives over the group (no-ops alone).

    ``distributed``: the process is in a ``torch.distributed`` group, of any size: a run
    launched with ``--nproc-per-node 1`` (or under torchrun with one process) trains through
    DistributedDataParallel and the collectives as a larger one does, so one GPU exercises
    the whole data-parallel path (NCCL included)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0,
                 distributed: bool | None = None) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.distributed = world > 1 if distributed is None else distributed

    @classmethod
    def detect(cls, device: torch.device) -> Group:
        """The group of this process: torch.distributed's when initialised, else one made
        from the environment torchrun's elastic agent sets (``WORLD_SIZE`` and
        ``MASTER_ADDR``; NCCL on CUDA, with this process's ``cuda:LOCAL_RANK`` made the
        current device first, gloo on the CPU), else a group of one."""
        if not dist.is_available():
            return cls()
        if not dist.is_initialized():
            if not launched():
                return cls()
            if device.type == "cuda":  # torchrun sets LOCAL_RANK
                local = int(os.environ.get("LOCAL_RANK", "0") or 0)
                torch.cuda.set_device(cuda_device(local))  # before NCCL starts
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank % world) or 0)
        return cls(rank, world, local_rank, distributed=True)

    @property
    def parallel(self) -> bool:
        """In a torch.distributed group (DDP, sharded data, collectives), one process or
        more."""
        return self.distributed

    @property
    def writer(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``device`` made this process's own: ``cuda:LOCAL_RANK`` on CUDA (also the
        current CUDA device)."""
        if self.parallel and device.type == "cuda":
            device = cuda_device(self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (which broadcasts rank 0's parameters and
        buffers now and averages the gradients in every backward); ``model`` itself alone."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """``values`` summed over the processes, element by element (float64)."""
        if not self.parallel:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Every process takes rank 0's buffers (batch-norm running statistics, which each
        process updates from its own batches in training)."""
        if self.parallel:
            for buffer in model.buffers():
                dist.broadcast(buffer, 0)

    def sync_model(self, model: torch.nn.Module) -> None:
        """Every process takes rank 0's parameters and buffers."""
        if self.parallel:
            for value in model.state_dict().values():
                dist.broadcast(value, 0)

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (pickled; ``obj`` is ignored elsewhere)."""
        if not self.parallel:
            return obj
        box = [obj if self.writer else None]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.parallel:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def launched() -> bool:
    """Whether torchrun (or its elastic agent, behind ``--nproc-per-node``) started this
    process: it sets ``WORLD_SIZE`` and ``MASTER_ADDR``, which ``env://`` initialisation
    reads."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def cuda_device(local_rank: int) -> torch.device:
    """``cuda:local_rank``; a ConfigError when this node has no such GPU (NCCL needs one GPU
    per process: two ranks cannot share one)."""
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"local rank {local_rank} trains on cuda:{local_rank}, but this node has {count} "
            f"CUDA device(s); data-parallel training on CUDA (NCCL) needs one GPU per process "
            f"(two ranks cannot share a GPU): start at most {count} process(es) per node, or "
            "set training.device: cpu to train the processes on the CPU (gloo)")
    return torch.device("cuda", local_rank)


def check_gpus(device: str, nproc_per_node: int) -> None:
    """On CUDA every process of a node needs a GPU of its own (NCCL refuses two ranks on one
    GPU): a ConfigError, before any process starts, when ``training.device`` (``device``)
    is or resolves to cuda and the node has fewer GPUs than ``nproc_per_node``."""
    from shipyard.training._torch_parts import resolve_device

    if resolve_device(device).type != "cuda":
        return
    count = torch.cuda.device_count()
    if nproc_per_node > count:
        said = "cuda" if device == "cuda" else f"{device} (cuda here)"
        raise ConfigError(
            f"--nproc-per-node {nproc_per_node} with training.device: {said} needs one GPU per "
            f"process (NCCL cannot put two ranks on one GPU), but this node has {count}; use "
            f"--nproc-per-node {count}, or --set training.device=cpu to train "
            f"{nproc_per_node} processes on the CPU (gloo)")


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of the model's state_dict (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_digest(model: torch.nn.Module, group: Group) -> None:
    """Tests only: with ``SHIPYARD_TEST_DDP_DIGESTS`` set to a folder, each process writes
    ``rank-<r>.json`` (its rank, world size and :func:`state_digest`) there at the end of
    fit, so a test can compare the ranks' weights. Unset (always, outside tests): nothing."""
    folder = os.environ.get(ENV_DIGESTS)
    if not folder:
        return
    path = Path(folder) / f"rank-{group.rank}.json"
    first = next(iter(model.parameters()), None)
    path.write_text(json.dumps({
        "rank": group.rank, "world": group.world, "digest": state_digest(model),
        "backend": str(dist.get_backend()) if group.parallel else None,
        "device": None if first is None else str(first.device)}), encoding="utf-8")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def elastic_run(launch: Launch, job: Any, entry: Callable[[Any], Any]) -> None:
    """``entry(job)`` in ``launch.nproc_per_node`` processes of this node through torch's
    elastic launcher (static rendezvous at the master address, no restarts); a failed
    process stops the others and raises ExperimentError. The caller's signal handlers are
    put back afterwards: the launcher replaces those of SIGTERM, SIGINT, SIGHUP and SIGQUIT
    with one raising its SignalException and leaves it there (Ctrl-C in a process that
    called :func:`shipyard.training.distributed.launch` would no longer raise
    KeyboardInterrupt)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    addr = launch.master_addr or "127.0.0.1"
    port = launch.master_port or (_free_port() if launch.nnodes == 1 else DEFAULT_PORT)
    config = LaunchConfig(
        min_nodes=launch.nnodes, max_nodes=launch.nnodes,
        nproc_per_node=launch.nproc_per_node, run_id=f"shipyard-{uuid.uuid4().hex[:8]}",
        rdzv_backend="static", rdzv_endpoint=f"{addr}:{port}",
        rdzv_configs={"rank": launch.node_rank}, max_restarts=0, monitor_interval=0.1,
        start_method="spawn")
    saved = _signal_handlers()
    try:
        elastic_launch(config, entry)(job)
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        rank, failure = failures[0]
        raise ExperimentError(
            f"data-parallel training failed: rank {rank} exited with status {failure.exitcode}"
            f" ({len(failures)} of {launch.world_size} processes failed); its error is printed "
            "above") from None
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _signal_handlers() -> dict[signal.Signals, Any]:
    """The handlers of the signals torch's elastic launcher takes over (main thread only:
    elsewhere it takes none, and they cannot be set back); None, a handler not set from
    Python, cannot be set back either and is left out."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT,
                                                         signal.SIGHUP, signal.SIGQUIT)}
    return {sig: handler for sig, handler in handlers.items() if handler is not None}
