"""The Python API of the training half; it mirrors ``shipyard train / evaluate / publish``.

>>> run = train("examples/titanic/experiment.yaml", overrides=["seed=1"])   # doctest: +SKIP
>>> run.metrics["test"]["accuracy"]                                         # doctest: +SKIP
>>> publish(run, "models")                                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import ExportError

if TYPE_CHECKING:
    from shipyard.evaluation.scoring import Evaluation
    from shipyard.export.publish import Published
    from shipyard.training.config import Experiment
    from shipyard.training.distributed import Launch
    from shipyard.training.optimise import Optimised
    from shipyard.training.run import Run

__all__ = ["evaluate", "optimise", "publish", "train", "train_parallel", "train_ray"]


def train(
    config: str | Path | Mapping[str, Any] | Experiment,
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    output: str | Path | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
) -> Run:
    """Run an experiment (a YAML path, a mapping or an Experiment) and return its run.

    ``overrides`` are ``"key.path=value"`` strings or a ``{"key.path": value}`` mapping;
    ``output`` is the run directory (default ``<output.dir>/<name>-<timestamp>``);
    ``resume`` is an interrupted torch run's directory to continue from its last checkpoint.
    """
    from shipyard.training.config import load_experiment
    from shipyard.training.trainer import train_experiment

    experiment, base_dir = load_experiment(config, overrides)
    return train_experiment(experiment, base_dir, output=Path(output) if output else None,
                            show_progress=progress, config_note=_config_note(config, overrides),
                            resume=Path(resume) if resume is not None else None)


def _config_note(config: Any, overrides: Sequence[str] | Mapping[str, Any]) -> str:
    note = ""
    if isinstance(config, str | Path):
        note = f"from {Path(config).resolve()}"
    if overrides:
        items = overrides.items() if isinstance(overrides, Mapping) else None
        shown = [f"{k}={v}" for k, v in items] if items is not None else list(overrides)
        note += f" with --set {' --set '.join(shown)}"
    return note.strip()


def train_parallel(
    config: str | Path | Mapping[str, Any],
    launch: Launch,
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    output: str | Path | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
) -> Run | None:
    """:func:`train` data-parallel: ``launch.nproc_per_node`` processes on this node (of
    ``launch.nnodes``) train a torch experiment together on torch.distributed (see
    :mod:`shipyard.training.distributed`); returns the run on node 0, None on the others.
    ``training.batch_size`` is the global batch (split evenly over the processes)."""
    from shipyard.training.distributed import launch as launch_run
    from shipyard.training.run import Run

    run_dir = launch_run(launch, config, overrides=overrides,
                         output=Path(output) if output else None, progress=progress,
                         resume=Path(resume) if resume is not None else None,
                         config_note=_config_note(config, overrides))
    return None if run_dir is None else Run.load(run_dir)


def train_ray(
    config: str | Path | Mapping[str, Any],
    *,
    num_workers: int = 1,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    output: str | Path | None = None,
    address: str | None = None,
    use_gpu: bool = False,
) -> Run:
    """:func:`train` data-parallel under Ray Train's ``TorchTrainer`` in ``num_workers``
    workers (see :mod:`shipyard.integrations.ray`): on the Ray at ``address``, or a local Ray
    started here; returns the run, which rank 0 wrote. Needs ``shipyard[ray]``."""
    from shipyard.integrations.ray import train_ray as train_on_ray
    from shipyard.training.run import Run

    run_dir = train_on_ray(config, num_workers=num_workers, overrides=overrides,
                           output=Path(output) if output else None, address=address,
                           use_gpu=use_gpu, config_note=_config_note(config, overrides))
    return Run.load(run_dir)


def _as_run(run: str | Path | Run) -> Run:
    from shipyard.training.run import Run

    return run if isinstance(run, Run) else Run.load(run)


def evaluate(run: str | Path | Run, *, data: str | Path | None = None,
             progress: bool = False) -> Evaluation:
    """Score a run's pipeline on ``data`` (every row; it needs the target column), or on the
    run's test split again. Results go to ``<run>/evaluations/<name>/``."""
    from shipyard.training.trainer import evaluate_run

    return evaluate_run(_as_run(run), Path(data) if data is not None else None,
                        show_progress=progress)


def optimise(run: str | Path | Run, *, int8: bool = True, calibration: int = 256,
             prune: float = 0.5, fine_tune_epochs: int = 1, unstructured: float | None = None,
             threads: Sequence[int | None] = (1,), latency_runs: int = 200,
             progress: bool = False) -> Optimised:
    """Write INT8 and pruned variants of a torch image run under ``<run>/optimised/`` and
    measure them against its ``model.onnx`` (accuracy on the test split, size, batch-1 latency,
    batch-64 throughput); ``.comparison`` is the table, also in ``comparison.json`` and the
    run's ``report.md``. ``int8``: static INT8 calibrated on ``calibration`` training images
    (dynamic if static fails); ``prune``: fraction of conv channels removed (0 = no pruned
    variants), then ``fine_tune_epochs`` of the run's training; ``unstructured``: a
    zeroed-weights variant, for its accuracy only."""
    from shipyard.training.optimise import optimise_run

    return optimise_run(_as_run(run), int8=int8, calibration=calibration, prune=prune,
                        fine_tune_epochs=fine_tune_epochs, unstructured=unstructured,
                        threads=tuple(threads), latency_runs=latency_runs,
                        show_progress=progress)


def _describe(run: Run) -> str:
    exp, interface = run.experiment, run.interface
    if interface.input == "matrix":
        inputs = (f"one input '{interface.input_name}' FP32 [N,{len(run.plans)}] (columns "
                  f"{', '.join(p.name for p in run.plans)}; NaN = missing)")
    else:
        types = {p.onnx_type for p in run.plans}
        missing = ", ".join(m for t, m in (("FP32", "NaN for FP32"), ("BYTES", "'' for BYTES"))
                            if t in types)
        inputs = "one input per column, [N,1]: " + ", ".join(
            f"{p.name} {p.onnx_type}" for p in run.plans) + f" (missing: {missing})"
    outputs = ", ".join(f"{t['name']} {t['datatype']} {t['shape']}"
                        for t in run.export.get("outputs", []))
    if "score" in interface.outputs:
        outputs += f"; score = P({run.class_names[interface.score_index]})"
    test = ", ".join(f"{k} {v:.4f}" for k, v in run.metrics.get("test", {}).items()
                     if isinstance(v, float) and k in ("accuracy", "f1_macro", "roc_auc", "r2",
                                                        "mae", "rmse"))
    head = exp.description.strip() or f"{exp.task} model ({exp.model.label})"
    return (f"{head} Inputs: {inputs}. Outputs: {outputs}. Test split: {test}. "
            f"Trained by shipyard run {run.path.name}.")


def publish(run: str | Path | Run, repo: str | Path, *, model: str | None = None,
            force: bool = False, input: str = "bytes", backend: str = "onnx",
            variant: str = "fp32", tokenizer: str = "steps") -> Published:
    """Write the run's model as the next version of ``model`` (default: the experiment name)
    in the model repository ``repo``; atomic. Refuses a run whose ONNX model disagreed with
    its reference (scikit-learn, torch) on the test split unless ``force``.

    A torch image run is published with its image steps: ``input`` bytes (encoded PNG/JPEG,
    decoded and resized on the server), uint8 (raw NHWC pixels) or fp32 (the graph's NCHW
    tensor); ``backend`` onnx (``model.onnx``) or torch (``model.pt2``). ``variant``: fp32
    (the run's own model) or one that :func:`optimise` wrote (int8, pruned, pruned-int8).

    A Transformer text run is published with its tokenizer as a ``tokenize`` step
    (``tokenizer`` steps: ``model.onnx`` and ``tokenizer.json``) or inside the graph
    (``tokenizer`` graph: the run's ``model_text.onnx``, written with
    ``export.tokenizer_in_graph: true``, as ``model.onnx``; the chain is the only step)."""
    from shipyard.export.publish import publish_image_run, publish_model
    from shipyard.training.run import RUN_FILES

    loaded = _as_run(run)
    from shipyard.training.config import FAMILY_LABELS, family_key

    if tokenizer not in ("steps", "graph"):
        raise ExportError(f"--tokenizer: {tokenizer!r} is not one of ['steps', 'graph']")

    if variant != "fp32" and family_key(loaded.experiment) != "torch":
        label = FAMILY_LABELS.get(family_key(loaded.experiment), "")
        raise ExportError(f"--variant: run {str(loaded.path)!r} is a {label} run; it has "
                          "only its own model (fp32): drop --variant")
    extra = {name: (loaded.path / RUN_FILES[key]).read_bytes()
             for key, name in (("metrics", "metrics.json"), ("export", "export.json"),
                               ("experiment", "experiment.yaml"))
             if (loaded.path / RUN_FILES[key]).is_file()}
    from shipyard.training.text_config import TextExperiment

    if isinstance(loaded.experiment, TextExperiment):
        return _publish_text(loaded, Path(repo), model, force=force, input=input,
                             backend=backend, extra=extra, tokenizer=tokenizer)
    if tokenizer != "steps":
        raise ExportError(f"--tokenizer graph: run {str(loaded.path)!r} is not a text run; "
                          "drop --tokenizer")
    if loaded.experiment.model.family == "torch":
        from shipyard.training.run import read_serving  # not torch_experiment: no torch here

        serving = read_serving(loaded, "torch image")
        model_file = None
        if variant != "fp32":
            from shipyard.training.optimise import variant_model

            if backend != "onnx":
                raise ExportError(f"--variant {variant}: variants are ONNX models; drop "
                                  "--backend torch")
            model_file = variant_model(loaded, variant)
        agreement = loaded.export.get("agreement") or {}
        if backend == "onnx" and model_file is None and not agreement.get("passed") \
                and not force:
            raise ExportError(
                f"publish: in run {str(loaded.path)!r} ONNX Runtime and torch disagree on the "
                f"test split ({agreement}); publish with --backend torch, or pass --force")
        names = serving.get("class_names") or []
        head = loaded.experiment.description.strip() or "image classifier"
        inputs = {"bytes": "one encoded PNG/JPEG per row (BYTES 'image' [N, 1])",
                  "uint8": "UINT8 pixels 'image' [N, H, W, C]",
                  "fp32": "FP32 'image' [N, C, H, W]"}.get(input, input)
        description = (f"{head} Input: {inputs}. Outputs: the top classes of {len(names)} "
                       f"({', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''})"
                       f". Trained by shipyard run {loaded.path.name}"
                       + ("." if model_file is None else f", variant {variant} (shipyard "
                          "optimise)."))
        if model_file is not None:
            comparison = loaded.path / "optimised" / "comparison.json"
            extra["comparison.json"] = comparison.read_bytes()
        return publish_image_run(
            loaded.path, serving, Path(repo), model or loaded.experiment.name,
            description=description, input_kind=input, backend=backend, extra_files=extra,
            model_file=model_file)
    export = loaded.export
    if not export.get("converted") or not loaded.onnx_path.is_file():
        reason = export.get("error") or "no model.onnx in the run"
        raise ExportError(f"publish: run {str(loaded.path)!r} has no ONNX model to publish: "
                          f"{reason}")
    agreement = export.get("agreement") or {}
    if not agreement.get("passed") and not force:
        raise ExportError(
            f"publish: in run {str(loaded.path)!r} ONNX Runtime and scikit-learn disagree on "
            f"the test split ({agreement}); the served model would not be the one evaluated. "
            "Fix the pipeline (tree models: scale none) or pass --force"
        )
    labels = {}
    if loaded.experiment.task != "regression" and "probabilities" in loaded.interface.outputs:
        labels["probabilities"] = loaded.class_names
    return publish_model(
        loaded.onnx_path, Path(repo), model or loaded.experiment.name,
        description=_describe(loaded), labels=labels,
        max_batch_size=loaded.experiment.export.max_batch_size,
        inputs=[t["name"] for t in export.get("inputs", [])],
        outputs=[t["name"] for t in export.get("outputs", [])], extra_files=extra,
    )


def _text_graph_serving(run: Run, serving: dict[str, Any], *, backend: str, force: bool
                        ) -> tuple[dict[str, Any], Path]:
    """``serving`` for ``--tokenizer graph``: the chain as the only steps, no files; and the
    run's ``model_text.onnx``, published as ``model.onnx``."""
    where = f"--tokenizer graph: run {str(run.path)!r}"
    if run.experiment.model.family != "torch":
        raise ExportError(f"{where} is a TF-IDF run, whose graph takes raw texts already; "
                          "drop --tokenizer")
    if backend != "onnx":
        raise ExportError(f"{where}: the tokenizer graph is an ONNX model; drop --backend "
                          f"{backend}")
    graph = serving.get("text_graph") or {}
    record = run.export.get("text_graph") or {}
    file = run.path / str(graph.get("model_file") or "model_text.onnx")
    if not graph or not file.is_file():
        why = record.get("error") or "it was trained without export.tokenizer_in_graph: true"
        raise ExportError(f"{where} has no model_text.onnx ({why}); train it again with "
                          "--set tokenizer.kind=bpe --set export.tokenizer_in_graph=true, or "
                          "publish with --tokenizer steps")
    agreement = record.get("agreement") or {}
    if not agreement.get("passed") and not force:
        raise ExportError(f"{where}: model_text.onnx disagrees with the tokenize step and torch "
                          f"on the test split (ids {record.get('ids')}, logits {agreement}); "
                          f"{record.get('differs', '')}; publish with --tokenizer steps, or "
                          "pass --force")
    return ({**serving, "model_file": serving.get("model_file") or "model.onnx",
             "preprocess": list(graph.get("preprocess") or []),
             "files": list(graph.get("files") or [])}, file)


def _publish_text(run: Run, repo: Path, model: str | None, *, force: bool, input: str,
                  backend: str, extra: dict[str, bytes], tokenizer: str = "steps"
                  ) -> Published:
    """A text run: raw strings in (the chain and tokenizer as steps, or the chain as steps
    and the tokenizer inside the graph), class probabilities out."""
    from shipyard.export.publish import publish_text_run
    from shipyard.training.run import read_serving  # not text_run: no training stack here

    if input != "bytes":
        raise ExportError(f"--input: a text model takes raw strings (bytes); drop --input "
                          f"{input}")
    serving = read_serving(run, "text")
    if tokenizer == "graph":
        serving, graph_file = _text_graph_serving(run, serving, backend=backend, force=force)
        names = serving.get("class_names") or []
        head = run.experiment.description.strip() or "text classifier"
        test = run.metrics.get("test", {})
        description = (
            f"{head} Input: one raw UTF-8 text per row (BYTES 'text' [N, 1]); the server runs "
            "the training chain, and the BPE tokenizer runs inside the ONNX graph "
            "(onnxruntime-extensions). Output: the probability of each class "
            f"({', '.join(map(str, names[:10]))}{', ...' if len(names) > 10 else ''}). Test "
            f"accuracy {test.get('accuracy', float('nan')):.4f}. Trained by shipyard run "
            f"{run.path.name}.")
        return publish_text_run(run.path, serving, repo, model or run.experiment.name,
                                description=description, backend="onnx", extra_files=extra,
                                model_file=graph_file)
    agreement = run.export.get("agreement") or {}
    if backend == "onnx" and not agreement.get("passed") and not force:
        reference = "torch" if run.experiment.model.family == "torch" else "scikit-learn"
        raise ExportError(
            f"publish: in run {str(run.path)!r} ONNX Runtime and {reference} disagree on the "
            f"test split ({agreement or run.export.get('error')}); "
            + ("publish with --backend torch, or pass --force" if reference == "torch"
               else "pass --force to publish it anyway"))
    names = serving.get("class_names") or []
    head = run.experiment.description.strip() or "text classifier"
    test = run.metrics.get("test", {})
    description = (f"{head} Input: one raw UTF-8 text per row (BYTES 'text' [N, 1]); the server "
                   f"runs the training chain{' and tokenizer' if serving.get('files') else ''}. "
                   f"Output: the probability of each class ({', '.join(map(str, names[:10]))}"
                   f"{', ...' if len(names) > 10 else ''}). Test accuracy "
                   f"{test.get('accuracy', float('nan')):.4f}. Trained by shipyard run "
                   f"{run.path.name}.")
    return publish_text_run(run.path, serving, repo, model or run.experiment.name,
                            description=description, backend=backend, extra_files=extra)
