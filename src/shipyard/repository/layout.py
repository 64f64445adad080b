"""The model repository on disk: ``<root>/<model>/[config.yaml]`` and ``<root>/<model>/<n>/``.

A model folder from Triton may hold a ``config.pbtxt`` instead of ``config.yaml``: it is read
(:func:`~shipyard.repository.triton.load_triton_config`), and the fields it gives that this
server ignores become the entry's ``warnings``. When both files exist, ``config.yaml`` wins and
a warning says the ``config.pbtxt`` was ignored.

The folder name is the model name (:data:`MODEL_NAME_RE`, the one rule both halves use);
versions are positive integers (:func:`versions_on_disk`). This module only reads the disk: it
never loads a model, and it does not know which file of a version folder a runtime reads
(the server's runtime registry does), so a version's signature covers every file in it.

Publishing rule (safe against half-written files): a version is considered only once a
directory named by a positive integer exists, so publishers write into a hidden temporary
directory (a name starting with ``.``, which is ignored) and ``rename`` it into place, which is
atomic on one filesystem. ``shipyard publish`` does exactly that. Each scan also records a
signature (name, size and mtime of every file in the version folder, hash of ``config.yaml``):
the watcher reloads a version when its signature changes, so a file copied in place
non-atomically is retried once it settles.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.protocol.errors import ShipyardError
from shipyard.repository.config import ModelConfig, load_model_config
from shipyard.repository.triton import load_triton_config

__all__ = [
    "MODEL_NAME_RE",
    "NAME_RULE",
    "TRITON_CONFIG",
    "ModelEntry",
    "model_entry",
    "model_names",
    "scan_model",
    "scan_repository",
    "single_model_view",
    "version_signature",
    "versions_on_disk",
]

#: What a model name may look like (it is also a folder name and a URL path segment).
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
#: The rule in words, for error messages.
NAME_RULE = "letters, digits, '_', '.', '-'; starting with a letter or digit; at most 128"
#: Triton's model configuration file, read when a model folder has no config.yaml
TRITON_CONFIG = "config.pbtxt"
#: Files a version signature reads at most (a version folder is a handful of files).
_SIGNATURE_FILES = 256


@dataclass
class ModelEntry:
    """One model folder as found on disk."""

    name: str
    path: Path
    config: ModelConfig | None
    #: version -> version folder, only the versions the version policy selects
    versions: dict[int, Path] = field(default_factory=dict)
    #: why the model cannot be served (bad config, no versions); None when fine
    error: str | None = None
    #: version -> signature of its files (see module docstring)
    signatures: dict[int, Hashable] = field(default_factory=dict)
    #: hash of config.yaml or config.pbtxt ("" when there is none)
    config_hash: str = ""
    #: what the configuration asked for that is ignored (a config.pbtxt's unsupported fields,
    #: or the config.pbtxt itself beside a config.yaml), one line each
    warnings: list[str] = field(default_factory=list)


def versions_on_disk(model_dir: Path) -> list[int]:
    """The version numbers of ``model_dir`` (folders named by a positive integer), unsorted;
    [] when the folder does not exist."""
    if not model_dir.is_dir():
        return []
    return [int(child.name) for child in model_dir.iterdir()
            if child.is_dir() and child.name.isdigit() and int(child.name) > 0]


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
            error=f"folder name {name!r} is not a valid model name ({NAME_RULE})",
        )
    config_path = model_dir / "config.yaml"
    pbtxt_path = model_dir / TRITON_CONFIG
    try:
        config_hash = _config_hash(config_path, pbtxt_path)
    except OSError as exc:
        return ModelEntry(name, model_dir, None, error=f"{model_dir}: cannot read its "
                          f"configuration: {exc}")
    warnings: list[str] = []
    try:
        if config_path.exists():
            config = load_model_config(config_path, name)
            if pbtxt_path.exists():
                warnings.append(f"{pbtxt_path}: ignored: config.yaml beside it configures "
                                f"model {name!r}; remove one of the two files")
        elif pbtxt_path.exists():
            config, warnings = load_triton_config(pbtxt_path, name)
        else:
            config = ModelConfig(name=name)
    except ShipyardError as exc:
        return ModelEntry(name, model_dir, None, error=exc.message, config_hash=config_hash)
    entry = model_entry(name, model_dir, config, config_hash)
    entry.warnings = warnings
    return entry


def _config_hash(config_path: Path, pbtxt_path: Path) -> str:
    """Hash of the configuration: config.yaml's bytes (and whether a config.pbtxt, which it
    overrides, is beside it), else config.pbtxt's bytes; "" when there is neither."""
    try:
        yaml_bytes: bytes | None = config_path.read_bytes()
    except FileNotFoundError:
        yaml_bytes = None
    if yaml_bytes is not None:
        if not pbtxt_path.exists():
            return hashlib.sha256(yaml_bytes).hexdigest()
        return hashlib.sha256(yaml_bytes + b"\0" + TRITON_CONFIG.encode()).hexdigest()
    try:
        return hashlib.sha256(TRITON_CONFIG.encode() + b"\0" + pbtxt_path.read_bytes()
                              ).hexdigest()
    except FileNotFoundError:
        return ""


def model_entry(name: str, model_dir: Path, config: ModelConfig, config_hash: str) -> ModelEntry:
    """The entry of model ``name`` served with ``config`` from the version folders of
    ``model_dir`` (the repository's folder, or one staged elsewhere); ``config_hash`` goes
    into every version's signature."""
    entry = ModelEntry(name, model_dir, config, config_hash=config_hash)
    on_disk = versions_on_disk(model_dir)
    selected = config.version_policy.select(on_disk)
    if not selected:
        entry.error = (
            f"model {name!r} has no version to serve: found versions {sorted(on_disk)} "
            f"under {str(model_dir)!r}, version policy {config.version_policy.model_dump()}; "
            "add a directory such as '1/' holding the model file"
        )
        return entry
    for version in selected:
        path = model_dir / str(version)
        entry.versions[version] = path
        entry.signatures[version] = (version_signature(path), config_hash)
    return entry


def version_signature(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative name, size, mtime) of the files of a version folder, sorted; hidden files and
    ``__pycache__`` are left out. Unreadable entries are skipped (a half-copied file shows up
    in the next scan)."""
    found: list[tuple[str, int, int]] = []
    try:
        for path in version_dir.rglob("*"):
            rel = path.relative_to(version_dir)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                found.append((rel.as_posix(), st.st_size, st.st_mtime_ns))
            if len(found) >= _SIGNATURE_FILES:
                break
    except OSError:
        pass
    return tuple(sorted(found))


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


def single_model_view(folder: Path, name: str, into: Path) -> Path | None:
    """A repository under ``into`` that holds ``folder`` as the one model ``name``, when
    ``folder`` is itself a model's folder rather than a repository (KServe mounts one model at
    ``/mnt/models``); None when ``folder`` is a repository (folders of models) already.

    ``folder`` is a model's folder when it holds version folders (``1/``, beside an optional
    ``config.yaml``): it is linked as ``into/name``. When it holds only files (``model.onnx``
    and the files beside it, no folders), they are linked as version 1: ``into/name/1`` (its
    ``config.yaml`` or ``config.pbtxt``, if any, stays the model's). Links, not copies: the
    watcher sees changes.
    """
    if not MODEL_NAME_RE.match(name):
        raise ValueError(f"model name {name!r} is not valid ({NAME_RULE})")
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "_"))]
    dirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if p.is_file()]
    if versions_on_disk(folder):  # [config.yaml] and 1/, 2/, ...
        into.mkdir(parents=True, exist_ok=True)
        (into / name).symlink_to(folder.resolve(), target_is_directory=True)
        return into
    if files and not dirs:  # the model's files themselves
        model_dir = into / name
        model_dir.mkdir(parents=True)
        (model_dir / "1").symlink_to(folder.resolve(), target_is_directory=True)
        for config_file in ("config.yaml", TRITON_CONFIG):
            if (folder / config_file).is_file():
                (model_dir / config_file).symlink_to((folder / config_file).resolve())
        return into
    return None
