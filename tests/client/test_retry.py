"""Retries, deadlines and connection reuse of the REST client, against a tiny local HTTP server
written here that answers what each test scripts (503 + Retry-After, 429, a slow answer), and
deadlines against a real server over both protocols."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from conftest import ServerProcess

from shipyard.client import (
    AsyncClient,
    Client,
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
