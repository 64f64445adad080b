"""Dynamic batching: in-process tests of ``DynamicBatcher`` and a real server under concurrency.

The unit tests give the batcher a plain Python ``run`` function (its collaborator) and a real
``ThreadPoolExecutor``; each drives its own event loop with ``asyncio.run``. The server tests
fire concurrent requests with distinct inputs and check that every caller gets its own rows back
and that the statistics extension reports merged executions.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from shipyard.serving.batching import DynamicBatcher
from shipyard.serving.errors import (
    ErrorCode,
    InferenceFailed,
    InvalidInput,
    QueueFull,
    RequestTimeout,
    ServerShuttingDown,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import ServerProcess, start_server
from onnx_models import add_sub_model, identity_model, write_repository

T = TypeVar("T")
Outputs = dict[str, np.ndarray]


def run_async(fn: Callable[[], Awaitable[T]], timeout: float = 15) -> T:
    """Run one test coroutine on a fresh event loop, with an overall time limit."""

    async def main() -> T:
        return await asyncio.wait_for(fn(), timeout)

    return asyncio.run(main())


# --------------------------------------------------------------------------------------------
# the fake model and observer
# --------------------------------------------------------------------------------------------


class FakeModel:
    """``run`` collaborator: out = x * 2 + 1 (y = x's row sums). Records every batch it gets.

    With ``hold`` set, the first call blocks until :meth:`release` (to pile up a queue)."""

    def __init__(self, hold: bool = False, fail: Callable[[np.ndarray], Exception | None] | None
                 = None) -> None:
        self.batches: list[np.ndarray] = []
        self.started = threading.Event()
        self._gate = threading.Event()
        if not hold:
            self._gate.set()
        self._fail = fail
        self._lock = threading.Lock()

    def __call__(self, inputs: dict[str, np.ndarray]) -> Outputs:
        x = inputs["x"]
        with self._lock:
            self.batches.append(x.copy())
            first = len(self.batches) == 1
        self.started.set()
        if first:
            assert self._gate.wait(10), "test never released the fake model"
        if self._fail is not None and (exc := self._fail(x)) is not None:
            raise exc
        return {"out": x * 2 + 1, "sum": x.reshape(len(x), -1).sum(axis=1)}

    def release(self) -> None:
        self._gate.set()

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 5), "run was never called"

    def rows_per_batch(self) -> list[int]:
        return [len(b) for b in self.batches]

    def seen_values(self) -> set[float]:
        return {float(v) for b in self.batches for v in b.reshape(-1)}


class Observer:
    def __init__(self) -> None:
        self.executions: list[tuple[int, int, bool]] = []
        self.rejected: list[str] = []

    def on_execution(self, rows: int, queue_ns: list[int], input_ns: int, infer_ns: int,
                     output_ns: int, ok: bool) -> None:
        self.executions.append((rows, len(queue_ns), ok))

    def on_rejected(self, reason: str) -> None:
        self.rejected.append(reason)


Fake = Callable[..., FakeModel]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fake-model")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def fake(executor: ThreadPoolExecutor) -> Iterator[Fake]:
    """FakeModel factory; releases every held model at teardown so a failing test ends fast."""
    made: list[FakeModel] = []

    def make(**kw: Any) -> FakeModel:
        made.append(FakeModel(**kw))
        return made[-1]

    yield make
    for model in made:
        model.release()


def rows(marker: float, n: int = 1, width: int = 4) -> np.ndarray:
    """n distinct rows; every value identifies the request (marker) and its position."""
    return (marker + np.arange(n * width, dtype=np.float64) / 1000).reshape(n, width)


def submit(b: DynamicBatcher, x: np.ndarray, key: Any = None,
           deadline_ns: int | None = None) -> asyncio.Task[Outputs]:
    key = ("x", x.shape[1:]) if key is None else key
    return asyncio.ensure_future(b.submit({"x": x}, len(x), key, deadline_ns))


async def settle(predicate: Callable[[], bool], timeout: float = 5) -> None:
    """Let the event loop run until predicate() holds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition never became true"
        await asyncio.sleep(0.002)


def check_own_rows(x: np.ndarray, out: Outputs) -> None:
    np.testing.assert_array_equal(out["out"], x * 2 + 1)
    np.testing.assert_array_equal(out["sum"], x.sum(axis=1))


# --------------------------------------------------------------------------------------------
# DynamicBatcher unit tests
# --------------------------------------------------------------------------------------------


def test_results_are_sliced_back_to_their_callers(executor: ThreadPoolExecutor, fake: Fake) -> None:
    model = fake(hold=True)
    observer = Observer()

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=64, observer=observer)
        first = submit(b, rows(1000.0))
        await model.wait_started()
        inputs = [rows(float(i), n=1 + i % 3) for i in range(20)]
        tasks = [submit(b, x) for x in inputs]
        await settle(lambda: b.queue_depth == 20)
        model.release()
        results = await asyncio.gather(first, *tasks)
        check_own_rows(rows(1000.0), results[0])
        for x, out in zip(inputs, results[1:], strict=True):
            assert out["out"].shape == x.shape
            check_own_rows(x, out)

    run_async(scenario)
    total = sum(1 + i % 3 for i in range(20))
    assert model.rows_per_batch() == [1, total]  # the 20 queued requests ran as one batch
    assert observer.executions == [(1, 1, True), (total, 20, True)]


def test_worker_takes_the_next_batch_without_the_event_loop(fake: Fake) -> None:
    """A worker that finishes while requests wait starts the next batch itself: the second
    batch runs even while the event loop is blocked (the loop is never needed to wake the
    worker under load)."""
    model = fake(hold=True)

    async def scenario() -> bool:
        b = DynamicBatcher(model, max_batch_size=64)
        first = submit(b, rows(1.0))
        await model.wait_started()
        queued = [submit(b, rows(float(i))) for i in range(2, 6)]
        await settle(lambda: b.queue_depth == 4)
        model.release()
        end = time.monotonic() + 5
        while len(model.batches) < 2 and time.monotonic() < end:
            time.sleep(0.001)  # blocks the loop on purpose: no callback of the batcher runs
        ran_while_blocked = len(model.batches) == 2
        for task, marker in zip(queued, range(2, 6), strict=True):
            check_own_rows(rows(float(marker)), await task)
        check_own_rows(rows(1.0), await first)
        b.stop()
        return ran_while_blocked

    assert run_async(scenario), "the second batch waited for the event loop"
    assert model.rows_per_batch() == [1, 4]


def test_single_request_gets_outputs_unchanged(executor: ThreadPoolExecutor, fake: Fake) -> None:
    model = fake()

    async def scenario() -> Outputs:
        b = DynamicBatcher(model, max_batch_size=8)
        return await submit(b, rows(7.0, n=3))

    out = run_async(scenario)
    check_own_rows(rows(7.0, n=3), out)
    assert model.rows_per_batch() == [3]


def test_different_keys_are_never_mixed(executor: ThreadPoolExecutor, fake: Fake) -> None:
    model = fake(hold=True)

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=64)
        blocker = submit(b, rows(999.0), key="a")
        await model.wait_started()
        # Same array shapes under two keys (so a wrong merge would not fail by itself), plus
        # a third key with another width.
        plan = [("a", rows(1.0)), ("b", rows(2.0)), ("a", rows(3.0)), ("b", rows(4.0)),
                ("c", rows(5.0, width=3)), ("a", rows(6.0, n=2)), ("c", rows(7.0, width=3))]
        tasks = [submit(b, x, key=k) for k, x in plan]
        await settle(lambda: b.queue_depth == len(plan))
        model.release()
        results = await asyncio.gather(blocker, *tasks)
        for (_, x), out in zip(plan, results[1:], strict=True):
            check_own_rows(x, out)

    run_async(scenario)
    groups = {"a": {1, 3, 6, 999}, "b": {2, 4}, "c": {5, 7}}
    assert len(model.batches) == 4  # blocker, then exactly one batch per key
    for batch in model.batches:
        markers = {int(v) for v in batch.reshape(-1)}
        owners = [k for k, members in groups.items() if markers <= members]
        assert len(owners) == 1, f"batch mixes keys: markers {sorted(markers)}"
    assert sorted(model.rows_per_batch()) == [1, 2, 2, 4]


def test_exception_in_run_reaches_every_caller_of_the_batch(
    executor: ThreadPoolExecutor, fake: Fake
) -> None:
    def fail(x: np.ndarray) -> Exception | None:
        return ValueError("boom: negative input") if (x < 0).any() else None

    model = fake(hold=True, fail=fail)
    observer = Observer()

    async def scenario() -> list[Any]:
        b = DynamicBatcher(model, max_batch_size=64, observer=observer)
        blocker = submit(b, rows(1.0))
        await model.wait_started()
        batch = [submit(b, rows(2.0)), submit(b, rows(-3.0)), submit(b, rows(4.0))]
        await settle(lambda: b.queue_depth == 3)
        model.release()
        results = await asyncio.gather(blocker, *batch, return_exceptions=True)
        # the batcher recovers: the next request runs fine
        results.append(await submit(b, rows(5.0)))
        return results

    results = run_async(scenario)
    check_own_rows(rows(1.0), results[0])
    errors = results[1:4]
    for err in errors:
        assert isinstance(err, InferenceFailed)
        assert err.code is ErrorCode.INTERNAL
        assert "boom: negative input" in err.message
        assert "model 'model'" in err.message
    check_own_rows(rows(5.0), results[4])
    assert model.rows_per_batch() == [1, 3, 1]
    assert [ok for _, _, ok in observer.executions] == [True, False, True]


def test_shipyard_error_in_run_passes_through_unchanged(
    executor: ThreadPoolExecutor, fake: Fake
) -> None:
    model = fake(fail=lambda x: InvalidInput("bad values for this model"))

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=8)
        await submit(b, rows(1.0))

    with pytest.raises(InvalidInput) as info:
        run_async(scenario)
    assert info.value.message == "bad values for this model"
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_queue_full_is_refused_at_once(executor: ThreadPoolExecutor, fake: Fake) -> None:
    model = fake(hold=True)
    observer = Observer()

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=1, max_queue_size=2,
                           observer=observer, name="risk")
        running = submit(b, rows(1.0))
        await model.wait_started()
        queued = [submit(b, rows(2.0)), submit(b, rows(3.0))]
        await settle(lambda: b.queue_depth == 2)
        t0 = time.monotonic()
        with pytest.raises(QueueFull) as info:
            await asyncio.wait_for(b.submit({"x": rows(4.0)}, 1, ("x", (4,))), 1)
        assert time.monotonic() - t0 < 0.5
        assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
        assert "model 'risk'" in info.value.message
        assert "queue is full (2 requests waiting)" in info.value.message
        assert observer.rejected == ["queue_full"]
        model.release()
        for x, task in zip([1.0, 2.0, 3.0], [running, *queued], strict=True):
            check_own_rows(rows(x), await task)

    run_async(scenario)
    assert 4.0 not in {int(v) for v in model.seen_values()}
    assert model.rows_per_batch() == [1, 1, 1]


def test_deadline_passing_in_queue_times_out_and_never_runs(
    executor: ThreadPoolExecutor, fake: Fake
) -> None:
    model = fake(hold=True)
    observer = Observer()

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=8, observer=observer)
        running = submit(b, rows(1.0))
        await model.wait_started()
        deadline = time.monotonic_ns() + 50_000_000  # 50 ms
        doomed = submit(b, rows(777.0), deadline_ns=deadline)
        patient = submit(b, rows(2.0), deadline_ns=time.monotonic_ns() + 10_000_000_000)
        with pytest.raises(RequestTimeout) as info:
            await doomed
        assert time.monotonic_ns() >= deadline
        assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
        assert "timed out" in info.value.message
        assert "was not run" in info.value.message
        assert b.queue_depth == 1  # taken out of the queue at once
        assert observer.rejected == ["timeout"]
        model.release()
        check_own_rows(rows(1.0), await running)
        check_own_rows(rows(2.0), await patient)
        # a deadline already in the past is refused at submit
        with pytest.raises(RequestTimeout):
            past = time.monotonic_ns() - 1
            await asyncio.wait_for(b.submit({"x": rows(778.0)}, 1, ("x", (4,)), past), 1)

    run_async(scenario)
    seen = {int(v) for v in model.seen_values()}
    assert 777 not in seen
    assert 778 not in seen
    assert seen == {1, 2}


def test_max_batch_size_is_respected(executor: ThreadPoolExecutor, fake: Fake) -> None:
    model = fake(hold=True)

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=8)
        first = submit(b, rows(100.0))
        await model.wait_started()
        inputs = [rows(float(i), n=3) for i in range(6)] + [rows(50.0, n=2)]
        tasks = [submit(b, x) for x in inputs]
        await settle(lambda: b.queue_depth == 7)
        model.release()
        results = await asyncio.gather(first, *tasks)
        for x, out in zip(inputs, results[1:], strict=True):
            check_own_rows(x, out)

    run_async(scenario)
    sizes = model.rows_per_batch()
    assert max(sizes) <= 8
    assert sum(sizes) == 1 + 6 * 3 + 2
    # greedy in arrival order: 3+3 (a third 3 does not fit, the trailing 2 does), then 3+3, 3+3
    assert sizes == [1, 8, 6, 6]


def test_max_queue_delay_waits_for_a_fuller_batch(executor: ThreadPoolExecutor, fake: Fake) -> None:
    async def scenario(delay_us: int) -> tuple[list[int], float]:
        model = fake()
        b = DynamicBatcher(model, max_batch_size=8,
                           max_queue_delay_us=delay_us)
        t0 = time.monotonic()
        a = submit(b, rows(1.0))
        await asyncio.sleep(0.05)
        c = submit(b, rows(2.0))
        check_own_rows(rows(1.0), await a)
        elapsed = time.monotonic() - t0
        check_own_rows(rows(2.0), await c)
        return model.rows_per_batch(), elapsed

    batches, elapsed = run_async(lambda: scenario(300_000))
    assert batches == [2]  # the second request joined the first one's batch
    assert elapsed >= 0.29  # the oldest request waited the full delay for more
    batches, elapsed = run_async(lambda: scenario(0))
    assert batches == [1, 1]  # greedy: the first ran alone, at once
    assert elapsed < 0.25


def test_preferred_or_full_batch_runs_without_waiting_the_delay(
    executor: ThreadPoolExecutor, fake: Fake
) -> None:
    async def scenario(**kw: Any) -> tuple[list[int], float]:
        model = fake()
        b = DynamicBatcher(model, max_queue_delay_us=5_000_000, **kw)
        t0 = time.monotonic()
        tasks = [submit(b, rows(1.0)), submit(b, rows(2.0))]
        for x, task in zip([1.0, 2.0], tasks, strict=True):
            check_own_rows(rows(x), await task)
        return model.rows_per_batch(), time.monotonic() - t0

    batches, elapsed = run_async(lambda: scenario(max_batch_size=8, preferred_batch_sizes=[2]))
    assert batches == [2]
    assert elapsed < 2.5
    batches, elapsed = run_async(lambda: scenario(max_batch_size=2))
    assert batches == [2]
    assert elapsed < 2.5


def test_close_refuses_new_work_and_drain_waits_for_in_flight(
    executor: ThreadPoolExecutor, fake: Fake
) -> None:
    model = fake(hold=True)

    async def scenario() -> None:
        b = DynamicBatcher(model, max_batch_size=8, name="cnn")
        running = submit(b, rows(1.0))
        await model.wait_started()
        queued = submit(b, rows(2.0))
        await settle(lambda: b.queue_depth == 1)
        b.close()
        with pytest.raises(ServerShuttingDown) as info:
            await asyncio.wait_for(b.submit({"x": rows(3.0)}, 1, ("x", (4,))), 1)
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert "model 'cnn' is shutting down" in info.value.message
        drain = asyncio.ensure_future(b.drain())
        await asyncio.sleep(0.1)
        assert not drain.done()  # one running, one queued
        assert b.running == 1
        model.release()
        await asyncio.wait_for(drain, 5)
        assert running.done() and queued.done()
        check_own_rows(rows(1.0), running.result())
        check_own_rows(rows(2.0), queued.result())
        assert b.queue_depth == 0 and b.running == 0
        await asyncio.wait_for(b.drain(), 1)  # idle: returns at once

    run_async(scenario)
    assert 3 not in {int(v) for v in model.seen_values()}


# --------------------------------------------------------------------------------------------
# a real server batching concurrent requests
# --------------------------------------------------------------------------------------------

BATCHING = {"max_queue_delay_us": 2000, "max_queue_size": 1024}


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = write_repository(tmp_path_factory.mktemp("batching"), {
        "ident": (partial(identity_model, datatype_onnx="FP32", dims=(4,)),
                  {"max_batch_size": 32, "dynamic_batching": BATCHING}),
        "addsub": (partial(add_sub_model, dims=(16,)),
                   {"max_batch_size": 32, "dynamic_batching": BATCHING}),
    })
    server = start_server(root)
    yield server
    server.stop()


def _stats(server: ServerProcess, model: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("GET", f"/v2/models/{model}/stats")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
    finally:
        conn.close()
    (stats,) = json.loads(body)["model_stats"]
    return stats


def _check_batched_stats(stats: dict[str, Any], requests: int, total_rows: int) -> None:
    assert stats["inference_stats"]["success"]["count"] == requests
    assert stats["inference_stats"]["fail"]["count"] == 0
    assert stats["inference_count"] == total_rows
    assert 0 < stats["execution_count"] < stats["inference_count"]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert max(sizes) > 1, f"no merged execution: {sizes}"
    assert max(sizes) <= 32
    assert sum(sizes.values()) == stats["execution_count"]
    assert sum(size * n for size, n in sizes.items()) == total_rows


def test_server_batches_concurrent_http_requests(batch_server: ServerProcess) -> None:
    n = 64
    inputs = [(np.full((1, 16), float(i), np.float32) + np.arange(16, dtype=np.float32),
               np.full((1, 16), float(i * i), np.float32)) for i in range(n)]
    conns = [http.client.HTTPConnection("127.0.0.1", batch_server.http_port, timeout=20)
             for _ in range(n)]
    for c in conns:
        c.connect()
    barrier = threading.Barrier(n)

    def call(i: int) -> tuple[int, dict[str, Any]]:
        a, b = inputs[i]
        body = json.dumps({"id": f"req-{i}", "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": a.ravel().tolist()},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 16], "data": b.ravel().tolist()},
        ]})
        barrier.wait(10)
        conns[i].request("POST", "/v2/models/addsub/infer", body,
                         {"Content-Type": "application/json"})
        resp = conns[i].getresponse()
        return resp.status, json.loads(resp.read())

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            answers = list(pool.map(call, range(n)))
    finally:
        for c in conns:
            c.close()
    for i, (status, doc) in enumerate(answers):
        assert status == 200, doc
        assert doc["id"] == f"req-{i}"
        outs = {o["name"]: o for o in doc["outputs"]}
        a, b = inputs[i]
        assert outs["OUTPUT0"]["shape"] == [1, 16]
        np.testing.assert_allclose(outs["OUTPUT0"]["data"], (a + b).ravel())
        np.testing.assert_allclose(outs["OUTPUT1"]["data"], (a - b).ravel())
    _check_batched_stats(_stats(batch_server, "addsub"), n, n)


def test_server_batches_concurrent_grpc_requests(batch_server: ServerProcess) -> None:
    n = 64
    inputs = [(np.arange(4 * (1 + i % 3), dtype=np.float32).reshape(-1, 4) + 100 * i)
              for i in range(n)]
    results: dict[int, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def callback(i: int, result: Any, error: Any) -> None:
        with lock:
            results[i] = error if error is not None else result.as_numpy("OUTPUT0")
            if len(results) == n:
                done.set()

    client = grpcclient.InferenceServerClient(batch_server.grpc_url)
    try:
        for i, x in enumerate(inputs):
            inp = grpcclient.InferInput("INPUT0", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            client.async_infer("ident", [inp], partial(callback, i), request_id=str(i),
                               client_timeout=20)
        assert done.wait(30), f"only {len(results)} of {n} answers arrived"
    finally:
        client.close()
    for i, x in enumerate(inputs):
        assert isinstance(results[i], np.ndarray), results[i]
        np.testing.assert_array_equal(results[i], x)
    _check_batched_stats(_stats(batch_server, "ident"), n, sum(len(x) for x in inputs))
