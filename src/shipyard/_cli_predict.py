"""``shipyard predict`` (batch prediction, :mod:`shipyard.predict`) and ``shipyard bench`` (the
capacity report, :mod:`shipyard.bench`): thin commands; the libraries are imported only when
one of them runs. A user mistake is one line on stderr and exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard._cli_client import CaFile, CertFile, KeyFile, quiet_grpc

__all__ = ["register"]


class _Format(StrEnum):
    """``predict --format``."""

    csv = "csv"
    jsonl = "jsonl"


class _Protocol(StrEnum):
    """``bench --protocol``."""

    rest_json = "rest-json"
    rest_binary = "rest-binary"
    grpc = "grpc"


class _LoadTool(StrEnum):
    """``bench --load-tool``."""

    auto = "auto"
    wrk = "wrk"
    builtin = "builtin"


Token = Annotated[str | None, typer.Option(
    "--token", envvar="SHIPYARD_AUTH_TOKEN", show_default=False,
    help="Bearer token of a server started with --auth-token. [default: none]")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """PredictError / BenchError -> ``error: <message>`` and exit 2; a missing package -> the
    extra to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        typer.echo(f"error: {exc.name!r} is not installed; this command needs "
                   "pip install 'shipyard[serve]' (in-process) or 'shipyard[client]' (a URL)",
                   err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        from shipyard.bench import BenchError
        from shipyard.predict import PredictError

        if isinstance(exc, PredictError | BenchError):
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(2) from exc
        raise


def _progress_bar(total: int | None) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    rate = TextColumn("{task.fields[rate]}")
    columns: list[Any] = [TextColumn("predict"), BarColumn(), MofNCompleteColumn()] if total \
        else [TextColumn("predict"), TextColumn("{task.completed} rows")]
    return Progress(*columns, rate, TimeElapsedColumn(), console=Console(stderr=True),
                    transient=True)


def predict(
    source: Annotated[str, typer.Argument(
        help="A server URL (http(s)://host:port, grpc(s)://host:port), a run directory "
             "(has run.json) or a model's folder / a model repository (loaded in-process).",
        show_default=False, metavar="SOURCE")],
    data: Annotated[Path, typer.Option(
        "--data", help="CSV/TSV or Parquet file (rows), a folder of PNG/JPEG images, or a .txt "
                       "file (one text a line).", show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", show_default=False,
        help="Output file: .csv or .jsonl (or --format). [default: JSON lines on stdout]")
    ] = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="NAME", show_default=False,
        help="The model (a URL or a repository). [default: the only model there]")] = None,
    fmt: Annotated[_Format | None, typer.Option(
        "--format", case_sensitive=False, show_default=False,
        help="Output format. [default: from -o's suffix; jsonl on stdout]")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Rows per request (at most the model's max_batch_size).")
    ] = 64,
    top_k: Annotated[int | None, typer.Option(
        "--top-k", min=1, show_default=False,
        help="Labels per row in JSON lines. [default: every class, or the model's own top k]")
    ] = None,
    id_column: Annotated[str | None, typer.Option(
        "--id-column", metavar="COLUMN", show_default=False,
        help="Tabular data: take each record's id from this column. [default: the row number]")
    ] = None,
    skip_errors: Annotated[bool, typer.Option(
        "--skip-errors", help="Write a bad row's error into its record (an 'error' field / "
                              "column) and go on, instead of stopping with exit 2.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar, notes or summary on stderr.")] = False,
    token: Token = None,
    ca_file: CaFile = None,
    cert_file: CertFile = None,
    key_file: KeyFile = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.001, help="Seconds each request to a server may take.")] = 60.0,
) -> None:
    """Predict every row of a file or folder of unlabelled data: one record per row (its id,
    the best label and its probability and every class's, or the model's raw outputs), in
    input order. A bad row stops the command (exit 2) naming the row, unless --skip-errors."""
    quiet_grpc()
    from shipyard.predict import (
        default_top_k,
        open_source,
        open_writer,
        predict_data,
        read_data,
    )

    with _user_errors():
        model_source = open_source(source, model, token=token, ca_file=ca_file,
                                   cert_file=cert_file, key_file=key_file, timeout_s=timeout)
        try:
            dataset = read_data(data, model_source.info, id_column=id_column)
            every_class = top_k is None and bool(model_source.info.labelled)
            writer = open_writer(output, None if fmt is None else fmt.value, sys.stdout,
                                 every_class=every_class, errors_column=skip_errors)
            if not quiet:
                for note in dataset.notes:
                    typer.echo(f"note: {note}", err=True)
            show = not quiet and sys.stderr.isatty()
            bar = _progress_bar(dataset.total) if show else None
            tick: Callable[[int], None] | None = None
            try:
                if bar is not None:
                    bar.start()
                    task = bar.add_task("predict", total=dataset.total, rate="")

                    def tick(done: int) -> None:
                        speed = bar.tasks[0].speed
                        bar.update(task, completed=done,
                                   rate=f"{speed:,.0f} rows/s" if speed else "")

                summary = predict_data(model_source, dataset, writer, batch_size=batch_size,
                                       top_k=top_k if top_k is not None else
                                       default_top_k(model_source),
                                       skip_errors=skip_errors, progress=tick)
            finally:
                if bar is not None:
                    bar.stop()
                writer.close()
        finally:
            model_source.close()
    if not quiet:
        where = f" -> {output}" if output is not None else ""
        errors = f", {summary.errors} with errors" if summary.errors else ""
        typer.echo(f"predicted {summary.rows} rows{errors} in {summary.seconds:.2f} s "
                   f"({summary.rows_per_s:,.0f} rows/s, {summary.requests} requests, "
                   f"{model_source.where}){where}", err=True)


def bench(
    model: Annotated[str, typer.Argument(help="The model to measure.", show_default=False,
                                            metavar="MODEL")],
    url: Annotated[str | None, typer.Option(
        "--url", show_default=False,
        help="Measure this server (http(s):// for the REST protocols, grpc:// for gRPC). "
             "[default: start 'shipyard serve' on 127.0.0.1 for the run]")] = None,
    model_repository: Annotated[Path | None, typer.Option(
        "--model-repository", show_default=False,
        help="Repository to serve, and where the in-process ceiling loads the model from. "
             "[default: the built-in demo models]")] = None,
    concurrency: Annotated[str, typer.Option(
        "--concurrency", metavar="N,N,...", help="Requests in flight, one level per run.")
    ] = "1,16,64",
    duration: Annotated[float, typer.Option(
        "--duration", min=0.1, max=600, help="Seconds of load per level (wrk: whole seconds, "
                                              "at least 1).")] = 5.0,
    batch: Annotated[int, typer.Option(
        "--batch", min=1, help="Rows per request.")] = 1,
    protocol: Annotated[list[_Protocol] | None, typer.Option(
        "--protocol", case_sensitive=False, show_default=False,
        metavar="<rest-json|rest-binary|grpc>",
        help="Protocol to measure (repeatable). [default: rest-json; rest-binary for an "
             "image model]")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", show_default=False,
        help="Request items: a file or folder as 'shipyard predict' reads them. [default: "
             "zeros/random of the input shape; a drawn digit for an image model, a fixed SMS "
             "for a text model]")] = None,
    load_tool: Annotated[_LoadTool, typer.Option(
        "--load-tool", case_sensitive=False,
        help="REST load generator: wrk when on PATH (auto), or the built-in asyncio one "
             "(always for gRPC).")] = _LoadTool.auto,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", show_default=False,
        help="Folder for bench.json, bench.md and bench.png. [default: "
             "bench/<model>-<timestamp>/]")] = None,
    token: Token = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress lines on stderr.")] = False,
) -> None:
    """The capacity report: served throughput and latency at each concurrency, next to the
    same model called in this process at the same batch (the ceiling), as a table, JSON,
    Markdown and a PNG plot."""
    from shipyard.bench import BenchSettings, parse_concurrency, print_table, run_bench

    with _user_errors():
        settings = BenchSettings(
            model=model, url=url, repository=model_repository,
            concurrency=parse_concurrency(concurrency), duration_s=duration, batch=batch,
            protocols=[p.value for p in protocol] if protocol else None,
            data=data, load_tool=load_tool.value, output=output, token=token)

        def say(line: str) -> None:
            if not quiet:
                typer.echo(line, err=True)

        result = run_bench(settings, say)
    print_table(result)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {result.folder / 'bench.md'} (bench.json"
               f"{', bench.png' if result.plot else ''})")


def register(app: typer.Typer) -> None:
    """Add ``predict`` and ``bench`` to ``app``."""
    app.command(name="predict")(predict)
    app.command(name="bench")(bench)
