"""A run directory: everything one training run produced, and reading it back.

::

    <run>/experiment.yaml    the experiment as run (overrides applied, features resolved)
    <run>/pipeline.joblib    the fitted scikit-learn pipeline (preprocessing + model)
    <run>/model.onnx         the same pipeline as one ONNX graph (when it converts)
    <run>/metrics.json       {"validation": {...}, "test": {...}}: the same names in every task
    <run>/evaluation.json    per-class figures, confusion matrices, fold metrics
    <run>/export.json        the ONNX interface and its agreement with scikit-learn
    <run>/run.json           data, split sizes, classes, columns, versions, timings, warnings
    <run>/report.md          the report, with the plots under plots/
    <run>/train.log          the log of the run

A torch (image) run has no pipeline.joblib; instead::

    <run>/model_state.pt     the network's weights (state_dict; the experiment rebuilds it)
    <run>/model.pt2          the network as a torch.export program (the torch runtime's file)
    <run>/serving.json       what publishing needs: files, tensors, class names, preprocess steps
    <run>/history.json       per-epoch losses, accuracies, seconds, images/s; curves.png
    <run>/checkpoints/       the last epoch's and the best epoch's checkpoints (--resume)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shipyard.data.features import ColumnPlan
from shipyard.errors import ConfigError
from shipyard.export.interface import OnnxInterface
from shipyard.training.config import AnyExperiment, parse_experiment

__all__ = ["RUN_FILES", "Run", "clear_run_dir", "create_run_dir", "read_serving", "unique_folder",
           "write_json", "write_run_files"]

RUN_FILES = {
    "experiment": "experiment.yaml",
    "pipeline": "pipeline.joblib",
    "onnx": "model.onnx",
    "metrics": "metrics.json",
    "evaluation": "evaluation.json",
    "export": "export.json",
    "run": "run.json",
    "report": "report.md",
    "log": "train.log",
    "weights": "model_state.pt",
    "program": "model.pt2",
    "serving": "serving.json",
    "history": "history.json",
    "curves": "curves.png",
}


def library_versions(*distributions: str) -> dict[str, str]:
    """run.json's ``versions``: python's, and each installed distribution's (by its PyPI
    name: ``scikit-learn``, ``torch``...); one that is not installed is left out."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for name in distributions:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n",
                    encoding="utf-8")


def write_run_files(run_dir: Path, experiment: Any, header: str, config_note: str, *,
                    metrics: dict[str, Any], details: dict[str, Any], export: dict[str, Any],
                    info: dict[str, Any]) -> None:
    """The files every family's run writes: ``experiment.yaml`` (``header`` and
    ``config_note`` as comments above the experiment as run), ``metrics.json``,
    ``evaluation.json``, ``export.json`` and ``run.json``."""
    import yaml

    lines = header + (f"# {config_note}\n" if config_note else "")
    (run_dir / RUN_FILES["experiment"]).write_text(
        lines + yaml.safe_dump(experiment.model_dump(mode="json"), sort_keys=False),
        encoding="utf-8")
    write_json(run_dir / RUN_FILES["metrics"], metrics)
    write_json(run_dir / RUN_FILES["evaluation"], details)
    write_json(run_dir / RUN_FILES["export"], export)
    write_json(run_dir / RUN_FILES["run"], info)


def read_serving(run: Run | Path | str, kind: str) -> dict[str, Any]:
    """``serving.json`` of a torch or text run (what ``shipyard publish`` writes); a run
    without one is a ConfigError naming ``kind`` (the runs that have one)."""
    path = run.path if isinstance(run, Run) else Path(run)
    file = path / RUN_FILES["serving"]
    if not file.is_file():
        raise ConfigError(f"run {str(path)!r} has no {RUN_FILES['serving']} (it is not a {kind} "
                          "run, or it failed before exporting)")
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return data


def unique_folder(parent: Path, name: str) -> Path:
    """A new folder ``parent/name``, or ``name-2``, ``name-3``... where that exists."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def _is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder a ``shipyard train`` wrote (finished or failed): every
    run's writer attaches its ``train.log`` first."""
    return path.is_dir() and (path / RUN_FILES["log"]).is_file()


def clear_run_dir(output: Path) -> bool:
    """``shipyard train --overwrite``: remove ``output`` when it is an earlier run's folder
    (finished or failed: it holds ``train.log``), so the run can be written there again;
    True when something was removed. A file, or a non-empty folder that is no run, is left
    alone (:class:`ConfigError` naming the path and the fix): --overwrite never deletes
    what Shipyard did not write."""
    import shutil

    if not output.exists() or (output.is_dir() and not any(output.iterdir())):
        return False
    if not _is_run_dir(output):
        raise ConfigError(f"--output: {str(output)!r} is not an earlier run's folder (it has "
                          f"no {RUN_FILES['log']}), so --overwrite leaves it alone; choose a "
                          "new path or remove it yourself")
    shutil.rmtree(output)
    return True


def create_run_dir(experiment: AnyExperiment, output: Path | None) -> Path:
    """``output`` itself (new or empty), or a new ``<output.dir>/<name>-<timestamp>``."""
    if output is not None:
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            hint = (" or pass --overwrite to replace that earlier run" if _is_run_dir(output)
                    else "")
            raise ConfigError(f"--output: {str(output)!r} exists and is not an empty folder; "
                              f"choose a new path, remove it{hint}")
        output.mkdir(parents=True, exist_ok=True)
        return output.resolve()
    parent = Path(experiment.output.dir).expanduser()
    name = experiment.output.run_name or f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return unique_folder(parent, name).resolve()


@dataclass
class Run:
    """A finished run, read from its directory."""

    path: Path
    """The run directory."""
    experiment: AnyExperiment
    """The experiment as it was run (tabular or image)."""
    metrics: dict[str, dict[str, float | None]]
    """``metrics.json``: validation and test scalars."""
    info: dict[str, Any] = field(default_factory=dict)
    """``run.json``: data, split, classes, columns, versions, timings."""
    export: dict[str, Any] = field(default_factory=dict)
    """``export.json``: converted, interface, agreement (or the reason it did not convert)."""

    @classmethod
    def load(cls, path: Path | str) -> Run:
        """Read a run directory written by ``shipyard train``."""
        root = Path(path)
        if not (root / RUN_FILES["run"]).is_file():
            raise ConfigError(f"run {str(root)!r}: not a run directory (no {RUN_FILES['run']}); "
                              "give the folder that 'shipyard train' printed")
        raw = yaml.safe_load((root / RUN_FILES["experiment"]).read_text(encoding="utf-8"))
        experiment = parse_experiment(raw, str(root / RUN_FILES["experiment"]))

        def read(key: str) -> Any:
            file = root / RUN_FILES[key]
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

        return cls(root.resolve(), experiment, read("metrics"), read("run"), read("export"))

    @property
    def onnx_path(self) -> Path:
        """``model.onnx`` in the run (it may not exist: see ``export['error']``)."""
        return self.path / RUN_FILES["onnx"]

    @property
    def plans(self) -> list[ColumnPlan]:
        """The resolved columns the pipeline takes, in order."""
        return [ColumnPlan(**c) for c in self.info["columns"]]

    @property
    def classes(self) -> list[Any]:
        """Target classes in the model's order (classification)."""
        return list(self.info.get("classes", []))

    @property
    def class_names(self) -> list[str]:
        """Display names of :attr:`classes`."""
        return list(self.info.get("class_names", []))

    @property
    def interface(self) -> OnnxInterface:
        """The exported model's inputs and outputs."""
        raw = dict(self.info["interface"])
        raw["outputs"] = tuple(raw["outputs"])
        return OnnxInterface(**raw)

    def pipeline(self) -> Any:
        """The fitted scikit-learn pipeline (unpickled: only load runs you trust)."""
        import joblib

        return joblib.load(self.path / RUN_FILES["pipeline"])
