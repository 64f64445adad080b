"""Shipyard: from raw data to a fast, reliable model server.

``shipyard.train``, ``evaluate``, ``optimise``, ``publish``, ``train_parallel`` and ``train_ray``
(the Python API of the CLI, :mod:`shipyard.api`) are imported on first use, so ``import
shipyard`` stays light for the serving half; ``dir(shipyard)`` lists them all the same.
"""

from __future__ import annotations

import importlib
from typing import Any

from shipyard._lazy import lazy_dir

#: the names of :mod:`shipyard.api` (its ``__all__``; a test keeps the two equal)
_API = ("evaluate", "optimise", "publish", "train", "train_parallel", "train_ray")

__all__ = ["__version__", *_API]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("shipyard.api"), name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")


__dir__ = lazy_dir(globals(), __all__)
