"""Training: the experiment schema, one trainer per model family, run directories, and
evaluating runs again (scoring itself is :mod:`shipyard.evaluation`'s).

Names are imported lazily, so ``import shipyard.training`` is cheap until one is used. Nothing
here imports ``shipyard.serving``: the two halves meet only at the model repository on disk.
"""

from __future__ import annotations

from shipyard._lazy import lazy_dir, lazy_exports

__all__ = [
    "MODELS",
    "Evaluation",
    "Experiment",
    "Run",
    "evaluate_run",
    "load_experiment",
    "train_experiment",
]

_WHERE = {
    "Experiment": "config",
    "load_experiment": "config",
    "MODELS": "models",
    "Run": "run",
    "train_experiment": "trainer",
    "Evaluation": "shipyard.evaluation.scoring",
    "evaluate_run": "trainer",
}


__getattr__ = lazy_exports(__name__, _WHERE)
__dir__ = lazy_dir(globals(), __all__)
