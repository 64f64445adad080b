"""Server settings (precedence: CLI > environment (``SHIPYARD_*``) > settings file > defaults).

The model ``config.yaml`` schema is the repository contract's (:mod:`shipyard.repository.config`);
it is re-exported here for the server's own use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
from shipyard.repository.layout import MODEL_NAME_RE, NAME_RULE
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


#: what an auth token may hold: it travels in an HTTP header (printable ASCII, no spaces)
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


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
    default_model: str | None = None
    """Model behind ``POST /predict`` and gRPC ``ModelService.Predict``; null = the
    repository's only model, or ``risk`` (the demo's) when it has several. The start-up log
    says which, and warns when the repository has no such model."""
    model_name: str | None = None
    """Serve ``model_repository`` as this one model where it is a model's own folder rather
    than a repository (KServe mounts one model at ``/mnt/models``): version folders (``1/``)
    beside an optional ``config.yaml``, or the model's files themselves (served as version 1).
    A repository of model folders is served as usual. null = always a repository."""
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
    strict_readiness: bool = False
    """``/v2/health/ready`` (and gRPC ServerReady) only when the server serves at least one
    model and every model it knows has a ready version (Triton's ``--strict-readiness``): a
    Kubernetes or KServe pod whose model failed to load, or whose repository is empty, is not
    sent traffic. false: ready once the start-up loads are done (whatever they gave)."""
    control_token: str | None = Field(None, repr=False)
    """Bearer token that the repository load/unload calls need in explicit mode; once set (in
    any mode), changing the log or trace settings needs it too."""
    workers: int | Literal["auto"] = 1
    """Server processes sharing the HTTP and gRPC ports (``SO_REUSEPORT``), each with its own
    event loop and model instances, under one supervising parent; ``auto`` = the cores this
    process may run on. 1 = this process serves alone (no parent)."""
    http_server: Literal["builtin", "uvicorn"] = "builtin"
    """The HTTP server that runs the REST app: builtin (Shipyard's own HTTP/1.1 server on
    httptools, measured faster) or uvicorn (the widely used one; needs the uvicorn package)."""

    tls_cert: Path | None = None
    """PEM certificate (chain) of the server; with ``tls_key`` both REST and gRPC speak TLS
    only (https, and gRPC with TLS credentials) on their ports."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert`` (unencrypted; keep it readable only by the server)."""
    tls_client_ca: Path | None = None
    """PEM CA certificate(s): with it, TLS is mutual: a client must present a certificate
    signed by one of them, or the handshake fails (both frontends)."""
    auth_token: str | None = Field(None, repr=False)
    """Bearer token every call but the health checks (and ``/metrics``, unless
    ``auth_metrics``) needs: ``Authorization: Bearer <token>`` (gRPC metadata
    ``authorization``); missing or wrong gets 401 / UNAUTHENTICATED. Off when unset. The
    control token, where set, is accepted in its place; the auth token never grants the
    control calls (load, unload, changing log or trace settings)."""
    auth_token_file: Path | None = None
    """File whose content (stripped) is ``auth_token``: keeps the token out of the process
    list and the environment. Give this or ``auth_token``, not both."""
    auth_metrics: bool = False
    """With ``auth_token``: ``/metrics`` needs the token too (health stays open)."""

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, v: str | None) -> str | None:
        if v is not None and not MODEL_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a model name ({NAME_RULE})")
        return v

    @model_validator(mode="after")
    def _auth_token(self) -> ServerSettings:
        # InvalidInput, not ValueError: pydantic would print the whole input, the token too
        if self.auth_token_file is not None:
            if self.auth_token is not None:
                raise InvalidInput("server settings: give auth_token (--auth-token, "
                                   "SHIPYARD_AUTH_TOKEN) or auth_token_file "
                                   "(--auth-token-file), not both")
            try:
                text = self.auth_token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInput(
                    f"--auth-token-file {str(self.auth_token_file)!r}: cannot read it "
                    f"({exc}); pass a file holding the token") from exc
            self.auth_token = text
        if self.auth_token is not None and (len(self.auth_token) < 16
                                            or not _TOKEN_CHARS.fullmatch(self.auth_token)):
            raise InvalidInput(
                f"auth_token (--auth-token, --auth-token-file or SHIPYARD_AUTH_TOKEN) has "
                f"{len(self.auth_token)} characters: it needs at least 16, printable ASCII "
                "without spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        return self

    @field_validator("workers")
    @classmethod
    def _workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"workers must be 1 or more, or 'auto' (the cores), got {v}")
        return v

    def worker_count(self) -> int:
        """``workers`` as a number (``auto``: the cores this process may run on)."""
        if self.workers == "auto":
            return len(os.sched_getaffinity(0))
        return self.workers

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
            _update(merged, _read_settings_file(settings_file))
        env: dict[str, Any] = {}
        for name in cls.model_fields:
            value = os.environ.get(f"SHIPYARD_{name.upper()}")
            if value is not None:
                env[name] = value.split(",") if name == "load_models" else value
        _update(merged, env)
        _update(merged, {k: v for k, v in cli.items() if v is not None and v != []})
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise InvalidInput(format_validation_error(exc, "server settings")) from exc


def _read_settings_file(path: Path) -> dict[str, Any]:
    """The mapping of settings in the YAML file ``path``; :class:`InvalidInput` naming the
    file, the problem and the fix when it is missing, unreadable, not YAML or not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInput(f"--config {str(path)!r}: no such file; pass the path of a YAML "
                           "file of server settings, or leave --config out") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--config {str(path)!r}: cannot read it ({exc}); pass a readable "
                           "UTF-8 YAML file of server settings") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InvalidInput(f"--config {str(path)!r}: not valid YAML{where} ({problem}); fix "
                           "the file (a mapping such as 'http_port: 8000')") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InvalidInput(f"--config {str(path)!r}: expected a mapping of settings (such as "
                           f"'http_port: 8000'), got a {type(loaded).__name__}")
    return loaded


#: settings of which a layer (file, environment, CLI) gives one: it replaces the other
_EITHER = ("auth_token", "auth_token_file")


def _update(merged: dict[str, Any], layer: dict[str, Any]) -> None:
    """Apply a higher-precedence ``layer``: an ``auth_token`` there replaces a lower layer's
    ``auth_token_file`` and the other way round (one layer giving both is an error later)."""
    for name in _EITHER:
        if name in layer:
            for other in _EITHER:
                if other not in layer:
                    merged.pop(other, None)
    merged.update(layer)
