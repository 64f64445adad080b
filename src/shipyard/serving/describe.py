"""Protocol-free descriptions of the server and its models, in KServe V2 / Triton JSON shapes.

The REST frontend returns these dicts as JSON; the gRPC frontend parses the same dicts into
protobuf messages, so both protocols always agree.
"""

from __future__ import annotations

from typing import Any

from shipyard import __version__
from shipyard.serving.model import ModelVersion
from shipyard.serving.stats import Duration, ModelStats

__all__ = [
    "model_config", "model_metadata", "model_properties", "model_statistics", "server_metadata",
]

#: the extensions this server implements (and only those)
EXTENSIONS = ["binary_tensor_data", "classification", "logging", "model_configuration",
              "model_repository", "statistics", "system_shared_memory", "trace"]


def server_metadata() -> dict[str, Any]:
    return {"name": "shipyard", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(mv: ModelVersion, versions: list[int]) -> dict[str, Any]:
    return {
        "name": mv.name,
        "versions": [str(v) for v in versions],
        "platform": mv.platform,
        "inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}
                   for s in mv.inputs],
        "outputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}
                    for s in mv.outputs],
        "properties": model_properties(mv),
    }


def _step_names(steps: list[str | dict[str, Any]]) -> str:
    return ",".join(step if isinstance(step, str) else ",".join(step) for step in steps)


def model_properties(mv: ModelVersion) -> dict[str, str]:
    """The OIP's optional model ``properties`` (strings only): what the config says about how
    the model is served, where there is something to say."""
    cfg = mv.config
    props: dict[str, str] = {}
    backend = mv.runtime_type.backend if mv.runtime_type is not None else cfg.backend
    if backend:
        props["backend"] = backend
    if mv.platform != "ensemble":
        props["device_kind"] = mv.device_kind
        props["instances"] = str(cfg.instances)
    props["max_batch_size"] = str(mv.max_batch_size)
    if mv.max_batch_size > 0:
        batching = cfg.dynamic_batching
        props["dynamic_batching"] = "true"
        props["max_queue_delay_us"] = str(batching.max_queue_delay_us)
        if batching.preferred_batch_sizes:
            props["preferred_batch_sizes"] = ",".join(map(str, batching.preferred_batch_sizes))
    for output, labels in sorted(cfg.labels.items()):
        props[f"labels.{output}"] = str(len(labels))
    if cfg.preprocess:
        props["preprocess"] = _step_names(cfg.preprocess)
    if cfg.postprocess:
        props["postprocess"] = _step_names(cfg.postprocess)
    if cfg.ensemble is not None:
        props["ensemble_steps"] = ",".join(
            step.model if step.version is None else f"{step.model}:{step.version}"
            for step in cfg.ensemble.steps)
    if cfg.default_timeout_ms is not None:
        props["default_timeout_ms"] = str(cfg.default_timeout_ms)
    return props


def _type(datatype: str) -> str:
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config(mv: ModelVersion) -> dict[str, Any]:
    """Triton's model configuration JSON (what perf_analyzer and tritonclient read)."""
    cfg = mv.config
    batching = mv.max_batch_size > 0

    def dims(shape: tuple[int, ...]) -> list[int]:
        return list(shape[1:] if batching else shape)

    # config.yaml's inputs describe what callers send (a pipeline's or an ensemble's too)
    formats = {t.name: t.format for t in cfg.inputs or ()}

    doc: dict[str, Any] = {
        "name": mv.name,
        "platform": mv.platform,
        "backend": mv.triton_backend,
        "max_batch_size": mv.max_batch_size,
        "input": [{"name": s.name, "data_type": _type(s.datatype),
                   "format": formats.get(s.name, "FORMAT_NONE"), "dims": dims(s.shape)}
                  for s in mv.inputs],
        "output": [{"name": s.name, "data_type": _type(s.datatype), "dims": dims(s.shape)}
                   for s in mv.outputs],
        "instance_group": [{"name": f"{mv.name}_0", "kind": mv.device_kind,
                            "count": cfg.instances}],
        "default_model_filename": mv.model_file.name if mv.model_file is not None else "",
        "version_policy": _policy(mv),
        "parameters": {},
    }
    if batching:
        doc["dynamic_batching"] = {
            "preferred_batch_size": cfg.dynamic_batching.preferred_batch_sizes,
            "max_queue_delay_microseconds": cfg.dynamic_batching.max_queue_delay_us,
        }
    return doc


def _policy(mv: ModelVersion) -> dict[str, Any]:
    p = mv.config.version_policy
    if p.all:
        return {"all": {}}
    if p.specific is not None:
        return {"specific": {"versions": p.specific}}
    return {"latest": {"num_versions": p.latest or 1}}


def _dur(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


def model_statistics(mv: ModelVersion, stats: ModelStats | None = None) -> dict[str, Any]:
    """Triton's statistics JSON for one model version: its own counters, or ``stats`` (e.g.
    summed over the workers of ``--workers N``)."""
    s: ModelStats = mv.stats if stats is None else stats
    empty = Duration()
    return {
        "name": mv.name,
        "version": str(mv.version),
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": _dur(s.success),
            "fail": _dur(s.fail),
            "queue": _dur(s.queue),
            "compute_input": _dur(s.compute_input),
            "compute_infer": _dur(s.compute_infer),
            "compute_output": _dur(s.compute_output),
            "cache_hit": _dur(empty),
            "cache_miss": _dur(empty),
        },
        "batch_stats": [
            {"batch_size": size, "compute_input": _dur(i), "compute_infer": _dur(n),
             "compute_output": _dur(o)}
            for size, (i, n, o) in sorted(s.batch.items())
        ],
        "memory_usage": [],
    }
