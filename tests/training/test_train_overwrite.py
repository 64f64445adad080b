"""A failed ``shipyard train -o DIR`` leaves DIR (its train.log says why); the same command then
names ``--overwrite``, which replaces an earlier run and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from shipyard.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TITANIC = str(EXAMPLES / "titanic" / "experiment.yaml")
QUICK = ["--quiet", "--json", "--set", "model.params.n_estimators=10", "--set", "split.folds=2",
         "--set", "output.plots=false"]


def test_failed_run_then_rerun_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner = CliRunner()
    failed = runner.invoke(app, ["train", TITANIC, "-o", str(out), *QUICK,
                                 "--set", "features.agee=numeric"])
    assert failed.exit_code == 2
    assert "run failed" in (out / "train.log").read_text(encoding="utf-8")

    again = runner.invoke(app, ["train", TITANIC, "-o", str(out), *QUICK])
    assert again.exit_code == 2
    assert "--overwrite" in again.stderr and str(out) in again.stderr
    assert not (out / "model.onnx").exists()

    fixed = runner.invoke(app, ["train", TITANIC, "-o", str(out), *QUICK, "--overwrite"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["test"]["accuracy"] > 0.7
    assert (out / "model.onnx").is_file()
    assert "run failed" not in (out / "train.log").read_text(encoding="utf-8")
    assert "removed the earlier run" in fixed.stderr


def test_overwrite_leaves_a_folder_that_is_no_run_alone(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(app, ["train", TITANIC, "-o", str(out), *QUICK, "--overwrite"])
    assert result.exit_code == 2
    assert "not an earlier run's folder" in result.stderr
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_overwrite_needs_output() -> None:
    result = CliRunner().invoke(app, ["train", TITANIC, *QUICK, "--overwrite"])
    assert result.exit_code == 2 and "give --output" in result.stderr
