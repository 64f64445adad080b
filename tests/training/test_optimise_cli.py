"""``shipyard optimise RUN`` on a tiny digits run: every variant written and measured, the table
in report.md, ``publish --variant``, and user mistakes in one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
import yaml
from training_support import titanic_experiment
from typer.testing import CliRunner

from shipyard import api
from shipyard.cli import app
from shipyard.training.config import load_experiment
from shipyard.training.run import Run
from shipyard.training.trainer import train_experiment

# two blocks of 16 channels: --prune 0.5 keeps 8 of each (a multiple of 8, as prune_channels
# rounds to by default), and the head reads 16 x 2 x 2 features
TINY_CNN = {"blocks": [{"channels": 16}, {"channels": 16}], "head": {"hidden": [16],
                                                                      "dropout": 0.0}}
FAST = ["--calibration", "64", "--threads", "1"]


def _digits() -> dict[str, Any]:
    return {
        "name": "digits-opt",
        "data": {"source": "sklearn:digits", "size": 8, "limit": 300},
        "model": {"family": "torch", "architecture": "cnn", "params": TINY_CNN},
        "training": {"epochs": 3, "batch_size": 32, "optimizer": {"name": "adamw",
                                                                   "lr": 0.01}},
    }


def _train(raw: dict[str, Any], run_dir: Path) -> Run:
    exp, base = load_experiment(raw, [])
    return train_experiment(exp, base, output=run_dir)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))


@pytest.fixture(scope="module")
def optimised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Any]:
    """A trained digits run, then ``shipyard optimise`` on it through the CLI."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))
    try:
        run = _train(_digits(), tmp_path_factory.mktemp("digits") / "run")
        result = CliRunner().invoke(app, ["optimise", str(run.path), "--prune", "0.5",
                                          "--fine-tune-epochs", "1", "--unstructured", "0.5",
                                          *FAST])
    finally:
        mp.undo()
    return run, result


def test_optimise_writes_every_variant_and_the_comparison(optimised: tuple[Run, Any]) -> None:
    run, result = optimised
    assert result.exit_code == 0, result.output
    out = run.path / "optimised"
    for variant in ("int8", "pruned", "pruned-int8", "unstructured"):
        assert (out / variant / "model.onnx").is_file(), variant
    data = json.loads((out / "comparison.json").read_text())
    rows = {r["name"]: r for r in data["comparison"]["rows"]}
    assert list(rows) == ["fp32", "int8", "pruned", "pruned-int8", "unstructured"]
    variants = data["variants"]
    fp32 = rows["fp32"]
    assert fp32["path"] == str(run.onnx_path)
    assert fp32["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"], abs=0.02)
    for name, row in rows.items():
        assert row["bytes"] == Path(row["path"]).stat().st_size > 0
        assert 0 <= row["accuracy"] <= 1
        assert row["latency_ms"]["1"] > 0 and row["throughput"]["1"] > 0, name
        assert abs(row["accuracy"] - fp32["accuracy"]) <= 0.35, (name, rows)
    assert abs(rows["int8"]["accuracy"] - fp32["accuracy"]) <= 0.1
    assert rows["int8"]["bytes"] < fp32["bytes"]
    assert rows["pruned-int8"]["bytes"] < rows["pruned"]["bytes"] < fp32["bytes"]
    assert variants["pruned"]["parameters"] < variants["fp32"]["parameters"]
    assert variants["pruned"]["channels"] == [8, 8]
    assert variants["int8"]["method"] == "static"
    assert variants["int8"]["quantized_ops"].get("QuantizeLinear", 0) > 0
    assert variants["unstructured"]["sparsity"] >= 0.45
    assert rows["unstructured"]["bytes"] == pytest.approx(fp32["bytes"], rel=0.05)
    assert data["options"]["prune"] == 0.5
    assert "pruned-int8" in result.output and "comparison.json" in result.output


def test_report_gains_the_table_once(optimised: tuple[Run, Any]) -> None:
    run, _ = optimised
    report = (run.path / "report.md").read_text()
    assert report.count("## Optimised variants") == 1
    assert "| pruned-int8 |" in report and "| int8 |" in report
    # optimising again replaces the section rather than adding a second one
    again = api.optimise(run, prune=0, calibration=32, latency_runs=10)
    report = (run.path / "report.md").read_text()
    assert report.count("## Optimised variants") == 1
    assert "| int8 |" in report and "| pruned |" not in report
    assert [r.name for r in again.comparison.rows] == ["fp32", "int8"]
    assert report.startswith("# digits-opt")


def test_publish_variant_int8_has_image_steps_and_qdq_nodes(optimised: tuple[Run, Any],
                                                            tmp_path: Path) -> None:
    run, _ = optimised
    variants = json.loads((run.path / "optimised" / "comparison.json").read_text())["variants"]
    if "int8" not in variants:  # test_report_gains_the_table_once may have run first
        api.optimise(run, prune=0, calibration=32, latency_runs=10)
    result = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(tmp_path / "m"),
                                      "--variant", "int8"])
    assert result.exit_code == 0, result.output
    version = tmp_path / "m" / "digits-opt" / "1"
    config = yaml.safe_load((tmp_path / "m" / "digits-opt" / "config.yaml").read_text())
    assert next(iter(config["preprocess"][0])) == "image_decode"
    assert [next(iter(s)) for s in config["postprocess"]] == ["softmax", "top_k", "labels"]
    assert "variant int8" in config["description"]
    ops = {n.op_type for n in onnx.load(str(version / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (version / "model.onnx").read_bytes() == \
        (run.path / "optimised" / "int8" / "model.onnx").read_bytes()
    # the default is still the run's own model
    plain = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(tmp_path / "m")])
    assert plain.exit_code == 0, plain.output
    assert (tmp_path / "m" / "digits-opt" / "2" / "model.onnx").read_bytes() == \
        run.onnx_path.read_bytes()


def _one_line_exit_2(args: list[str], *words: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_options_are_one_line(optimised: tuple[Run, Any], tmp_path: Path) -> None:
    run, _ = optimised
    path = str(run.path)
    _one_line_exit_2(["optimise", path, "--prune", "1.5"], "--prune", "1.5", "[0, 1)")
    _one_line_exit_2(["optimise", path, "--unstructured", "-0.1"], "--unstructured")
    _one_line_exit_2(["optimise", path, "--calibration", "0"], "--calibration")
    _one_line_exit_2(["optimise", path, "--threads", "0"], "--threads")
    _one_line_exit_2(["optimise", path, "--fine-tune-epochs", "-1"], "--fine-tune-epochs")
    _one_line_exit_2(["publish", path, "--repo", str(tmp_path / "m"), "--variant", "int4"],
                     "'int4'", "int8")


def test_publish_variant_of_a_run_never_optimised(tmp_path: Path) -> None:
    run = _train({**_digits(), "name": "digits-plain",
                  "model": {"family": "torch", "architecture": "cnn",
                            "params": {"blocks": [{"channels": 8}], "head": {"hidden": []}}},
                  "export": {"torch_program": False}}, tmp_path / "run")
    _one_line_exit_2(["publish", str(run.path), "--repo", str(tmp_path / "m"), "--variant",
                      "int8"], "not been optimised", "shipyard optimise")
    assert not (tmp_path / "m").exists()


def test_a_sklearn_run_is_refused_in_one_line(tmp_path: Path) -> None:
    run = _train(titanic_experiment(), tmp_path / "run")
    _one_line_exit_2(["optimise", str(run.path)], "scikit-learn", "torch image runs")
    assert not (run.path / "optimised").exists()
    _one_line_exit_2(["publish", str(run.path), "--repo", str(tmp_path / "m"), "--variant",
                      "int8"], "scikit-learn", "--variant")
