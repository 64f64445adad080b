"""``shipyard optimise RUN``: smaller and faster variants of a torch image run, measured.

:func:`optimise_run` reads a finished torch run (its weights, ``model.onnx``, experiment and
data) and writes ``<run>/optimised/<variant>/model.onnx`` for each variant:

``fp32``
    The run's own ``model.onnx`` (not copied; the baseline row).
``int8``
    Static INT8 (QDQ, per-channel weights) calibrated on the first ``calibration`` training
    images; if static quantisation fails, dynamic INT8, and the record says why.
``pruned``
    Structured channel pruning (:func:`~shipyard.export.prune.prune_channels`, ``prune``
    fraction of each prunable conv's filters) then ``fine_tune_epochs`` epochs of the run's own
    training config (same optimizer, batch size, augmentation), exported like the run.
``pruned-int8``
    The pruned model, statically quantised like ``int8``.
``unstructured`` (only with ``unstructured=``)
    Magnitude pruning that zeroes weights but keeps every tensor's shape: the same size and
    speed at run time; shown for the accuracy cost only.

Every variant is measured on the run's test split with
:func:`~shipyard.export.compare.compare_onnx` (accuracy, file size, batch-1 latency, batch-64
throughput, in this process). The result goes to ``<run>/optimised/comparison.json`` and to a
section of the run's ``report.md``; ``shipyard publish RUN --variant NAME`` publishes one.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ConfigError
from shipyard.training.run import RUN_FILES, Run, write_json

if TYPE_CHECKING:
    import torch

__all__ = ["COMPARISON_FILE", "OPTIMISED_DIR", "VARIANTS", "Optimised", "optimise_run",
           "variant_model"]

OPTIMISED_DIR = "optimised"
COMPARISON_FILE = "comparison.json"
#: every variant :func:`optimise_run` can write, in table order
VARIANTS = ("fp32", "int8", "pruned", "pruned-int8", "unstructured")
_BEGIN = "<!-- shipyard optimise: begin -->"
_END = "<!-- shipyard optimise: end -->"


@dataclass
class Optimised:
    """What :func:`optimise_run` wrote: ``comparison`` (a :class:`~shipyard.export.compare.
    Comparison`), ``variants`` (per variant: path, parameters, bytes, how it was made) and the
    paths of ``comparison.json`` and the report."""

    run: Path
    comparison: Any
    variants: dict[str, dict[str, Any]]
    path: Path
    report: Path
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run), "variants": self.variants, "notes": self.notes,
                "comparison": self.comparison.to_dict(),
                "markdown": self.comparison.to_markdown()}


def _fraction(option: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or not 0 <= value < 1:
        raise ConfigError(f"{option}: {value!r} is not a fraction in [0, 1) (0.5 removes half; "
                          "0 = off)")
    return float(value)


def _count(option: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{option}: {value!r} must be an integer >= {low}")
    return value


def variant_model(run: Run | Path | str, variant: str) -> Path:
    """The ``model.onnx`` of ``variant`` of an optimised run (``fp32``: the run's own);
    ConfigError naming the fix when the run was not optimised or has no such variant."""
    path = run.path if isinstance(run, Run) else Path(run)
    if variant == "fp32":
        return path / RUN_FILES["onnx"]
    file = path / OPTIMISED_DIR / COMPARISON_FILE
    if not file.is_file():
        raise ConfigError(f"--variant {variant}: run {str(path)!r} has not been optimised; run "
                          f"'shipyard optimise {path}' first")
    variants = json.loads(file.read_text(encoding="utf-8")).get("variants", {})
    if variant not in variants:
        raise ConfigError(f"--variant: {variant!r} is not a variant of run {str(path)!r}; it "
                          f"has {sorted(variants)}")
    model = path / str(variants[variant]["path"])
    if not model.is_file():
        raise ConfigError(f"--variant {variant}: {str(model)!r} is missing; run 'shipyard "
                          f"optimise {path}' again")
    return model


def _section(markdown: str, options: str, notes: list[str]) -> str:
    lines = [_BEGIN, "## Optimised variants", "",
             f"`shipyard optimise` ({options}); measured in-process with ONNX Runtime on the "
             "CPU on the test split. Files: `optimised/<variant>/model.onnx`; numbers: "
             "`optimised/comparison.json`. Publish one with `shipyard publish RUN --variant "
             "NAME`.", "", markdown.rstrip("\n"), ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines + ([""] if notes else []) + [_END, ""])


def _write_report(report: Path, section: str) -> None:
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if _BEGIN in text and _END in text:
        head, rest = text.split(_BEGIN, 1)
        text = head + section + rest.split(_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text, encoding="utf-8")


def optimise_run(
    run: Run, *,
    int8: bool = True,
    calibration: int = 256,
    prune: float = 0.5,
    fine_tune_epochs: int = 1,
    unstructured: float | None = None,
    threads: tuple[int | None, ...] = (1,),
    latency_runs: int = 200,
    show_progress: bool = False,
) -> Optimised:
    """Write and measure the variants of the torch image run ``run`` (see the module
    docstring). ``prune=0`` skips the pruned variants; ``fine_tune_epochs=0`` prunes without
    fine-tuning; ``threads``: ORT intra-op thread counts to measure speed at."""
    import torch  # here, not at import: publishing a variant needs no torch

    from shipyard.training import torch_experiment as te
    from shipyard.training.config import FAMILY_LABELS, family_key

    family = family_key(run.experiment)
    if family != "torch":
        label = FAMILY_LABELS.get(family, family)
        raise ConfigError(f"optimise: run {str(run.path)!r} is a {label} run; optimise makes "
                          "INT8 and pruned variants of torch image runs only (publish a "
                          "scikit-learn run's model.onnx as it is)")
    prune_amount = _fraction("--prune", prune)
    unstructured_amount = _fraction("--unstructured", unstructured, allow_none=True)
    calibration = _count("--calibration", calibration, 1)
    fine_tune_epochs = _count("--fine-tune-epochs", fine_tune_epochs, 0)
    latency_runs = _count("latency_runs", latency_runs, 1)
    if not threads:
        raise ConfigError("--threads: give at least one ONNX Runtime thread count, e.g. 1")
    for t in threads:
        if t is not None:
            _count("--threads", t, 1)
    if not (run.path / RUN_FILES["weights"]).is_file():
        raise ConfigError(f"optimise: run {str(run.path)!r} has no {RUN_FILES['weights']} (the "
                          "weights); train the run again")
    source = run.onnx_path
    if not source.is_file():
        raise ConfigError(f"optimise: run {str(run.path)!r} has no model.onnx "
                          f"({run.export.get('error') or 'it was not exported'}); nothing to "
                          "optimise")
    exp = te._image(run.experiment)
    serving = te.serving_config(run)
    out = run.path / OPTIMISED_DIR
    from shipyard.data.image import to_tensor
    from shipyard.export.compare import compare_onnx
    from shipyard.export.quantize import quantize_onnx
    from shipyard.models.cnn import count_parameters
    from shipyard.training.image_splits import split_images
    from shipyard.training.progress import Steps

    mean, std = te._norm(exp)
    in_graph = serving.get("image", {}).get("normalize_in") == "graph"
    x_mean, x_std = (None, None) if in_graph else (mean, std)
    variants: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    models: dict[str, Path] = {"fp32": source}
    with Steps(show_progress) as steps:
        with steps.step(f"loading {exp.data.source}"):
            parts = split_images(te._load(exp, Path.cwd()), exp.data, exp.seed)
        names = run.class_names
        x_test = to_tensor(parts.test.images, x_mean, x_std)
        test = (x_test, parts.test.labels)
        net = te._build(te._cnn(exp), exp, len(names))
        net.load_state_dict(torch.load(run.path / RUN_FILES["weights"], map_location="cpu",
                                       weights_only=True))
        net.eval()
        params = count_parameters(net)
        variants["fp32"] = {"path": RUN_FILES["onnx"], "parameters": params,
                            "made": "the run's own model.onnx"}
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        x_cal = to_tensor(parts.train.images[:calibration], x_mean, x_std)

        def quantise(name: str, src: Path, parameters: int) -> None:
            dst = out / name / RUN_FILES["onnx"]
            with steps.step(f"{name}: calibrating on {len(x_cal)} training images"):
                result = quantize_onnx(src, dst, calibration=x_cal, calibration_batches=None,
                                       fallback=True)
            made = (f"static INT8 (QDQ, per-channel), calibrated on "
                    f"{result.calibration_samples} training images" if result.method == "static"
                    else f"dynamic INT8 ({result.fallback_reason or 'chosen'})")
            if src != source:
                made = "the pruned model, " + made
            variants[name] = {"path": f"{OPTIMISED_DIR}/{name}/{RUN_FILES['onnx']}",
                              "parameters": parameters, "made": made, "method": result.method,
                              "fallback_reason": result.fallback_reason,
                              "quantized_ops": result.quantized_ops}
            if result.fallback_reason:
                notes.append(f"{name}: {result.fallback_reason}; quantised dynamically")
            models[name] = dst

        if int8:
            quantise("int8", source, params)
        if prune_amount:
            pruned = _pruned(run, exp, net, parts, prune_amount, fine_tune_epochs, out, steps,
                             x_mean, x_std)
            dst = out / "pruned"
            with steps.step("pruned: exporting to ONNX"):
                record = _export(exp, pruned, x_test, dst, mean if in_graph else None,
                                 std if in_graph else None)
            pruned_params = count_parameters(pruned)
            variants["pruned"] = {
                "path": f"{OPTIMISED_DIR}/pruned/{RUN_FILES['onnx']}",
                "parameters": pruned_params,
                "made": f"{prune_amount:.0%} of conv channels pruned (L1), "
                        + (f"{fine_tune_epochs} epoch(s) fine-tuned" if fine_tune_epochs
                           else "not fine-tuned"),
                "channels": [c.out_channels for c in pruned.modules()
                             if isinstance(c, torch.nn.Conv2d)],
                "agreement": record.get("agreement")}
            models["pruned"] = dst / RUN_FILES["onnx"]
            if int8:
                quantise("pruned-int8", models["pruned"], pruned_params)
        if unstructured_amount:
            from shipyard.export.prune import prune_unstructured, sparsity

            zeroed = prune_unstructured(copy.deepcopy(net), unstructured_amount)
            dst = out / "unstructured"
            with steps.step("unstructured: exporting to ONNX"):
                _export(exp, zeroed, x_test, dst, mean if in_graph else None,
                        std if in_graph else None)
            variants["unstructured"] = {
                "path": f"{OPTIMISED_DIR}/unstructured/{RUN_FILES['onnx']}",
                "parameters": params, "sparsity": sparsity(zeroed),
                "made": f"{unstructured_amount:.0%} of weights zeroed (global L1), not "
                        "fine-tuned; same shapes, so no smaller or faster at run time"}
            models["unstructured"] = dst / RUN_FILES["onnx"]
        with steps.step(f"measuring {len(models)} variants on {len(x_test)} test images"):
            comparison = compare_onnx(models, test, threads=threads, latency_runs=latency_runs,
                                      baseline="fp32",
                                      notes={k: v["made"] for k, v in variants.items()
                                             if k != "fp32"})
    for row in comparison.rows:
        variants[row.name].update(bytes=row.bytes, accuracy=row.accuracy)
    options = (f"int8 {'on' if int8 else 'off'}, calibration {calibration}, prune "
               f"{prune_amount}, fine-tune epochs {fine_tune_epochs}, unstructured "
               f"{unstructured_amount}")
    result = Optimised(run.path, comparison, variants, out / COMPARISON_FILE,
                       run.path / RUN_FILES["report"], notes)
    write_json(result.path, {**result.to_dict(),
                             "options": {"int8": int8, "calibration": calibration,
                                         "prune": prune_amount,
                                         "fine_tune_epochs": fine_tune_epochs,
                                         "unstructured": unstructured_amount}})
    _write_report(result.report, _section(comparison.to_markdown(), options, notes))
    return result


def _pruned(run: Run, exp: Any, net: torch.nn.Module, parts: Any, amount: float, epochs: int,
            out: Path, steps: Any, mean: Any, std: Any) -> torch.nn.Module:
    """The channel-pruned copy of ``net``, fine-tuned ``epochs`` epochs with the run's own
    training config (its history under ``out/pruned/fine-tune/``)."""
    import torch

    from shipyard.data.augment import Augment
    from shipyard.data.image import to_tensor
    from shipyard.export.prune import prune_channels
    from shipyard.training.torch import fit

    example = torch.from_numpy(to_tensor(parts.train.images[:2], mean, std))
    folder = out / "pruned" / "fine-tune"

    def fine_tune(model: torch.nn.Module) -> None:
        n_mean, n_std = (list(exp.data.normalize.mean), list(exp.data.normalize.std)) \
            if exp.data.normalize is not None else (None, None)
        x_train = to_tensor(parts.train.images, n_mean, n_std)
        val = None if parts.validation is None else \
            (to_tensor(parts.validation.images, n_mean, n_std), parts.validation.labels)
        cfg = exp.training.model_copy(update={"epochs": epochs})
        augment = Augment(exp.augment, mean=n_mean, std=n_std, seed=exp.training.seed) \
            if exp.augment.enabled else None
        folder.mkdir(parents=True, exist_ok=True)
        with steps.step(f"pruned: fine-tuning {epochs} epoch(s) on {len(x_train)} images"), \
                steps.paused():
            fit(model, (x_train, parts.train.labels), val, cfg, folder, augment=augment,
                progress=steps.show)
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)

    with steps.step(f"pruned: removing {amount:.0%} of the conv channels"):
        pruned = prune_channels(net, amount, example)
    if epochs:
        torch.manual_seed(exp.training.seed)
        fine_tune(pruned)
    return pruned.to("cpu").eval()


def _export(exp: Any, model: torch.nn.Module, x_test: np.ndarray, folder: Path,
            mean: Any, std: Any) -> dict[str, Any]:
    from shipyard.errors import ExportError
    from shipyard.export.torch_export import export_image_classifier

    folder.mkdir(parents=True, exist_ok=True)
    record = export_image_classifier(
        model, x_test[:2048], folder, opset=exp.export.opset, tolerance=exp.export.tolerance,
        max_batch_size=exp.export.max_batch_size, mean=mean, std=std,
        onnx_file=RUN_FILES["onnx"], program_file=None)
    if not record.get("converted"):
        raise ExportError(f"optimise: {folder.name}: {record.get('error')}")
    return record
