"""Smoke runs of Triton's perf_analyzer against the demo server, over HTTP and gRPC.

perf_analyzer (from ``tritonclient[all]``'s wheel) links ``libcudart.so.12`` even for CPU
servers; the ``nvidia-cuda-runtime-cu12`` wheel provides it (the ``perf_analyzer`` fixture in
conftest.py finds both). Missing either is a skip locally and a failure in CI (``CI`` set), so
a CI run never passes by skipping silently.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import ServerProcess

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 120


def _success_count(server: ServerProcess, model: str) -> tuple[int, int]:
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=10) as resp:
        (row,) = json.loads(resp.read())["model_stats"]
    return int(row["inference_stats"]["success"]["count"]), int(row["inference_count"])


@pytest.mark.parametrize(("model", "protocol"), [
    ("risk", "http"),
    ("risk", "grpc"),
    ("cnn", "grpc"),
    ("risk", "grpc-streaming"),  # ModelStreamInfer
])
def test_perf_analyzer_smoke(perf_analyzer: tuple[Path, dict[str, str]],
                             demo_server: ServerProcess, tmp_path: Path, model: str,
                             protocol: str) -> None:
    exe, env = perf_analyzer
    url = demo_server.http_url if protocol == "http" else demo_server.grpc_url
    report = tmp_path / "report.csv"
    before_ok, before_rows = _success_count(demo_server, model)
    streaming = ["--streaming"] if protocol == "grpc-streaming" else []
    cmd = [str(exe), "-m", model, "-u", url, "-i", protocol.split("-")[0], *streaming, "-b", "1",
           "--concurrency-range", "2", "--measurement-interval", "1000",
           "--max-trials", "4", "--stability-percentage", "999", "-f", str(report)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"perf_analyzer ran past {RUN_TIMEOUT_S} s: {exc.stdout!r:.2000}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    (row,) = list(csv.DictReader(io.StringIO(report.read_text())))
    assert int(row["Concurrency"]) == 2
    throughput = float(row["Inferences/Second"])
    assert throughput > 0, row
    assert float(row["p50 latency"]) > 0, row

    m = re.search(r"Client:\s*\n\s*Request count: (\d+)", output)
    assert m, output[-4000:]
    client_requests = int(m.group(1))
    assert client_requests > 0
    after_ok, after_rows = _success_count(demo_server, model)
    # the server saw at least every measured request (plus perf_analyzer's warm-up ones)
    assert after_ok - before_ok >= client_requests
    assert after_rows - before_rows >= client_requests  # batch size 1: one row per request
    m = re.search(r"Server:\s*\n\s*Inference count: (\d+)", output)
    assert m, output[-4000:]
    assert int(m.group(1)) > 0  # perf_analyzer read the server's statistics extension
