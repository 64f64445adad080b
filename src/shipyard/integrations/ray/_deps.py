"""Ray, imported on first use with the fix in the error when it is not installed."""

from __future__ import annotations

import importlib
from types import ModuleType

from shipyard.errors import ConfigError

__all__ = ["import_ray"]


def import_ray(what: str, *modules: str) -> ModuleType:
    """``ray`` (and ``modules``, e.g. ``ray.serve``, imported too); a ConfigError naming
    ``what`` needs it and the extra to install when Ray or one of its parts is missing."""
    try:
        ray = importlib.import_module("ray")
        for name in modules:
            importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} needs Ray ({exc.name!r} is not installed); pip install "
                          "'shipyard[ray]' (ray[train,serve])") from exc
    return ray
