"""Training and evaluating runs, each by the module of the experiment's model family.

The module of the experiment's ``model.family`` does the work (see
:mod:`shipyard.training.families`; imported only now): :func:`train_experiment` asks it to
``prepare`` the model (checks that need no data; nothing written yet), creates the run
directory, attaches ``train.log`` and hands both to its ``train``. :func:`evaluate_run` hands a
finished run to the family's ``evaluate``.

Under data-parallel training (:mod:`shipyard.training.distributed`) every process runs
:func:`train_rank`; rank 0 alone creates and writes the run directory, the others train their
shard and create nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, ExperimentError
from shipyard.training.config import AnyExperiment, family_key
from shipyard.training.distributed import env_rank
from shipyard.training.families import FamilyModule, family_evaluator, family_module
from shipyard.training.progress import Steps
from shipyard.training.run import RUN_FILES, Run, create_run_dir

if TYPE_CHECKING:
    from shipyard.evaluation.scoring import Evaluation

__all__ = ["evaluate_run", "train_experiment", "train_rank"]

log = logging.getLogger("shipyard.training")


@contextmanager
def _run_log(run_dir: Path) -> Iterator[None]:
    """The ``shipyard`` loggers also write to ``<run>/train.log`` (INFO and up) meanwhile."""
    handler = logging.FileHandler(run_dir / RUN_FILES["log"], encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package_log = logging.getLogger("shipyard")
    package_log.addHandler(handler)
    previous_level = package_log.level
    if package_log.getEffectiveLevel() > logging.INFO:
        package_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(previous_level)
        handler.close()


def _resume_dir(family: FamilyModule, name: str, resume: Path, output: Path | None,
                check: bool = True) -> Path:
    if output is not None:
        raise ConfigError("--resume continues the run in its own folder; leave out --output")
    if "resume" not in inspect.signature(family.train).parameters:
        raise ConfigError(f"--resume: runs of model family {name!r} cannot be resumed (they "
                          "keep no checkpoints); train into a new run directory")
    checkpoints = resume / "checkpoints"
    if check and (not checkpoints.is_dir() or not any(checkpoints.glob("epoch-*.pt"))):
        raise ConfigError(f"--resume: {str(resume)!r} holds no checkpoints/epoch-*.pt; give the "
                          "run directory of an interrupted torch run")
    return resume.resolve()


def train_experiment(
    exp: AnyExperiment, base_dir: Path, *, output: Path | None = None, show_progress: bool = False,
    config_note: str = "", resume: Path | None = None,
) -> Run:
    """Run ``exp`` and return the finished :class:`Run`. A failed run leaves its directory
    with ``train.log`` saying why. ``resume``: continue that run directory's fit from its
    newest checkpoint (torch runs; the experiment must match the checkpoint's training)."""
    run = train_rank(exp, base_dir, output=output, show_progress=show_progress,
                     config_note=config_note, resume=resume)
    if run is None:
        raise ExperimentError(
            f"train_experiment: this process is rank {env_rank()} of a data-parallel run, "
            "which writes no run; call train_rank there (shipyard train does)")
    return run


def train_rank(
    exp: AnyExperiment, base_dir: Path, *, output: Path | None = None, show_progress: bool = False,
    config_note: str = "", resume: Path | None = None,
) -> Run | None:
    """:func:`train_experiment` in one process of a data-parallel run (or alone): rank 0 (the
    ``RANK`` environment variable; 0 when unset) creates the run directory, attaches
    ``train.log`` and returns the finished :class:`Run`; any other rank creates no file,
    trains its shard of the data with the others and returns None. Every rank must get the
    same ``output`` or ``resume``; rank 0 alone checks and reads them."""
    key = family_key(exp)
    family = family_module(key)
    prepared = family.prepare(exp)
    extra: dict[str, Any] = {}
    writer = env_rank() == 0
    if resume is not None:
        run_dir = _resume_dir(family, key, resume, output, check=writer)
        extra["resume"] = True
    elif writer:
        run_dir = create_run_dir(exp, output)
    else:  # never created here: rank 0 writes it
        run_dir = (output or Path(exp.output.dir) / "rank-without-run-dir").resolve()
    if not writer:
        with Steps(False) as steps:
            return family.train(exp, base_dir, prepared, run_dir=run_dir, steps=steps,
                                config_note=config_note, **extra)
    with _run_log(run_dir):
        try:
            log.info("run %s: experiment %s (%s, %s)", run_dir, exp.name, exp.task,
                     exp.model.label)
            with Steps(show_progress) as steps:
                return family.train(exp, base_dir, prepared, run_dir=run_dir, steps=steps,
                                    config_note=config_note, **extra)
        except Exception as exc:  # the log of a failed run says why; the error goes on up
            log.error("run failed: %s", getattr(exc, "message", None) or repr(exc))
            raise


def evaluate_run(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score a finished run on ``data`` (a file with the feature and target columns), or on its
    own test split again; results go to ``<run>/evaluations/<name>/``."""
    evaluator = family_evaluator(family_key(run.experiment))
    return evaluator.evaluate(run, data, show_progress=show_progress)
