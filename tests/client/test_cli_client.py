"""``shipyard models list|load|unload`` and ``shipyard health`` against real servers, in
subprocesses as a user runs them: answers, exit codes, and a mistake as one line on stderr."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import one_error_line, shipyard
from conftest import DEMO_REPOSITORY, ServerProcess, start_server

TOKEN = "ctl-s3cret-0123456789abcdef"
AUTH = "auth-s3cret-0123456789abcdef"


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """risk and sms under explicit model control, with a control token and an auth token;
    only risk loaded at start."""
    root = tmp_path_factory.mktemp("explicit")
    for name in ("risk", "sms"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    proc = start_server(root, "--model-control", "explicit", "--load-model", "risk",
                        "--control-token", TOKEN, "--auth-token", AUTH)
    yield proc
    proc.stop()


def test_health_and_list_over_rest_and_grpc(demo_server: ServerProcess) -> None:
    for url in (f"http://{demo_server.http_url}", f"grpc://{demo_server.grpc_url}"):
        result = shipyard("health", "--url", url, "--model", "sms")
        assert result.returncode == 0, result
        assert "live yes, ready yes" in result.stdout and "model 'sms': ready yes" in result.stdout
        listed = shipyard("models", "list", "--url", url, "--format", "json")
        assert listed.returncode == 0, listed
        rows = json.loads(listed.stdout)
        assert {(r["name"], r["state"]) for r in rows} == {
            ("cnn", "READY"), ("digits", "READY"), ("risk", "READY"), ("sms", "READY")}
        table = shipyard("models", "list", "--url", url)
        assert table.returncode == 0 and "digits" in table.stdout and "READY" in table.stdout


def test_load_and_unload_with_the_control_token(explicit: ServerProcess) -> None:
    for url in (f"http://{explicit.http_url}", f"grpc://{explicit.grpc_url}"):
        auth = ("--url", url, "--token", AUTH)
        before = {r["name"]: r["state"] for r in json.loads(
            shipyard("models", "list", *auth, "--format", "json").stdout)}
        assert before["sms"] != "READY"
        loaded = shipyard("models", "load", "sms", *auth, "--control-token", TOKEN)
        assert loaded.returncode == 0 and "loaded 'sms'" in loaded.stdout, loaded
        assert shipyard("health", *auth, "--model", "sms").returncode == 0
        unloaded = shipyard("models", "unload", "sms", *auth, "--control-token", TOKEN)
        assert unloaded.returncode == 0, unloaded
        health = shipyard("health", *auth, "--model", "sms")
        assert health.returncode == 1 and "model 'sms': ready no" in health.stdout


def test_user_mistakes_are_one_line_and_exit_2(explicit: ServerProcess,
                                               demo_server: ServerProcess) -> None:
    url = f"http://{explicit.http_url}"
    line = one_error_line(shipyard("models", "load", "nope", "--url", url, "--token", AUTH,
                                    "--control-token", TOKEN))
    assert "nope" in line
    line = one_error_line(shipyard("models", "load", "sms", "--url", url, "--token", AUTH,
                                    "--control-token", "wrong"))
    assert "token" in line
    line = one_error_line(shipyard("models", "list", "--url", f"grpc://{explicit.grpc_url}"))
    assert "Authorization" in line or "token" in line  # no --token: Unauthenticated
    line = one_error_line(shipyard("models", "load", "risk", "--url",
                                    f"http://{demo_server.http_url}"))
    assert "--model-control explicit" in line
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for dead in (f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"):
        line = one_error_line(shipyard("health", "--url", dead, "--timeout", "3"))
        assert "cannot reach the server" in line and "--url" in line
    line = one_error_line(shipyard("health", "--url", "ftp://example"))
    assert "http://, https://, grpc:// or grpcs://" in line


def test_help_shows_defaults_and_choices() -> None:
    listed = shipyard("models", "list", "--help")
    assert listed.returncode == 0
    text_of = " ".join(listed.stdout.split())  # as wrapped for the terminal, unwrapped
    for text in ("http://127.0.0.1:8000", "table|json", "[default: table]", "[default: 10.0;",
                 "[default: none]", "SHIPYARD_URL"):
        assert text in text_of, text
    assert "<bool>" not in text_of and "\\[" not in text_of
    load = " ".join(shipyard("models", "load", "--help").stdout.split())
    assert "[default: --token]" in load and "[default: 120.0;" in load
    top = shipyard("--help").stdout
    assert "models" in top and "health" in top


def test_ca_file_that_cannot_be_read_is_a_user_mistake(tmp_path: Path) -> None:
    line = one_error_line(shipyard("health", "--url", "https://127.0.0.1:1",
                                    "--ca-file", str(tmp_path / "missing.pem")))
    assert "missing.pem" in line
