"""``--set key.path=value``: change any field of a raw experiment document by its dotted path.

Values are read as YAML scalars or flow collections (``0.1``, ``true``, ``null``, ``[16, 8]``,
``{C: 2}``); anything else stays a string. Missing intermediate mappings are created, so
``--set model.params.C=2`` works whether or not the file has ``params``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from shipyard.errors import ConfigError

__all__ = ["apply_overrides", "parse_override"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=1"`` -> (``["a", "b"]``, ``1``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, for example "
                          "--set data.source=other.csv or --set model.params.C=0.5")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty part in the key {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str | int | float | bool | list | dict) or parsed is None:
        return parts, parsed
    return parts, value  # dates and other YAML types stay text


def apply_overrides(
    raw: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]
) -> dict[str, Any]:
    """A deep copy of ``raw`` with every override applied, in order."""
    doc: dict[str, Any] = copy.deepcopy(dict(raw))
    if isinstance(overrides, Mapping):
        items = [(str(k).split("."), v, f"{k}={v!r}") for k, v in overrides.items()]
    else:
        items = [(*parse_override(o), o) for o in overrides]
    for parts, value, text in items:
        if parts[0] == "features" and len(parts) > 1 and doc.get("features") is None:
            raise ConfigError(f"--set {text}: the experiment infers its features (features is "
                              "null), so there is no feature list to change; list the features "
                              "in the file, or use --set exclude=[...]")
        node: Any = doc
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and depth == 1 and parts[0] == "features":
                child = node[part] = {"type": child}  # features.age: numeric -> a mapping
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {text}: {where!r} is {child!r}, not a mapping, so it "
                                  f"has no field {parts[depth + 1]!r}")
            node = child
        node[parts[-1]] = value
    return doc
