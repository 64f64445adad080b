"""Lazy package exports: a package names where each public name lives, and the module is
imported on first access (so ``import shipyard.data`` does not pull in pandas or sklearn)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["lazy_dir", "lazy_exports"]


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


def lazy_dir(namespace: Mapping[str, Any], names: Iterable[str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` that lists the public API, lazily exported ``names`` included, so
    ``dir()`` and tab completion show it before its first use: those names, the module's
    dunders and its subpackages already imported (``namespace``: its ``globals()``), not the
    helpers it imported for itself."""
    public = frozenset(names)
    package = str(namespace["__name__"])

    def __dir__() -> list[str]:
        shown = {k for k, v in namespace.items()
                 if k.startswith("__") or (not k.startswith("_") and isinstance(v, ModuleType)
                                           and v.__name__ == f"{package}.{k}")}
        return sorted(shown | public)

    return __dir__
