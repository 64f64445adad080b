"""Helpers of the command-line tests of tests/client: ``shipyard`` run as a user runs it (a
subprocess, no SHIPYARD_* settings from this environment), and its one-line mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


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
