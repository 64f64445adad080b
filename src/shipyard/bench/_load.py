"""Load generators: wrk (a light C client, for REST) and built-in asyncio ones (raw HTTP/1.1
keep-alive over asyncio streams; grpc.aio unary calls of a prebuilt, serialized request).

Every run is bounded by a duration and a request count; each reports its completed requests,
errors, latency percentiles and the CPU seconds the load tool itself used (it shares the cores
with the server)."""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_REQUESTS", "HttpBody", "LoadResult", "find_wrk", "grpc_load", "rest_load",
           "wrk_load"]

#: requests one level sends at most, whatever its duration
MAX_REQUESTS = 5_000_000
#: the V2 infer RPC
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True, slots=True)
class HttpBody:
    """A prebuilt REST request: path, body and headers (Content-Length is added)."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class LoadResult:
    """One level of load."""

    tool: str
    """wrk, asyncio (the built-in HTTP/1.1 client) or grpc.aio."""
    requests: int
    """Requests answered with success."""
    errors: int
    """Requests answered with an error, or lost (connection errors, timeouts)."""
    seconds: float
    """Wall time of the level."""
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    client_cpu_s: float = 0.0
    """CPU seconds the load tool used (user + system)."""
    detail: list[str] = field(default_factory=list)
    """What went wrong, where something did (first few errors)."""

    @property
    def requests_per_s(self) -> float:
        """Successful requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def find_wrk() -> str | None:
    """wrk beside this Python or on PATH."""
    local = Path(sys.executable).parent / "wrk"
    return str(local) if local.exists() else shutil.which("wrk")


def _quantiles(latencies_s: list[float]) -> tuple[float | None, float | None, float | None]:
    if not latencies_s:
        return None, None, None
    p = np.percentile(np.asarray(latencies_s) * 1e3, [50, 90, 99])
    return float(p[0]), float(p[1]), float(p[2])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if m is None:
        return math.nan
    return float(m.group(1)) * _UNITS[m.group(2)]


def _lua(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def wrk_load(exe: str, base_url: str, body: HttpBody, concurrency: int, duration_s: float,
             workdir: Path) -> LoadResult:
    """wrk with one thread and ``concurrency`` connections, every request the same prebuilt
    POST (a Lua script sets method, body and headers once); ``--latency`` for percentiles.
    wrk's duration is whole seconds: at least 1."""
    workdir.mkdir(parents=True, exist_ok=True)
    blob = workdir / "body.bin"
    blob.write_bytes(body.body)
    lines = [f'local f = assert(io.open("{_lua(str(blob))}", "rb"))',
             "wrk.body = f:read(\"*a\")", "f:close()", 'wrk.method = "POST"']
    lines += [f'wrk.headers["{_lua(k)}"] = "{_lua(v)}"' for k, v in body.headers.items()]
    script = workdir / "load.lua"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seconds = max(1, math.ceil(duration_s - 1e-9))
    cmd = [exe, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency",
           "-s", str(script), base_url.rstrip("/") + body.path]
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if done.returncode != 0 or total is None:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return LoadResult("wrk", 0, 0, wall, client_cpu_s=cpu,
                          detail=[f"wrk failed (exit {done.returncode}): {detail[0]}"])
    count = int(total.group(1))
    seconds_run = _ms(total.group(2) + total.group(3)) / 1e3
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(bad.group(1)) if bad else 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    lost = sum(int(g) for g in socket.groups()) if socket else 0
    pct = {int(m.group(1)): _ms(m.group(2))
           for m in re.finditer(r"^\s+(\d+)%\s+(\S+)$", out, re.MULTILINE)}
    detail = []
    if socket:
        detail.append(socket.group(0))
    if non2xx:
        detail.append(f"{non2xx} non-2xx responses")
    return LoadResult("wrk", count - non2xx, non2xx + lost, seconds_run or wall,
                      pct.get(50), pct.get(90), pct.get(99), cpu, detail)


@dataclass
class _Tally:
    """What the built-in clients' tasks record: each success's latency, the failures and the
    first few failures' messages."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    detail: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        """Enough answers recorded (``MAX_REQUESTS``): the tasks stop."""
        return len(self.latencies) >= MAX_REQUESTS

    def fail(self, message: str) -> None:
        self.errors += 1
        if len(self.detail) < 3:
            self.detail.append(message)

    def run(self, tool: str, main: Callable[[], Coroutine[Any, Any, float]]) -> LoadResult:
        """``main()`` (its wall seconds) on a fresh loop; the level's result, with this
        process's CPU seconds as the client's."""
        cpu0 = time.process_time()
        with _runner() as runner:
            wall = runner.run(main())
        p50, p90, p99 = _quantiles(self.latencies)
        return LoadResult(tool, len(self.latencies), self.errors, wall, p50, p90, p99,
                          time.process_time() - cpu0, self.detail)


def _runner() -> asyncio.Runner:
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 response: (status, whether the server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip().lower()
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


def rest_load(host: str, port: int, tls: bool, body: HttpBody, concurrency: int,
              duration_s: float) -> LoadResult:
    """``concurrency`` keep-alive connections on one asyncio loop (uvloop when installed),
    each sending the prebuilt request and reading its answer, until ``duration_s``."""
    head = [f"POST {body.path} HTTP/1.1", f"Host: {host}:{port}",
            f"Content-Length: {len(body.body)}"]
    head += [f"{k}: {v}" for k, v in body.headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body.body
    tally = _Tally()
    context = ssl.create_default_context() if tls else None

    async def connection(stop: float) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.perf_counter() < stop and not tally.full:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port, ssl=context)
                assert reader is not None
                start = time.perf_counter()
                writer.write(request)
                status, keep = await asyncio.wait_for(_read_response(reader), 30)
                if status == 200:
                    tally.latencies.append(time.perf_counter() - start)
                else:
                    tally.fail(f"HTTP {status}")
                if not keep:
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, IndexError) as exc:
                tally.fail(f"{type(exc).__name__}: {exc}")
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    async def main() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(connection(t0 + duration_s) for _ in range(concurrency)))
        return time.perf_counter() - t0

    return tally.run("asyncio", main)


def grpc_load(target: str, tls: bool, request: bytes, concurrency: int, duration_s: float,
              token: str | None = None) -> LoadResult:
    """``concurrency`` tasks on one grpc.aio channel, each sending the prebuilt serialized
    ModelInferRequest (no serializer: bytes in, bytes out) until ``duration_s``."""
    import grpc
    import grpc.aio

    tally = _Tally()
    metadata = (("authorization", f"Bearer {token}"),) if token else None

    async def main() -> float:
        options = [("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)]
        channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options) \
            if tls else grpc.aio.insecure_channel(target, options)
        call: Any = channel.unary_unary(INFER_METHOD)
        stop = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < stop and not tally.full:
                start = time.perf_counter()
                try:
                    await call(request, timeout=30, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    tally.fail(f"{exc.code().name}: {exc.details()}")
                    continue
                tally.latencies.append(time.perf_counter() - start)

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await channel.close()
        return time.perf_counter() - t0

    return tally.run("grpc.aio", main)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
