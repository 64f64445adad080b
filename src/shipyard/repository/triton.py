"""A model configuration given as JSON (the repository extension's load ``config`` parameter).

The JSON is either ``config.yaml``'s own fields, or Triton's model configuration JSON (what
``/v2/models/{m}/config`` serves and ``tritonclient``'s ``get_model_config`` returns), or a mix.
Triton's fields that map cleanly onto :class:`~shipyard.repository.config.ModelConfig` are
translated (``input``/``output``, ``data_type``/``dims``, ``dynamic_batching``'s
``preferred_batch_size`` and ``max_queue_delay_microseconds``, ``version_policy``,
``instance_group``'s ``count``, ``parameters``' ``string_value``, ``platform``); the result is
validated by the same schema as ``config.yaml``. A Triton field this server cannot honour is
refused naming it, unless it holds its default (empty, 0, false), which asks for nothing.
"""

from __future__ import annotations

import json
from typing import Any

from shipyard.protocol.errors import InvalidInput
from shipyard.protocol.types import DATATYPES
from shipyard.repository.config import ModelConfig, parse_model_config

__all__ = ["config_from_json"]

#: Triton's platform -> our backend
_PLATFORMS = {"onnxruntime_onnx": "onnx", "pytorch_libtorch": "torch", "torch_export": "torch",
              "pmml": "pmml", "python": "python", "ensemble": "ensemble"}
#: Triton's backend names -> ours (ours pass as they are)
_BACKENDS = {"onnxruntime": "onnx", "pytorch": "torch"}
#: Triton's fields (top level) this server has no counterpart for
_UNSUPPORTED = ("optimization", "model_warmup", "sequence_batching", "ensemble_scheduling",
                "response_cache", "model_transaction_policy", "model_repository_agents",
                "model_operations", "batch_input", "batch_output", "cc_model_filenames",
                "metric_tags", "runtime", "model_metrics")
#: fields of a Triton input / output that may appear with their default value only
_TENSOR_DEFAULTS = ("reshape", "is_shape_tensor", "allow_ragged_batch", "optional",
                    "is_non_linear_format_io")


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


def _refuse(where: str, field: str, value: Any, hint: str) -> InvalidInput:
    return InvalidInput(f"{where}: {field}: {hint} (got {value!r})")


def _int(where: str, field: str, value: Any) -> int:
    """Triton's JSON writes 64-bit integers as strings."""
    if isinstance(value, bool):
        raise _refuse(where, field, value, "expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise _refuse(where, field, value, "expected an integer")


def _datatype(where: str, field: str, value: Any) -> str:
    if isinstance(value, str):
        name = value.removeprefix("TYPE_")
        name = "BYTES" if name == "STRING" else name
        if name in DATATYPES:
            return name
    raise _refuse(where, field, value, f"unknown data_type; expected TYPE_ and one of "
                  f"{[*sorted(set(DATATYPES) - {'BYTES'}), 'STRING']}")


def _tensors(where: str, field: str, value: Any, *, inputs: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _refuse(where, field, value, "expected a list of tensors")
    out = []
    for i, t in enumerate(value):
        at = f"{field}.{i}"
        if not isinstance(t, dict):
            raise _refuse(where, at, t, "expected an object")
        if "datatype" in t or "shape" in t:  # config.yaml's own form
            out.append(t)
            continue
        spec: dict[str, Any] = {"name": t.get("name"),
                                "datatype": _datatype(where, f"{at}.data_type",
                                                      t.get("data_type")),
                                "shape": [_int(where, f"{at}.dims", d)
                                          for d in t.get("dims") or []]}
        for key, v in t.items():
            if key in ("name", "data_type", "dims"):
                continue
            if key == "format" and inputs:
                if v not in ("", None):
                    spec["format"] = v
            elif key == "label_filename":
                if v:
                    raise _refuse(where, f"{at}.label_filename", v,
                                  "label files are not read; give the class names in 'labels' "
                                  "({output: [names]})")
            elif key in _TENSOR_DEFAULTS:
                if not _empty(v):
                    raise _refuse(where, f"{at}.{key}", v, "not supported by this server")
            else:
                raise _refuse(where, f"{at}.{key}", v, "unknown field")
        out.append(spec)
    return out


def _batching(where: str, value: Any) -> Any:
    if not isinstance(value, dict) or not {"preferred_batch_size",
                                            "max_queue_delay_microseconds",
                                            "default_queue_policy"} & set(value):
        return value  # config.yaml's own form (or nonsense the schema will name)
    out: dict[str, Any] = {}
    for key, v in value.items():
        at = f"dynamic_batching.{key}"
        if key == "preferred_batch_size":
            if not isinstance(v, list):
                raise _refuse(where, at, v, "expected a list of batch sizes")
            out["preferred_batch_sizes"] = [_int(where, at, s) for s in v]
        elif key == "max_queue_delay_microseconds":
            out["max_queue_delay_us"] = _int(where, at, v)
        elif key == "default_queue_policy":
            if not isinstance(v, dict):
                raise _refuse(where, at, v, "expected an object")
            for qkey, qv in v.items():
                if qkey == "max_queue_size":
                    out["max_queue_size"] = _int(where, f"{at}.max_queue_size", qv)
                elif not _empty(qv):
                    raise _refuse(where, f"{at}.{qkey}", qv, "not supported by this server")
        elif not _empty(v):
            raise _refuse(where, at, v, "not supported by this server (its batcher takes "
                          "preferred_batch_size, max_queue_delay_microseconds and "
                          "default_queue_policy.max_queue_size)")
    return out


def _policy(where: str, value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        return value
    (kind, v), = value.items()
    if kind == "latest" and isinstance(v, dict):
        return {"latest": _int(where, "version_policy.latest.num_versions",
                               v.get("num_versions", 1))}
    if kind == "all" and isinstance(v, dict):
        return {"all": True}
    if kind == "specific" and isinstance(v, dict):
        versions = v.get("versions") or []
        if not isinstance(versions, list):
            raise _refuse(where, "version_policy.specific.versions", versions,
                          "expected a list of versions")
        return {"specific": [_int(where, "version_policy.specific.versions", n)
                             for n in versions]}
    return value


def _instances(where: str, value: Any, backend: str | None) -> tuple[int, dict[str, Any]]:
    """Triton's instance_group -> (instances, onnxruntime/parameters fields it implies)."""
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise _refuse(where, "instance_group", value, "give one group (this server runs every "
                      "instance of a version on the same device)")
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
                raise _refuse(where, at, v, "expected KIND_AUTO, KIND_CPU or KIND_GPU")
            gpu = v == "KIND_GPU"
            if backend == "onnx":
                extra["onnxruntime"] = {"providers": ["CUDAExecutionProvider" if gpu
                                                      else "CPUExecutionProvider"]}
            elif backend == "torch":
                extra["parameters"] = {"device": "cuda" if gpu else "cpu"}
            elif gpu or backend is None:
                raise _refuse(where, at, v, "the device is chosen for onnx and torch models "
                              "only; give 'backend' (onnx or torch) or use KIND_AUTO")
        elif not _empty(v):
            raise _refuse(where, at, v, "not supported by this server")
    count = _int(where, "instance_group.0.count", group.get("count", 1))
    return count, extra


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
    doc: dict[str, Any] = {}
    backend = raw.get("backend") or None
    if isinstance(backend, str):
        backend = _BACKENDS.get(backend, backend)
    platform = raw.get("platform") or None
    if platform is not None:
        mapped = _PLATFORMS.get(platform) if isinstance(platform, str) else None
        if mapped is None:
            raise _refuse(where, "platform", platform,
                          f"this server runs the platforms {sorted(_PLATFORMS)}")
        if backend is not None and backend != mapped:
            raise _refuse(where, "platform", platform, f"disagrees with backend {backend!r}")
        backend = mapped
    if backend is not None:
        doc["backend"] = backend
    for key, value in raw.items():
        if key in ("backend", "platform"):
            continue
        if key in _UNSUPPORTED:
            if not _empty(value):
                raise _refuse(where, key, value, "Triton's field is not supported by this "
                              "server; leave it out")
        elif key == "input":
            doc["inputs"] = _tensors(where, key, value, inputs=True)
        elif key == "output":
            doc["outputs"] = _tensors(where, key, value, inputs=False)
        elif key == "dynamic_batching":
            doc[key] = _batching(where, value)
        elif key == "version_policy":
            doc[key] = _policy(where, value)
        elif key == "instance_group":
            continue  # below, once the backend and the other fields are known
        elif key == "parameters" and isinstance(value, dict):
            doc[key] = {k: v["string_value"] if isinstance(v, dict) and set(v) == {"string_value"}
                        else v for k, v in value.items()}
        elif key == "default_model_filename" and value == "":
            continue
        else:
            doc[key] = value
    if "instance_group" in raw:
        count, extra = _instances(where, raw["instance_group"], backend)
        doc["instances"] = count
        for section, fields in extra.items():
            given = doc.setdefault(section, {})
            if not isinstance(given, dict):
                continue  # the schema names it
            for field, value in fields.items():
                if given.setdefault(field, value) != value:
                    raise _refuse(where, f"{section}.{field}", given[field],
                                  f"disagrees with instance_group's kind, which means {value!r}")
    if doc.get("trust"):
        raise _refuse(where, "trust", doc["trust"], "a configuration sent with a load call "
                      "cannot trust code; only config.yaml on the server's disk can")
    return parse_model_config(doc, model_name, where)
