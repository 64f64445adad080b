"""The model repository on disk: ``<root>/<model>/[config.yaml]`` and ``<root>/<model>/<n>/``.

The folder name is the model name; versions are positive integers. This module only reads the
disk: it never loads a model.

Publishing rule (safe against half-written files): a version is considered only once a
directory named by a positive integer exists, so publishers write into a hidden temporary
directory (a name starting with ``.``, which is ignored) and ``rename`` it into place, which is
atomic on one filesystem. ``shipyard publish`` does exactly that. Each scan also records a
signature (size and mtime of the model file, hash of ``config.yaml``): the watcher reloads a
version when its signature changes, so a file copied in place non-atomically is retried once it
settles.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.serving.config import ModelConfig, load_model_config
from shipyard.serving.errors import ShipyardError

__all__ = ["MODEL_NAME_RE", "ModelEntry", "model_names", "scan_model", "scan_repository"]

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
    #: version -> signature of its files (see module docstring)
    signatures: dict[int, Hashable] = field(default_factory=dict)
    #: hash of config.yaml ("" when there is none)
    config_hash: str = ""


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
    return [_scan_model(root / name) for name in model_names(root)]


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
        config_hash = hashlib.sha256(config_path.read_bytes()).hexdigest()
    except FileNotFoundError:
        config_hash = ""
    except OSError as exc:
        return ModelEntry(name, model_dir, None, error=f"{config_path}: cannot read: {exc}")
    try:
        config = (
            load_model_config(config_path, name)
            if config_path.exists()
            else ModelConfig(name=name)
        )
    except ShipyardError as exc:
        return ModelEntry(name, model_dir, None, error=exc.message, config_hash=config_hash)
    entry = ModelEntry(name, model_dir, config, config_hash=config_hash)
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
        path = model_dir / str(version) / config.default_model_filename
        entry.versions[version] = path
        entry.signatures[version] = (_file_signature(path), config_hash)
    return entry


def _file_signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def model_names(root: Path) -> list[str]:
    """Names of the model folders under ``root`` (cheap: no config is read)."""
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def scan_model(root: Path, name: str) -> ModelEntry | None:
    """One model folder, or None when ``root/name`` does not exist."""
    if not MODEL_NAME_RE.match(name):
        return None
    model_dir = root / name
    if not model_dir.is_dir():
        return None
    return _scan_model(model_dir)
