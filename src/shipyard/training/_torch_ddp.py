"""The process group :func:`shipyard.training.torch.fit` trains in (torch.distributed).

:meth:`Group.detect` finds it: an initialised ``torch.distributed`` group, or the environment
torchrun's elastic agent gives each worker (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...),
from which it initialises one (gloo on CPU, NCCL on CUDA). A single process is a group of one
whose every method does nothing, so the loop has one code path. Imports torch (only
``_torch_loop`` imports this module).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from shipyard.errors import ExperimentError
from shipyard.training.distributed import DEFAULT_PORT, ENV_DIGESTS, env_rank, env_world_size

if TYPE_CHECKING:
    from shipyard.training.distributed import Launch

__all__ = ["Group", "elastic_run", "state_digest"]


class Group:
    """``rank`` and ``world`` of this process; collectives over the group (no-ops alone)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @classmethod
    def detect(cls, device: torch.device) -> Group:
        """The group of this process: torch.distributed's when initialised, else one made
        from torchrun's environment variables (``WORLD_SIZE`` > 1), else a group of one."""
        if not dist.is_available():
            return cls()
        if not dist.is_initialized():
            if env_world_size() <= 1:
                return cls()
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        world = dist.get_world_size()
        if world == 1:
            return cls()
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", env_rank() % world)))

    @property
    def parallel(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``device`` made this process's own: ``cuda:LOCAL_RANK`` on CUDA."""
        if self.parallel and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
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
    path.write_text(json.dumps({"rank": group.rank, "world": group.world,
                                "digest": state_digest(model)}), encoding="utf-8")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def elastic_run(launch: Launch, job: Any, entry: Callable[[Any], Any]) -> None:
    """``entry(job)`` in ``launch.nproc_per_node`` processes of this node through torch's
    elastic launcher (static rendezvous at the master address, no restarts); a failed
    process stops the others and raises ExperimentError."""
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
    try:
        elastic_launch(config, entry)(job)
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        rank, failure = failures[0]
        raise ExperimentError(
            f"data-parallel training failed: rank {rank} exited with status {failure.exitcode}"
            f" ({len(failures)} of {launch.world_size} processes failed); its error is printed "
            "above") from None
