"""Model configuration (``config.yaml``) and server settings.

A model's ``config.yaml`` is optional for ONNX models: what it leaves out is read from the graph.
Precedence: CLI > environment (``SHIPYARD_*``) > settings file > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shipyard.serving.errors import InvalidInput
from shipyard.serving.types import DATATYPES

__all__ = [
    "DynamicBatching",
    "ModelConfig",
    "OnnxRuntimeOptions",
    "ServerSettings",
    "TensorConfig",
    "VersionPolicy",
    "Warmup",
    "WarmupTensor",
    "demo_repository",
    "format_validation_error",
    "load_model_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorConfig(_Strict):
    """An input or output declared in ``config.yaml`` (overrides what the graph says)."""

    name: str
    """Tensor name as the model knows it."""
    datatype: str
    """KServe V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES."""
    shape: list[int]
    """Shape without the batch dimension when ``max_batch_size > 0``; -1 for any size."""

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str) -> str:
        if v not in DATATYPES:
            raise ValueError(f"unknown datatype {v!r}; expected one of {sorted(DATATYPES)}")
        return v


class DynamicBatching(_Strict):
    """How concurrent requests are merged into one model execution."""

    max_queue_delay_us: int = Field(0, ge=0)
    """How long the oldest queued request may wait for others to join its batch (microseconds).
    0 = greedy: run as soon as an instance is free, with whatever is queued."""
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    """Batch sizes worth waiting for; a batch of one of these sizes runs without delay."""
    max_queue_size: int = Field(1024, ge=0)
    """Requests waiting beyond this are refused at once (HTTP 429 / RESOURCE_EXHAUSTED);
    0 = unbounded."""


class OnnxRuntimeOptions(_Strict):
    """ONNX Runtime session options."""

    intra_op_threads: int = Field(1, ge=0)
    """Threads inside one operator (0 = ONNX Runtime's default, all cores)."""
    inter_op_threads: int = Field(1, ge=0)
    """Threads across independent operators (0 = ONNX Runtime's default)."""
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    """How hard ONNX Runtime optimises the graph at load time."""
    providers: list[str] = Field(default_factory=list)
    """Execution providers in order of preference; empty = CUDA when available, else CPU."""


class VersionPolicy(_Strict):
    """Which versions of a model are served: exactly one of the three forms."""

    latest: int | None = Field(None, ge=1)
    """Serve the newest N versions."""
    specific: list[int] | None = None
    """Serve exactly these versions."""
    all: bool = False
    """Serve every version found."""

    @model_validator(mode="after")
    def _one_form(self) -> VersionPolicy:
        given = sum([self.latest is not None, self.specific is not None, self.all])
        if given > 1:
            raise ValueError("give only one of 'latest', 'specific' or 'all'")
        return self

    def select(self, versions: list[int]) -> list[int]:
        """The versions to serve, newest first, out of those on disk."""
        newest_first = sorted(versions, reverse=True)
        if self.all:
            return newest_first
        if self.specific is not None:
            wanted = set(self.specific)
            return [v for v in newest_first if v in wanted]
        return newest_first[: self.latest or 1]


class WarmupTensor(_Strict):
    """One input of the warm-up request."""

    shape: list[int]
    """Full shape, batch dimension included."""
    data: list[Any]
    """Values, flat or nested as ``shape`` (V2 JSON form)."""


class Warmup(_Strict):
    """The request run once after loading, before a version serves traffic."""

    enabled: bool = True
    """Run a warm-up request (a version that fails it is not served)."""
    inputs: dict[str, WarmupTensor] = Field(default_factory=dict)
    """Inputs by name; inputs left out get zeros (empty strings) with dynamic dims = 1."""


class ModelConfig(_Strict):
    """A model's ``config.yaml``. Served back (translated) at ``/v2/models/{m}/config``."""

    name: str = ""
    """Model name; always the repository folder name (a different value here is an error)."""
    backend: Literal["onnx"] = "onnx"
    """Runtime that executes the model."""
    description: str = ""
    """Free text shown in metadata."""
    default_model_filename: str = "model.onnx"
    """File inside each version directory."""
    max_batch_size: int | None = Field(None, ge=0)
    """Largest batch one execution takes; 0 = the model does its own batching (no batcher).
    Left out: 32 when every input's first dimension is dynamic in the graph, else 0."""
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    """Batching and queueing; applies when ``max_batch_size > 0`` (the queue bound always)."""
    instances: int = Field(1, ge=1, le=64)
    """Concurrent executions of each version (each a runtime session)."""
    onnxruntime: OnnxRuntimeOptions = Field(default_factory=OnnxRuntimeOptions)
    """ONNX Runtime session options."""
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    """Which versions are served (default: the newest one)."""
    inputs: list[TensorConfig] | None = None
    """Inputs; left out = read from the model file."""
    outputs: list[TensorConfig] | None = None
    """Outputs; left out = read from the model file."""
    labels: dict[str, list[str]] = Field(default_factory=dict)
    """Class names per classification output (index -> name)."""
    default_timeout_ms: int | None = Field(None, gt=0)
    """Deadline for requests that set none (queue time counts)."""
    warmup: Warmup = Field(default_factory=Warmup)
    """Warm-up request run after loading (default: zeros shaped from the metadata)."""


def format_validation_error(err: ValidationError, where: str) -> str:
    """One line per problem: the field path, the bad value, what is allowed."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        value = e.get("input")
        parts.append(f"{loc}: {msg} (got {value!r})")
    return f"{where}: " + "; ".join(parts)


def load_model_config(path: Path, model_name: str) -> ModelConfig:
    """Read and validate ``config.yaml``; raise InvalidInput with a clear message."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    if raw.get("name", model_name) != model_name:
        raise InvalidInput(
            f"{path}: name {raw['name']!r} differs from the folder name {model_name!r}; "
            "remove 'name' or rename the folder"
        )
    raw["name"] = model_name
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(format_validation_error(exc, str(path))) from exc


def demo_repository() -> Path:
    """The built-in demo model repository shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "demo" / "repository"


class ServerSettings(BaseModel):
    """Server settings. Build with :meth:`resolve` to apply env and file precedence."""

    model_config = ConfigDict(extra="forbid")

    model_repository: Path = Field(default_factory=demo_repository)
    """Root of the model repository (``<root>/<model>/<version>/model.onnx``)."""
    host: str = "0.0.0.0"
    """Address both frontends listen on."""
    http_port: int = Field(8000, ge=0, le=65535)
    """REST port (0 = pick a free one; the log says which)."""
    grpc_port: int = Field(8001, ge=0, le=65535)
    """gRPC port (0 = pick a free one; the log says which)."""
    default_model: str = "risk"
    """Model behind ``POST /predict`` and gRPC ``ModelService.Predict``."""
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    """Largest request body / gRPC message accepted (bytes)."""
    max_json_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """Largest JSON part of a REST request (bytes). Parsed JSON numbers take about 16x their
    text in memory, so large tensors should use the binary extension; 413 beyond this."""
    switch_interval_s: float = Field(0.0005, gt=0, le=0.1)
    """Python's GIL switch interval in the server process. Smaller than Python's 5 ms default
    so that a worker thread back from inference gets the GIL soon while the event loop is
    busy (measured: +15-20% REST throughput at concurrency 16 on 2 cores)."""
    grace_period_s: float = Field(30.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight requests may take before the process exits."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log verbosity."""
    log_format: Literal["text", "json"] = "text"
    """Log lines as text or as one JSON object per line."""
    model_control: Literal["none", "poll", "explicit"] = "none"
    """none: load every model at start-up; poll: also watch the repository and hot-reload;
    explicit: load only ``load_models`` and then only on repository load/unload calls."""
    poll_interval_s: float = Field(1.0, gt=0)
    """How often ``poll`` mode rescans the repository (seconds)."""
    load_models: list[str] = Field(default_factory=list)
    """explicit mode: models loaded at start-up (the server is ready once they are)."""
    control_token: str | None = None
    """Bearer token that the repository load/unload/index calls need in explicit mode."""
    http_server: Literal["builtin", "uvicorn"] = "builtin"
    """The HTTP server that runs the REST app: builtin (Shipyard's own HTTP/1.1 server on
    httptools, measured faster) or uvicorn (the widely used one; needs the uvicorn package)."""

    @model_validator(mode="after")
    def _explicit_needs_token(self) -> ServerSettings:
        if self.model_control == "explicit" and not self.control_token:
            raise ValueError(
                "model_control 'explicit' needs control_token (--control-token or "
                "SHIPYARD_CONTROL_TOKEN): repository load/unload calls are refused without it"
            )
        if self.control_token is not None and len(self.control_token) < 16:
            raise ValueError("control_token must be at least 16 characters")
        return self

    @classmethod
    def resolve(
        cls, cli: dict[str, Any], settings_file: Path | None = None
    ) -> ServerSettings:
        """Merge defaults < file < environment (``SHIPYARD_<FIELD>``) < CLI (None = not given)."""
        merged: dict[str, Any] = {}
        if settings_file is not None:
            loaded = yaml.safe_load(settings_file.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise InvalidInput(f"{settings_file}: expected a mapping of settings")
            merged.update(loaded)
        for name in cls.model_fields:
            env = os.environ.get(f"SHIPYARD_{name.upper()}")
            if env is not None:
                merged[name] = env.split(",") if name == "load_models" else env
        merged.update({k: v for k, v in cli.items() if v is not None and v != []})
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise InvalidInput(format_validation_error(exc, "server settings")) from exc
