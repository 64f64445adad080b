"""Atomic publishing of a new version into a model repository.

A version appears atomically: its files are written into a hidden folder inside the model folder
(the server ignores names that are not positive integers) and renamed to ``<version>`` in one
step, so a server never sees half a version. A new model appears whole the same way
(``config.yaml`` and version 1, staged in a hidden repository folder); for an existing model,
``config.yaml`` is replaced (``os.replace``) after the version appears. The config is validated
with the schema the server reads (:func:`~shipyard.repository.config.parse_model_config`)
before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipyard.protocol.errors import InvalidInput
from shipyard.repository.config import parse_model_config
from shipyard.repository.layout import MODEL_NAME_RE, NAME_RULE, versions_on_disk

__all__ = ["PublishError", "Published", "next_version", "publish_version"]

_ATTEMPTS = 20


class PublishError(InvalidInput):
    """A version cannot be published (bad name, bad config, no free version number)."""


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
    return max(versions_on_disk(model_dir), default=0) + 1


def publish_version(
    repository: Path, model: str, files: Mapping[str, bytes], config: Mapping[str, Any]
) -> Published:
    """Write ``files`` as the next version of ``model`` and ``config`` as its ``config.yaml``.

    ``config`` is checked against :class:`~shipyard.repository.config.ModelConfig` first: a
    config the server would refuse is never published.
    """
    if not MODEL_NAME_RE.match(model):
        raise PublishError(f"model name {model!r} is not valid ({NAME_RULE})")
    if repository.exists() and not repository.is_dir():
        raise PublishError(f"repository {str(repository)!r} exists and is not a folder")
    model_dir = repository / model
    config_path = model_dir / "config.yaml"
    try:
        parse_model_config(dict(config), model, f"{config_path} (to be published)")
    except InvalidInput as exc:
        raise PublishError(exc.message) from exc
    config_text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, width=100)
    repository.mkdir(parents=True, exist_ok=True)
    if not model_dir.exists() and _publish_new_model(repository, model, files, config_text):
        return Published(repository, model, 1, model_dir / "1")
    version = _publish_version(model_dir, files)
    tmp_config = model_dir / f".config-{uuid.uuid4().hex}.yaml"
    _write(tmp_config, config_text.encode("utf-8"))
    os.replace(tmp_config, config_path)
    _fsync_dir(model_dir)
    return Published(repository, model, version, model_dir / str(version))


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
            raise PublishError(f"publish: could not claim a version folder in {model_dir} "
                               f"after {_ATTEMPTS} tries; is another publish running?")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(model_dir)
    return version
