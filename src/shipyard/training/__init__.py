"""Training: the experiment schema, the trainer, run directories and evaluation of runs.

Names are imported lazily, so ``import shipyard.training`` is cheap until one is used. Nothing
here imports ``shipyard.serving``: the two halves meet only at the model repository on disk.
"""

from __future__ import annotations

from shipyard._lazy import lazy_exports

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
    "Evaluation": "evaluate",
    "evaluate_run": "evaluate",
}


__getattr__ = lazy_exports(__name__, _WHERE)
