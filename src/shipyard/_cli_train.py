"""``shipyard train / evaluate / publish``: thin commands over :mod:`shipyard.api`.

Registered on the main typer app by :func:`register`; the training stack is imported only when
one of these commands runs, so ``shipyard serve`` never loads it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Any :class:`shipyard.errors.ExperimentError` -> ``error: <message>`` and exit status 2;
    a missing extra -> a hint."""
    try:
        yield
    except ModuleNotFoundError as exc:
        typer.echo(f"error: {exc.name!r} is not installed; the training commands need "
                   "pip install 'shipyard[train]'", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:
        from shipyard.errors import ExperimentError

        if isinstance(exc, ExperimentError):
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(2) from exc
        raise


def _progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _table(title: str, metrics: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    splits = [s for s, m in metrics.items() if m]
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    names: list[str] = []
    for s in splits:
        names += [k for k in metrics[s] if k not in names]
    for n in names:
        values = [metrics[s].get(n) for s in splits]
        table.add_row(n, *("n/a" if v is None else f"{v:.4f}" for v in values))
    Console().print(table)


def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.", exists=True,
                                           dir_okay=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Run directory (new or empty); default "
        "<output.dir>/<name>-<timestamp>.")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config field by its dotted path, e.g. --set "
        "data.source=other.csv --set model.params.C=0.5 (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json to stdout.")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue an interrupted torch run (its directory) from its newest "
        "checkpoint, with the same experiment.")] = None,
) -> None:
    """Train an experiment into a new run directory.

    It holds the config, pipeline, model.onnx, metrics.json, report.md, plots and log.
    """
    from shipyard import api

    with _user_errors():
        run = api.train(config, overrides=overrides or [], output=output,
                        progress=_progress(quiet), resume=resume)
    if as_json:
        typer.echo(json.dumps(run.metrics, indent=2))
        return
    _table(f"{run.experiment.name}: {run.experiment.task}", run.metrics)
    export = run.export
    if export.get("converted"):
        agreement = export.get("agreement", {})
        verdict = "agree" if agreement.get("passed") else "DISAGREE"
        diff = agreement.get("max_abs_diff")
        typer.echo(f"ONNX: {run.onnx_path} ({export.get('bytes', 0) / 1024:.1f} KiB); ONNX "
                   f"Runtime and {export.get('reference', 'scikit-learn')} {verdict} on the test "
                   f"split (max abs diff "
                   f"{'n/a' if diff is None else f'{diff:.2e}'})")
    else:
        typer.echo(f"ONNX: not exported: {export.get('error')}")
    typer.echo(f"run: {run.path}")
    typer.echo(f"report: {run.path / 'report.md'}")


def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'shipyard train'.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="CSV or Parquet file with the feature and target columns; default: the "
        "run's test split.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a trained run on new data, or on its test split again.

    Writes metrics, report and plots to <run>/evaluations/<name>/.
    """
    from shipyard import api

    with _user_errors():
        result = api.evaluate(run, data=data, progress=_progress(quiet))
    if as_json:
        typer.echo(json.dumps(result.metrics, indent=2))
        return
    _table(f"evaluation on {result.data}", {"data" if data else "test": result.metrics})
    typer.echo(f"report: {result.path / 'report.md'}")


def publish(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'shipyard train'.")],
    repo: Annotated[Path, typer.Option("--repo", help="Model repository root (created if "
                                       "missing); what 'shipyard serve' serves.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Model name (folder); default: the experiment name.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Publish even if ONNX Runtime and scikit-learn (or torch) disagreed."
    )] = False,
    input: Annotated[str, typer.Option(
        "--input", help="Image runs: what the served model takes: bytes (encoded PNG/JPEG, "
        "decoded on the server), uint8 (NHWC pixels) or fp32 (the graph's NCHW tensor).")
    ] = "bytes",
    backend: Annotated[str, typer.Option(
        "--backend", help="Image runs: onnx (model.onnx) or torch (model.pt2).")] = "onnx",
) -> None:
    """Publish a run's ONNX model as the next version in a model repository.

    Atomic: written to a hidden folder, then renamed; a server never sees half a version.
    """
    from shipyard import api

    with _user_errors():
        published = api.publish(run, repo, model=model, force=force, input=input,
                                backend=backend)
    typer.echo(f"published {published.model} version {published.version}: {published.path}")


_COMMANDS: list[tuple[str, Callable[..., None]]] = [
    ("train", train), ("evaluate", evaluate), ("publish", publish),
]


def register(app: typer.Typer) -> None:
    """Add train, evaluate and publish to ``app``."""
    for name, func in _COMMANDS:
        app.command(name=name)(func)
