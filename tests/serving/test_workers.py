"""``shipyard serve --workers 2``: two real worker processes behind one pair of ports, under a
supervising parent (restart, readiness of all, summed statistics and metrics, drain)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import (
    DEMO_REPOSITORY,
    ServerProcess,
    http_call,
    metric_value,
    start_server,
    wait_until,
)
from sklearn.datasets import load_breast_cancer

from shipyard.serving.config import ServerSettings
from shipyard.serving.stats import ModelStats

_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """The risk model's real inputs, every 35th row of the Wisconsin breast-cancer features,
    and whether each is malignant (what the model's score is the probability of)."""
    bunch = load_breast_cancer()
    x: np.ndarray = bunch.data[::35].astype(np.float32)
    malignant: np.ndarray = bunch.target[::35] == 0
    return x, malignant


@pytest.fixture(scope="module")
def features(data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The rows of :func:`data`."""
    return data[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """Two workers serving the demo repository (stopped by the last test, or here)."""
    srv = start_server(DEMO_REPOSITORY, "--workers", "2", "--grace-period", "5")
    yield srv
    srv.stop(signal.SIGKILL if srv.proc.poll() is None else signal.SIGTERM)


def _workers(server: ServerProcess) -> dict[int, int]:
    """Worker index -> pid of its latest start, from the parent's log."""
    out: dict[int, int] = {}
    for line in server.log:
        if m := _STARTED.search(line):
            out[int(m.group(1))] = int(m.group(2))
    return out


def _sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return n


def _body(rows: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "features", "datatype": "FP32",
                                   "shape": list(rows.shape),
                                   "data": rows.ravel().tolist()}]}).encode()


def _agreed_success(server: ServerProcess, reads: int = 4) -> tuple[int] | None:
    """``(count,)`` when ``reads`` reads of :func:`_success` in a row agree, else None."""
    counts = {_success(server) for _ in range(reads)}
    return (counts.pop(),) if len(counts) == 1 else None


def _success(server: ServerProcess) -> int:
    """The summed ``success.count`` of risk's statistics (REST)."""
    status, _, body = http_call(server, "GET", "/v2/models/risk/stats")
    assert status == 200, body
    return int(json.loads(body)["model_stats"][0]["inference_stats"]["success"]["count"])


def _ready_status(server: ServerProcess) -> int | None:
    """The status of ``/v2/health/ready``; None when the connection was reset."""
    try:
        return http_call(server, "GET", "/v2/health/ready")[0]
    except ConnectionError:
        return None


def _grpc_infer(server: ServerProcess, rows: np.ndarray) -> np.ndarray:
    # a channel of its own (no shared subchannel): a connection of its own, to either worker
    client = grpcclient.InferenceServerClient(
        server.grpc_url, channel_args=[("grpc.use_local_subchannel_pool", 1)])
    try:
        inp = grpcclient.InferInput("features", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows)
        out = client.infer("risk", [inp]).as_numpy("score")
        assert out is not None
        return out
    finally:
        client.close()


def test_rest_and_grpc_are_served_by_both_workers(
        server: ServerProcess, data: tuple[np.ndarray, np.ndarray]) -> None:
    features, malignant = data
    pids = _workers(server)
    assert sorted(pids) == [0, 1]
    before = {i: _sockets(pid) for i, pid in pids.items()}
    conns = []
    scores = []
    for i in range(16):  # 16 open connections: the kernel spreads them over both listeners
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        conn.request("POST", "/v2/models/risk/infer", _body(features[i:i + 1]),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        scores.append(json.loads(resp.read())["outputs"][0]["data"][0])
        conns.append(conn)
    try:
        during = {i: _sockets(pid) for i, pid in pids.items()}
        assert all(during[i] > before[i] for i in pids), (before, during)
    finally:
        for conn in conns:
            conn.close()
    grpc_scores = [float(_grpc_infer(server, features[i:i + 1])[0, 0]) for i in range(16)]
    # both workers run the same model: the same answers over both protocols
    np.testing.assert_allclose(grpc_scores, scores, rtol=1e-6)
    assert np.mean((np.array(scores) > 0.5) == malignant[:16]) >= 0.9
    # statistics and metrics sum both workers (the other's snapshot is <= 0.5 s old)
    wait_until(lambda: _success(server) == 32, timeout=5, what="stats summed to 32")
    wait_until(lambda: metric_value(server, "shipyard_request_success_total", model="risk",
                                    version="1") == 32.0, timeout=5, what="metrics sum 32")
    status, _, body = http_call(server, "GET", "/v2/health/ready")
    assert status == 200, body


def test_a_killed_worker_is_restarted_and_readiness_waits_for_it(
        server: ServerProcess, features: np.ndarray) -> None:
    old = _workers(server)
    # a worker killed loses what it counted since its last snapshot (<= 0.5 s): let both write,
    # then take the total that several reads agree on (each read lands on either worker, which
    # sums its own count and the other's latest snapshot; under load a snapshot can be late)
    time.sleep(1.0)
    (served,) = wait_until(lambda: _agreed_success(server), timeout=10,
                           what="both workers' statistics agree")
    os.kill(old[0], signal.SIGKILL)
    # the parent clears the dead worker's flag: the survivor says not ready ... (until the
    # kernel has closed the dead worker's listener, a connection queued there is reset)
    wait_until(lambda: _ready_status(server) == 503, timeout=5,
               what="ready 503 while a worker is down")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        assert not client.is_server_ready()
        # ... but it keeps serving
        for i in range(8):
            status, _, body = http_call(server, "POST", "/v2/models/risk/infer",
                                        _body(features[i:i + 1]),
                                        {"Content-Type": "application/json"})
            assert status == 200, body
        wait_until(lambda: _workers(server)[0] != old[0], timeout=10, what="a restart")
        wait_until(lambda: _ready_status(server) == 200,
                   timeout=30, what="ready again once the new worker is")
        assert client.is_server_ready()
    finally:
        client.close()
    assert _workers(server)[1] == old[1]
    assert any(f"worker 0 (pid {old[0]}) exited with code -9" in line for line in server.log)
    # the dead worker's counters stay in the sums: counters never go back
    wait_until(lambda: _success(server) == served + 8, timeout=5,
               what=f"stats kept ({served} + 8)")
    wait_until(lambda: metric_value(server, "shipyard_request_success_total", model="risk",
                                    version="1") == float(served + 8), timeout=5,
               what="metrics kept")


def test_sigterm_drains_every_worker_and_exits_0(server: ServerProcess) -> None:
    pids = _workers(server)
    assert server.stop(signal.SIGTERM, timeout=30) == 0, "\n".join(server.log)
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    stopped = [line for line in server.log if "shipyard.server: stopped" in line]
    assert len(stopped) == 2, server.log
    assert "every worker stopped cleanly" in server.log[-1]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_workers_setting() -> None:
    assert ServerSettings(workers="auto").worker_count() == len(os.sched_getaffinity(0))
    assert ServerSettings.resolve({"workers": "3"}).worker_count() == 3
    with pytest.raises(Exception, match="workers must be 1 or more"):
        ServerSettings.resolve({"workers": "0"})


def test_stats_merge_equals_one_stats_that_saw_everything() -> None:
    rng = np.random.default_rng(0)
    one, a, b = ModelStats(), ModelStats(), ModelStats()
    for k in range(200):
        ok = bool(rng.random() < 0.9)
        ns = int(rng.integers(1_000, 50_000_000))
        rows = int(rng.integers(1, 40))
        target = a if k % 3 else b
        for s in (one, target):
            s.on_request(ok, ns, "" if ok else "INVALID_ARGUMENT")
            s.on_execution(rows, [ns // 2] * min(rows, 3), ns // 10, ns // 2, ns // 10, ok)
            if k % 17 == 0:
                s.on_rejected("queue_full")
    merged = a.copy()
    merged.merge(b)
    assert a.success.count + b.success.count == one.success.count  # a itself untouched
    for name in ("success", "fail", "queue", "compute_infer", "inference_count",
                 "execution_count", "batch", "failures", "rejections"):
        assert getattr(merged, name) == getattr(one, name), name
    for name in ("request_seconds", "queue_seconds", "compute_seconds", "batch_size"):
        assert getattr(merged, name).counts == getattr(one, name).counts, name
        assert getattr(merged, name).sum == pytest.approx(getattr(one, name).sum)


# -- model control under --workers 2: a load or unload reaches every worker --------------------

TOKEN = "bcast-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: fresh connections per check: the kernel spreads them over both workers (all on one worker
#: has probability 2**-31)
FRESH = 32


@pytest.fixture(scope="module")
def explicit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two workers in explicit mode over a repository of risk, its copy ``risk2`` and
    ``broken`` (an ONNX file that is not one); risk is loaded at start-up."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("risk", "risk2"):
        shutil.copytree(DEMO_REPOSITORY / "risk", root / name)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "config.yaml").write_text("backend: onnx\nmax_batch_size: 4\n")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX model")
    srv = start_server(root, "--workers", "2", "--model-control", "explicit",
                       "--control-token", TOKEN, "--load-model", "risk", "--grace-period", "5")
    yield srv
    assert srv.stop(signal.SIGTERM) == 0, "\n".join(srv.log)
    # a load's files are staged in the parent's folder, removed with it (killed workers too)
    assert not list(Path(tempfile.gettempdir()).glob("shipyard-load-*/uploaded.*"))


def _statuses(server: ServerProcess, model: str, rows: np.ndarray) -> tuple[set[int], set[int],
                                                                            list[float]]:
    """``FRESH`` times on new connections: the statuses of ``/v2/models/{model}/ready`` and of
    an inference, and the scores served."""
    ready, infer, scores = set(), set(), []
    for i in range(FRESH):
        ready.add(http_call(server, "GET", f"/v2/models/{model}/ready")[0])
        status, _, body = http_call(server, "POST", f"/v2/models/{model}/infer",
                                    _body(rows[i % len(rows):i % len(rows) + 1]),
                                    {"Content-Type": "application/json"})
        infer.add(status)
        if status == 200:
            scores.append(json.loads(body)["outputs"][0]["data"][0])
    return ready, infer, scores


def _load(server: ServerProcess, model: str, body: bytes = b"") -> tuple[int, bytes]:
    status, _, answer = http_call(server, "POST", f"/v2/repository/models/{model}/load", body,
                                  {**AUTH, "Content-Type": "application/json"}, timeout=60)
    return status, answer


def _upload(server: ServerProcess) -> tuple[int, bytes]:
    """Load ``uploaded`` from risk's ONNX file sent with the call, as version 3."""
    onnx = (DEMO_REPOSITORY / "risk" / "1" / "model.onnx").read_bytes()
    body = json.dumps({"parameters": {
        "config": json.dumps({"max_batch_size": 8}),
        "file:3/model.onnx": base64.b64encode(onnx).decode()}}).encode()
    return _load(server, "uploaded", body)


def test_explicit_load_and_unload_reach_every_worker(
        explicit_server: ServerProcess, data: tuple[np.ndarray, np.ndarray]) -> None:
    server = explicit_server
    features, malignant = data
    ready, infer, _ = _statuses(server, "risk2", features)
    assert 200 not in ready and 200 not in infer  # not loaded anywhere yet
    status, body = _load(server, "risk2")
    assert status == 200, body
    # the call returned: every worker serves it, on every fresh connection
    ready, infer, scores = _statuses(server, "risk2", features)
    assert ready == {200} and infer == {200}, (ready, infer)
    expected = [malignant[i % len(features)] for i in range(FRESH)]
    assert np.mean((np.array(scores) > 0.5) == np.array(expected)) >= 0.9
    status, _, body = http_call(server, "POST", "/v2/repository/models/risk2/unload", b"", AUTH)
    assert status == 200, body
    ready, infer, _ = _statuses(server, "risk2", features)
    assert 200 not in ready and 200 not in infer, (ready, infer)
    # the start-up model was never touched
    ready, infer, _ = _statuses(server, "risk", features)
    assert ready == {200} and infer == {200}


def test_explicit_load_that_fails_names_every_worker(explicit_server: ServerProcess) -> None:
    status, body = _load(explicit_server, "broken")
    assert status == 400, body
    message = json.loads(body)["error"]
    assert "failed on 2 of 2 workers" in message, message
    assert "worker 0:" in message and "worker 1:" in message, message
    assert "broken" in message
    # a model that does not exist: 404 from every worker
    status, body = _load(explicit_server, "nowhere")
    assert status == 404, body


def test_explicit_load_with_files_reaches_every_worker(
        explicit_server: ServerProcess, features: np.ndarray) -> None:
    """Triton's ``parameters: {config, file:...}``: the files reach the other worker too."""
    status, answer = _upload(explicit_server)
    assert status == 200, answer
    ready, infer, scores = _statuses(explicit_server, "uploaded", features)
    assert ready == {200} and infer == {200}, (ready, infer)
    _, _, risk_scores = _statuses(explicit_server, "risk", features)
    np.testing.assert_allclose(scores, risk_scores, rtol=1e-6)
    status, _, meta = http_call(explicit_server, "GET", "/v2/models/uploaded")
    assert status == 200 and json.loads(meta)["versions"] == ["3"], meta


def test_a_restarted_worker_comes_back_with_the_loaded_models(
        explicit_server: ServerProcess, features: np.ndarray) -> None:
    server = explicit_server
    status, body = _load(server, "risk2")
    assert status == 200, body
    status, body = _upload(server)
    assert status == 200, body
    old = _workers(server)
    os.kill(old[1], signal.SIGKILL)
    wait_until(lambda: _workers(server)[1] != old[1], timeout=10, what="a restart")
    wait_until(lambda: _ready_status(server) == 200, timeout=30,
               what="ready again once the new worker is")
    # the new worker loaded what is loaded now (risk2, the uploaded files), not just risk
    for model in ("risk", "risk2", "uploaded"):
        ready, infer, _ = _statuses(server, model, features)
        assert ready == {200} and infer == {200}, (model, ready, infer)
    # and it takes part in the next call (this one over gRPC)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.unload_model("risk2", headers={"authorization": f"Bearer {TOKEN}"})
    finally:
        client.close()
    ready, infer, _ = _statuses(server, "risk2", features)
    assert 200 not in ready and 200 not in infer, (ready, infer)
