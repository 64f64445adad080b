"""The ``shipyard`` command: thin argument parsing over the library."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from shipyard._cli_client import register as register_client_commands
from shipyard._cli_predict import register as register_predict_commands
from shipyard._cli_train import register as register_training_commands

# rich_markup_mode None: click's plain help, where a flag reads as a flag (typer's rich help
# prints every flag as taking a "<bool>" value)
app = typer.Typer(help="Shipyard: from raw data to a fast, reliable model server.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)

__all__ = ["app", "main"]


class _HttpServer(StrEnum):
    """The choices of ``--http-server`` (ServerSettings.http_server)."""

    builtin = "builtin"
    uvicorn = "uvicorn"


class _LogLevel(StrEnum):
    """The choices of ``--log-level`` (ServerSettings.log_level)."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class _LogFormat(StrEnum):
    """The choices of ``--log-format`` (ServerSettings.log_format)."""

    text = "text"
    json = "json"


class _ModelControl(StrEnum):
    """The choices of ``--model-control`` (ServerSettings.model_control)."""

    none = "none"
    poll = "poll"
    explicit = "explicit"


def _d(text: str, default: object) -> str:
    """Help text with the default it falls back to: serve's options default to None (so the
    settings file and the environment can give them), so the help says ServerSettings'
    default itself; a test checks that each one matches."""
    return f"{text} [default: {default}]"


def _print_version(value: bool) -> None:
    """``--version``: print the installed distribution's version and exit 0."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"shipyard {version('shipyard')}")
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("shipyard (not installed: no version metadata; pip install -e .)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    """Shipyard command line."""


@app.command()
def serve(
    model_repository: Annotated[Path | None, typer.Option(
        "--model-repository", help=_d("Model repository root.", "the built-in demo models")
    )] = None,
    http_port: Annotated[int | None, typer.Option(
        help=_d("REST port (0 = any free port).", 8000))] = None,
    grpc_port: Annotated[int | None, typer.Option(
        help=_d("gRPC port (0 = any free port).", 8001))] = None,
    host: Annotated[str | None, typer.Option(help=_d("Address to listen on.", "0.0.0.0"))] = None,
    default_model: Annotated[str | None, typer.Option(
        help=_d("Model behind POST /predict and gRPC ModelService.Predict.",
                "the repository's only model, else risk"))] = None,
    model_name: Annotated[str | None, typer.Option(
        help="Serve --model-repository as this one model when it is a model's own folder "
             "(version folders, or the model files: KServe's /mnt/models).")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(
        help=_d("Largest request body / gRPC message (bytes).", 67108864))] = None,
    max_json_bytes: Annotated[int | None, typer.Option(
        help=_d("Largest JSON part of a REST request (bytes); use binary tensors beyond.",
                16777216))
    ] = None,
    grace_period: Annotated[float | None, typer.Option(
        "--grace-period", help=_d("Seconds in-flight requests get after SIGTERM.", 30.0))
    ] = None,
    log_level: Annotated[_LogLevel | None, typer.Option(
        case_sensitive=False, help=_d("Log verbosity.", "info"))] = None,
    log_format: Annotated[_LogFormat | None, typer.Option(
        case_sensitive=False, help=_d("text, or json (one object a line).", "text"))] = None,
    model_control: Annotated[_ModelControl | None, typer.Option(
        case_sensitive=False,
        help=_d("none (load all at start), poll (also hot-reload), explicit (load/unload "
                "API).", "none"))
    ] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Hot-reload: same as --model-control poll.")] = False,
    poll_interval: Annotated[float | None, typer.Option(
        "--poll-interval", help=_d("Seconds between repository scans in poll mode.", 1.0))
    ] = None,
    load_model: Annotated[list[str] | None, typer.Option(
        "--load-model", metavar="MODEL",
        help="explicit mode: model to load at start-up (repeatable).")
    ] = None,
    control_token: Annotated[str | None, typer.Option(
        help="Bearer token for repository load/unload (env SHIPYARD_CONTROL_TOKEN).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain): serve REST and gRPC over TLS only.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert (unencrypted).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        "--tls-client-ca", help="PEM CA: mutual TLS, clients must present a certificate "
                                "it signed.")] = None,
    auth_token: Annotated[str | None, typer.Option(
        help="Bearer token every call but health (and /metrics) needs "
             "(env SHIPYARD_AUTH_TOKEN).")] = None,
    auth_token_file: Annotated[Path | None, typer.Option(
        "--auth-token-file", help="File holding the auth token (keeps it out of ps).")
    ] = None,
    auth_metrics: Annotated[bool | None, typer.Option(
        "--auth-metrics/--no-auth-metrics",
        help=_d("With an auth token, /metrics needs it too.", "no"))] = None,
    strict_readiness: Annotated[bool | None, typer.Option(
        "--strict-readiness/--no-strict-readiness",
        help=_d("Ready only with at least one model and every model ready (Triton's).",
                "no"))] = None,
    workers: Annotated[str | None, typer.Option(
        "--workers", help=_d("Server processes sharing both ports (SO_REUSEPORT) under a "
                             "supervising parent; 'auto' = the cores.", 1))] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML file of server settings (CLI and SHIPYARD_* env win).")] = None,
    http_server: Annotated[_HttpServer | None, typer.Option(
        "--http-server", case_sensitive=False,
        help=_d("HTTP server for the REST API: builtin (Shipyard's own, measured faster) or "
                "uvicorn.", "builtin"))] = None,
) -> None:
    """Serve a model repository over KServe V2 REST and gRPC."""
    from shipyard.serving.config import ServerSettings
    from shipyard.serving.errors import ShipyardError
    from shipyard.serving.http.servers import missing
    from shipyard.serving.logs import configure_logging
    from shipyard.serving.ports import port_problem
    from shipyard.serving.tls import load_tls

    try:
        settings = ServerSettings.resolve(
            {
                "model_repository": model_repository, "http_port": http_port,
                "grpc_port": grpc_port, "host": host, "default_model": default_model,
                "model_name": model_name,
                "max_body_bytes": max_body_bytes, "max_json_bytes": max_json_bytes,
                "grace_period_s": grace_period,
                "log_level": None if log_level is None else log_level.value,
                "log_format": None if log_format is None else log_format.value,
                "model_control": "poll" if watch else (
                    None if model_control is None else model_control.value),
                "poll_interval_s": poll_interval, "load_models": load_model or [],
                "control_token": control_token,
                "tls_cert": tls_cert, "tls_key": tls_key, "tls_client_ca": tls_client_ca,
                "auth_token": auth_token, "auth_token_file": auth_token_file,
                "auth_metrics": auth_metrics, "strict_readiness": strict_readiness,
                "http_server": None if http_server is None else http_server.value,
                "workers": workers,
            },
            config,
        )
        load_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)  # fail early
    except ShipyardError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    problem = missing(settings.http_server)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    if not settings.model_repository.is_dir():
        typer.echo(f"error: model repository {str(settings.model_repository)!r} is not a "
                   "directory; pass --model-repository DIR", err=True)
        raise typer.Exit(2)
    problem = port_problem(settings)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    # logging only now: a check above that fails must not leave a handler on a stream that
    # closes with this command (an in-process caller's captured stderr)
    configure_logging(settings.log_level, settings.log_format)
    if settings.worker_count() > 1:
        from shipyard.serving.workers import supervise

        raise typer.Exit(supervise(settings))
    from shipyard.serving.server import run  # grpc and the rest: only once the checks pass

    run(settings)


register_training_commands(app)
register_client_commands(app)
register_predict_commands(app)


def main() -> None:
    """The ``shipyard`` entry point: a mistake on the command line (an unknown option, a value
    of the wrong type or not among the choices) is one line on stderr and exit 2, as every
    other user mistake is, not click's usage block."""
    try:  # typer >= 0.2x carries its own copy of click; older ones use click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - depends on the typer installed
        from click import exceptions as click_errors  # type: ignore[no-redef]

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # bare 'shipyard': the help, exit 2
        typer.echo(exc.format_message(), err=True)
        raise SystemExit(2) from None
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "shipyard"
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        typer.echo(f"error: {message} (see '{where} --help')", err=True)
        raise SystemExit(2) from None
    except typer.Abort:  # Ctrl-C at a prompt
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
