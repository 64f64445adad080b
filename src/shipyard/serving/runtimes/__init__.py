"""Model runtimes: one module per backend, all behind :class:`Runtime`, found by name here.

Adding a backend is one module with a :class:`Runtime` subclass plus one entry in
:data:`RUNTIMES`. A runtime module imports its framework only when a model loads (in
``load``), so resolving a backend imports no framework.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.runtimes.base import DeviceKind, Runtime

__all__ = ["RUNTIMES", "DeviceKind", "Runtime", "create_runtime", "runtime_class"]

#: backend name -> "module:Class"
RUNTIMES: dict[str, str] = {
    "onnx": "shipyard.serving.runtimes.onnx:OnnxRuntime",
    "python": "shipyard.serving.runtimes.python:PythonRuntime",
    "pmml": "shipyard.serving.runtimes.pmml:PmmlRuntime",
    "torch": "shipyard.serving.runtimes.torch:TorchRuntime",
}


def runtime_class(backend: str) -> type[Runtime]:
    """The runtime class of a backend name; InvalidInput naming the known ones."""
    target = RUNTIMES.get(backend)
    if target is None:
        raise InvalidInput(
            f"unknown backend {backend!r}; known backends: {sorted(RUNTIMES)}"
        )
    module, _, name = target.partition(":")
    cls: type[Runtime] = getattr(importlib.import_module(module), name)
    return cls


def _candidates(config: ModelConfig) -> list[tuple[type[Runtime], tuple[str, ...]]]:
    """The runtimes that may read a version folder, each with the file names it would read:
    ``config.backend``'s alone, else every runtime (whose file name matches
    ``default_model_filename``'s kind, when that is given)."""
    wanted = config.default_model_filename
    if config.backend is not None:
        cls = runtime_class(config.backend)
        return [(cls, (wanted,) if wanted else cls.filenames)]
    pairs = []
    for cls in (runtime_class(b) for b in RUNTIMES):
        if wanted is None:
            pairs.append((cls, cls.filenames))
        elif Path(wanted).suffix in {Path(n).suffix for n in cls.filenames}:
            pairs.append((cls, (wanted,)))  # a file name of the backend's kind, e.g. risk.onnx
    return pairs


def _pick(version_dir: Path, config: ModelConfig) -> tuple[type[Runtime], Path]:
    candidates = _candidates(config)
    for cls, names in candidates:
        for filename in names:
            if (version_dir / filename).is_file():
                return cls, version_dir / filename
    if config.backend is not None:
        (_, given), = candidates
        raise InvalidInput(
            f"model {config.name!r}: model file {' or '.join(repr(n) for n in given)} not "
            f"found in version folder {str(version_dir)!r} (backend {config.backend!r}); put "
            "the model file there or set default_model_filename"
        )
    known = [n for b in RUNTIMES for n in runtime_class(b).filenames]
    if config.default_model_filename is not None:
        raise InvalidInput(
            f"model {config.name!r}: default_model_filename "
            f"{config.default_model_filename!r} is no file a backend reads by its name "
            f"({', '.join(known)}); set backend in config.yaml"
        )
    raise InvalidInput(
        f"model {config.name!r}: model file not found in version folder {str(version_dir)!r}: "
        f"none of {', '.join(known)} is there; add the model file, or set backend (and "
        "default_model_filename) in config.yaml"
    )


def create_runtime(version_dir: Path, config: ModelConfig) -> Runtime:
    """The runtime for a version folder: ``config.backend``'s, or the one whose file name is
    there. Raises InvalidInput when no runtime fits, or when the runtime runs code from the
    model folder and the config does not say ``trust: true`` (before any of it is read)."""
    cls, path = _pick(version_dir, config)
    if cls.runs_model_code and not config.trust:
        raise InvalidInput(
            f"model {config.name!r} is a {cls.backend} model, which runs code from the model "
            "folder; set trust: true in its config.yaml if you trust that code"
        )
    return cls(path, config)
