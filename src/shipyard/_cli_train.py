"""``shipyard train / evaluate / optimise / publish``: thin commands over :mod:`shipyard.api`.

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
        "--set", metavar="KEY=VALUE", help="Override a config field by its dotted path, e.g. --set "
        "data.source=other.csv --set model.params.C=0.5 (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json to stdout.")] = False,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Continue an interrupted torch run (its directory) from its newest "
        "checkpoint, with the same experiment.")] = None,
    nproc_per_node: Annotated[int | None, typer.Option(
        "--nproc-per-node", help="Torch runs: train data-parallel in this many processes on "
        "this node (torch.distributed, DistributedDataParallel; gloo on CPU, NCCL on CUDA). "
        "training.batch_size is the global batch, split evenly over all processes.")] = None,
    nnodes: Annotated[int, typer.Option(
        "--nnodes", help="With --nproc-per-node: machines taking part (each runs this "
        "command with its own --node-rank).")] = 1,
    node_rank: Annotated[int, typer.Option(
        "--node-rank", help="With --nnodes: this machine's index, 0..nnodes-1 (node 0 writes "
        "the run).")] = 0,
    master_addr: Annotated[str | None, typer.Option(
        "--master-addr", help="With --nnodes > 1: address of node 0.")] = None,
    master_port: Annotated[int | None, typer.Option(
        "--master-port", help="Rendezvous port on node 0 (default: a free port on one node, "
        "29500 across nodes).")] = None,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Torch runs: train data-parallel under Ray Train's TorchTrainer (needs "
        "shipyard[ray]); on the Ray at --ray-address, else a local Ray started here.")] = False,
    num_workers: Annotated[int | None, typer.Option(
        "--num-workers", help="With --ray: Ray Train workers (default 1); training.batch_size "
        "is the global batch, split evenly over them.")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --ray: the Ray cluster to join (ray://HOST:10001, or "
        "auto for the one 'ray start' runs here); default a local Ray.")] = None,
    ray_gpu: Annotated[bool, typer.Option(
        "--ray-gpu", help="With --ray: one GPU per worker (NCCL).")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace --output when it holds an earlier run (finished or "
        "failed; it has train.log); any other non-empty folder is still refused.")] = False,
) -> None:
    """Train an experiment into a new run directory.

    It holds the config, pipeline, model.onnx, metrics.json, report.md, plots and log.
    """
    from shipyard import api

    multi = nnodes != 1 or node_rank != 0 or master_addr is not None or master_port is not None
    with _user_errors():
        if nproc_per_node is None and multi:
            from shipyard.errors import ConfigError

            raise ConfigError("--nnodes, --node-rank, --master-addr and --master-port go with "
                              "--nproc-per-node N; add it (the processes on this node)")
        _check_ray_options(ray, num_workers, ray_address, ray_gpu, nproc_per_node, resume)
        if overwrite:
            _overwrite(output, resume)
        if ray:
            run = api.train_ray(config, num_workers=1 if num_workers is None else num_workers,
                                overrides=overrides or [], output=output,
                                address=ray_address, use_gpu=ray_gpu)
        elif nproc_per_node is not None:
            from shipyard.training.distributed import Launch

            launch = Launch(nproc_per_node, nnodes, node_rank, master_addr, master_port)
            parallel = api.train_parallel(config, launch, overrides=overrides or [],
                                          output=output, progress=_progress(quiet),
                                          resume=resume)
            if parallel is None:
                typer.echo(f"node {node_rank}: done (node 0 writes the run)")
                return
            run = parallel
        elif _under_torchrun():
            run_dir = _torchrun_rank(config, overrides or [], output, quiet, resume)
            if run_dir is None:
                return
            from shipyard.training.run import Run

            run = Run.load(run_dir)
        else:
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
    graph = export.get("text_graph")
    if graph:
        if graph.get("file"):
            agreement = graph.get("agreement") or {}
            verdict = "agrees" if agreement.get("passed") else "DISAGREES"
            typer.echo(f"tokenizer in the graph: {run.path / graph['file']}; it {verdict} with "
                       f"the tokenize step and torch on the test split "
                       f"({graph.get('ids', {}).get('mismatches')} rows with other ids)")
        else:
            typer.echo(f"tokenizer in the graph: not made: {graph.get('error')}")
    typer.echo(f"run: {run.path}")
    typer.echo(f"report: {run.path / 'report.md'}")


def _overwrite(output: Path | None, resume: Path | None) -> None:
    """``--overwrite``: clear ``output`` when it holds an earlier run, once, before any
    process of the run starts."""
    from shipyard.errors import ConfigError
    from shipyard.training.run import clear_run_dir

    if output is None or resume is not None:
        raise ConfigError("--overwrite replaces the folder --output names; give --output "
                          "RUN_DIR (and no --resume, which continues a run in place)")
    if _under_torchrun():
        raise ConfigError("--overwrite under torchrun: every rank would remove the folder "
                          "rank 0 writes; remove it before torchrun starts instead")
    if clear_run_dir(output):
        typer.echo(f"--overwrite: removed the earlier run in {output}", err=True)


def _check_ray_options(ray: bool, num_workers: int | None, ray_address: str | None,
                       ray_gpu: bool, nproc_per_node: int | None, resume: Path | None) -> None:
    """A ConfigError for a --ray option that cannot work with the others."""
    from shipyard.errors import ConfigError

    if not ray:
        given = [name for name, value in (("--num-workers", num_workers is not None),
                                           ("--ray-address", ray_address is not None),
                                           ("--ray-gpu", ray_gpu)) if value]
        if given:
            raise ConfigError(f"{given[0]} goes with --ray; add --ray (or use --nproc-per-node "
                              "N for torch.distributed without Ray)")
        return
    if nproc_per_node is not None:
        raise ConfigError("--ray and --nproc-per-node both start the processes; choose one "
                          "(--ray --num-workers N under Ray Train)")
    if resume is not None:
        raise ConfigError("--resume: a run is resumed without --ray (its checkpoints are in "
                          "its directory): shipyard train EXP --resume RUN [--nproc-per-node N]")


def _under_torchrun() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "MASTER_ADDR" in os.environ


def _torchrun_rank(config: Path, overrides: list[str], output: Path | None, quiet: bool,
                   resume: Path | None) -> Path | None:
    """One rank of a torchrun someone started (``torchrun ... -m shipyard train EXP``):
    every rank must be told the same ``--output`` (or ``--resume``)."""
    from shipyard.errors import ConfigError
    from shipyard.training.distributed import _Job, run_worker

    if output is None and resume is None:
        raise ConfigError("under torchrun, give every rank the same --output RUN_DIR (or "
                          "--resume RUN_DIR); each would otherwise name its own run directory")
    job = _Job(str(config), overrides, None if output is None else str(output),
               None if resume is None else str(resume), _progress(quiet))
    done = run_worker(job)
    return None if done is None else Path(done)


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
    variant: Annotated[str, typer.Option(
        "--variant", help="Image runs: fp32 (the run's model) or a variant 'shipyard optimise' "
        "wrote: int8, pruned, pruned-int8.")] = "fp32",
    tokenizer: Annotated[str, typer.Option(
        "--tokenizer", help="Transformer text runs: steps (a tokenize step and tokenizer.json "
        "before model.onnx) or graph (the run's model_text.onnx, BPE tokenizer inside; needs "
        "export.tokenizer_in_graph: true at training).")] = "steps",
) -> None:
    """Publish a run's ONNX model as the next version in a model repository.

    Atomic: written to a hidden folder, then renamed; a server never sees half a version.
    """
    from shipyard import api

    with _user_errors():
        published = api.publish(run, repo, model=model, force=force, input=input,
                                backend=backend, variant=variant, tokenizer=tokenizer)
    typer.echo(f"published {published.model} version {published.version}: {published.path}")


def _comparison_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    cmp = result.comparison
    base = cmp.row(cmp.baseline)
    table = Table(title=f"optimised variants of {result.run.name} (test split, {cmp.samples} "
                  "images)", title_justify="left")
    table.add_column("variant", no_wrap=True, min_width=12)
    for col in ("acc", "Δ pts", "params", "KiB"):
        table.add_column(col, justify="right", no_wrap=True)
    for t in cmp.threads:
        label = "" if len(cmp.threads) == 1 else (" dflt" if t == "default" else f" {t}thr")
        table.add_column(f"b1 ms{label}", justify="right", no_wrap=True)
        table.add_column(f"b{cmp.batch_size} img/s{label}", justify="right", no_wrap=True)
        table.add_column("x fp32", justify="right", no_wrap=True)
    for r in cmp.rows:
        acc = "n/a" if r.accuracy is None else f"{100 * r.accuracy:.1f}%"
        drop = ("" if r is base or r.accuracy is None or base.accuracy is None
                else f"{100 * (r.accuracy - base.accuracy):+.1f}")
        cells = [r.name, acc, drop, f"{result.variants[r.name].get('parameters', 0):,}",
                 f"{r.bytes / 1024:.1f}"]
        for t in cmp.threads:
            cells += [f"{r.latency_ms[t]:.3f}", f"{r.throughput[t]:,.0f}",
                      f"{r.throughput[t] / base.throughput[t]:.2f}"]
        table.add_row(*cells)
    Console().print(table)


def optimise(
    run: Annotated[Path, typer.Argument(help="Torch image run directory written by 'shipyard "
                                        "train'.")],
    int8: Annotated[bool, typer.Option(
        "--int8/--no-int8", help="Write INT8 variants (static, calibrated; dynamic if static "
        "fails).")] = True,
    calibration: Annotated[int, typer.Option(
        "--calibration", help="Training images to calibrate INT8 ranges on.")] = 256,
    prune: Annotated[float, typer.Option(
        "--prune", help="Fraction of each conv's channels to remove (structured; 0 = no "
        "pruned variants).")] = 0.5,
    fine_tune_epochs: Annotated[int, typer.Option(
        "--fine-tune-epochs", help="Epochs of the run's training after pruning (0 = none).")
    ] = 1,
    unstructured: Annotated[float | None, typer.Option(
        "--unstructured", help="Also a variant with this fraction of weights zeroed (accuracy "
        "only: it is no smaller or faster).")] = None,
    threads: Annotated[list[int] | None, typer.Option(
        "--threads", help="ONNX Runtime intra-op threads to measure speed at (repeatable; "
        "default 1).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print comparison.json to stdout.")
                       ] = False,
) -> None:
    """Write INT8 and pruned variants of a torch image run and compare them with its model.

    Files: <run>/optimised/<variant>/model.onnx, <run>/optimised/comparison.json and a
    section of <run>/report.md. Publish one with 'shipyard publish RUN --variant NAME'.
    """
    from shipyard import api

    with _user_errors():
        result = api.optimise(run, int8=int8, calibration=calibration, prune=prune,
                              fine_tune_epochs=fine_tune_epochs, unstructured=unstructured,
                              threads=threads or [1], progress=_progress(quiet))
    if as_json:
        typer.echo(result.path.read_text(encoding="utf-8"))
        return
    _comparison_table(result)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"comparison: {result.path}")
    typer.echo(f"report: {result.report}")


_COMMANDS: list[tuple[str, Callable[..., None]]] = [
    ("train", train), ("evaluate", evaluate), ("optimise", optimise), ("publish", publish),
]


def register(app: typer.Typer) -> None:
    """Add train, evaluate, optimise and publish to ``app``."""
    for name, func in _COMMANDS:
        app.command(name=name)(func)
