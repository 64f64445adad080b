"""Server settings (precedence: CLI > environment (``SHIPYARD_*``) > settings file > defaults).

The model ``config.yaml`` schema is the repository contract's (:mod:`shipyard.repository.config`);
it is re-exported here for the server's own use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.repository.config import (
    DynamicBatching,
    ModelConfig,
    OnnxRuntimeOptions,
    TensorConfig,
    VersionPolicy,
    Warmup,
    WarmupTensor,
    format_validation_error,
    load_model_config,
)
from shipyard.serving.errors import InvalidInput

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
    """Bearer token that the repository load/unload calls need in explicit mode; once set (in
    any mode), changing the log or trace settings needs it too."""
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
