"""Lazy package exports: a package names where each public name lives, and the module is
imported on first access (so ``import shipyard.data`` does not pull in pandas or sklearn)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` comes from ``package.where[name]``
    (a value starting with ``shipyard.`` is a whole module path, for names the package
    re-exports from elsewhere)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path = module if module.startswith("shipyard.") else f"{package}.{module}"
        return getattr(importlib.import_module(path), name)

    return __getattr__
