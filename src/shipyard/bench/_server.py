"""The server a bench run measures when no ``--url`` is given: ``shipyard serve`` in a
subprocess on 127.0.0.1 and ephemeral ports; and any server's own statistics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BenchServer", "ServerStartError", "serve", "stats"]

_HTTP = re.compile(r"HTTP listening on https?://[^:]+:(\d+)")
_GRPC = re.compile(r"gRPC listening on [^:]+:(\d+)")


class ServerStartError(Exception):
    """``shipyard serve`` did not start (its last log lines in the message)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """What the server said."""


@dataclass
class BenchServer:
    """A running ``shipyard serve``: its process and ports, and its log lines."""

    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    log: list[str]


@contextmanager
def serve(repository: Path, say: Callable[[str], None]) -> Iterator[BenchServer]:
    """``shipyard serve`` on 127.0.0.1, ephemeral ports, in a subprocess; stopped on exit
    whatever happens (SIGTERM, then SIGKILL after 20 s)."""
    cmd = [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(repository),
           "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    log: list[str] = []
    ports: dict[str, int] = {}
    ready = threading.Event()

    def reader() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if len(log) < 2000:
                log.append(line.rstrip("\n"))
            if m := _HTTP.search(line):
                ports["http"] = int(m.group(1))
            if m := _GRPC.search(line):
                ports["grpc"] = int(m.group(1))
            if "ready: serving" in line:
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    try:
        say(f"starting shipyard serve on {repository} ...")
        ready.wait(120)
        if proc.poll() is not None or "http" not in ports or "grpc" not in ports:
            tail = " | ".join(log[-3:]) or "no output"
            raise ServerStartError(f"shipyard serve --model-repository {str(repository)!r} did not "
                             f"start: {tail}")
        yield BenchServer(proc, ports["http"], ports["grpc"], log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stats(http_base: str, model: str, token: str | None) -> tuple[int, int, int] | None:
    """(success count, inference count, execution count) from the server's statistics."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        doc = httpx.get(f"{http_base}/v2/models/{model}/stats", headers=headers,
                        timeout=10, trust_env=False).json()
        s = doc["model_stats"][0]
        return (int(s["inference_stats"]["success"]["count"]), int(s["inference_count"]),
                int(s["execution_count"]))
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return None
