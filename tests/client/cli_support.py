"""Helpers of tests/client: ``shipyard`` run as a user runs it (a subprocess, no SHIPYARD_*
settings from this environment), its one-line mistakes, and a tabular model of raw columns
(titanic) trained tiny, published and served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED, ServerProcess, start_server

TITANIC = SHARED / "data" / "titanic" / "titanic3.csv"


def shipyard(*args: str, cwd: Path | None = None, timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
    """``python -m shipyard ARGS`` with this checkout's sources, a wide terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "shipyard", *args], capture_output=True,
                          text=True, timeout=timeout, env={**env, "COLUMNS": "200"}, cwd=cwd)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line of a user's mistake (exit 2, no traceback)."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def served_titanic(root: Path) -> tuple[Path, ServerProcess]:
    """A titanic run (raw columns in, trained tiny under ``root``) published into a
    repository a started server serves: (the run directory, the server). Skips without the
    data."""
    if not TITANIC.is_file():
        pytest.skip(f"titanic data not found at {TITANIC}")
    from shipyard.api import publish, train

    raw = {"name": "titanic", "task": "binary", "seed": 0,
           "data": {"source": str(TITANIC), "target": "survived"},
           "features": {"pclass": "categorical", "sex": "categorical",
                        "age": {"type": "numeric", "impute": "median"}, "sibsp": "numeric",
                        "fare": {"type": "numeric", "impute": "median"},
                        "embarked": "categorical"},
           "model": {"type": "logistic_regression", "params": {"C": 0.5}},
           "output": {"plots": False}}
    run = train(raw, output=root / "run")
    publish(run, root / "repo")
    return root / "run", start_server(root / "repo")
