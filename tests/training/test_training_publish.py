"""Publishing into a model repository: versions, config.yaml, atomicity, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from training_support import titanic_experiment

from shipyard.api import publish, train
from shipyard.errors import ExportError
from shipyard.repository import publish as publish_module
from shipyard.serving.config import load_model_config
from shipyard.training.run import Run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    raw = titanic_experiment()
    raw["data"]["class_names"] = {"0": "died", "1": "survived"}
    return train(raw, output=tmp_path_factory.mktemp("pub") / "run")


def test_versions_and_config(run: Run, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = publish(run, repo)
    second = publish(run.path, repo)
    assert (first.model, first.version, second.version) == ("titanic-tiny", 1, 2)
    model_dir = repo / "titanic-tiny"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "config.yaml"], \
        "no hidden staging folders or temporary files are left"
    assert sorted(p.name for p in (model_dir / "2").iterdir()) == [
        "experiment.yaml", "export.json", "metrics.json", "model.onnx"]
    assert (model_dir / "2" / "model.onnx").read_bytes() == run.onnx_path.read_bytes()
    config = load_model_config(model_dir / "config.yaml", "titanic-tiny")  # the server's reader
    assert config.max_batch_size == 256
    assert config.labels == {"probabilities": ["died", "survived"]}
    assert "sex BYTES" in config.description and "accuracy" in config.description


def test_existing_config_keeps_serving_settings(run: Run, tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "survival"
    model_dir.mkdir(parents=True)
    (model_dir / "config.yaml").write_text(
        "instances: 2\nmax_batch_size: 64\nlabels: {old: [a, b]}\n", encoding="utf-8")
    (model_dir / "7").mkdir()
    published = publish(run, tmp_path / "repo", model="survival")
    assert published.version == 8
    config = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    assert (config["instances"], config["max_batch_size"]) == (2, 64)
    assert config["labels"] == {"probabilities": ["died", "survived"]}


def test_stale_declared_inputs_are_refused(run: Run, tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "m"
    model_dir.mkdir(parents=True)
    (model_dir / "config.yaml").write_text(
        "inputs: [{name: features, datatype: FP32, shape: [30]}]\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"declares inputs \['features'\] but the new model has "
                       r"\['pclass', 'sex', 'age', 'sibsp', 'fare', 'embarked'\]"):
        publish(run, tmp_path / "repo", model="m")
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.yaml"]


def test_failed_write_leaves_nothing(run: Run, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    real_write = publish_module._write
    calls: list[Path] = []

    def broken(path: Path, data: bytes) -> None:
        calls.append(path)
        if path.name == "metrics.json":
            raise OSError("disk full")
        real_write(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(publish_module, "_write", broken)
        with pytest.raises(OSError, match="disk full"):
            publish(run, repo)  # a new model: staged in a hidden folder of the repository
    assert calls[0].parent.parent.name.startswith(".publish-titanic-tiny-")
    assert list(repo.iterdir()) == []
    publish(run, repo)
    monkeypatch.setattr(publish_module, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        publish(run, repo)  # a new version: staged in a hidden folder of the model
    assert calls[-1].parent.name.startswith(".publish-")
    assert sorted(p.name for p in (repo / "titanic-tiny").iterdir()) == ["1", "config.yaml"]


def test_disagreeing_export_needs_force(run: Run, tmp_path: Path) -> None:
    export = dict(run.export)
    export["agreement"] = {**export["agreement"], "passed": False, "label_mismatches": 3}
    (run.path / "export.json").write_text(json.dumps(export), encoding="utf-8")
    try:
        with pytest.raises(ExportError, match="ONNX Runtime and scikit-learn disagree"):
            publish(run.path, tmp_path / "repo")
        assert publish(run.path, tmp_path / "repo", force=True).version == 1
    finally:
        (run.path / "export.json").write_text(json.dumps(run.export), encoding="utf-8")


def test_bad_model_name(run: Run, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"'\.\./x' is not a valid model name"):
        publish(run, tmp_path, model="../x")


def test_publish_validates_with_the_servers_schema(run: Run, tmp_path: Path) -> None:
    """A config the server would refuse is never published: the existing config.yaml's bad
    field is named, and nothing is written."""
    model_dir = tmp_path / "repo" / "m"
    model_dir.mkdir(parents=True)
    (model_dir / "config.yaml").write_text("instances: 0\nmax_batchsize: 4\n", encoding="utf-8")
    with pytest.raises(ExportError) as info:
        publish(run, tmp_path / "repo", model="m")
    assert "instances" in info.value.message and "max_batchsize: unknown field" in \
        info.value.message, info.value.message
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.yaml"]
