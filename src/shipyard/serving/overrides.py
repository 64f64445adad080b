"""The parameters of a repository load call (Triton's model-repository extension), checked and
turned into a :class:`LoadOverride` (protocol-free; both frontends call :func:`load_override`).

* ``config``: the model's configuration as JSON (``config.yaml``'s fields or Triton's, see
  :mod:`shipyard.repository.triton`), used instead of the folder's ``config.yaml``.
* ``file:<version>/<path>``: the model's files (REST: base64 in the JSON body; gRPC:
  ``bytes_param``). With them the model is loaded from a folder staged from those files, not
  from the repository; as in Triton they need ``config`` too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.repository.config import ModelConfig
from shipyard.repository.triton import config_from_json
from shipyard.serving.errors import InvalidInput

__all__ = ["LoadOverride", "load_override", "stage_files"]

_FILE = "file:"


@dataclass(frozen=True)
class LoadOverride:
    """What a load call asks for beyond "(re)load the model from the repository"."""

    config: ModelConfig
    """The configuration to serve the model with, instead of its ``config.yaml``."""
    config_hash: str
    """Part of each version's signature, over the configuration and the files' contents (a
    changed override reloads the versions; the same one again keeps them)."""
    files: dict[str, bytes] = field(default_factory=dict)
    """``<version>/<path>`` -> content: the files of the model folder (empty: the
    repository's folder)."""


def _check_path(key: str) -> str:
    rel = key[len(_FILE):]
    parts = rel.split("/")
    bad = None
    if not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        bad = "give a relative path such as 'file:1/model.onnx' ('/' between folders)"
    elif any(p in ("", ".", "..") for p in parts):
        bad = "empty, '.' and '..' path segments are not allowed"
    elif len(parts) < 2:
        bad = "a file goes into a version folder: 'file:<version>/<name>'"
    elif not (parts[0].isascii() and parts[0].isdigit() and parts[0] == str(int(parts[0]))
              and int(parts[0]) > 0):
        bad = f"the version folder {parts[0]!r} must be a positive integer such as '1'"
    if bad is not None:
        raise InvalidInput(f"load parameter {key!r}: {bad}")
    return rel


def load_override(model: str, parameters: Mapping[str, Any], *, files_base64: bool
                  ) -> LoadOverride | None:
    """Check a load call's ``parameters`` (``file:`` contents as base64 text when
    ``files_base64``, as bytes otherwise); None when they ask for nothing special."""
    if not parameters:
        return None
    files: dict[str, bytes] = {}
    config_text: str | None = None
    for key, value in parameters.items():
        if key == "config":
            if not isinstance(value, str):
                raise InvalidInput(
                    f"load parameter 'config' must be a string holding the model's configuration "
                    f"as JSON (gRPC: string_param), got {type(value).__name__}")
            config_text = value
        elif key.startswith(_FILE):
            rel = _check_path(key)
            if files_base64:
                if not isinstance(value, str):
                    raise InvalidInput(f"load parameter {key!r} must be the file's content in "
                                       f"base64, got {type(value).__name__}")
                try:
                    files[rel] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidInput(
                        f"load parameter {key!r} is not valid base64: {exc}") from None
            else:
                if not isinstance(value, bytes):
                    raise InvalidInput(f"load parameter {key!r} must carry the file's content "
                                       f"as bytes_param, got {type(value).__name__}")
                files[rel] = value
        else:
            raise InvalidInput(
                f"unknown load parameter {key!r}; a load takes 'config' (the model's "
                "configuration as JSON) and 'file:<version>/<path>' (its files, with 'config')")
    if config_text is None:
        if files:
            raise InvalidInput(
                f"load of model {model!r}: 'file:' parameters need 'config' too (the model "
                "configuration of the folder they form; '{}' for the defaults)")
        return None
    config = config_from_json(config_text, model, f"load of model {model!r}: parameter 'config'")
    digest = hashlib.sha256(config_text.encode())
    for rel in sorted(files):  # the files' contents too: mtimes may not tell two loads apart
        digest.update(f"\0{rel}\0".encode() + hashlib.sha256(files[rel]).digest())
    return LoadOverride(config, f"override:{digest.hexdigest()}", files)


def stage_files(staging_root: Path, model: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` into a fresh model folder under ``staging_root``; return the folder."""
    staging_root.mkdir(parents=True, exist_ok=True)
    model_dir = Path(tempfile.mkdtemp(prefix=f"{model}.", dir=staging_root))
    try:
        for rel, data in files.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    except OSError as exc:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise InvalidInput(f"load of model {model!r}: cannot stage its files ({exc}); a path "
                           "may be used as both a file and a folder") from exc
    return model_dir
