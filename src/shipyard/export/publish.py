"""Publishing a trained model file as the next version of a model in a model repository.

The repository layout, its ``config.yaml`` schema and the atomic publish are the repository
contract's (:mod:`shipyard.repository`); this module decides what a trained run's
``config.yaml`` says (description, labels, batching) and hands the files to
:func:`shipyard.repository.publish_version`, which validates the config with the schema the
server reads before it writes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

__all__ = ["IMAGE_INPUTS", "Published", "image_model_config", "next_version", "publish_image_run",
           "publish_model", "publish_text_run", "text_model_config"]


def _serving_defaults(max_batch_size: int) -> dict[str, Any]:
    """A new model's serving settings: the schema's own defaults, written out so users see
    the knobs."""
    return {
        "max_batch_size": max_batch_size,
        "dynamic_batching": DynamicBatching().model_dump(),
        "instances": 1,
        "version_policy": VersionPolicy(latest=1).model_dump(exclude_defaults=True),
    }


def _config(
    existing: dict[str, Any] | None, *, description: str, labels: Mapping[str, list[str]],
    max_batch_size: int, inputs: list[str], outputs: list[str], path: Path,
) -> dict[str, Any]:
    if existing is None:
        config = {"description": description, "backend": "onnx",
                  **_serving_defaults(max_batch_size)}
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


def _read_existing(config_path: Path) -> dict[str, Any] | None:
    """The model's current ``config.yaml`` (None when it has none)."""
    if not config_path.exists():
        return None
    try:
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExportError(f"{config_path}: cannot read the existing config: {exc}; fix or "
                          "remove it") from exc
    if not isinstance(loaded, dict):
        raise ExportError(f"{config_path}: expected a mapping; fix or remove it")
    return loaded


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
    config_path = repository / model / "config.yaml"
    existing = _read_existing(config_path)
    config = _config(existing, description=description, labels=labels or {},
                     max_batch_size=max_batch_size, inputs=inputs or [], outputs=outputs or [],
                     path=config_path)
    files = {model_file.name: model_file.read_bytes(), **(extra_files or {})}
    try:
        return publish_version(repository, model, files, config)
    except PublishError as exc:
        raise ExportError(exc.message) from exc


def _run_config(serving: Mapping[str, Any], existing: dict[str, Any] | None,
                description: str, backend: str) -> dict[str, Any]:
    """A run's new config.yaml before its tensors and steps: the existing one's serving
    settings (or the defaults), the description and the backend."""
    if existing is None:
        config = _serving_defaults(int(serving["max_batch_size"]))
    else:
        config = {k: v for k, v in existing.items()
                  if k not in ("inputs", "outputs", "preprocess", "postprocess", "labels")}
    config["description"] = description
    config["backend"] = backend
    return config


#: what a published image model takes (``shipyard publish --input``)
IMAGE_INPUTS = ("bytes", "uint8", "fp32")
_DECODE_STEPS = ("image_decode", "resize", "center_crop")


def image_model_config(
    serving: Mapping[str, Any], existing: dict[str, Any] | None, *, description: str,
    input_kind: str = "bytes", backend: str = "onnx",
) -> dict[str, Any]:
    """The ``config.yaml`` of a torch image run (its ``serving.json``) served as ``input_kind``:

    - ``bytes``: one BYTES ``image`` per row, encoded PNG/JPEG of any size; the server decodes,
      resizes, scales and normalises it with the steps training used;
    - ``uint8``: raw pixels, UINT8 ``[N, H, W, C]`` (FORMAT_NHWC) at the trained size; the
      server scales, normalises and transposes them;
    - ``fp32``: the graph's own input, FP32 ``[N, C, H, W]`` (FORMAT_NCHW), already scaled to
      [0, 1] (and normalised, where normalisation is a step rather than inside the graph).

    Every kind answers the top classes (softmax, top_k, labels steps). An existing config keeps
    its serving settings (batching, instances, version policy)."""
    if input_kind not in IMAGE_INPUTS:
        raise ExportError(f"--input: {input_kind!r} is not one of {list(IMAGE_INPUTS)}")
    config = _run_config(serving, existing, description, backend)
    steps = list(serving["preprocess"])
    image = serving["image"]
    height, width = image["size"]
    if input_kind == "bytes":
        config["preprocess"] = steps
    elif input_kind == "uint8":
        config["preprocess"] = [s for s in steps if next(iter(s)) not in _DECODE_STEPS]
        config["inputs"] = [{"name": "image", "datatype": "UINT8",
                             "shape": [height, width, image["channels"]],
                             "format": "FORMAT_NHWC"}]
    else:
        config["inputs"] = [dict(t) for t in serving["inputs"]]
    config["postprocess"] = list(serving["postprocess"])
    return config


def publish_image_run(
    run_dir: Path, serving: Mapping[str, Any], repository: Path, model: str, *,
    description: str, input_kind: str = "bytes", backend: str = "onnx",
    extra_files: Mapping[str, bytes] | None = None, model_file: Path | None = None,
) -> Published:
    """Publish a torch image run (``serving`` = its ``serving.json``) as the next version of
    ``model``: ``model.onnx`` (backend onnx) or ``model.pt2`` (backend torch) and a
    ``config.yaml`` from :func:`image_model_config`. ``model_file``: another ONNX file to
    publish under the run's model file name (an optimised variant), with the same steps."""
    return _publish_run(
        run_dir, serving, repository, model, backend=backend, extra_files=extra_files,
        model_file=model_file,
        config=lambda existing: image_model_config(
            serving, existing, description=description, input_kind=input_kind,
            backend=backend))


def text_model_config(serving: Mapping[str, Any], existing: dict[str, Any] | None, *,
                      description: str, backend: str = "onnx") -> dict[str, Any]:
    """The ``config.yaml`` of a text run (its ``serving.json``): one BYTES ``text`` per row,
    the run's chain (and tokenizer) as preprocess steps, its postprocess steps, outputs and
    class labels. An existing config keeps its serving settings."""
    config = _run_config(serving, existing, description, backend)
    if serving.get("preprocess"):
        config["preprocess"] = list(serving["preprocess"])
    if serving.get("postprocess"):
        config["postprocess"] = list(serving["postprocess"])
    if serving.get("outputs"):
        config["outputs"] = [dict(t) for t in serving["outputs"]]
    if serving.get("labels"):
        config["labels"] = {k: list(v) for k, v in serving["labels"].items()}
    return config


def publish_text_run(
    run_dir: Path, serving: Mapping[str, Any], repository: Path, model: str, *,
    description: str, backend: str = "onnx", extra_files: Mapping[str, bytes] | None = None,
    model_file: Path | None = None,
) -> Published:
    """Publish a text run (``serving`` = its ``serving.json``) as the next version of
    ``model``: the model file, the files its steps read (``tokenizer.json``) and a
    ``config.yaml`` from :func:`text_model_config`. ``model_file``: another ONNX file to
    publish under the run's model file name (``model_text.onnx``, the tokenizer inside)."""
    files = dict(extra_files or {})
    for name in serving.get("files") or []:
        source = run_dir / name
        if not source.is_file():
            raise ExportError(f"publish: run {str(run_dir)!r} has no {name}, which its "
                              "preprocess steps read; train the run again")
        files[name] = source.read_bytes()
    return _publish_run(
        run_dir, serving, repository, model, backend=backend, extra_files=files,
        model_file=model_file,
        config=lambda existing: text_model_config(serving, existing, description=description,
                                                  backend=backend))


def _publish_run(
    run_dir: Path, serving: Mapping[str, Any], repository: Path, model: str, *,
    backend: str, config: Callable[[dict[str, Any] | None], dict[str, Any]],
    extra_files: Mapping[str, bytes] | None = None, model_file: Path | None = None,
) -> Published:
    """The run's model file for ``backend`` (or ``model_file`` in its place) and the
    ``config.yaml`` that ``config`` makes from the model's current one, as the next version."""
    if not MODEL_NAME_RE.match(model):
        raise ExportError(f"--model: {model!r} is not a valid model name ({NAME_RULE})")
    if backend not in ("onnx", "torch"):
        raise ExportError(f"--backend: {backend!r} is not one of ['onnx', 'torch']")
    name = serving.get("model_file" if backend == "onnx" else "torch_file")
    source = run_dir / name if name else None
    if model_file is not None:
        if backend != "onnx":
            raise ExportError("publish: a model_file is an ONNX model; use backend onnx")
        name, source = name or model_file.name, model_file
    if not name or source is None or not source.is_file():
        raise ExportError(f"publish: run {str(run_dir)!r} has no {backend} model file "
                          f"({name or 'none was exported'}); "
                          + ("publish with --backend torch" if backend == "onnx"
                             else "publish with --backend onnx"))
    if repository.exists() and not repository.is_dir():
        raise ExportError(f"--repo: {str(repository)!r} exists and is not a folder")
    config_path = repository / model / "config.yaml"
    made = config(_read_existing(config_path))
    files = {name: source.read_bytes(), **(extra_files or {})}
    try:
        return publish_version(repository, model, files, made)
    except PublishError as exc:
        raise ExportError(exc.message) from exc
