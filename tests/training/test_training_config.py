"""The experiment schema: validation messages, --set overrides, path resolution, model params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from training_support import EXAMPLES, TITANIC, titanic_experiment

from shipyard.errors import ConfigError
from shipyard.training.config import Experiment, load_experiment
from shipyard.training.models import build_estimator
from shipyard.training.overrides import apply_overrides, parse_override


@pytest.mark.parametrize("name", ["titanic", "risk", "diabetes"])
def test_examples_validate(name: str) -> None:
    exp, base = load_experiment(EXAMPLES / name / "experiment.yaml")
    assert exp.name == name
    assert base == (EXAMPLES / name).resolve()
    if name == "titanic":
        assert Path(exp.data.source) == TITANIC.resolve()
        assert exp.features is not None and exp.features["pclass"].type == "categorical"


def test_unknown_key_names_path_and_allowed_fields() -> None:
    raw = titanic_experiment()
    raw["model"]["hyperparams"] = {"C": 1}
    raw["features"]["age"]["imput"] = "mean"
    with pytest.raises(ConfigError) as err:
        load_experiment(raw)
    text = err.value.message
    assert "model.hyperparams: unknown field; allowed: ['family', 'type', 'params']" in text
    assert "features.age.imput: unknown field; allowed: ['type', 'impute'" in text


def test_bad_value_lists_allowed_values() -> None:
    raw = titanic_experiment()
    raw["task"] = "classification"
    with pytest.raises(ConfigError) as err:
        load_experiment(raw)
    assert "task: Input should be 'regression', 'binary' or 'multiclass'" in err.value.message
    assert "(got 'classification')" in err.value.message


def test_model_that_does_not_fit_the_task() -> None:
    raw = titanic_experiment()
    raw["model"] = {"type": "linear_regression"}
    with pytest.raises(ConfigError, match=r"'linear_regression' does not support task 'binary'; "
                       r"models for binary: \['logistic_regression'"):
        load_experiment(raw)


def test_feature_setting_that_does_not_fit_its_type() -> None:
    raw = titanic_experiment()
    raw["features"]["sex"] = {"type": "categorical", "scale": "standard"}
    with pytest.raises(ConfigError, match=r"features\.sex: scale applies to numeric features only"):
        load_experiment(raw)


def test_overrides_nested_typed_and_shorthand() -> None:
    raw = titanic_experiment()
    doc = apply_overrides(raw, [
        "seed=7", "model.params.subsample=0.5", "training.epochs=3",
        "features.fare.impute=mean", "export.outputs=[score]", "output.run_name=null",
    ])
    assert doc["seed"] == 7
    assert doc["model"]["params"] == {"n_estimators": 25, "max_depth": 2, "learning_rate": 0.2,
                                      "subsample": 0.5}
    assert doc["training"] == {"epochs": 3}
    assert doc["features"]["fare"] == {"type": "numeric", "impute": "mean"}
    assert doc["export"]["outputs"] == ["score"]
    assert doc["output"]["run_name"] is None
    assert raw["seed"] == 0, "the input document is not changed"


def test_override_errors() -> None:
    with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="'task' is 'binary', not a mapping"):
        apply_overrides(titanic_experiment(), ["task.kind=x"])
    with pytest.raises(ConfigError, match="the experiment infers its features"):
        apply_overrides({**titanic_experiment(), "features": None}, ["features.age=text"])
    with pytest.raises(ConfigError, match=r"model.parms: unknown field.*\[from --set\]"):
        load_experiment(titanic_experiment(), ["model.parms.C=1"])


def test_relative_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "exp"
    folder.mkdir()
    raw = titanic_experiment()
    raw["data"]["source"] = "data/t.csv"
    (folder / "experiment.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    exp, _ = load_experiment(folder / "experiment.yaml")
    assert exp.data.source == str(folder / "data" / "t.csv")
    monkeypatch.chdir(tmp_path)
    exp, _ = load_experiment(folder / "experiment.yaml", ["data.source=other.csv"])
    assert exp.data.source == str(tmp_path / "other.csv"), "--set paths: the current folder"
    exp, _ = load_experiment(folder / "experiment.yaml", ["data.source=sklearn:iris"])
    assert exp.data.source == "sklearn:iris"


def test_model_params_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"model.params: \['n_estimator'\] not parameter\(s\) "
                       r"of random_forest \(RandomForestClassifier\); allowed: .*'n_estimators'"):
        build_estimator("random_forest", {"n_estimator": 5}, "binary", seed=0)
    with pytest.raises(ConfigError, match=r"model\.params: invalid for random_forest"):
        build_estimator("random_forest", {"n_estimators": -5}, "binary", seed=0)
    with pytest.raises(ConfigError, match=r"training\.epochs: model 'ridge' does not train in "
                       "epochs"):
        build_estimator("ridge", {}, "regression", seed=0, epochs=3)
    mlp = build_estimator("mlp", {"hidden_layer_sizes": [4]}, "multiclass", seed=3, epochs=7)
    assert (mlp.max_iter, mlp.random_state) == (7, 3)
    assert build_estimator("linear_regression", {}, "regression", seed=0).fit_intercept


def test_experiment_object_round_trip() -> None:
    exp, _ = load_experiment(titanic_experiment())
    again, _ = load_experiment(exp, {"seed": 5})
    assert isinstance(again, Experiment) and again.seed == 5 and again.name == exp.name
