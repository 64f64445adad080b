"""Data-parallel training of torch experiments on torch.distributed.

``shipyard train EXP --nproc-per-node N [--nnodes M --node-rank R --master-addr A
--master-port P]`` calls :func:`launch`: it checks the experiment and the launch here (a
mistake is one :class:`~shipyard.errors.ConfigError`, before any process starts), creates the
run directory on node 0, and starts N worker processes on this node through torch's elastic
launcher (the in-process API behind ``torchrun``: ``elastic_launch``, static rendezvous, no
restarts). Each worker runs the same experiment through
:func:`~shipyard.training.trainer.train_rank`; :func:`shipyard.training.torch.fit` finds the
process group (``torch.distributed`` initialised, or torchrun's environment variables),
wraps the model in DistributedDataParallel, gives each process its shard of the training data
and all-reduces the epoch metrics. Rank 0 alone writes the run directory.

On CUDA each process trains on its own GPU (``cuda:LOCAL_RANK``, NCCL): a node takes at most
as many processes as it has GPUs, and more is a ConfigError before any process starts (NCCL
cannot run two ranks on one GPU; ``--set training.device=cpu`` trains them with gloo).
``--nproc-per-node 1`` is a real group of one: DistributedDataParallel and NCCL (or gloo) at
world size 1, the path N processes take, on one GPU.

``training.batch_size`` is the **global** batch: each of the W processes takes
``batch_size / W`` examples per step (it must divide evenly), so W processes make the same
number of optimizer steps per epoch, on batches of the same size, as one process does, and
the learning rate and schedule need no change.

The same works under a ``torchrun`` you start yourself (``torchrun --nproc-per-node 2 -m
shipyard train EXP``): the ``train`` command sees ``WORLD_SIZE`` and runs as one rank.

This module imports neither torch nor the trainer until :func:`launch` runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, ExperimentError

if TYPE_CHECKING:
    from shipyard.training.run import Run

__all__ = ["ENV_DIGESTS", "Launch", "env_rank", "env_world_size", "launch", "run_worker"]

ENV_DIGESTS = "SHIPYARD_TEST_DDP_DIGESTS"
"""Tests only: a folder where each rank writes the sha256 of its weights at the end of fit."""
DEFAULT_PORT = 29500
"""torchrun's default master port (used for --nnodes > 1 without --master-port)."""
FAMILIES = ("torch", "text-torch")
"""The model families whose fit runs data-parallel."""


def env_rank() -> int:
    """This process's global rank: torch.distributed's where torch is loaded and a group is
    initialised, else the ``RANK`` variable torchrun sets, else 0."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0") or 0)


def env_world_size() -> int:
    """The number of processes training together (``WORLD_SIZE``; 1 when unset)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass(frozen=True)
class Launch:
    """Where the processes of a data-parallel run are, as torchrun's options say it."""

    nproc_per_node: int = 1
    """Worker processes on this node (one per GPU on CUDA)."""
    nnodes: int = 1
    """Machines taking part; each runs the same command with its own ``node_rank``."""
    node_rank: int = 0
    """This machine's index, 0 .. nnodes - 1; node 0 holds rank 0, which writes the run."""
    master_addr: str | None = None
    """Host name or address of node 0 (every node reaches it); needed for nnodes > 1,
    127.0.0.1 for one node."""
    master_port: int | None = None
    """TCP port on node 0 for the rendezvous; default a free port (one node) or 29500."""

    def check(self) -> None:
        """A ConfigError naming the first option that cannot work, with its fix."""
        if self.nproc_per_node < 1:
            raise ConfigError(f"--nproc-per-node: {self.nproc_per_node} is below 1; give the "
                              "number of processes per node (1 or more)")
        if self.nnodes < 1:
            raise ConfigError(f"--nnodes: {self.nnodes} is below 1; give the number of "
                              "machines (1 or more)")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"--node-rank: {self.node_rank} is not in 0..{self.nnodes - 1} "
                              f"(--nnodes {self.nnodes}); number the machines from 0")
        if self.nnodes > 1 and not self.master_addr:
            raise ConfigError(f"--nnodes {self.nnodes} needs --master-addr: the address of "
                              "node 0, which every node can reach")
        if self.master_port is not None and not 0 < self.master_port < 65536:
            raise ConfigError(f"--master-port: {self.master_port} is not a TCP port; give "
                              "1..65535")

    @property
    def world_size(self) -> int:
        """Processes in all: nnodes x nproc_per_node."""
        return self.nnodes * self.nproc_per_node


@dataclass(frozen=True)
class _Job:
    """What every worker needs to run the experiment (pickled to the spawned processes)."""

    config: Any
    overrides: Any
    output: str | None
    resume: str | None
    progress: bool
    config_note: str = ""


def _check_experiment(config: Any, overrides: Any, world: int,
                      option: str = "--nproc-per-node") -> tuple[Any, Path]:
    from shipyard.training.config import family_key, load_experiment
    from shipyard.training.families import family_module

    exp, base_dir = load_experiment(config, overrides)
    key = family_key(exp)
    if key not in FAMILIES:
        raise ConfigError(f"{option}: model family {key!r} does not train with torch; "
                          "data-parallel training is for torch experiments (image or text, "
                          f"model.family: torch); leave out {option}")
    batch = getattr(exp.training, "batch_size", 1)
    if batch % world:
        raise ConfigError(f"training.batch_size: {batch} is the global batch, split evenly over "
                          f"the {world} processes; set a multiple of {world}")
    family_module(key).prepare(exp)
    return exp, base_dir


def launch(launch: Launch, config: str | Path | Mapping[str, Any], *,
           overrides: Sequence[str] | Mapping[str, Any] = (), output: Path | None = None,
           progress: bool = False, resume: Path | None = None,
           config_note: str = "") -> Path | None:
    """Train the experiment ``config`` (with ``overrides``) in ``launch.nproc_per_node``
    processes on this node, together with the other nodes; returns the run directory on
    node 0 (None on the others). ``output`` / ``resume`` / ``config_note`` as for
    :func:`~shipyard.training.trainer.train_experiment`.

    A mistake in the experiment or the launch raises ConfigError before any process
    starts; a worker that fails stops them all and raises ExperimentError (the worker's own
    message is printed on stderr above it)."""
    launch.check()
    exp, _ = _check_experiment(config, overrides, launch.world_size)
    from shipyard.training._torch_ddp import check_gpus, elastic_run

    check_gpus(getattr(exp.training, "device", "cpu"), launch.nproc_per_node)
    run_dir: Path | None = None
    if launch.node_rank == 0:
        from shipyard.training.config import family_key
        from shipyard.training.families import family_module
        from shipyard.training.run import create_run_dir
        from shipyard.training.trainer import _resume_dir  # the checks train would make

        key = family_key(exp)
        run_dir = (_resume_dir(family_module(key), key, resume, output) if resume is not None
                   else create_run_dir(exp, output))
    job = _Job(config if isinstance(config, Mapping) else str(config), overrides,
               None if run_dir is None or resume is not None else str(run_dir),
               None if resume is None else str(resume), progress, config_note)
    elastic_run(launch, job, run_worker)
    return run_dir


def run_worker(job: Any) -> str | None:
    """One process of the run (the elastic launcher's entry point; also ``shipyard train``
    under a torchrun of one's own): trains as its rank and returns the run directory on rank
    0, None elsewhere. A user mistake prints ``error: <message>`` (with the rank) and exits
    with status 2, so the launcher stops the other processes."""
    from shipyard.training.config import load_experiment
    from shipyard.training.trainer import train_rank

    try:
        exp, base_dir = load_experiment(job.config, job.overrides)
        run: Run | None = train_rank(
            exp, base_dir, output=None if job.output is None else Path(job.output),
            show_progress=job.progress and env_rank() == 0, config_note=job.config_note,
            resume=None if job.resume is None else Path(job.resume))
    except ExperimentError as exc:
        print(f"error: rank {env_rank()}: {exc.message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return None if run is None else str(run.path)
