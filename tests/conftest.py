"""Shared fixtures: a real ``shipyard serve`` process on ephemeral ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_REPOSITORY = ROOT / "src" / "shipyard" / "demo" / "repository"
SHARED = ROOT.parent / "shared"

_HTTP = re.compile(r"HTTP listening on http://[^:]+:(\d+)")
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
    cmd = [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(repository),
           "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    log: list[str] = []
    ports: dict[str, int] = {}
    ready = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line.rstrip("\n"))
            if m := _HTTP.search(line):
                ports["http"] = int(m.group(1))
            if m := _GRPC.search(line):
                ports["grpc"] = int(m.group(1))
            if _READY.search(line):
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not become ready:\n" + "\n".join(log))
    if proc.poll() is not None or "http" not in ports:
        raise RuntimeError("server exited early:\n" + "\n".join(log))
    return ServerProcess(proc, ports["http"], ports["grpc"], log)


@pytest.fixture(scope="session")
def demo_server() -> Iterator[ServerProcess]:
    """The built-in demo repository (risk, cnn), shared by read-only tests."""
    server = start_server(DEMO_REPOSITORY)
    yield server
    server.stop()
