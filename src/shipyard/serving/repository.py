"""The model repository on disk: ``<root>/<model>/[config.yaml]`` and ``<root>/<model>/<n>/``.

The folder name is the model name; versions are positive integers. This module only reads the
disk: it never loads a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.serving.config import ModelConfig, load_model_config
from shipyard.serving.errors import ShipyardError

__all__ = ["MODEL_NAME_RE", "ModelEntry", "scan_repository"]

#: What a model name may look like (it is also a folder name and a URL path segment).
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass
class ModelEntry:
    """One model folder as found on disk."""

    name: str
    path: Path
    config: ModelConfig | None
    #: version -> model file, only the versions the version policy selects
    versions: dict[int, Path] = field(default_factory=dict)
    #: why the model cannot be served (bad config, no versions); None when fine
    error: str | None = None


def _versions_on_disk(model_dir: Path) -> list[int]:
    found = []
    for child in model_dir.iterdir():
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0:
            found.append(int(child.name))
    return found


def scan_repository(root: Path) -> list[ModelEntry]:
    """Every model folder under ``root``, sorted by name; broken ones carry ``error``."""
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {str(root)!r} is not a directory")
    entries = []
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith((".", "_")):
            continue
        entries.append(_scan_model(model_dir))
    return entries


def _scan_model(model_dir: Path) -> ModelEntry:
    name = model_dir.name
    if not MODEL_NAME_RE.match(name):
        return ModelEntry(
            name, model_dir, None,
            error=f"folder name {name!r} is not a valid model name "
            "(letters, digits, '_', '.', '-'; at most 128 characters)",
        )
    config_path = model_dir / "config.yaml"
    try:
        config = (
            load_model_config(config_path, name)
            if config_path.exists()
            else ModelConfig(name=name)
        )
    except ShipyardError as exc:
        return ModelEntry(name, model_dir, None, error=exc.message)
    entry = ModelEntry(name, model_dir, config)
    on_disk = _versions_on_disk(model_dir)
    selected = config.version_policy.select(on_disk)
    if not selected:
        entry.error = (
            f"model {name!r} has no version to serve: found versions {sorted(on_disk)} "
            f"under {str(model_dir)!r}, version policy {config.version_policy.model_dump()}; "
            "add a directory such as '1/' holding "
            f"{config.default_model_filename!r}"
        )
        return entry
    for version in selected:
        entry.versions[version] = model_dir / str(version) / config.default_model_filename
    return entry
