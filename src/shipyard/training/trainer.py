"""Training and evaluating runs, each by the module of the experiment's model family.

The module of the experiment's ``model.family`` does the work (see
:mod:`shipyard.training.families`; imported only now): :func:`train_experiment` asks it to
``prepare`` the model (checks that need no data; nothing written yet), creates the run
directory, attaches ``train.log`` and hands both to its ``train``. :func:`evaluate_run` hands a
finished run to the family's ``evaluate``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError
from shipyard.training.config import AnyExperiment, family_key
from shipyard.training.families import FamilyModule, family_evaluator, family_module
from shipyard.training.progress import Steps
from shipyard.training.run import RUN_FILES, Run, create_run_dir

if TYPE_CHECKING:
    from shipyard.evaluation.scoring import Evaluation

__all__ = ["evaluate_run", "train_experiment"]

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


def _resume_dir(family: FamilyModule, name: str, resume: Path, output: Path | None) -> Path:
    if output is not None:
        raise ConfigError("--resume continues the run in its own folder; leave out --output")
    if "resume" not in inspect.signature(family.train).parameters:
        raise ConfigError(f"--resume: runs of model family {name!r} cannot be resumed (they "
                          "keep no checkpoints); train into a new run directory")
    checkpoints = resume / "checkpoints"
    if not checkpoints.is_dir() or not any(checkpoints.glob("epoch-*.pt")):
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
    key = family_key(exp)
    family = family_module(key)
    prepared = family.prepare(exp)
    extra: dict[str, Any] = {}
    if resume is not None:
        run_dir = _resume_dir(family, key, resume, output)
        extra["resume"] = True
    else:
        run_dir = create_run_dir(exp, output)
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
