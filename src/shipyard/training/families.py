"""Model families: which module trains (and evaluates) each ``model.family`` of an experiment.

A family module is imported only when an experiment of its family runs, so scikit-learn never
loads torch and the reverse. It provides :class:`FamilyModule`'s functions:

``prepare(exp) -> Any``
    ``exp`` is the schema of its family (:func:`~shipyard.training.config.experiment_class`:
    :class:`Experiment` for sklearn, :class:`ImageExperiment` for torch,
    :class:`TextExperiment` for the ``text-*`` keys of ``kind: text``). Checks that need no
    data (``model.params`` against the estimator or architecture) and
    builds what ``train`` needs; raises :class:`~shipyard.errors.ConfigError` naming the
    dotted path. Called before the run directory exists, so a bad config leaves nothing behind.
``train(exp, base_dir, prepared, *, run_dir, steps, config_note) -> Run``
    The run itself, into ``run_dir`` (created, empty, with ``train.log`` attached to the
    ``shipyard`` loggers); ``base_dir`` resolves relative data paths, ``steps`` times and shows
    each step, ``config_note`` is one line for the header of the run's ``experiment.yaml``.
    Returns ``Run.load(run_dir)`` (None on a data-parallel rank other than 0, which writes
    nothing). A family whose ``train`` also takes ``resume: bool``
    can continue an interrupted run (``shipyard train EXP --resume RUN_DIR``: ``run_dir`` is
    then that run's folder, with its checkpoints); the others refuse ``--resume``.
``evaluate(run, data, *, show_progress) -> Evaluation`` (optional)
    ``shipyard evaluate RUN [--data FILE]``; a family without it is refused with a ConfigError.

Nothing here imports a family module or a framework: this module only knows their names.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from shipyard.errors import ConfigError

if TYPE_CHECKING:
    from shipyard.evaluation.scoring import Evaluation
    from shipyard.training.config import AnyExperiment
    from shipyard.training.progress import Steps
    from shipyard.training.run import Run

__all__ = ["FAMILIES", "Family", "FamilyModule", "family_evaluator", "family_module",
           "unavailable"]


class FamilyModule(Protocol):
    """What :func:`family_module` returns (a module with these functions)."""

    def prepare(self, exp: AnyExperiment) -> Any: ...

    def train(self, exp: AnyExperiment, base_dir: Path, prepared: Any, *, run_dir: Path,
              steps: Steps, config_note: str = "") -> Run | None: ...


class FamilyEvaluator(Protocol):
    """A family module that can also evaluate its runs again."""

    def evaluate(self, run: Run, data: Path | None = None, *, show_progress: bool = False
                 ) -> Evaluation: ...


@dataclass(frozen=True)
class Family:
    """One ``model.family`` value."""

    module: str
    """Dotted path of the module that trains it."""
    missing: str
    """The one-line refusal while that module is not there (the part after ``model.family:``)."""


FAMILIES: dict[str, Family] = {
    "sklearn": Family("shipyard.training.sklearn",
                      "the scikit-learn trainer is missing from this installation"),
    "torch": Family("shipyard.training.torch_experiment",
                    "torch experiments arrive with the image task (this shipyard has no torch "
                    "trainer yet); use a scikit-learn model (leave out family, or family: "
                    "sklearn)"),  # the message of an installation without the torch trainer
    # text experiments (kind: text): TF-IDF + a linear model, or a Transformer encoder
    "text-sklearn": Family("shipyard.training.text_sklearn",
                           "the TF-IDF text trainer is missing from this installation"),
    "text-torch": Family("shipyard.training.text_torch",
                         "the Transformer text trainer is missing from this installation"),
}


def _present(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def unavailable(family: str) -> str | None:
    """Why experiments of ``family`` cannot run here (``model.family: ...``), or None."""
    entry = FAMILIES.get(family)
    if entry is None:
        allowed = [k for k in FAMILIES if not k.startswith("text-")]  # text-*: by kind: text
        return f"model.family: {family!r} is not a model family; allowed: {allowed}"
    return None if _present(entry.module) else f"model.family: {entry.missing}"


def family_module(family: str) -> FamilyModule:
    """The module that trains ``family``, imported now; ConfigError while it is missing."""
    reason = unavailable(family)
    if reason is not None:
        raise ConfigError(reason)
    return cast(FamilyModule, importlib.import_module(FAMILIES[family].module))


def family_evaluator(family: str) -> FamilyEvaluator:
    """The family's module, where it can evaluate a run again; ConfigError where it cannot."""
    module = family_module(family)
    if not callable(getattr(module, "evaluate", None)):
        raise ConfigError(f"evaluate: runs of model family {family!r} cannot be evaluated again "
                          "yet; read the run's metrics.json and report.md")
    return cast(FamilyEvaluator, module)
