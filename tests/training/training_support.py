"""Shared helpers of the training tests: data paths and tiny experiments on real data."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, SHARED

TITANIC = SHARED / "data" / "titanic" / "titanic3.csv"
SMS_SPAM = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
EXAMPLES = ROOT / "examples"

_TITANIC: dict[str, Any] = {
    "name": "titanic-tiny",
    "task": "binary",
    "seed": 0,
    "data": {"source": str(TITANIC), "target": "survived"},
    "features": {
        "pclass": "categorical",
        "sex": "categorical",
        "age": {"type": "numeric", "impute": "median"},
        "sibsp": "numeric",
        "fare": "numeric",
        "embarked": "categorical",
    },
    "model": {"type": "gradient_boosting",
              "params": {"n_estimators": 25, "max_depth": 2, "learning_rate": 0.2}},
    "split": {"test_size": 0.25, "validation_size": 0.2},
    "output": {"plots": False},
}


def titanic_experiment() -> dict[str, Any]:
    """A small, fast titanic experiment (a fresh copy each call)."""
    return copy.deepcopy(_TITANIC)


def png(path: Path) -> bool:
    """The file is a PNG image."""
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


#: the training stack: what a serving host (``pip install 'shipyard[serve]'``) lacks
TRAINING_STACK = ("sklearn", "pandas", "pyarrow", "skl2onnx", "onnx", "onnxscript", "matplotlib",
                  "joblib", "torch")
_WITHOUT_TRAINING = (
    "import sys\n"
    "for name in {names!r}:\n"
    "    sys.modules[name] = None  # import of it fails, as where it is not installed\n"
    "from shipyard.cli import main\n"
    "sys.argv = ['shipyard', *sys.argv[1:]]\n"
    "main()\n"
)


def _publish_without_training(run: Path, repo: Path, model: str, *options: str
                              ) -> subprocess.CompletedProcess[str]:
    """``shipyard publish`` of a finished run in a process where none of the training stack
    can be imported (``TRAINING_STACK``), as on a host with only ``shipyard[serve]``."""
    code = _WITHOUT_TRAINING.format(names=TRAINING_STACK)
    return subprocess.run(
        [sys.executable, "-c", code, "publish", str(run), "--repo", str(repo), "--model", model,
         *options], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def check_publish_on_serving_host(cases: dict[str, tuple[Path, list[str]]], tmp_path: Path
                                  ) -> None:
    """Each case (model name -> run directory, publish options) publishes on a serving host
    (:func:`_publish_without_training`) to the very files a full install writes."""
    from typer.testing import CliRunner

    from shipyard.cli import app

    for name, (run, options) in cases.items():
        done = _publish_without_training(run, tmp_path / "host", name, *options)
        assert done.returncode == 0, done.stderr
        full = CliRunner().invoke(app, ["publish", str(run), "--repo", str(tmp_path / "full"),
                                        "--model", name, *options])
        assert full.exit_code == 0, full.output
        assert same_tree(tmp_path / "host" / name, tmp_path / "full" / name) == [], name


def same_tree(a: Path, b: Path) -> list[str]:
    """The relative paths whose presence or bytes differ between folders ``a`` and ``b``."""
    files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
    return sorted(str(k) for k in files_a.keys() | files_b.keys()
                  if k not in files_a or k not in files_b
                  or files_a[k].read_bytes() != files_b[k].read_bytes())
