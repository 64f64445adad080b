"""Publishing a trained model file as the next version of a model in a model repository.

The repository layout, its ``config.yaml`` schema and the atomic publish are the repository
contract's (:mod:`shipyard.repository`); this module decides what a trained run's
``config.yaml`` says (description, labels, batching) and hands the files to
:func:`shipyard.repository.publish_version`, which validates the config with the schema the
server reads before it writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shipyard.errors import ExportError
from shipyard.repository import (
    MODEL_NAME_RE,
    Published,
    PublishError,
    next_version,
    publish_version,
)
from shipyard.repository.config import DynamicBatching, VersionPolicy
from shipyard.repository.layout import NAME_RULE

__all__ = ["Published", "next_version", "publish_model"]


def _config(
    existing: dict[str, Any] | None, *, description: str, labels: Mapping[str, list[str]],
    max_batch_size: int, inputs: list[str], outputs: list[str], path: Path,
) -> dict[str, Any]:
    if existing is None:  # the schema's own defaults, written out so users see the knobs
        config: dict[str, Any] = {
            "description": description,
            "backend": "onnx",
            "max_batch_size": max_batch_size,
            "dynamic_batching": DynamicBatching().model_dump(),
            "instances": 1,
            "version_policy": VersionPolicy(latest=1).model_dump(exclude_defaults=True),
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
    return config


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
        raise ExportError(f"--model: {model!r} is not a valid model name ({NAME_RULE})")
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
    config = _config(existing, description=description, labels=labels or {},
                     max_batch_size=max_batch_size, inputs=inputs or [], outputs=outputs or [],
                     path=config_path)
    files = {model_file.name: model_file.read_bytes(), **(extra_files or {})}
    try:
        return publish_version(repository, model, files, config)
    except PublishError as exc:
        raise ExportError(exc.message) from exc
