"""Publishing a model file as the next version of a model in a model repository.

The repository is the serving core's: ``<repo>/<model>/config.yaml`` and
``<repo>/<model>/<version>/model.onnx``. A version appears atomically: it is written into a
hidden folder inside the model folder (the server ignores names that are not positive integers)
and renamed to ``<version>`` in one step, so a server never sees half a version. A new model
appears whole the same way (config.yaml and version 1, staged in a hidden repository folder);
for an existing model, config.yaml is replaced (``os.replace``) after the version appears.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.data.errors import ExportError

__all__ = ["MODEL_NAME_RE", "Published", "next_version", "publish_model"]

#: The serving core's rule for model (folder) names.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ATTEMPTS = 20


@dataclass(frozen=True)
class Published:
    """Where a publish put the model."""

    repository: Path
    """The model repository root."""
    model: str
    """Model name (folder)."""
    version: int
    """The new version number."""
    path: Path
    """The new version folder."""


def next_version(model_dir: Path) -> int:
    """One more than the highest version folder (1 for a new model)."""
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir()
                if p.is_dir() and p.name.isdigit() and int(p.name) > 0]
    return max(versions, default=0) + 1


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _config_text(
    existing: dict[str, Any] | None, *, description: str, labels: Mapping[str, list[str]],
    max_batch_size: int, inputs: list[str], outputs: list[str], path: Path,
) -> str:
    if existing is None:
        config: dict[str, Any] = {
            "description": description,
            "backend": "onnx",
            "max_batch_size": max_batch_size,
            "dynamic_batching": {"max_queue_delay_us": 0, "preferred_batch_sizes": [],
                                 "max_queue_size": 1024},
            "instances": 1,
            "version_policy": {"latest": 1},
        }
    else:
        config = dict(existing)
        for key, names in (("inputs", inputs), ("outputs", outputs)):
            declared = config.get(key)
            if declared and sorted(d.get("name") for d in declared) != sorted(names):
                raise ExportError(
                    f"{path}: declares {key} {[d.get('name') for d in declared]} but the new "
                    f"model has {names}; remove '{key}' from config.yaml (it is read from the "
                    "graph) or publish under another --model name"
                )
        config["description"] = description
    config.pop("labels", None)
    if labels:
        config["labels"] = {k: list(v) for k, v in labels.items()}
    text: str = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    return text


def publish_model(
    model_file: Path,
    repository: Path,
    model: str,
    *,
    description: str = "",
    labels: Mapping[str, list[str]] | None = None,
    max_batch_size: int = 256,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Published:
    """Write ``model_file`` as the next version of ``model`` and update its ``config.yaml``.

    An existing ``config.yaml`` keeps its serving settings (batching, instances, version
    policy); its ``description`` and ``labels`` follow the new version.
    """
    if not MODEL_NAME_RE.match(model):
        raise ExportError(f"--model: {model!r} is not a valid model name (letters, digits, "
                          "'_', '.', '-'; starting with a letter or digit; at most 128)")
    if not model_file.is_file():
        raise ExportError(f"publish: model file {str(model_file)!r} not found")
    if repository.exists() and not repository.is_dir():
        raise ExportError(f"--repo: {str(repository)!r} exists and is not a folder")
    model_dir = repository / model
    config_path = model_dir / "config.yaml"
    existing: dict[str, Any] | None = None
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ExportError(f"{config_path}: cannot read the existing config: {exc}; fix or "
                              "remove it") from exc
        if not isinstance(loaded, dict):
            raise ExportError(f"{config_path}: expected a mapping; fix or remove it")
        existing = loaded
    config_text = _config_text(existing, description=description, labels=labels or {},
                               max_batch_size=max_batch_size, inputs=inputs or [],
                               outputs=outputs or [], path=config_path)
    repository.mkdir(parents=True, exist_ok=True)
    files = {model_file.name: model_file.read_bytes(), **(extra_files or {})}
    if not model_dir.exists() and _publish_new_model(repository, model, files, config_text):
        return Published(repository, model, 1, model_dir / "1")
    version = _publish_version(model_dir, files)
    tmp_config = model_dir / f".config-{uuid.uuid4().hex}.yaml"
    _write(tmp_config, config_text.encode("utf-8"))
    os.replace(tmp_config, config_path)
    _fsync_dir(model_dir)
    return Published(repository, model, version, model_dir / str(version))


def _stage(folder: Path, files: Mapping[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        _write(folder / name, data)
    _fsync_dir(folder)


def _publish_new_model(repository: Path, model: str, files: Mapping[str, bytes],
                       config_text: str) -> bool:
    """A model folder that does not exist yet appears whole: config.yaml and version 1 are
    staged in a hidden folder of the repository and renamed together. False when another
    publisher created the folder first (then publish a version into it)."""
    staging = repository / f".publish-{model}-{uuid.uuid4().hex}"
    try:
        _stage(staging / "1", files)
        _write(staging / "config.yaml", config_text.encode("utf-8"))
        _fsync_dir(staging)
        if (repository / model).exists():
            shutil.rmtree(staging)
            return False
        try:
            os.rename(staging, repository / model)
        except OSError:  # created meanwhile by someone else
            shutil.rmtree(staging)
            return False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(repository)
    return True


def _publish_version(model_dir: Path, files: Mapping[str, bytes]) -> int:
    """Stage the files in a hidden folder of ``model_dir`` and rename it to the next free
    version number; the number."""
    staging = model_dir / f".publish-{uuid.uuid4().hex}"
    try:
        _stage(staging, files)
        version = next_version(model_dir)
        for _ in range(_ATTEMPTS):
            if not (model_dir / str(version)).exists():
                try:
                    os.rename(staging, model_dir / str(version))
                    break
                except OSError:  # another publisher took this number first
                    pass
            version += 1
        else:
            raise ExportError(f"publish: could not claim a version folder in {model_dir} after "
                              f"{_ATTEMPTS} tries; is another publish running?")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(model_dir)
    return version
