"""``shipyard models list|load|unload`` and ``shipyard health``: thin commands over
:class:`shipyard.client.Client`, against a running server (REST or gRPC, by ``--url``).

Registered on the main typer app by :func:`register`; the client is imported only when one of
these commands runs. A user mistake (no server at the URL, an unknown model, a missing token)
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from shipyard.client import Client

__all__ = ["quiet_grpc", "register"]

#: the server ``shipyard serve`` starts by default (REST)
DEFAULT_URL = "http://127.0.0.1:8000"


class _Format(StrEnum):
    """How ``models list`` prints the index."""

    table = "table"
    json = "json"


Url = Annotated[str, typer.Option(
    "--url", envvar="SHIPYARD_URL",
    help="The server: http(s)://host:port (REST) or grpc(s)://host:port (gRPC).")]
Token = Annotated[str | None, typer.Option(
    "--token", envvar="SHIPYARD_AUTH_TOKEN", show_default=False,
    help="Bearer token of a server started with --auth-token. [default: none]")]
ControlToken = Annotated[str | None, typer.Option(
    "--control-token", envvar="SHIPYARD_CONTROL_TOKEN", show_default=False,
    help="Bearer token for load/unload (the server's --control-token). [default: --token]")]
CaFile = Annotated[Path | None, typer.Option(
    "--ca-file", show_default=False,
    help="PEM CA that signed the server's certificate (https://, grpcs://). "
         "[default: certifi's CAs (REST), gRPC's own roots]")]
CertFile = Annotated[Path | None, typer.Option(
    "--cert-file", show_default=False,
    help="PEM certificate (chain) this client presents to a server started with "
         "--tls-client-ca (mutual TLS); with --key-file. [default: none]")]
KeyFile = Annotated[Path | None, typer.Option(
    "--key-file", show_default=False,
    help="The unencrypted PEM private key of --cert-file. [default: none]")]
Timeout = Annotated[float, typer.Option(
    "--timeout", min=0.001, help="Seconds the command may take, retries included.")]


@contextmanager
def _user_errors(url: str) -> Iterator[None]:
    """A client error -> ``error: <message>`` and exit status 2 (never a traceback)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        typer.echo(f"error: {exc.name!r} is not installed; these commands need "
                   "pip install 'shipyard[client]'", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        from shipyard.client import ClientError, Unavailable

        if not isinstance(exc, ClientError):
            raise
        hint = ""
        if isinstance(exc, Unavailable) and "cannot reach" in exc.message:
            hint = " (is `shipyard serve` running there? pass --url)"
        typer.echo(f"error: {exc.message}{hint}", err=True)
        raise typer.Exit(2) from exc


def quiet_grpc() -> None:
    """Keep gRPC's C core from logging on stderr below ERROR (it writes an INFO line for every
    failed TLS handshake, beside the command's own one-line error). Read once, when grpc is
    first imported, so call this before; a GRPC_VERBOSITY the user set wins."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _client(url: str, token: str | None, control_token: str | None, ca_file: Path | None,
            cert_file: Path | None, key_file: Path | None, timeout: float) -> Client:
    quiet_grpc()
    from shipyard.client import Client

    return Client(url, token=token, control_token=control_token, ca_file=ca_file,
                  cert_file=cert_file, key_file=key_file, timeout_s=timeout)


def register(app: typer.Typer) -> None:
    """Add ``models`` (list, load, unload) and ``health`` to ``app``."""
    models = typer.Typer(help="List, load and unload the models of a running server.",
                         no_args_is_help=True)
    app.add_typer(models, name="models")

    @models.command("list")
    def list_models(url: Url = DEFAULT_URL, token: Token = None,
                    ca_file: CaFile = None, cert_file: CertFile = None,
                    key_file: KeyFile = None, timeout: Timeout = 10.0,
                    output: Annotated[_Format, typer.Option(
                        "--format", case_sensitive=False, help="How to print the index.")
                    ] = _Format.table) -> None:
        """The models the server knows: name, version, state and why it is not ready."""
        with _user_errors(url), _client(url, token, None, ca_file, cert_file, key_file,
                                        timeout) as client:
            rows = client.models()
        if output is _Format.json:
            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"models at {url}", title_justify="left")
        for column in ("name", "version", "state", "reason"):
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(row.get(c, "")) for c in ("name", "version", "state", "reason")))
        Console().print(table)

    @models.command("load")
    def load(model: Annotated[str, typer.Argument(help="The model's name (its folder).")],
             url: Url = DEFAULT_URL, token: Token = None, control_token: ControlToken = None,
             ca_file: CaFile = None, cert_file: CertFile = None, key_file: KeyFile = None,
             timeout: Timeout = 120.0) -> None:
        """Load or reload a model (a server started with --model-control explicit)."""
        with _user_errors(url), _client(url, token, control_token, ca_file, cert_file, key_file,
                                        timeout) as client:
            client.load(model)
        typer.echo(f"loaded {model!r}")

    @models.command("unload")
    def unload(model: Annotated[str, typer.Argument(help="The model's name.")],
               url: Url = DEFAULT_URL, token: Token = None, control_token: ControlToken = None,
               ca_file: CaFile = None, cert_file: CertFile = None, key_file: KeyFile = None,
             timeout: Timeout = 120.0) -> None:
        """Unload a model once its queued requests finish (--model-control explicit)."""
        with _user_errors(url), _client(url, token, control_token, ca_file, cert_file, key_file,
                                        timeout) as client:
            client.unload(model)
        typer.echo(f"unloaded {model!r}")

    @app.command()
    def health(url: Url = DEFAULT_URL, token: Token = None, ca_file: CaFile = None,
               cert_file: CertFile = None, key_file: KeyFile = None, timeout: Timeout = 10.0,
               model: Annotated[list[str] | None, typer.Option(
                   "--model", show_default=False, metavar="MODEL",
                   help="Also check this model's readiness (repeatable). [default: none]")
               ] = None) -> None:
        """Whether the server is live and ready (and each --model): exit 0 when all are
        ready, 1 when something is not, 2 when the server cannot be asked."""
        with _user_errors(url), _client(url, token, None, ca_file, cert_file, key_file,
                                        timeout) as client:
            live, ready = client.live(), client.ready()
            states = {m: client.model_ready(m) for m in model or ()}
        typer.echo(f"{client.url}: live {'yes' if live else 'no'}, "
                   f"ready {'yes' if ready else 'no'}")
        for name, ok in states.items():
            typer.echo(f"model {name!r}: ready {'yes' if ok else 'no'}")
        if not (live and ready and all(states.values())):
            raise typer.Exit(1)
