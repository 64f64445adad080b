"""A torch experiment trained data-parallel under Ray Train's ``TorchTrainer``.

The driver (this process) checks the experiment as ``--nproc-per-node`` does (a mistake is one
:class:`~shipyard.errors.ConfigError` before Ray starts), creates the run directory, connects
to Ray (``address``; a local Ray started here when none is given and none is running) and runs
``num_workers`` Ray Train workers. Ray Train initialises torch.distributed in each (gloo on
CPU, NCCL with GPUs) and sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; each worker runs the
experiment through :func:`~shipyard.training.trainer.train_rank`, whose ``fit`` finds the
initialised group, wraps the model in DistributedDataParallel and trains its shard. Rank 0
alone writes the run directory, which the driver named, so on a cluster of several machines
``output`` must be a folder every node sees (a shared file system) and rank 0's files land on
the machine that runs rank 0.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError, ExperimentError
from shipyard.integrations.ray._deps import import_ray

__all__ = ["train_ray"]


def train_ray(config: str | Path | Mapping[str, Any], *, num_workers: int = 1,
              overrides: Sequence[str] | Mapping[str, Any] = (), output: Path | None = None,
              address: str | None = None, use_gpu: bool = False,
              config_note: str = "") -> Path:
    """Train the torch experiment ``config`` (with ``overrides``) in ``num_workers`` Ray Train
    workers and return its run directory (``output``, or ``<output.dir>/<name>-<timestamp>``).

    ``address``: the Ray cluster to join (``ray://host:10001`` or ``auto``); None: the running
    Ray of this process, else a local Ray started (and shut down) here. ``use_gpu``: one GPU
    per worker (NCCL). ``training.batch_size`` is the global batch, split evenly over the
    workers. A mistake raises ConfigError before Ray starts; a failed worker raises
    ExperimentError with its message."""
    from shipyard.training.distributed import _check_experiment

    if num_workers < 1:
        raise ConfigError(f"--num-workers: {num_workers} is below 1; give the number of Ray "
                          "Train workers (1 or more)")
    exp, _ = _check_experiment(config, overrides, num_workers, option="--ray")
    ray = import_ray("--ray", "ray.train.torch")
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from shipyard.training.distributed import _Job
    from shipyard.training.run import create_run_dir

    run_dir = create_run_dir(exp, output)
    job = _Job(config if isinstance(config, Mapping) else str(Path(config).resolve()),
               overrides, str(run_dir), None, False, config_note)
    started = False
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=True)
        started = True
    storage = Path(tempfile.mkdtemp(prefix="shipyard-ray-train-"))
    try:
        trainer = TorchTrainer(
            _worker, train_loop_config={"job": job},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=RunConfig(name=f"shipyard-{exp.name}-{uuid.uuid4().hex[:6]}",
                                 storage_path=str(storage)))
        try:
            trainer.fit()
        except Exception as exc:
            raise ExperimentError(_failure(exc, num_workers)) from exc
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
    if not (run_dir / "metrics.json").is_file():
        raise ExperimentError(f"Ray Train finished but rank 0 wrote no {run_dir}/metrics.json; "
                              "on a cluster, give --output a folder every node shares")
    return run_dir


def _worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the experiment at this worker's rank (torch.distributed is set
    up by Ray Train; the run directory is written by rank 0 only)."""
    from shipyard.training.config import load_experiment
    from shipyard.training.trainer import train_rank

    job = loop_config["job"]
    exp, base_dir = load_experiment(job.config, job.overrides)
    train_rank(exp, base_dir, output=Path(job.output), show_progress=False,
               config_note=job.config_note)


def _failure(exc: BaseException, num_workers: int) -> str:
    """One line for a failed Ray Train run: the first worker's own error where Ray kept it."""
    failures: dict[int, BaseException] = getattr(exc, "worker_failures", None) or {}
    if failures:
        rank, error = sorted(failures.items())[0]
        return (f"Ray Train failed: rank {rank} ({len(failures)} of {num_workers} workers "
                f"failed): {_message(error)}")
    cause = getattr(exc, "controller_failure", None) or exc
    return f"Ray Train failed: {_message(cause)}"


def _message(error: BaseException) -> str:
    """The ExperimentError message inside ``error`` (Ray wraps a worker's exception), else
    its first line."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ExperimentError):
            return seen.message
        seen = getattr(seen, "cause", None) or seen.__cause__
    text = str(error).strip().splitlines()
    return text[-1] if text else repr(error)
