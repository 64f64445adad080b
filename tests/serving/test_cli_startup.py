"""``shipyard serve`` start-up mistakes: one line naming the problem and the fix, exit 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_REPOSITORY
from typer.testing import CliRunner

from shipyard.cli import app


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on (bound before the server starts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _serve(*args: str) -> tuple[int, str]:
    """Run ``shipyard serve`` in-process on the demo repository: (exit code, stderr)."""
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(DEMO_REPOSITORY),
                                      "--host", "127.0.0.1", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"serve raised {result.exception!r} instead of exiting")
    return result.exit_code, result.stderr


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port"])
def test_a_port_in_use_is_one_line_naming_the_port_and_the_fix(
        busy_port: int, flag: str, workers: str) -> None:
    other = "--grpc-port" if flag == "--http-port" else "--http-port"
    code, stderr = _serve(flag, str(busy_port), other, "0", "--workers", workers)
    line = _one_line(stderr)
    assert code == 2, stderr
    assert f"127.0.0.1:{busy_port}" in line and flag in line
    assert "in use" in line and "0 = any free port" in line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_same_port_twice_is_refused(workers: str) -> None:
    code, stderr = _serve("--http-port", "18123", "--grpc-port", "18123", "--workers", workers)
    assert code == 2
    assert "both 18123" in _one_line(stderr)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_missing_config_file_is_one_line(tmp_path: Path, workers: str) -> None:
    missing = tmp_path / "nowhere.yaml"
    code, stderr = _serve("--config", str(missing), "--workers", workers)
    line = _one_line(stderr)
    assert code == 2
    assert str(missing) in line and "no such file" in line and "--config" in line


@pytest.mark.parametrize("text, expected", [
    ("http_port: [8000\n", "not valid YAML at line"),
    ("http_port: 8000\n\tgrpc_port: 8001\n", "not valid YAML"),
    ("- http_port\n- 8000\n", "expected a mapping"),
    ("http_prot: 8000\n", "http_prot"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_malformed_settings_file_is_one_line(tmp_path: Path, text: str, expected: str,
                                               workers: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    code, stderr = _serve("--config", str(path), "--workers", workers)
    line = _one_line(stderr)
    assert code == 2
    assert expected in line


def test_an_empty_settings_file_is_no_settings(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")
    # the port check comes after the file is read: reaching it proves the file was accepted
    code, stderr = _serve("--config", str(path), "--http-port", str(busy_port))
    assert code == 2 and "--http-port" in _one_line(stderr)


def test_a_port_in_use_from_a_real_process_with_two_workers(busy_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(DEMO_REPOSITORY),
         "--host", "127.0.0.1", "--http-port", str(busy_port), "--grpc-port", "0",
         "--workers", "2"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--http-port" in _one_line(proc.stderr)


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"shipyard {version('shipyard')}"
