"""The experiment's model is a choice by family (sklearn, torch), and training dispatches to the
family's module; a family whose module is missing is refused in one line."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from training_support import titanic_experiment
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import ConfigError
from shipyard.training.config import (
    Experiment,
    ImageExperiment,
    SklearnModelSpec,
    TorchModelSpec,
    load_experiment,
)
from shipyard.training.families import FAMILIES, family_evaluator, unavailable
from shipyard.training.progress import Steps
from shipyard.training.trainer import train_experiment

TORCH_MODULE = FAMILIES["torch"].module


def _with_model(model: Any) -> dict[str, Any]:
    raw = titanic_experiment()
    raw["model"] = model
    return raw


def _image(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal torch (image) experiment."""
    return {"name": "digits", "data": {"source": "sklearn:digits", "size": 8},
            "model": {"family": "torch", "architecture": "cnn", "params": params or {}}}


def _refusal(raw: dict[str, Any], overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_experiment(raw, overrides or [])
    return err.value.message


@pytest.fixture
def torch_trainer(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in for shipyard.training.torch_experiment that records its calls."""
    calls = types.SimpleNamespace(prepare=[], train=[])
    module = types.ModuleType(TORCH_MODULE)

    def prepare(exp: Experiment) -> Any:
        calls.prepare.append(exp)
        return {"built": exp.model.params}

    def train(exp: Experiment, base_dir: Path, prepared: Any, *, run_dir: Path, steps: Steps,
              config_note: str = "") -> Any:
        assert run_dir.is_dir() and (run_dir / "train.log").exists()
        with steps.step("fitting", "fit"):
            calls.train.append((exp, base_dir, prepared, run_dir, config_note))
        return "the run"

    module.prepare = prepare  # type: ignore[attr-defined]
    module.train = train  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, TORCH_MODULE, module)
    return calls


def test_a_model_without_family_is_sklearn() -> None:
    exp, _ = load_experiment(titanic_experiment())
    assert isinstance(exp.model, SklearnModelSpec) and exp.model.family == "sklearn"
    model = titanic_experiment()["model"]
    explicit, _ = load_experiment(_with_model({"family": "sklearn", **model}))
    assert explicit == exp
    again = Experiment.model_validate(exp.model_dump(mode="json"))
    assert again.model == exp.model, "a run's experiment.yaml (family written out) reads back"


def test_torch_is_refused_while_its_trainer_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until shipyard.training.torch_experiment exists (and in an install without it), a torch
    experiment is refused when it is loaded, in one line; --set reaches the same check."""
    monkeypatch.setitem(FAMILIES, "torch", replace(FAMILIES["torch"],
                                                   module="shipyard.training.no_such_module"))
    message = _refusal(_with_model({"family": "torch", "architecture": "cnn"}))
    assert message == ("experiment: model.family: torch experiments arrive with the image task "
                       "(this shipyard has no torch trainer yet); use a scikit-learn model "
                       "(leave out family, or family: sklearn)")
    assert "image task" in _refusal(titanic_experiment(),
                                    ["model={family: torch, architecture: cnn}"])
    assert unavailable("sklearn") is None
    assert unavailable("jax") == "model.family: 'jax' is not a model family; allowed: " \
        "['sklearn', 'torch']"


def test_torch_is_available_with_its_trainer() -> None:
    """shipyard.training.torch_experiment exists, so torch experiments load (as image
    experiments); one with a tabular data section says what the image section lacks."""
    assert importlib.util.find_spec(TORCH_MODULE) is not None
    assert unavailable("torch") is None
    exp, _ = load_experiment(_image())
    assert isinstance(exp, ImageExperiment) and isinstance(exp.model, TorchModelSpec)
    message = _refusal(_with_model({"family": "torch", "architecture": "cnn"}))
    assert "data.size: required field is missing" in message
    assert "data.target: unknown field; allowed: ['source', 'size', 'channels'" in message


def test_family_errors_keep_dotted_paths() -> None:
    assert _refusal(_with_model({"family": "jax", "type": "ridge"})) == \
        "experiment: model.family: must be one of 'sklearn', 'torch' (got 'jax')"
    assert _refusal(_with_model({"type": "rige"})).startswith(
        "experiment: model.type: Input should be 'linear_regression'")
    assert _refusal(_with_model({"type": "ridge", "architecture": "cnn"})) == (
        "experiment: model.architecture: unknown field; allowed: ['family', 'type', 'params'] "
        "(got 'cnn')")


def test_torch_spec_validates(torch_trainer: types.SimpleNamespace) -> None:
    exp, _ = load_experiment(_image({"channels": [8, 16]}))
    assert isinstance(exp.model, TorchModelSpec)
    assert (exp.model.label, exp.model.params, exp.is_tree_model) == \
        ("torch cnn", {"channels": [8, 16]}, False)
    raw = _image()
    raw["model"] = {"family": "torch", "architecture": "vit", "layers": 3}
    message = _refusal(raw)
    assert "model.architecture: Input should be 'cnn' (got 'vit')" in message
    assert "model.layers: unknown field; allowed: ['family', 'architecture', 'params']" in message
    raw["model"] = {"family": "torch"}
    assert "model.architecture: required field is missing" in _refusal(raw)


def test_training_dispatches_to_the_family_module(
    torch_trainer: types.SimpleNamespace, tmp_path: Path
) -> None:
    exp, base = load_experiment(_image({"width": 4}))
    result = train_experiment(exp, base, output=tmp_path / "run", config_note="note")
    assert result == "the run"
    assert torch_trainer.prepare == [exp]
    (seen, seen_base, prepared, run_dir, note), = torch_trainer.train
    assert (seen, seen_base, prepared, run_dir, note) == \
        (exp, base, {"built": {"width": 4}}, (tmp_path / "run").resolve(), "note")
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "experiment digits (multiclass, torch cnn)" in log and "fitting" in log


def test_prepare_fails_before_a_run_directory_exists(tmp_path: Path) -> None:
    raw = titanic_experiment()
    raw["model"]["params"]["n_estimator"] = 5
    exp, base = load_experiment(raw)
    with pytest.raises(ConfigError, match=r"model\.params: \['n_estimator'\]"):
        train_experiment(exp, base, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_family_without_evaluate_is_refused(torch_trainer: types.SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match=r"^evaluate: runs of model family 'torch' cannot be "
                       "evaluated again yet"):
        family_evaluator("torch")
    assert callable(family_evaluator("sklearn").evaluate)


def test_cli_prints_the_refusal_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setitem(FAMILIES, "torch", replace(FAMILIES["torch"],
                                                   module="shipyard.training.no_such_module"))
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(_with_model({"family": "torch", "architecture": "cnn"})),
                      encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith(f"error: {config}: model.family: torch experiments arrive "
                                    "with the image task")
