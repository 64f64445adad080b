"""``shipyard serve`` start-up mistakes: one line naming the problem and the fix, exit 2."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main
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


#: serve's options and the ServerSettings field each falls back to
_SERVE_DEFAULTS = {
    "--http-port": "http_port", "--grpc-port": "grpc_port", "--host": "host",
    "--max-body-bytes": "max_body_bytes", "--max-json-bytes": "max_json_bytes",
    "--grace-period": "grace_period_s", "--log-level": "log_level",
    "--log-format": "log_format", "--model-control": "model_control",
    "--poll-interval": "poll_interval_s", "--workers": "workers",
    "--http-server": "http_server", "--auth-metrics": "auth_metrics",
    "--strict-readiness": "strict_readiness",
}


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _option_help(text: str, option: str) -> str:
    """The help of ``option`` (up to the next option) in whitespace-collapsed help text."""
    start = text.index(f" {option} ")
    nxt = re.search(r"(?<!/) --[a-z]", text[start + len(option) + 2:])  # not --no-x
    return text[start:start + len(option) + 2 + (nxt.start() if nxt else len(text))]


def test_serve_help_shows_every_settings_default_and_the_choices() -> None:
    from shipyard.serving.config import ServerSettings

    text = _help("serve")
    for option, name in _SERVE_DEFAULTS.items():
        field = ServerSettings.model_fields[name]
        want = field.get_default(call_default_factory=True)
        shown = {False: "no", True: "yes"}.get(want, want) if isinstance(want, bool) else want
        part = _option_help(text, option)
        assert f"[default: {shown}]" in part, (option, part)
        choices = typing.get_args(field.annotation)
        if choices and all(isinstance(c, str) for c in choices):
            assert f"<{'|'.join(choices)}>" in part, (option, part)


def test_flags_read_as_flags_in_every_commands_help() -> None:
    """No command's help shows a boolean flag as taking a value (typer's rich help prints
    ``--watch <bool>``), and every option that has a default says it."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name in group.commands:
        text = _help(name)
        assert "<bool>" not in text, name
    assert " --watch Hot-reload" in _help("serve")


@pytest.mark.parametrize(("argv", "needle"), [
    (["serve", "--http-port", "abc"], "'--http-port'"),
    (["serve", "--log-level", "loud"], "'loud' is not one of 'debug', 'info'"),
    (["serve", "--no-such-option"], "No such option: --no-such-option"),
    (["serv"], "No such command 'serv'"),
    (["publish"], "Missing argument 'run'"),
])
def test_command_line_mistakes_are_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    done = subprocess.run([sys.executable, "-m", "shipyard", *argv], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith("error: ") and needle in line, line
    assert "--help" in line
