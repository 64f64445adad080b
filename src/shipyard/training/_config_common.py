"""Pieces every experiment schema shares (tabular, image, text): the output section, the
model-name rule and the ``seed`` that also seeds ``training`` unless that has its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from shipyard.repository.layout import MODEL_NAME_RE

__all__ = ["OutputConfig", "Strict", "model_name", "seed_training"]


class Strict(BaseModel):
    """A schema section that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


class OutputConfig(Strict):
    """Where run directories go."""

    dir: str = "runs"
    """Parent folder of run directories (relative to the current folder)."""
    run_name: str | None = None
    """Name of the run directory; default ``<name>-<YYYYmmdd-HHMMSS>``."""
    plots: bool = True
    """Draw the PNG plots (on small tables the slowest step)."""


def model_name(v: str) -> str:
    """``v`` if it can be a model folder name, else ValueError."""
    if not MODEL_NAME_RE.match(v):
        raise ValueError("must start with a letter or digit and hold only letters, digits, "
                         "'_', '.', '-' (it becomes a model folder name)")
    return v


def seed_training(raw: Any) -> Any:
    """A raw experiment whose ``training.seed`` is its ``seed`` unless given."""
    if isinstance(raw, Mapping) and isinstance(raw.get("training", {}), Mapping):
        training = dict(raw.get("training") or {})
        if "seed" not in training and isinstance(raw.get("seed", 0), int):
            training["seed"] = raw.get("seed", 0)
        return {**raw, "training": training}
    return raw
