"""Retries, deadlines and connection reuse of the REST client, against a tiny local HTTP server
written here that answers what each test scripts (503 + Retry-After, 429, a slow answer), and
deadlines against a real server over both protocols.

Then retries against a real ``shipyard serve`` (REST and gRPC, sync and async): a python model
whose queue holds one request and whose ``predict`` waits for a gate file the test opens, so
the test decides exactly when the server answers 429 / RESOURCE_EXHAUSTED and when capacity
frees up; and a model whose load failed (503 / UNAVAILABLE) until an operator fixes and
reloads it. The server sends no ``Retry-After`` on either (checked here): the client's own
backoff paces the retries."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import ServerProcess, metric_value, start_server, wait_until

from shipyard.client import (
    AsyncClient,
    Client,
    ClientError,
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    RetryPolicy,
    Unavailable,
)


class Script:
    """What the stub answers, one entry per request (the last one repeats), and what it saw."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes, float]] = []
        self.times: list[float] = []
        self.peers: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def next(self, peer: tuple[str, int]) -> tuple[int, dict[str, str], bytes, float]:
        with self.lock:
            self.times.append(time.monotonic())
            self.peers.add(peer)
            n = len(self.times) - 1
            return self.answers[min(n, len(self.answers) - 1)]


def _ok() -> tuple[int, dict[str, str], bytes, float]:
    return 200, {"Content-Type": "application/json"}, b'{"live": true}', 0.0


def _refuse(status: int, retry_after: str | None = None
            ) -> tuple[int, dict[str, str], bytes, float]:
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return status, headers, json.dumps({"error": f"busy ({status})"}).encode(), 0.0


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real server

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, headers, body, delay = script.next(self.client_address[:2])
            time.sleep(delay)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()


def test_retries_503_and_honours_retry_after(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(503, "0.3"), _refuse(503, "0.3"), _ok()]
    with Client(url, retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.01)) as client:
        assert client.live() is True
    assert len(script.times) == 3
    gaps = np.diff(script.times)
    assert (gaps >= 0.3).all(), gaps  # Retry-After, not the 10 ms backoff
    assert len(script.peers) == 1, "the retries reuse the connection"


def test_gives_up_after_max_attempts_with_the_typed_error(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(503)]
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.02)
    with Client(url, retry=policy) as client, pytest.raises(Unavailable,
                                                             match=r"busy \(503\)") as info:
        client.live()
    assert info.value.attempts == 3 and info.value.status == 503
    assert len(script.times) == 3


def test_429_is_retried_with_backoff(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(429)]
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.05, jitter=False)
    with Client(url, retry=policy) as client, pytest.raises(ResourceExhausted) as info:
        client.live()
    assert info.value.attempts == 5
    gaps = np.diff(script.times)
    assert len(gaps) == 4 and (gaps >= np.array([0.05, 0.1, 0.2, 0.4]) - 0.005).all(), gaps


def test_a_client_error_is_not_retried(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(400)]
    with Client(url) as client, pytest.raises(InvalidArgument, match=r"busy \(400\)"):
        client.live()
    assert len(script.times) == 1


def test_retry_after_beyond_the_deadline_gives_up_at_once(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(503, "5")]
    t0 = time.monotonic()
    with Client(url, timeout_s=1.0) as client, pytest.raises(Unavailable):
        client.live()
    assert time.monotonic() - t0 < 0.9 and len(script.times) == 1


def test_a_slow_answer_raises_deadline_exceeded(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [(200, {}, b'{"live": true}', 1.5)]
    t0 = time.monotonic()
    with Client(url, timeout_s=0.3) as client, pytest.raises(DeadlineExceeded, match=r"0\.3 s"):
        client.live()
    assert time.monotonic() - t0 < 1.2


def test_async_client_retries_too(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_refuse(503, "0.2"), _ok()]

    async def run() -> bool:
        async with AsyncClient(url) as client:
            return await client.live()

    assert asyncio.run(run()) is True
    assert len(script.times) == 2 and script.times[1] - script.times[0] >= 0.2


def test_one_connection_over_many_calls(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [_ok()]
    with Client(url) as client:
        for _ in range(25):
            assert client.live()
    assert len(script.times) == 25 and len(script.peers) == 1


def test_unreachable_server_is_unavailable_after_retries() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url in (f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"):
        policy = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)
        with Client(url, retry=policy, timeout_s=5) as client, pytest.raises(
                Unavailable, match="cannot reach the server") as info:
            client.ready()
        assert info.value.attempts == 2


def test_deadlines_against_a_real_server(demo_server: ServerProcess) -> None:
    x = np.zeros((256, 30), dtype=np.float32)
    for url in (f"http://{demo_server.http_url}", f"grpc://{demo_server.grpc_url}"):
        with Client(url) as client:
            client.model("risk")  # metadata first, so the deadline meets the inference
            with pytest.raises(DeadlineExceeded):
                client.infer("risk", {"features": x}, timeout_s=1e-4)
            assert client.infer("risk", {"features": x[:2]})["score"].shape == (2, 1)


# -- retries against a real server ----------------------------------------------------------

CONTROL = "control-token-for-the-retry-tests-0123"
X = np.array([[1.5, -2.0]], dtype=np.float32)

GATED_PY = """
import os
import time


class Model:
    def predict(self, inputs):
        # wait (at most 20 s) until the test opens the gate: until then, this request runs
        # and the next one waits in the queue of one, so a third is refused
        give_up = time.monotonic() + 20
        while not os.path.exists({gate!r}) and time.monotonic() < give_up:
            time.sleep(0.002)
        return {{"Y": inputs["X"] * 2}}
"""

BROKEN_PY = """
class Model:
    def load(self):
        raise RuntimeError("the weights are not there yet")

    def predict(self, inputs):
        return {}
"""

FIXED_PY = """
class Model:
    def predict(self, inputs):
        return {"Y": inputs["X"] * 3}
"""

CONFIG = """
backend: python
trust: true
max_batch_size: 1           # one request per execution: no merging frees the queue early
dynamic_batching: {max_queue_size: 1}
warmup: {enabled: false}    # the warm-up would wait for the gate
inputs: [{name: X, datatype: FP32, shape: [2]}]
outputs: [{name: Y, datatype: FP32, shape: [2]}]
"""


@dataclass
class Busy:
    """The server, its model folders and the gate of ``gated``."""

    server: ServerProcess
    root: Path
    gate: Path
    answers: list[np.ndarray] = field(default_factory=list)
    """What the requests of :meth:`fill` were answered."""

    @property
    def urls(self) -> dict[str, str]:
        return {"rest": f"http://{self.server.http_url}",
                "grpc": f"grpc://{self.server.grpc_url}"}

    def refused(self) -> float:
        """How many requests the server has refused with a full queue."""
        return metric_value(self.server, "shipyard_request_rejected_total", model="gated",
                            version="1", reason="queue_full") or 0.0

    def fill(self) -> list[threading.Thread]:
        """Close the gate and fill the model: one request running, one queued (each in a
        thread, answered once the gate opens)."""
        self.gate.unlink(missing_ok=True)
        self.answers.clear()

        def one() -> None:
            with Client(self.urls["rest"], timeout_s=30) as client:
                self.answers.append(client.infer("gated", {"X": X})["Y"])

        def state(queued: int) -> bool:
            labels = {"model": "gated", "version": "1"}
            return (metric_value(self.server, "shipyard_queue_depth", **labels) == queued
                    and metric_value(self.server, "shipyard_inflight_executions", **labels) == 1)

        threads = []
        for queued in (0, 1):  # the first one runs, the second one waits
            threads.append(threading.Thread(target=one, daemon=True))
            threads[-1].start()
            wait_until(functools.partial(state, queued), timeout=10, what=f"{queued} queued")
        return threads

    def drain(self, threads: list[threading.Thread]) -> None:
        """Open the gate; the filling requests must all be answered, correctly."""
        self.gate.touch()
        for t in threads:
            t.join(timeout=30)
        assert len(self.answers) == len(threads)
        for y in self.answers:
            np.testing.assert_array_equal(y, X * 2)


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Busy]:
    root = tmp_path_factory.mktemp("busy")
    gate = root / "gate"
    for name, source in (("gated", GATED_PY.format(gate=str(gate))), ("broken", BROKEN_PY)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(source, encoding="utf-8")
        (root / name / "config.yaml").write_text(CONFIG, encoding="utf-8")
    server = start_server(root, "--model-control", "explicit", "--load-model", "gated",
                          "--load-model", "broken", "--control-token", CONTROL)
    yield Busy(server, root, gate)
    gate.touch()
    server.stop()


@dataclass(frozen=True, slots=True)
class SpyPolicy(RetryPolicy):
    """A RetryPolicy that writes down every retry it grants: (attempt, code, Retry-After,
    wait)."""

    seen: list[tuple[int, str | None, float | None, float | None]] = field(
        default_factory=list)

    def delay_s(self, attempt: int, error: ClientError) -> float | None:
        wait = RetryPolicy.delay_s(self, attempt, error)
        self.seen.append((attempt, error.code, error.retry_after_s, wait))
        return wait


@pytest.mark.timeout(60)
def test_a_full_queue_is_retried_with_backoff_then_given_up(busy: Busy) -> None:
    threads = busy.fill()
    try:
        raw = httpx.post(f"{busy.urls['rest']}/v2/models/gated/infer", timeout=10, json={
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]})
        assert raw.status_code == 429 and "queue is full" in raw.json()["error"]
        assert "retry-after" not in raw.headers  # the server gives no Retry-After
        before = busy.refused()
        policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, jitter=False)
        for protocol, url in busy.urls.items():
            t0 = time.monotonic()
            with Client(url, retry=policy, timeout_s=10) as client, pytest.raises(
                    ResourceExhausted, match="queue is full") as info:
                client.infer("gated", {"X": X})
            took = time.monotonic() - t0
            error = info.value
            assert error.attempts == 3 and error.retry_after_s is None
            assert error.status == (429 if protocol == "rest" else "RESOURCE_EXHAUSTED")
            assert 0.3 <= took < 3, took  # 0.1 s + 0.2 s of backoff between the attempts
        assert busy.refused() - before == 6  # every attempt reached the server
    finally:
        busy.drain(threads)


@pytest.mark.timeout(60)
def test_retries_succeed_once_capacity_frees_up(busy: Busy) -> None:
    threads = busy.fill()
    before = busy.refused()
    opened: list[float] = []

    def open_gate() -> None:
        opened.append(time.monotonic())
        busy.gate.touch()

    rest_policy = SpyPolicy(max_attempts=50, initial_backoff_s=0.02, max_backoff_s=0.1)
    grpc_policy = SpyPolicy(max_attempts=50, initial_backoff_s=0.02, max_backoff_s=0.1)
    answered: dict[str, float] = {}

    def rest() -> np.ndarray:
        with Client(busy.urls["rest"], retry=rest_policy, timeout_s=15) as client:
            y = client.infer("gated", {"X": X})["Y"]
            answered["rest"] = time.monotonic()
            return y

    async def grpc() -> np.ndarray:
        async with AsyncClient(busy.urls["grpc"], retry=grpc_policy, timeout_s=15) as client:
            y = (await client.infer("gated", {"X": X}))["Y"]
            answered["grpc"] = time.monotonic()
            return y

    timer = threading.Timer(0.5, open_gate)
    timer.start()
    result: list[np.ndarray] = []
    probe = threading.Thread(target=lambda: result.append(rest()))
    probe.start()
    y_grpc = asyncio.run(grpc())
    probe.join(timeout=20)
    timer.join()
    busy.drain(threads)
    np.testing.assert_array_equal(result[0], X * 2)
    np.testing.assert_array_equal(y_grpc, X * 2)
    for name, policy in (("rest", rest_policy), ("grpc", grpc_policy)):
        assert len(policy.seen) >= 2, (name, policy.seen)  # refused, retried, ... answered
        assert {code for _, code, _, _ in policy.seen} == {"RESOURCE_EXHAUSTED"}
        assert all(ra is None for _, _, ra, _ in policy.seen)  # no Retry-After came
        assert answered[name] > opened[0]  # answered only once the gate opened
    assert busy.refused() - before >= len(rest_policy.seen) + len(grpc_policy.seen)


@pytest.mark.timeout(60)
def test_an_unavailable_model_is_retried_until_it_is_reloaded(busy: Busy) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.05, jitter=False)
    raw = httpx.post(f"{busy.urls['rest']}/v2/models/broken/infer", timeout=10, json={
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]})
    assert raw.status_code == 503 and "retry-after" not in raw.headers
    for protocol, url in busy.urls.items():
        with Client(url, retry=policy, timeout_s=10) as client, pytest.raises(
                Unavailable, match="weights are not there yet") as info:
            client.infer("broken", {"X": X})
        assert info.value.attempts == 3 and info.value.retry_after_s is None
        assert info.value.status == (503 if protocol == "rest" else "UNAVAILABLE")

    def fix() -> None:  # the operator puts the weights in place and reloads
        (busy.root / "broken" / "1" / "model.py").write_text(FIXED_PY, encoding="utf-8")
        with Client(busy.urls["rest"], control_token=CONTROL, timeout_s=30) as client:
            client.load("broken")

    spy = SpyPolicy(max_attempts=60, initial_backoff_s=0.02, max_backoff_s=0.1)
    timer = threading.Timer(0.4, fix)
    timer.start()
    try:
        with Client(busy.urls["grpc"], retry=spy, timeout_s=15) as client:
            y = client.infer("broken", {"X": X})["Y"]
    finally:
        timer.join()
    np.testing.assert_array_equal(y, X * 3)  # the reloaded model answered
    assert len(spy.seen) >= 2 and {code for _, code, _, _ in spy.seen} == {"UNAVAILABLE"}
