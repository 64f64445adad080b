"""``shipyard bench`` in very short runs on the demo risk and sms models, as a user runs it: a row
per level with rows/s and no errors, the server's own statistics at least as high as what the
bench reports, the ratio as served/in-process, a real PNG; a ``--url`` run against a server
started here (REST with the built-in client, gRPC); mistakes as one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import one_error_line, shipyard
from conftest import DEMO_REPOSITORY, ServerProcess, start_server

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-repo")
    for name in ("risk", "sms"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    proc = start_server(repo)
    yield proc
    proc.stop()


def success_count(server: ServerProcess, model: str) -> int:
    doc = httpx.get(f"http://{server.http_url}/v2/models/{model}/stats", timeout=10).json()
    count: int = doc["model_stats"][0]["inference_stats"]["success"]["count"]
    return count


def check_report(folder: Path, stdout: str, levels: list[tuple[str, int]]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / "bench.json").read_text())
    assert [(lv["protocol"], lv["concurrency"]) for lv in doc["levels"]] == levels
    for lv in doc["levels"]:
        assert lv["requests"] > 0 and lv["rows_per_s"] > 0 and lv["errors"] == 0, lv
        assert lv["p50_ms"] is not None and lv["p50_ms"] <= lv["p99_ms"]
        if lv["server_success"] is not None:
            assert lv["server_success"] >= lv["requests"], lv
        if doc["in_process"] is not None:
            assert lv["ratio"] == pytest.approx(
                lv["rows_per_s"] / doc["in_process"]["rows_per_s"])
            at = lv["in_process_at_formed"] or doc["in_process"]
            assert lv["ratio_at_formed"] == pytest.approx(lv["rows_per_s"] / at["rows_per_s"])
    # the table: a row per level, its rows/s as in the JSON
    table = [line for line in stdout.splitlines() if re.match(r"^│\s+\d+\s+│", line)]
    assert len(table) == len(levels), stdout
    for line, lv in zip(table, doc["levels"], strict=True):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert int(cells[0]) == lv["concurrency"] and cells[1] == lv["protocol"]
        assert float(cells[3].replace(",", "")) == pytest.approx(lv["rows_per_s"], abs=0.51)
        assert cells[7] == "0"
    png = (folder / "bench.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    from PIL import Image

    with Image.open(folder / "bench.png") as image:
        image.verify()
        assert image.size[0] > 600
    assert "| concurrency |" in (folder / "bench.md").read_text()
    return doc


def test_bench_starts_its_own_server_for_risk(tmp_path: Path) -> None:
    out = tmp_path / "risk"
    done = shipyard("bench", "risk", "--duration", "0.5", "--concurrency", "1,4", "-o",
                    str(out))
    assert done.returncode == 0, done.stderr
    doc = check_report(out, done.stdout, [("rest-json", 1), ("rest-json", 4)])
    assert doc["started_server"] and doc["in_process"]["rows_per_s"] > 0
    assert all(lv["server_success"] is not None and lv["formed_batch"] >= 1
               for lv in doc["levels"])
    assert doc["machine"]["cores"] == os.cpu_count()
    assert "ceiling" in done.stdout and "note: REST load:" in done.stdout


def test_bench_against_a_running_server(server: ServerProcess, repo: Path,
                                        tmp_path: Path) -> None:
    before = success_count(server, "sms")
    out = tmp_path / "sms"
    done = shipyard("bench", "sms", "--url", f"http://{server.http_url}", "--model-repository",
                    str(repo), "--duration", "0.5", "--concurrency", "1,4", "--protocol",
                    "rest-binary", "--load-tool", "builtin", "--batch", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    doc = check_report(out, done.stdout, [("rest-binary", 1), ("rest-binary", 4)])
    assert not doc["started_server"] and doc["batch"] == 2
    assert all(lv["tool"] == "asyncio" for lv in doc["levels"])
    assert doc["in_process"]["batch"] == 2
    for lv in doc["levels"]:
        assert lv["rows_per_s"] == pytest.approx(2 * lv["requests_per_s"])
    grew = success_count(server, "sms") - before
    assert grew >= sum(lv["requests"] for lv in doc["levels"])


def test_bench_over_grpc_without_the_model_files(server: ServerProcess,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "grpc"
    done = shipyard("bench", "sms", "--url", f"grpc://{server.grpc_url}", "--protocol", "grpc",
                    "--duration", "0.5", "--concurrency", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "bench.json").read_text())
    [level] = doc["levels"]
    assert level["tool"] == "grpc.aio" and level["requests"] > 0 and level["errors"] == 0
    assert doc["in_process"] is None and level["ratio"] is None
    assert any("no in-process ceiling" in n for n in doc["notes"])


def test_mistakes_are_one_line_and_exit_2(server: ServerProcess, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    cases = {
        "unknown model 'nope'": ("bench", "nope", "-o", str(tmp_path)),
        "unknown model 'nope' at": ("bench", "nope", "--url", f"http://{server.http_url}"),
        "--concurrency: '1,x'": ("bench", "risk", "--concurrency", "1,x"),
        "--concurrency: '0'": ("bench", "risk", "--concurrency", "0"),
        "cannot reach": ("bench", "risk", "--url", f"http://127.0.0.1:{free}"),
        "--protocol grpc needs a grpc server": ("bench", "risk", "--url",
                                                f"http://{server.http_url}", "--protocol",
                                                "grpc"),
        "invalid value for '--protocol'": ("bench", "risk", "--protocol", "soap"),
    }
    for expected, args in cases.items():
        line = one_error_line(shipyard(*args))
        assert expected.lower() in line.lower(), (expected, line)
    assert not list(tmp_path.iterdir()), "a refused run writes no report"


def test_help_shows_defaults_and_choices() -> None:
    done = shipyard("bench", "--help")
    assert done.returncode == 0
    for expected in ("[default: 1,16,64]", "[default: 5.0;", "rest-json|rest-binary|grpc",
                     "auto|wrk|builtin", "[default: auto]", "[default: 1;"):
        assert expected in done.stdout, expected
