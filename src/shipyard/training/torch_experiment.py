"""The torch family: images -> split -> CNN -> fit -> evaluate -> export -> report.

:mod:`shipyard.training.trainer` calls :func:`prepare` (the CNN's params and the image size are
checked before anything is written), then :func:`train` with the run directory. Images come
from :func:`~shipyard.data.image.load_image_source` (decoded once, cached) as ``uint8`` arrays
and become the network's input through :func:`~shipyard.data.image.to_tensor`, the same steps
the server runs (:func:`serving_config` lists them for ``config.yaml``). :func:`evaluate`
scores a finished run's weights again (``shipyard evaluate``).

What :func:`train` writes besides the tabular run's files (see :mod:`shipyard.training.run`):
``model_state.pt``, ``model.pt2``, ``serving.json``, ``history.json``, ``curves.png``,
``checkpoints/`` and ``plots/wrong_test.png`` (the most confidently wrong test images).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from shipyard.data.augment import Augment
from shipyard.data.image import ImageSet, load_image_source, preprocess_steps, to_tensor
from shipyard.errors import ConfigError, DataError
from shipyard.evaluation.metrics import classification_metrics
from shipyard.evaluation.plots import wrong_predictions_plot
from shipyard.evaluation.report import ReportData, write_report
from shipyard.evaluation.scoring import Evaluation, SplitScore, split_plots
from shipyard.models.cnn import CNNConfig, build_cnn, count_parameters
from shipyard.training._config_errors import format_errors
from shipyard.training.config import AnyExperiment, ImageExperiment
from shipyard.training.distributed import env_rank
from shipyard.training.image_splits import ImageSplits, split_images
from shipyard.training.progress import Steps
from shipyard.training.run import (
    RUN_FILES,
    Run,
    library_versions,
    read_serving,
    unique_folder,
    write_json,
    write_run_files,
)
from shipyard.training.torch import History, fit, predict

__all__ = ["Prepared", "evaluate", "prepare", "serving_config", "train"]

log = logging.getLogger("shipyard.training")

WRONG_PLOT = "wrong_{split}.png"
TOP_WRONG = 25


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` checked: the network's config."""

    cnn: CNNConfig


def _image(exp: AnyExperiment) -> ImageExperiment:
    if not isinstance(exp, ImageExperiment):
        raise ConfigError(f"model.family: {exp.model.family!r} experiments are not trained by "
                          "the torch trainer")
    return exp


def _cnn(exp: ImageExperiment) -> CNNConfig:
    try:
        return CNNConfig.model_validate(exp.model.params)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, "experiment", root=CNNConfig,
                                        prefix=("model", "params"))) from exc


def _build(cfg: CNNConfig, exp: ImageExperiment, classes: int) -> torch.nn.Module:
    height, width = exp.data.size
    try:
        return build_cnn(cfg, exp.data.channels, height, width, classes)
    except ConfigError as exc:
        raise ConfigError("experiment: " + exc.message.replace("model.blocks[",
                                                                "model.params.blocks[")) from exc


def prepare(exp: AnyExperiment) -> Prepared:
    """Check ``model.params`` against :class:`CNNConfig` and the image size against the
    network; a mistake raises ConfigError (dotted path) before anything is written."""
    image = _image(exp)
    cfg = _cnn(image)
    _build(cfg, image, 2)
    return Prepared(cfg)


def _norm(exp: ImageExperiment) -> tuple[list[float] | None, list[float] | None]:
    norm = exp.data.normalize
    return (None, None) if norm is None else (list(norm.mean), list(norm.std))


def _load(exp: ImageExperiment, base_dir: Path, source: str | None = None
          ) -> dict[str, ImageSet]:
    return load_image_source(source or exp.data.source, size=exp.data.size,
                             channels=exp.data.channels, interpolation=exp.data.interpolation,
                             class_names=exp.data.class_names,
                             cache=exp.data.cache and env_rank() == 0,  # other ranks: no files
                             base_dir=base_dir)


def _score(logits: np.ndarray, images: ImageSet, names: list[str]) -> SplitScore:
    proba = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    pred = proba.argmax(1)
    summary, details = classification_metrics(images.labels, pred, proba,
                                              list(range(len(names))), names)
    return SplitScore(summary, details, images.labels, pred, proba)


def _logits(model: torch.nn.Module, images: ImageSet, exp: ImageExperiment,
            device: str | None = None) -> np.ndarray:
    """The model's logits of ``images`` on ``device`` (default: the training device)."""
    mean, std = _norm(exp)
    batch = exp.training.eval_batch_size or 2 * exp.training.batch_size
    out = [predict(model, to_tensor(images.images[i:i + 4096], mean, std), batch_size=batch,
                   device=device or exp.training.device) for i in range(0, len(images), 4096)]
    return np.concatenate(out)


def _plots(score: SplitScore, images: ImageSet, names: list[str], folder: Path, split: str,
           relative_to: Path) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    plots = split_plots(score, "multiclass", list(range(len(names))), names, folder, split,
                        relative_to)
    assert score.proba is not None
    path, shown = wrong_predictions_plot(
        images.images, score.y_true, score.proba, names, folder / WRONG_PLOT.format(split=split),
        f"Most confidently wrong {split} images ({int((score.y_pred != score.y_true).sum())} "
        f"wrong of {len(score.y_true)})", top=TOP_WRONG)
    plots.append((f"Most confidently wrong images ({split})", str(path.relative_to(relative_to))))
    wrong = [{"row": i, "file": images.files[i] if images.files else None,
              "true": names[int(score.y_true[i])], "predicted": names[int(score.y_pred[i])],
              "probability": float(score.proba[i].max())} for i in shown]
    return plots, wrong


def serving_config(run: Run | Path | str) -> dict[str, Any]:
    """``serving.json`` of a torch run: what ``shipyard publish`` writes into the model's
    folder and ``config.yaml`` (files, ``inputs``/``outputs``, ``labels``, ``preprocess`` and
    ``postprocess`` steps, ``max_batch_size``, and the image facts behind them)."""
    return read_serving(run, "torch image")


def _serving(exp: ImageExperiment, names: list[str], export: dict[str, Any]) -> dict[str, Any]:
    mean, std = _norm(exp)
    in_graph = exp.export.normalize == "graph"
    steps = preprocess_steps(exp.data.size, exp.data.channels, None if in_graph else mean,
                             None if in_graph else std, exp.data.interpolation)
    height, width = exp.data.size
    program = export.get("torch_program") or {}
    return {
        "model_file": RUN_FILES["onnx"] if export.get("converted") else None,
        "torch_file": program.get("file"),
        "backend": "onnx",
        "max_batch_size": exp.export.max_batch_size,
        "inputs": [{"name": "image", "datatype": "FP32",
                    "shape": [exp.data.channels, height, width], "format": "FORMAT_NCHW"}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [len(names)]}],
        "labels": {"logits": names},
        "class_names": names,
        "preprocess": steps,
        "postprocess": [{"softmax": {}}, {"top_k": {"k": min(5, len(names))}},
                        {"labels": {"labels": names}}],
        "image": {"size": [height, width], "channels": exp.data.channels,
                  "interpolation": exp.data.interpolation,
                  "normalize": None if mean is None else {"mean": mean, "std": std},
                  "normalize_in": "graph" if in_graph else "steps",
                  "input_range": "pixels / 255" + ("" if in_graph or mean is None else
                                                   ", then (x - mean) / std")},
    }


def train(exp: AnyExperiment, base_dir: Path, prepared: Any, *, run_dir: Path, steps: Steps,
          config_note: str = "", resume: bool = False) -> Run | None:
    """Load, split, fit, score, plot, export and write ``run_dir``; ``prepared`` is
    :func:`prepare`'s. ``resume`` continues the fit from the newest checkpoint in
    ``run_dir``. In a data-parallel run, a rank other than 0 stops after the fit (it writes
    nothing) and returns None."""
    image = _image(exp)
    cfg = prepared.cnn if isinstance(prepared, Prepared) else _cnn(image)
    with steps.step(f"loading {image.data.source}", "load"):
        sets = _load(image, base_dir)
    parts = split_images(sets, image.data, image.seed)
    names = list(parts.train.class_names)
    if len(names) < 2:
        raise DataError(f"data.source: {parts.train.source} has {len(names)} class; a "
                        "classifier needs at least two")
    if image.task == "binary" and len(names) != 2:
        raise ConfigError(f"task: 'binary' but {parts.train.source} has {len(names)} classes; "
                          "set task: multiclass")
    mean, std = _norm(image)
    torch.manual_seed(image.training.seed)
    model = _build(cfg, image, len(names))
    augment = Augment(image.augment, mean=mean, std=std, seed=image.training.seed) \
        if image.augment.enabled else None
    x_train = to_tensor(parts.train.images, mean, std)
    val = None if parts.validation is None else \
        (to_tensor(parts.validation.images, mean, std), parts.validation.labels)
    sizes = (f"{len(parts.train)} train / "
             f"{0 if parts.validation is None else len(parts.validation)} val images")
    with steps.step(f"training {count_parameters(model):,}-parameter CNN on {sizes}", "fit"), \
            steps.paused():
        history = fit(model, (x_train, parts.train.labels), val, image.training, run_dir,
                      augment=augment, progress=steps.show, resume=resume)
    del x_train, val
    if env_rank() != 0:
        return None
    model.eval()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               run_dir / RUN_FILES["weights"])
    metrics: dict[str, dict[str, float | None]] = {"validation": {}}
    details: dict[str, Any] = {}
    plots: list[tuple[str, str]] = []
    with steps.step(f"evaluating on {len(parts.test)} test images", "evaluate"):
        if parts.validation is not None:
            score = _score(_logits(model, parts.validation, image), parts.validation, names)
            metrics["validation"], details["validation"] = score.summary, score.details
        test_logits = _logits(model, parts.test, image)
        test = _score(test_logits, parts.test, names)
        metrics["test"], details["test"] = test.summary, test.details
    metrics["training"] = history.summary("images_per_s")
    if image.output.plots:
        with steps.step("plotting", "plots"):
            made, details["test"]["most_confident_wrong"] = _plots(
                test, parts.test, names, run_dir / "plots", "test", run_dir)
            plots += made
    if (run_dir / RUN_FILES["curves"]).is_file():
        plots.append(("Training curves", RUN_FILES["curves"]))
    export = _export(image, model, parts.test, run_dir, names, steps)
    write_json(run_dir / RUN_FILES["serving"], _serving(image, names, export))
    info = _info(image, parts, names, model, history, steps, export)
    write_run_files(run_dir, image, "# The experiment as run by shipyard (overrides applied).\n",
                    config_note, metrics={k: metrics[k] for k in ("test", "validation",
                                                                  "training")},
                    details=details, export=export, info=info)
    write_report(run_dir / RUN_FILES["report"], _report(image, run_dir, info, metrics, details,
                                                        plots, export, history))
    log.info("test metrics: %s", metrics["test"])
    return Run.load(run_dir)


def _export(exp: ImageExperiment, model: torch.nn.Module, test: ImageSet, run_dir: Path,
            names: list[str], steps: Steps) -> dict[str, Any]:
    if not exp.export.onnx and not exp.export.torch_program:
        return {"converted": False, "error": "export.onnx and export.torch_program are false"}
    from shipyard.export.torch_export import export_image_classifier

    mean, std = _norm(exp)
    in_graph = exp.export.normalize == "graph" and mean is not None
    rows = test.subset(np.arange(min(len(test), 2048)))
    x = to_tensor(rows.images, None if in_graph else mean, None if in_graph else std)
    metadata = {"shipyard.experiment": exp.name, "shipyard.task": exp.task,
                "shipyard.model": exp.model.label, "shipyard.run": run_dir.name,
                "shipyard.class_names": json.dumps(names),
                "shipyard.input": "image FP32 [N, C, H, W]: pixels / 255"
                                  + ("" if in_graph or mean is None else
                                     f", then (x - {mean}) / {std}")}
    with steps.step("exporting to ONNX and checking it", "export"):
        record = export_image_classifier(
            model, x, run_dir, opset=exp.export.opset, tolerance=exp.export.tolerance,
            max_batch_size=exp.export.max_batch_size, mean=mean if in_graph else None,
            std=std if in_graph else None,
            onnx_file=RUN_FILES["onnx"] if exp.export.onnx else None,
            program_file=RUN_FILES["program"] if exp.export.torch_program else None,
            metadata=metadata, split="test" if len(rows) == len(test) else
            f"test (first {len(rows)})")
    record["summary"] = ("the CNN; image FP32 [N, C, H, W] in, logits out"
                         + (", normalisation inside the graph" if in_graph else
                            "; decoding, resizing, scaling and normalisation are declared "
                            "preprocess steps (serving.json)"))
    agreement = record.get("agreement") or {}
    if record.get("converted") and not agreement.get("passed"):
        log.warning("ONNX Runtime and torch disagree on the test split: %s", agreement)
    if "error" in record:
        log.warning("%s", record["error"])
    return record


def _info(exp: ImageExperiment, parts: ImageSplits, names: list[str], model: torch.nn.Module,
          history: History, steps: Steps, export: dict[str, Any]) -> dict[str, Any]:
    def count(s: ImageSet | None) -> int | None:
        return None if s is None else len(s)

    return {
        "name": exp.name, "task": exp.task, "model": exp.model.label,
        "estimator": "shipyard.models.cnn.CNN", "parameters": count_parameters(model),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"source": parts.train.source, "rows": len(parts.train) + len(parts.test)
                 + (count(parts.validation) or 0),
                 "train": len(parts.train), "validation": count(parts.validation),
                 "test": len(parts.test), "origin": parts.origin,
                 "size": exp.data.size, "channels": exp.data.channels,
                 "from_cache": parts.train.from_cache},
        "classes": list(range(len(names))), "class_names": names,
        "history": {"device": history.device, "precision": history.precision,
                    "best_epoch": history.best_epoch, "stopped_early": history.stopped_early,
                    "notes": history.notes},
        "versions": library_versions("numpy", "torch", "onnx", "onnxruntime"),
        "timings_s": steps.timings, "warnings": history.notes,
        "export": {"onnx": export.get("converted", False),
                   "torch_program": (export.get("torch_program") or {}).get("file")},
    }


def _report(exp: ImageExperiment, run_dir: Path, info: dict[str, Any], metrics: dict[str, Any],
            details: dict[str, Any], plots: list[tuple[str, str]], export: dict[str, Any],
            history: History) -> ReportData:
    d = info["data"]
    t = metrics["training"]
    norm = exp.data.normalize
    params = ", ".join(f"{k}={v!r}" for k, v in exp.model.params.items()) or "defaults"
    tr = exp.training
    facts = [
        ("task", f"{exp.task} image classification ({len(info['class_names'])} classes: "
                 f"{', '.join(info['class_names'])})"),
        ("run", str(run_dir)),
        ("data", f"{d['source']}: {d['size'][0]}x{d['size'][1]}, {d['channels']} channel(s), "
                 + ("pixels / 255" if norm is None else
                    f"normalised (mean {norm.mean}, std {norm.std})")),
        ("split", f"{d['train']} train / {d['validation'] or 0} validation / {d['test']} test; "
                  + "; ".join(f"{k}: {v}" for k, v in d["origin"].items())
                  + f"; seed {exp.seed}"),
        ("model", f"CNN, {info['parameters']:,} parameters; {params}"),
        ("training", f"{len(history.epoch)} epochs of {tr.batch_size} (optimizer "
                     f"{tr.optimizer.name}, lr {tr.optimizer.lr}, schedule {tr.schedule.name}, "
                     f"{history.device or tr.device}, {history.precision or tr.precision}); "
                     f"best epoch {history.best_epoch}"),
        ("augmentation", ", ".join(f"{k}={v}" for k, v in exp.augment.model_dump().items()
                                   if v and k not in ("interpolation", "fill",
                                                      "crop_padding_mode")) or "none"),
        ("time per epoch", "n/a" if t["seconds_per_epoch"] is None else
         f"{t['seconds_per_epoch']:.2f} s ({t['images_per_s'] or 0:,.0f} training images/s)"),
    ]
    notes = history.epoch_table("images/s")
    return ReportData(
        title=f"{exp.name}: image classification report", description=exp.description,
        facts=facts, metrics={"validation": metrics["validation"], "test": metrics["test"]},
        per_class=details["test"].get("per_class"), plots=plots, export=export,
        warnings=history.notes, notes=notes)


def evaluate(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score a run's weights on ``data`` (an image source spelled like ``data.source``: its
    ``test`` split, else all its images), or without ``data`` on the run's own test split
    again; the results go to ``<run>/evaluations/<name>/``."""
    exp = _image(run.experiment)
    names = run.class_names
    with Steps(show_progress) as steps:
        with steps.step("loading images"):
            sets = _load(exp, Path.cwd(), None if data is None else str(data))
            if data is None:
                images, label = split_images(sets, exp.data, exp.seed).test, "test"
            else:
                images = next((sets[k] for k in ("test", "all") if k in sets),
                              next(iter(sets.values())))
                label = "data"
                if list(images.class_names) != names and exp.data.class_names is None:
                    raise DataError(f"--data: {images.source} has the classes "
                                    f"{list(images.class_names)}, but the run was trained on "
                                    f"{names}; give a source with the same class folders")
        model = _build(_cnn(exp), exp, len(names))
        state = torch.load(run.path / RUN_FILES["weights"], map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state)
        model.eval()
        with steps.step(f"scoring {len(images)} images"):
            # auto: a run trained on CUDA is scored again on a machine without a GPU too
            score = _score(_logits(model, images, exp, "auto"), images, names)
        folder = unique_folder(run.path / "evaluations",
                               Path(str(data)).name if data is not None else "test")
        with steps.step("plotting"):
            plots, wrong = _plots(score, images, names, folder / "plots", label, folder)
    score.details["most_confident_wrong"] = wrong
    write_json(folder / "metrics.json", {label: score.summary})
    write_json(folder / "evaluation.json", {label: score.details})
    write_report(folder / "report.md", ReportData(
        title=f"{exp.name}: evaluation on "
              f"{images.source if data is not None else 'the test split'}",
        facts=[("run", str(run.path)), ("data", images.source), ("images", str(len(images)))],
        metrics={label: score.summary}, per_class=score.details.get("per_class"),
        per_class_split=label, plots=plots))
    return Evaluation(folder, score.summary, score.details, images.source)
