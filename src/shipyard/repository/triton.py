"""Triton's model configuration, as JSON or as ``config.pbtxt``, mapped onto ``config.yaml``'s
schema (:class:`~shipyard.repository.config.ModelConfig`).

Two sources, one mapping:

* JSON (the repository extension's load ``config`` parameter): ``config.yaml``'s own fields, or
  Triton's model configuration JSON (what ``/v2/models/{m}/config`` serves and
  ``tritonclient``'s ``get_model_config`` returns), or a mix (:func:`config_from_json`). A
  Triton field this server cannot honour is refused naming it, unless it holds its default
  (empty, 0, false), which asks for nothing.
* ``config.pbtxt`` in a model folder (:func:`config_from_pbtxt`, :func:`load_triton_config`):
  Triton's fields only, in protobuf text format (:mod:`shipyard.repository.pbtxt`). A field
  whose absence changes only how fast or where the model runs (``optimization``,
  ``model_warmup``, ``response_cache``, ``instance_group``'s ``gpus``, ``label_filename``, ...)
  is ignored with one warning naming it and its line; a field that changes what the model
  accepts or answers (``sequence_batching``, ``ensemble_scheduling``, ``reshape``, decoupled
  transactions, ...) is refused, as is any name that is not Triton's.

Translated: ``name``, ``platform`` / ``backend``, ``max_batch_size``, ``input`` / ``output``
(``data_type`` -> the V2 datatype, ``dims``, ``format``), ``default_model_filename``,
``dynamic_batching`` (``preferred_batch_size``, ``max_queue_delay_microseconds``,
``default_queue_policy``'s ``max_queue_size`` and ``default_timeout_microseconds``),
``instance_group`` (one group: ``count``, ``kind`` -> the device), ``version_policy`` and
``parameters`` (``string_value``; for ONNX models the ONNX Runtime backend's
``intra_op_thread_count`` / ``inter_op_thread_count``). The result is validated by the same
schema as ``config.yaml``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shipyard.protocol.errors import InvalidInput
from shipyard.protocol.types import DATATYPES
from shipyard.repository.config import ModelConfig, parse_model_config
from shipyard.repository.pbtxt import parse_pbtxt

__all__ = ["config_from_json", "config_from_pbtxt", "load_triton_config"]

#: Triton's platform -> our backend
_PLATFORMS = {"onnxruntime_onnx": "onnx", "pytorch_libtorch": "torch", "torch_export": "torch",
              "pmml": "pmml", "python": "python", "ensemble": "ensemble"}
#: Triton's backend names -> ours (ours pass as they are)
_BACKENDS = {"onnxruntime": "onnx", "pytorch": "torch"}
#: the backends a config.pbtxt may name, and why the others cannot be read from one
_PBTXT_REFUSED = {
    "python": "Triton's Python models (TritonPythonModel.execute with "
              "triton_python_backend_utils) do not run here; this server's python backend "
              "takes a class Model with predict(inputs) and needs trust: true, so write its "
              "config.yaml instead",
    "ensemble": "write the ensemble in config.yaml (backend: ensemble, ensemble: {steps: "
                "[...]}); Triton's ensemble_scheduling is not read",
    "pmml": "Triton has no PMML platform; write a config.yaml",
}
#: Triton's top-level fields that only change how fast or where a model runs: a config.pbtxt
#: giving them is served with a warning (a load's JSON config giving them is refused)
_SOFT = {
    "optimization": "ONNX Runtime and torch optimise with their own settings here (config.yaml's "
                    "onnxruntime: graph_optimization_level, providers)",
    "model_warmup": "each version is warmed up with zeros shaped from its metadata (config.yaml's "
                    "warmup: inputs gives other values)",
    "response_cache": "this server caches no responses",
    "metric_tags": "the metrics carry model and version labels only",
    "model_metrics": "the metrics carry model and version labels only",
    "model_repository_agents": "no repository agents run here",
    "model_operations": "no operations run at load",
    "runtime": "the runtime follows from platform / backend",
    "cc_model_filenames": "every device reads default_model_filename (or the backend's default "
                          "file)",
}
#: Triton's top-level fields that change what a model accepts or answers: always refused
_HARD = {
    "sequence_batching": "stateful sequence models are not supported by this server",
    "ensemble_scheduling": "write the ensemble in config.yaml (backend: ensemble, ensemble: "
                           "{steps: [...]})",
    "batch_input": "batch inputs are not supported by this server",
    "batch_output": "batch outputs are not supported by this server",
    "model_transaction_policy": "decoupled models (several responses per request) are not "
                                "supported by this server",
}
#: fields of a Triton input / output that may appear with their default value only
_TENSOR_DEFAULTS = ("reshape", "is_shape_tensor", "allow_ragged_batch", "optional",
                    "is_non_linear_format_io")
#: fields of dynamic_batching and its default_queue_policy that only change scheduling
_BATCHING_SOFT = ("preserve_ordering", "priority_levels", "default_priority_level",
                  "priority_queue_policy")
#: fields of an instance_group that only say which devices / host
_GROUP_SOFT = ("gpus", "secondary_devices", "profile", "passive", "host_policy")
#: the ONNX Runtime backend's parameters -> config.yaml's onnxruntime options
_ORT_PARAMETERS = {"intra_op_thread_count": "intra_op_threads",
                   "inter_op_thread_count": "inter_op_threads"}


def _empty(value: Any) -> bool:
    """Triton's JSON shows a field left at its default as empty / 0 / false (64-bit integers
    as strings: "0")."""
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0")
    return value is None or value == []


class _Translation:
    """One configuration being translated: where it came from, how strict, what it warned."""

    def __init__(self, where: str, *, pbtxt: bool, lines: dict[str, int] | None = None) -> None:
        self.where = where
        #: a config.pbtxt: Triton's fields only; fields that change only speed warn
        self.pbtxt = pbtxt
        self.lines = lines or {}
        self.warnings: list[str] = []

    def _at(self, field: str) -> str:
        line = self.lines.get(field.split(".")[0])
        return f"{self.where}:{line}" if line is not None else self.where

    def refuse(self, field: str, value: Any, hint: str) -> InvalidInput:
        """The error for ``field``: where, the field, the fix and the bad value."""
        return InvalidInput(f"{self._at(field)}: {field}: {hint} (got {value!r})")

    def soft(self, field: str, value: Any, hint: str) -> None:
        """A field this server does not honour but that changes only how fast or where the
        model runs: a warning for a config.pbtxt, refused in a load's JSON config."""
        if _empty(value):
            return
        if not self.pbtxt:
            raise self.refuse(field, value, "not supported by this server")
        self.warnings.append(f"{self._at(field)}: Triton's field {field!r} is ignored: {hint}")

    def integer(self, field: str, value: Any) -> int:
        """An integer (Triton's JSON writes 64-bit integers as strings)."""
        if isinstance(value, bool):
            raise self.refuse(field, value, "expected an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise self.refuse(field, value, "expected an integer")

    def datatype(self, field: str, value: Any) -> str:
        """Triton's TYPE_ name -> the V2 datatype."""
        if isinstance(value, str):
            name = value.removeprefix("TYPE_")
            name = "BYTES" if name == "STRING" else name
            if name in DATATYPES:
                return name
        raise self.refuse(field, value, f"unknown data_type; expected TYPE_ and one of "
                          f"{[*sorted(set(DATATYPES) - {'BYTES'}), 'STRING']}")

    # -- sections -----------------------------------------------------------------------------

    def tensors(self, field: str, value: Any, *, inputs: bool) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.refuse(field, value, "expected a list of tensors")
        out = []
        for i, t in enumerate(value):
            at = f"{field}.{i}"
            if not isinstance(t, dict):
                raise self.refuse(at, t, "expected an object")
            if not self.pbtxt and ("datatype" in t or "shape" in t):  # config.yaml's own form
                out.append(t)
                continue
            spec: dict[str, Any] = {"name": t.get("name"),
                                    "datatype": self.datatype(f"{at}.data_type",
                                                              t.get("data_type")),
                                    "shape": [self.integer(f"{at}.dims", d)
                                              for d in t.get("dims") or []]}
            for key, v in t.items():
                if key in ("name", "data_type", "dims"):
                    continue
                if key == "format" and inputs:
                    if v not in ("", None):
                        spec["format"] = v
                elif key == "label_filename":
                    if v and not self.pbtxt:
                        raise self.refuse(f"{at}.label_filename", v,
                                          "label files are not read; give the class names in "
                                          "'labels' ({output: [names]})")
                    self.soft(f"{at}.label_filename", v, "label files are not read; give the "
                              "class names in config.yaml's labels: {output: [names]}")
                elif key in _TENSOR_DEFAULTS:
                    if not _empty(v):
                        raise self.refuse(f"{at}.{key}", v, "not supported by this server"
                                          + ("; declare the model's own shape in dims"
                                             if key == "reshape" else ""))
                else:
                    raise self.refuse(f"{at}.{key}", v, "unknown field")
            out.append(spec)
        return out

    def batching(self, value: Any) -> tuple[Any, int | None]:
        """dynamic_batching -> (config.yaml's dynamic_batching, default_timeout_ms or None)."""
        if not self.pbtxt and (not isinstance(value, dict) or not {
                "preferred_batch_size", "max_queue_delay_microseconds",
                "default_queue_policy"} & set(value)):
            return value, None  # config.yaml's own form (or nonsense the schema will name)
        if not isinstance(value, dict):
            raise self.refuse("dynamic_batching", value, "expected a message { ... }")
        out: dict[str, Any] = {}
        timeout_ms = None
        for key, v in value.items():
            at = f"dynamic_batching.{key}"
            if key == "preferred_batch_size":
                if not isinstance(v, list):
                    raise self.refuse(at, v, "expected a list of batch sizes")
                out["preferred_batch_sizes"] = [self.integer(at, n) for n in v]
            elif key == "max_queue_delay_microseconds":
                out["max_queue_delay_us"] = self.integer(at, v)
            elif key == "default_queue_policy":
                if not isinstance(v, dict):
                    raise self.refuse(at, v, "expected an object")
                timeout_ms = self.queue_policy(at, v, out)
            elif self.pbtxt and key in _BATCHING_SOFT:
                self.soft(at, v, "requests are queued in arrival order, one priority level")
            elif self.pbtxt:
                raise self.refuse(at, v, "not a field of Triton's dynamic_batching")
            elif not _empty(v):
                raise self.refuse(at, v, "not supported by this server (its batcher takes "
                                  "preferred_batch_size, max_queue_delay_microseconds and "
                                  "default_queue_policy.max_queue_size)")
        return out, timeout_ms

    def queue_policy(self, at: str, value: dict[str, Any], out: dict[str, Any]) -> int | None:
        timeout_us = 0
        for key, v in value.items():
            if key == "max_queue_size":
                out["max_queue_size"] = self.integer(f"{at}.max_queue_size", v)
            elif key == "default_timeout_microseconds" and self.pbtxt:
                timeout_us = self.integer(f"{at}.{key}", v)
            elif key == "timeout_action" and self.pbtxt and v in ("REJECT", "DELAY"):
                if v == "DELAY":
                    raise self.refuse(f"{at}.{key}", v, "a timed-out request is always "
                                      "refused here (REJECT)")
            elif key == "allow_timeout_override" and self.pbtxt:
                continue  # a request's own timeout always wins here
            elif not _empty(v):
                raise self.refuse(f"{at}.{key}", v, "not supported by this server")
        return math.ceil(timeout_us / 1000) if timeout_us > 0 else None

    def policy(self, value: Any) -> Any:
        if not isinstance(value, dict) or len(value) != 1:
            if self.pbtxt:
                raise self.refuse("version_policy", value, "give one of latest { num_versions: "
                                  "N }, all { } or specific { versions: [...] }")
            return value
        (kind, v), = value.items()
        if kind == "latest" and isinstance(v, dict):
            return {"latest": self.integer("version_policy.latest.num_versions",
                                       v.get("num_versions", 1))}
        if kind == "all" and isinstance(v, dict):
            return {"all": True}
        if kind == "specific" and isinstance(v, dict):
            versions = v.get("versions") or []
            if not isinstance(versions, list):
                raise self.refuse("version_policy.specific.versions", versions,
                                  "expected a list of versions")
            return {"specific": [self.integer("version_policy.specific.versions", n)
                                 for n in versions]}
        if self.pbtxt:
            raise self.refuse(f"version_policy.{kind}", v, "expected latest { num_versions: N },"
                              " all { } or specific { versions: [...] }")
        return value

    def instances(self, value: Any, backend: str | None) -> tuple[int, dict[str, Any]]:
        """Triton's instance_group -> (instances, onnxruntime/parameters fields it implies)."""
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
            raise self.refuse("instance_group", value, "give one group (this server runs "
                              "every instance of a version on the same device)")
        group = value[0]
        extra: dict[str, Any] = {}
        for key, v in group.items():
            at = f"instance_group.0.{key}"
            if key in ("name", "count"):
                continue
            if key == "kind":
                if v in ("KIND_AUTO", "", None):
                    continue
                if v not in ("KIND_CPU", "KIND_GPU"):
                    raise self.refuse(at, v, "expected KIND_AUTO, KIND_CPU or KIND_GPU")
                gpu = v == "KIND_GPU"
                if backend == "onnx":
                    extra["onnxruntime"] = {"providers": ["CUDAExecutionProvider" if gpu
                                                          else "CPUExecutionProvider"]}
                elif backend == "torch":
                    extra["parameters"] = {"device": "cuda" if gpu else "cpu"}
                elif gpu or backend is None:
                    raise self.refuse(at, v, "the device is chosen for onnx and torch models "
                                      "only; give 'backend' (onnx or torch) or use KIND_AUTO")
            elif self.pbtxt and key in _GROUP_SOFT:
                self.soft(at, v, "every instance runs on the one device kind gives")
            elif not _empty(v):
                raise self.refuse(at, v, "not supported by this server")
        count = self.integer("instance_group.0.count", group.get("count", 1))
        return count, extra

    def parameters(self, value: Any, backend: str | None, doc: dict[str, Any]) -> Any:
        """Triton's parameters map ({key: {string_value: v}}) -> {key: v}; the ONNX Runtime
        backend's thread counts -> onnxruntime options."""
        if not isinstance(value, dict):
            return value
        out = {k: v["string_value"] if isinstance(v, dict) and set(v) == {"string_value"}
               else v for k, v in value.items()}
        if backend == "onnx":
            for key, option in _ORT_PARAMETERS.items():
                if key in out:
                    doc.setdefault("onnxruntime", {})[option] = self.integer(
                        f"parameters.{key}", out.pop(key))
        return out

    # -- the whole document -------------------------------------------------------------------

    def backend(self, raw: dict[str, Any]) -> str | None:
        backend = raw.get("backend") or None
        if isinstance(backend, str):
            backend = _BACKENDS.get(backend, backend)
        platform = raw.get("platform") or None
        if platform is not None:
            mapped = _PLATFORMS.get(platform) if isinstance(platform, str) else None
            if mapped is None or (self.pbtxt and mapped == "pmml"):
                runs = sorted(set(_PLATFORMS) - (set(_PBTXT_REFUSED) if self.pbtxt else set()))
                raise self.refuse("platform", platform, f"this server runs the platforms {runs}")
            if backend is not None and backend != mapped:
                raise self.refuse("platform", platform, f"disagrees with backend {backend!r}")
            backend = mapped
        if self.pbtxt and backend is not None:
            if backend in _PBTXT_REFUSED:
                raise self.refuse("backend" if raw.get("backend") else "platform",
                                  raw.get("backend") or raw.get("platform"),
                                  _PBTXT_REFUSED[backend])
            if backend not in ("onnx", "torch"):
                raise self.refuse("backend", raw.get("backend"), "this server runs Triton's "
                                  "backends onnxruntime and pytorch")
        return backend

    def translate(self, raw: dict[str, Any], model_name: str) -> ModelConfig:
        doc: dict[str, Any] = {}
        backend = self.backend(raw)
        if backend is not None:
            doc["backend"] = backend
        timeout_ms = None
        for key, value in raw.items():
            if key in ("backend", "platform"):
                continue
            if key in _HARD:
                if not _empty(value):
                    raise self.refuse(key, value, _HARD[key] if self.pbtxt else
                                      "Triton's field is not supported by this server; leave "
                                      "it out")
            elif key in _SOFT:
                if not self.pbtxt and not _empty(value):
                    raise self.refuse(key, value, "Triton's field is not supported by this "
                                      "server; leave it out")
                self.soft(key, value, _SOFT[key])
            elif key == "input":
                doc["inputs"] = self.tensors(key, value, inputs=True)
            elif key == "output":
                doc["outputs"] = self.tensors(key, value, inputs=False)
            elif key == "dynamic_batching":
                doc[key], timeout_ms = self.batching(value)
            elif key == "version_policy":
                doc[key] = self.policy(value)
            elif key == "instance_group":
                continue  # below, once the backend and the other fields are known
            elif key == "parameters":
                doc[key] = self.parameters(value, backend, doc)
            elif key == "default_model_filename" and value == "":
                continue
            elif not self.pbtxt or key in ("name", "max_batch_size", "default_model_filename"):
                doc[key] = value
            else:
                raise self.refuse(key, value, "not a field of Triton's model configuration "
                                  "(model_config.proto); check its spelling")
        if timeout_ms is not None:
            doc.setdefault("default_timeout_ms", timeout_ms)
        if self.pbtxt and "max_batch_size" not in raw and ("input" in raw or "output" in raw):
            doc["max_batch_size"] = 0  # Triton's default: dims are then the whole shapes
        if "instance_group" in raw:
            count, extra = self.instances(raw["instance_group"], backend)
            doc["instances"] = count
            for section, fields in extra.items():
                given = doc.setdefault(section, {})
                if not isinstance(given, dict):
                    continue  # the schema names it
                for field, value in fields.items():
                    if given.setdefault(field, value) != value:
                        raise self.refuse(f"{section}.{field}", given[field],
                                          f"disagrees with instance_group's kind, which means "
                                          f"{value!r}")
        if doc.get("trust"):
            raise self.refuse("trust", doc["trust"], "a configuration sent with a load call "
                              "cannot trust code; only config.yaml on the server's disk can")
        return parse_model_config(doc, model_name, self.where)


def config_from_json(text: str, model_name: str, where: str) -> ModelConfig:
    """Validate a model configuration given as JSON text (``config.yaml``'s fields and/or
    Triton's) for ``model_name``; raise InvalidInput naming ``where`` and the field."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a JSON object of fields, got "
                           f"{type(raw).__name__}")
    return _Translation(where, pbtxt=False).translate(raw, model_name)


def config_from_pbtxt(text: str, model_name: str, where: str) -> tuple[ModelConfig, list[str]]:
    """Translate a Triton ``config.pbtxt`` (its text) for the model ``model_name``: the
    configuration, and one warning per field that was ignored (each naming ``where``, the line
    and the field). Raise InvalidInput naming the line for a syntax error, a refused field
    or a value the schema does not take."""
    document = parse_pbtxt(text, where)
    translation = _Translation(where, pbtxt=True, lines=document.lines)
    config = translation.translate(document.fields, model_name)
    return config, translation.warnings


def load_triton_config(path: Path, model_name: str) -> tuple[ModelConfig, list[str]]:
    """Read a model folder's ``config.pbtxt`` (see :func:`config_from_pbtxt`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from exc
    return config_from_pbtxt(text, model_name, str(path))
