"""Shipyard: from raw data to a fast, reliable model server.

``shipyard.train``, ``shipyard.evaluate`` and ``shipyard.publish`` (the Python API of the CLI) are
imported on first use, so ``import shipyard`` stays light for the serving half.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["__version__", "evaluate", "publish", "train"]

__version__ = "0.1.0"

_API = {"train", "evaluate", "publish"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("shipyard.api"), name)
    raise AttributeError(f"module 'shipyard' has no attribute {name!r}")
