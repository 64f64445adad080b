"""Shared fixtures: a real ``shipyard serve`` process on ephemeral ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_REPOSITORY = ROOT / "src" / "shipyard" / "demo" / "repository"
SHARED = ROOT.parent / "shared"

_HTTP = re.compile(r"HTTP listening on https?://[^:]+:(\d+)")
_GRPC = re.compile(r"gRPC listening on [^:]+:(\d+)")
_READY = re.compile(r"ready: serving")


@dataclass
class ServerProcess:
    """A running ``shipyard serve``; ``log`` collects its stderr lines."""

    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    log: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(repository: Path, *extra: str, timeout: float = 60) -> ServerProcess:
    """Start ``shipyard serve`` on ports 0 and wait until it logs that it is ready."""
    server, ready = spawn_server(repository, *extra, timeout=timeout)
    if not ready.wait(timeout):
        server.proc.kill()
        raise RuntimeError("server did not become ready:\n" + "\n".join(server.log))
    if server.proc.poll() is not None:
        raise RuntimeError("server exited early:\n" + "\n".join(server.log))
    return server


@pytest.fixture(scope="session")
def demo_server() -> Iterator[ServerProcess]:
    """The built-in demo repository (risk, cnn, digits, sms), shared by read-only tests."""
    server = start_server(DEMO_REPOSITORY)
    yield server
    server.stop()


#: the HTTP servers ``shipyard serve --http-server`` offers
HTTP_SERVERS = ["builtin", "uvicorn"]


@pytest.fixture(scope="module", params=HTTP_SERVERS)
def http_server(request: pytest.FixtureRequest) -> str:
    """For a module whose REST tests run on each HTTP server: the ``--http-server`` of this
    round (module-scoped, so each round starts its servers once)."""
    kind: str = request.param
    return kind


# --------------------------------------------------------------------------------------------
# helpers for the lifecycle and reliability tests (plain functions, no fixtures)
# --------------------------------------------------------------------------------------------


def spawn_server(repository: Path, *extra: str, timeout: float = 60
                 ) -> tuple[ServerProcess, threading.Event]:
    """Start ``shipyard serve`` on ports 0 and return as soon as both ports are known, before
    the models are loaded; the event is set once the server logs that it is ready (or exits)."""
    cmd = [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(repository),
           "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    log: list[str] = []
    ports: dict[str, int] = {}
    have_ports = threading.Event()
    ready = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip("\n"))
            if m := _HTTP.search(line):
                ports["http"] = int(m.group(1))
            if m := _GRPC.search(line):
                ports["grpc"] = int(m.group(1))
            if "http" in ports and "grpc" in ports:
                have_ports.set()
            if _READY.search(line):
                ready.set()
        have_ports.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    if not have_ports.wait(timeout) or "http" not in ports or "grpc" not in ports:
        proc.kill()
        proc.wait()
        raise RuntimeError("server did not report its ports:\n" + "\n".join(log))
    return ServerProcess(proc, ports["http"], ports["grpc"], log), ready


def http_call(server: ServerProcess, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 30
              ) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format -> {(name, frozenset(labels)): value} (comments skipped)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if m is None:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric_value(server: ServerProcess, name: str, **labels: str) -> float | None:
    """The value of one sample in ``/metrics`` (None when it is absent)."""
    status, _, body = http_call(server, "GET", "/metrics")
    assert status == 200, body
    return parse_metrics(body.decode()).get((name, frozenset(labels.items())))


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


FIGURES_FILE = Path(os.environ.get(
    "SHIPYARD_FIGURES", os.path.join(tempfile.gettempdir(), "shipyard-figures.json")))


def record_figures(test: str, figures: dict[str, Any]) -> None:
    """Print a test's measured figures and merge them into ``FIGURES_FILE`` (JSON), from where
    docs/reliability.md copies them."""
    import json

    print(f"\nFIGURES {test}: {json.dumps(figures, sort_keys=True)}")
    try:
        doc = json.loads(FIGURES_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    doc[test] = figures
    FIGURES_FILE.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


def infer_fp32(server: ServerProcess, model: str, x: Any, version: str = "",
               headers: dict[str, str] | None = None, parameters: dict[str, Any] | None = None,
               timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    """POST a V2 JSON request with one FP32 input ``INPUT0`` (numpy array ``x``): returns
    (status, headers, decoded JSON body or None)."""
    import json

    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    doc: dict[str, Any] = {"inputs": [{"name": "INPUT0", "datatype": "FP32",
                                       "shape": list(x.shape), "data": x.ravel().tolist()}]}
    if parameters:
        doc["parameters"] = parameters
    status, resp_headers, body = http_call(
        server, "POST", path, json.dumps(doc).encode(),
        {"Content-Type": "application/json", **(headers or {})}, timeout=timeout)
    return status, resp_headers, json.loads(body) if body else None


# Hypothesis (the property tests, schemathesis) keeps its caches and example database out of
# the repository: in the system's temporary directory unless the environment says otherwise.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      str(Path(tempfile.gettempdir()) / "shipyard-hypothesis"))


# --------------------------------------------------------------------------------------------
# perf_analyzer, for the tests that run it
# --------------------------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def perf_analyzer() -> tuple[Path, dict[str, str]]:
    """perf_analyzer (from tritonclient[all]'s wheel) as the README runs it,
    ``scripts/perf_analyzer``, and the environment it runs in: the script finds the
    libcudart.so.12 it links even for CPU servers (the nvidia-cuda-runtime-cu12 wheel) and
    libb64, and says which part is missing (exit 2): a skip locally, a failure in CI (``CI``
    set)."""
    exe = ROOT / "scripts" / "perf_analyzer"
    env = {**os.environ, "SHIPYARD_VENV": sys.prefix}
    done = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        _unavailable((done.stderr or done.stdout).strip() or f"{exe} --version failed")
    return exe, env
