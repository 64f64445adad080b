"""Shared helpers of the training tests: data paths and tiny experiments on real data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conftest import ROOT, SHARED

TITANIC = SHARED / "data" / "titanic" / "titanic3.csv"
SMS_SPAM = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
EXAMPLES = ROOT / "examples"

_TITANIC: dict[str, Any] = {
    "name": "titanic-tiny",
    "task": "binary",
    "seed": 0,
    "data": {"source": str(TITANIC), "target": "survived"},
    "features": {
        "pclass": "categorical",
        "sex": "categorical",
        "age": {"type": "numeric", "impute": "median"},
        "sibsp": "numeric",
        "fare": "numeric",
        "embarked": "categorical",
    },
    "model": {"type": "gradient_boosting",
              "params": {"n_estimators": 25, "max_depth": 2, "learning_rate": 0.2}},
    "split": {"test_size": 0.25, "validation_size": 0.2},
    "output": {"plots": False},
}


def titanic_experiment() -> dict[str, Any]:
    """A small, fast titanic experiment (a fresh copy each call)."""
    return copy.deepcopy(_TITANIC)


def png(path: Path) -> bool:
    """The file is a PNG image."""
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
