"""Image experiments (model.family: torch) end to end: tiny runs on real and generated images,
every run file, ONNX Runtime against torch, config errors in one line, evaluate again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from training_support import EXAMPLES, png
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.errors import ConfigError
from shipyard.training.config import ImageExperiment, load_experiment
from shipyard.training.run import Run
from shipyard.training.trainer import evaluate_run, train_experiment

TINY_CNN = {"blocks": [{"channels": 8}], "head": {"hidden": [16]}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))


def digits(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "digits-tiny",
        "data": {"source": "sklearn:digits", "size": 8, "limit": 300},
        "model": {"family": "torch", "architecture": "cnn", "params": TINY_CNN},
        "training": {"epochs": 1, "batch_size": 32},
        "augment": {"rotation": 5},
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


def _train(raw: dict[str, Any], run_dir: Path, overrides: list[str] | None = None) -> Run:
    exp, base = load_experiment(raw, overrides or [])
    return train_experiment(exp, base, output=run_dir)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))
    try:
        return _train(digits(), tmp_path_factory.mktemp("digits") / "run")
    finally:
        mp.undo()


def test_a_tiny_run_writes_every_file(digits_run: Run) -> None:
    root = digits_run.path
    for name in ("experiment.yaml", "metrics.json", "evaluation.json", "export.json", "run.json",
                 "report.md", "train.log", "model.onnx", "model.pt2", "model_state.pt",
                 "serving.json", "history.json"):
        assert (root / name).is_file(), name
    for name in ("curves.png", "plots/confusion_matrix_test.png", "plots/wrong_test.png"):
        assert png(root / name), name
    metrics = json.loads((root / "metrics.json").read_text())
    assert list(metrics) == ["test", "validation", "training"]
    for split in ("test", "validation"):
        assert {"accuracy", "precision_macro", "recall_macro", "f1_macro",
                "f1_weighted"} <= set(metrics[split])
    assert metrics["training"]["epochs"] == 1
    assert metrics["training"]["seconds_per_epoch"] > 0
    assert metrics["training"]["images_per_s"] > 0
    details = json.loads((root / "evaluation.json").read_text())["test"]
    assert set(details["per_class"]) == {str(d) for d in range(10)}
    assert details["confusion_matrix"]["labels"] == [str(d) for d in range(10)]
    wrong = details["most_confident_wrong"]
    probabilities = [w["probability"] for w in wrong]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(w["true"] != w["predicted"] for w in wrong)
    info = digits_run.info
    assert info["data"]["train"] + info["data"]["validation"] + info["data"]["test"] == 300
    assert isinstance(digits_run.experiment, ImageExperiment)
    report = (root / "report.md").read_text()
    for text in ("## Metrics", "## Per class (test)", "plots/wrong_test.png", "curves.png",
                 "time per epoch", "ONNX Runtime vs torch", "## Epochs"):
        assert text in report, text


def test_onnx_runtime_agrees_with_torch(digits_run: Run) -> None:
    import onnxruntime as ort
    import torch

    from shipyard.data.image import load_image_source, to_tensor
    from shipyard.models.cnn import CNNConfig, build_cnn

    export = digits_run.export
    assert export["converted"] and export["agreement"]["passed"]
    assert export["agreement"]["max_abs_diff"] <= 1e-4
    assert export["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8],
                                 "format": "FORMAT_NCHW"}]
    assert export["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert export["torch_program"]["passed"]
    # independently: the saved weights in torch against the ONNX file, on 37 images
    images = load_image_source("sklearn:digits", size=8)["all"].images[:37]
    x = to_tensor(images)
    net = build_cnn(CNNConfig.model_validate(TINY_CNN), 1, 8, 8, 10)
    net.load_state_dict(torch.load(digits_run.path / "model_state.pt", weights_only=True))
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(digits_run.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "image"
    got = session.run(["logits"], {"image": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    program = torch.export.load(digits_run.path / "model.pt2").module()
    np.testing.assert_allclose(program(torch.from_numpy(x))["logits"].detach().numpy(),
                               expected, atol=1e-5)


def test_serving_json_holds_what_publish_needs(digits_run: Run) -> None:
    from shipyard.repository.config import ModelConfig
    from shipyard.training.torch_experiment import serving_config

    serving = serving_config(digits_run)
    assert serving["class_names"] == [str(d) for d in range(10)]
    assert serving["preprocess"] == [
        {"image_decode": {"mode": "L"}},
        {"resize": {"size": [8, 8], "interpolation": "bilinear"}},
        {"to_dtype": {"dtype": "float32", "scale": 1 / 255}},
        {"layout": {"to": "NCHW"}}]
    assert serving["image"] == {"size": [8, 8], "channels": 1, "interpolation": "bilinear",
                                "normalize": None, "normalize_in": "steps",
                                "input_range": "pixels / 255"}
    # the config.yaml parts are valid for the server's schema as they are
    ModelConfig.model_validate({k: serving[k] for k in ("backend", "max_batch_size",
                                                        "preprocess", "postprocess", "labels")})
    ModelConfig.model_validate({"inputs": serving["inputs"], "outputs": serving["outputs"],
                                "max_batch_size": 8})


def test_evaluate_scores_the_run_again(digits_run: Run) -> None:
    result = evaluate_run(digits_run)
    assert result.metrics == digits_run.metrics["test"]
    assert png(result.path / "plots" / "wrong_test.png")
    assert json.loads((result.path / "metrics.json").read_text())["test"] == result.metrics


def _jpeg_folder(root: Path, classes: dict[str, tuple[int, int, int]], per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", per_class // 3)):
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (30, 40, 3)) + np.array(colour)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    folder / f"{i}.jpg", quality=90)
    return root


def test_a_colour_jpeg_folder_trains_with_overrides_only(tmp_path: Path) -> None:
    """The mnist_png example, pointed at colour 40x30 JPEGs of three classes by --set only."""
    photos = _jpeg_folder(tmp_path / "photos",
                          {"red": (190, 0, 0), "green": (0, 190, 0), "blue": (0, 0, 190)}, 30)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", str(EXAMPLES / "mnist_png" / "experiment.yaml"), "-o", str(run_dir), "-q",
        "--set", f"data.source={photos}", "--set", "data.size=[24,32]",
        "--set", "data.channels=3", "--set", "name=photos", "--set", "training.epochs=1",
        "--set", "model.params={blocks: [{channels: 4}], head: {hidden: []}}"])
    assert result.exit_code == 0, result.output
    run = Run.load(run_dir)
    assert run.class_names == ["blue", "green", "red"]
    assert run.export["inputs"][0]["shape"] == [-1, 3, 24, 32]
    assert run.export["agreement"]["passed"]
    assert run.info["data"]["test"] == 30 and run.info["data"]["origin"]["test"] == \
        "source split 'test'"
    serving = json.loads((run_dir / "serving.json").read_text())
    assert serving["preprocess"][0] == {"image_decode": {"mode": "RGB"}}
    wrong = json.loads((run_dir / "evaluation.json").read_text())["test"]
    assert all(w["file"].startswith("test/") for w in wrong["most_confident_wrong"])


@pytest.mark.parametrize(("override", "expected"), [
    ("data.size=[64]", "data.size: must be [height, width], two integers from 1 to 4096, or "
                       "one integer for a square (got [64]) [from --set]"),
    ("augment.hflp=0.5", "augment.hflp: unknown field; allowed: ['hflip', 'crop_padding', "),
    ("model.params.blocks=[{channels: 0}]", "model.params.blocks.0.channels: Input should be "
                                            "greater than or equal to 1 (got 0)"),
    ("model.params.depth=3", "model.params.depth: unknown field; allowed: ['blocks', "
                             "'global_pool', 'head'] (got 3)"),
    ("data.channels=2", "data.channels: Input should be 1 or 3 (got 2) [from --set]"),
    ("data.normalize={mean: [0.5, 0.5], std: 0.2}", "data.normalize.mean: 2 values for 1 "
                                                    "channel(s)"),
    ("training.optimizer.lr=-1", "training.optimizer.lr: Input should be greater than 0"),
])
def test_config_errors_are_one_line_with_dotted_paths(override: str, expected: str,
                                                      tmp_path: Path) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(digits()), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "-q", "-o", str(tmp_path / "run"),
                                      "--set", override])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    assert expected in result.output
    assert result.output.startswith("error: ")
    assert not (tmp_path / "run").exists()


def test_blocks_that_shrink_the_image_away_are_refused_before_the_run(tmp_path: Path) -> None:
    exp, base = load_experiment(digits(), ["model.params.blocks=[{channels: 4}, {channels: 4}, "
                                           "{channels: 4}, {channels: 4}]"])
    with pytest.raises(ConfigError, match=r"^experiment: model\.params\.blocks\[3\] makes the "
                       r"8x8 input 0x0"):
        train_experiment(exp, base, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_continues_an_interrupted_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    quick = {"export": {"onnx": False, "torch_program": False}, "output": {"plots": False}}
    _train(digits(training={"epochs": 1, "batch_size": 64}, **quick), run_dir)
    exp, base = load_experiment(digits(training={"epochs": 2, "batch_size": 64}, **quick))
    with pytest.raises(ConfigError, match=r"^--resume"):
        train_experiment(exp, base, resume=tmp_path)
    run = train_experiment(exp, base, resume=run_dir)
    history = json.loads((run.path / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert any("resum" in note for note in history["notes"])
    assert run.metrics["training"]["epochs"] == 2


def test_examples_load_and_their_relative_paths_resolve() -> None:
    for name in ("fashion_mnist", "digits", "mnist_png"):
        exp, _ = load_experiment(EXAMPLES / name / "experiment.yaml")
        assert isinstance(exp, ImageExperiment), name
    exp, _ = load_experiment(EXAMPLES / "mnist_png" / "experiment.yaml")
    assert Path(exp.data.source).is_absolute() and (Path(exp.data.source) / "train").is_dir()
    fashion, _ = load_experiment(EXAMPLES / "fashion_mnist" / "experiment.yaml")
    assert fashion.data.source == "idx:/usr/share/datasets/fashion-mnist"
    assert fashion.training.schedule.name == "one_cycle" and fashion.augment.hflip == 0.5
