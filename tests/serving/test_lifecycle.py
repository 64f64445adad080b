"""Model lifecycle against real ``shipyard serve`` processes (issue #4).

* version policies (latest N, specific, all): which versions are served and listed, and that a
  request without a version goes to the newest ready one;
* hot reload (``--watch``): new, removed and failing versions, a changed ``config.yaml``, a new
  model, and the publishing rule (a hidden ``.tmp-N`` directory is ignored until it is renamed);
* explicit model control: bearer token on load / unload (not the index) over REST and gRPC, 403 /
  PERMISSION_DENIED outside explicit mode, draining on unload, readiness and start-up checks;
* load with a configuration (``config``, config.yaml's or Triton's fields) and with files
  (``file:<version>/<path>``), via tritonclient over REST and gRPC, and their refusals;
* unsafe formats: a version holding only a pickle is never loaded (nor unpickled).

Every model is a tiny ONNX graph from ``tests/onnx_models.py``; ``scale_model`` with
``factor = version`` tells the versions apart (output = input * version). This process imports
``tritonclient.grpc`` and never ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import (
    DEMO_REPOSITORY,
    ServerProcess,
    http_call,
    infer_fp32,
    metric_value,
    record_figures,
    spawn_server,
    start_server,
    wait_until,
)
from onnx_models import (
    scale_model,
    slow_model,
    slow_model_layers,
    warmup_fail_model,
    write_repository,
)

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-control-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL = "0.2"
X = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def factor_of(server: ServerProcess, model: str, version: str = "") -> tuple[int, str]:
    """Infer ``X``; return (the one factor k with output == X * k, the version that answered)."""
    status, _, doc = infer_fp32(server, model, X, version)
    assert status == 200, doc
    out = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(X.shape)
    k = float(out[0, 0] / X[0, 0])
    assert k.is_integer() and np.array_equal(out, X * np.float32(k)), (out, X)
    return int(k), doc["model_version"]


def served_versions(server: ServerProcess, model: str) -> list[str] | None:
    """``/v2/models/{m}``'s version list, sorted (None when the model has no ready version)."""
    status, _, body = http_call(server, "GET", f"/v2/models/{model}")
    if status != 200:
        return None
    return sorted(json.loads(body)["versions"], key=int)


def index_rows(server: ServerProcess, headers: dict[str, str] | None = None
               ) -> list[dict[str, str]]:
    status, _, body = http_call(server, "POST", "/v2/repository/index", b"{}", headers)
    assert status == 200, body
    rows: list[dict[str, str]] = json.loads(body)
    return rows


def row(rows: list[dict[str, str]], name: str, version: str) -> dict[str, str] | None:
    return next((r for r in rows if r["name"] == name and r["version"] == version), None)


def publish(model_dir: Path, version: int, build: Callable[[Path], Any]) -> None:
    """The publishing rule: write into a hidden temporary directory, then rename it."""
    tmp = model_dir / f".tmp-{version}"
    build(tmp / "model.onnx")
    os.rename(tmp, model_dir / str(version))


def publish_bytes(model_dir: Path, version: int, data: bytes) -> None:
    tmp = model_dir / f".tmp-{version}"
    tmp.mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(data)
    os.rename(tmp, model_dir / str(version))


def grpc_status(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


def log_has(server: ServerProcess, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in list(server.log))


# --------------------------------------------------------------------------------------------
# a plain server (model control none): version policies, unsafe formats, 403 on load/unload
# --------------------------------------------------------------------------------------------


class Sentinel:
    """Unpickling this object creates ``path`` (proof that nobody unpickled it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def plain_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain-repo")
    versions = {v: partial(scale_model, factor=float(v)) for v in (1, 2, 3)}
    write_repository(root, {
        "latest2": (versions, {"max_batch_size": 8, "version_policy": {"latest": 2}}),
        "specific": (versions, {"max_batch_size": 8, "version_policy": {"specific": [1, 2]}}),
        "every": (versions, {"max_batch_size": 8, "version_policy": {"all": True}}),
        "default": (versions, {"max_batch_size": 8}),
        # fails a warm-up of one row; fine with three (12 values reshape to [-1, 3])
        "warm_zeros": (warmup_fail_model, {"max_batch_size": 8}),
        # max_batch_size 0: its output [4, 3] for 3 rows is not batched (a batching config
        # would be refused at the first request, as the batcher could not slice it)
        "warm_inputs": (warmup_fail_model, {"max_batch_size": 0, "warmup": {"inputs": {
            "INPUT0": {"shape": [3, 4], "data": list(range(12))}}}}),
        "warm_off": (warmup_fail_model, {"max_batch_size": 0, "warmup": {"enabled": False}}),
    })
    sentinel = root.parent / "UNPICKLED"
    payload = pickle.dumps(Sentinel(sentinel))
    named = "default_model_filename: model.pkl\n"
    for name, config in (("pickled", None), ("pickled_named", named)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.pkl").write_bytes(payload)
        if config:
            (root / name / "config.yaml").write_text(config, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def plain_server(plain_repo: Path) -> Iterator[ServerProcess]:
    server = start_server(plain_repo)
    yield server
    server.stop()


@pytest.mark.parametrize(("model", "served", "newest", "not_served"), [
    ("latest2", ["2", "3"], 3, "1"),
    ("specific", ["1", "2"], 2, "3"),
    ("every", ["1", "2", "3"], 3, None),
    ("default", ["3"], 3, "1"),
])
def test_version_policy(plain_server: ServerProcess, model: str, served: list[str], newest: int,
                        not_served: str | None) -> None:
    assert served_versions(plain_server, model) == served
    # a request without a version goes to the newest served (ready) version
    assert factor_of(plain_server, model) == (newest, str(newest))
    for v in served:
        assert factor_of(plain_server, model, v) == (int(v), v)
        status, _, _ = http_call(plain_server, "GET", f"/v2/models/{model}/versions/{v}/ready")
        assert status == 200
    if not_served is not None:  # on disk but not selected by the policy
        status, _, doc = infer_fp32(plain_server, model, X, not_served)
        assert status == 404, doc
        assert "served versions" in doc["error"], doc
    with grpcclient.InferenceServerClient(plain_server.grpc_url) as client:
        meta = client.get_model_metadata(model, as_json=True)
        assert sorted(meta["versions"], key=int) == served
        assert client.get_model_config(model, as_json=True)["config"]["version_policy"]


def test_warmup_runs_config_inputs_or_zeros(plain_server: ServerProcess) -> None:
    """The warm-up request uses config.yaml's ``warmup.inputs`` when given, else one row of
    zeros; a version whose warm-up fails is not served."""
    rows = index_rows(plain_server)
    zeros = row(rows, "warm_zeros", "1")
    assert zeros is not None and zeros["state"] == "UNAVAILABLE", rows
    assert "warm-up request failed" in zeros["reason"], zeros
    assert http_call(plain_server, "GET", "/v2/models/warm_zeros/ready")[0] == 503
    for name in ("warm_inputs", "warm_off"):
        assert http_call(plain_server, "GET", f"/v2/models/{name}/ready")[0] == 200, name
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        status, _, doc = infer_fp32(plain_server, name, x)
        assert status == 200, doc
        assert doc["outputs"][0]["shape"] == [4, 3], doc


def test_pickle_is_never_loaded(plain_server: ServerProcess, plain_repo: Path) -> None:
    """No backend reads pickles: a version directory holding only ``model.pkl`` is reported as
    holding no model file (``model.onnx`` ...); naming the pickle as the model file is refused
    as a file no backend reads. Either way the pickle is never unpickled (its payload would
    create a file)."""
    rows = index_rows(plain_server)
    pickled = row(rows, "pickled", "1")
    assert pickled is not None and pickled["state"] == "UNAVAILABLE", rows
    assert "model.onnx" in pickled["reason"] and "not found" in pickled["reason"], pickled
    named = row(rows, "pickled_named", "1")
    assert named is not None and named["state"] == "UNAVAILABLE", rows
    assert "'model.pkl' is no file a backend reads" in named["reason"], named
    for name in ("pickled", "pickled_named"):
        status, _, body = http_call(plain_server, "GET", f"/v2/models/{name}/ready")
        assert status == 503, body
        status, _, doc = infer_fp32(plain_server, name, X)
        assert status == 503, doc
        assert metric_value(plain_server, "shipyard_model_load_failure_total", model=name,
                            version="1") == 1
    assert not (plain_repo.parent / "UNPICKLED").exists(), "the pickle was unpickled"
    # the good models were not disturbed
    assert factor_of(plain_server, "default") == (3, "3")


def test_load_unload_refused_outside_explicit_mode(plain_server: ServerProcess) -> None:
    for action in ("load", "unload"):
        for headers in (None, AUTH):
            status, _, body = http_call(plain_server, "POST",
                                        f"/v2/repository/models/default/{action}", b"{}", headers)
            assert status == 403, body
            assert "--model-control explicit" in json.loads(body)["error"]
    with grpcclient.InferenceServerClient(plain_server.grpc_url) as client:
        for call in (client.load_model, client.unload_model):
            with pytest.raises(InferenceServerException) as err:
                call("default", headers={"authorization": f"Bearer {TOKEN}"})
            assert grpc_status(err.value) == "PERMISSION_DENIED", err.value
        # the read-only index stays open
        index = client.get_model_repository_index(as_json=True)
        assert any(m["name"] == "default" for m in index["models"])
    assert factor_of(plain_server, "default") == (3, "3")  # still serving


# --------------------------------------------------------------------------------------------
# hot reload
# --------------------------------------------------------------------------------------------

HOT_CONFIG = {
    "max_batch_size": 8,
    "version_policy": {"all": True},
    "warmup": {"inputs": {"INPUT0": {"shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}}},
}


def test_hot_reload(tmp_path: Path) -> None:
    root = write_repository(tmp_path / "repo", {
        "hot": ({1: partial(scale_model, factor=1.0)}, HOT_CONFIG),
    })
    hot = root / "hot"
    server = start_server(root, "--watch", "--poll-interval", POLL)
    timings: dict[str, float] = {}

    def timed(step: str, fn: Callable[[], Any], what: str) -> Any:
        t0 = time.monotonic()
        result = wait_until(fn, timeout=15, what=what)
        timings[step] = round(time.monotonic() - t0, 3)
        return result

    try:
        assert served_versions(server, "hot") == ["1"]
        assert factor_of(server, "hot") == (1, "1")

        # 1. a new version directory (published atomically) is loaded, warmed up, switched to
        publish(hot, 2, partial(scale_model, factor=2.0))
        timed("new_version_s", lambda: factor_of(server, "hot") == (2, "2"), "version 2")
        assert served_versions(server, "hot") == ["1", "2"]
        assert factor_of(server, "hot", "1") == (1, "1")
        assert metric_value(server, "shipyard_model_load_total", model="hot", version="2") == 1
        assert log_has(server, "loaded hot version 2")

        # 2. publishing rule: a half-written hidden directory is ignored...
        src = scale_model(tmp_path / "staging" / "model.onnx", 3.0).read_bytes()
        tmp = hot / ".tmp-3"
        tmp.mkdir()
        with open(tmp / "model.onnx", "wb") as f:
            f.write(src[: len(src) // 2])
            f.flush()
            time.sleep(6 * float(POLL))  # several scans see the half-written file
            assert served_versions(server, "hot") == ["1", "2"]
            assert row(index_rows(server), "hot", "3") is None
            f.write(src[len(src) // 2 :])
        # ... and the renamed one is served
        os.rename(tmp, hot / "3")
        timed("renamed_hidden_dir_s", lambda: factor_of(server, "hot") == (3, "3"), "version 3")
        assert metric_value(server, "shipyard_model_load_failure_total", model="hot",
                            version="3") is None
        assert not log_has(server, "failed to load hot version 3")

        # 3. a garbage model file never replaces a good version; the failure is reported
        publish_bytes(hot, 4, b"this is not an ONNX model\n" * 10)
        timed("garbage_failure_s", lambda: metric_value(
            server, "shipyard_model_load_failure_total", model="hot", version="4") == 1,
              "the failed load of version 4")
        assert factor_of(server, "hot") == (3, "3")
        status, _, body = http_call(server, "GET", "/v2/models/hot/versions/4/ready")
        assert status == 503, body
        doc = json.loads(body)
        assert doc["ready"] is False and "cannot load" in doc["reason"], doc
        r4 = row(index_rows(server), "hot", "4")
        assert r4 is not None and r4["state"] == "UNAVAILABLE" and "cannot load" in r4["reason"]
        assert log_has(server, "failed to load hot version 4")
        status, _, doc = infer_fp32(server, "hot", X, "4")
        assert status == 503, doc

        # 4. a model whose warm-up fails is not served either
        publish(hot, 5, warmup_fail_model)
        timed("warmup_failure_s", lambda: metric_value(
            server, "shipyard_model_load_failure_total", model="hot", version="5") == 1,
              "the failed warm-up of version 5")
        assert factor_of(server, "hot") == (3, "3")
        status, _, body = http_call(server, "GET", "/v2/models/hot/versions/5/ready")
        assert status == 503, body
        assert "warm-up request failed" in json.loads(body)["reason"], body
        r5 = row(index_rows(server), "hot", "5")
        assert r5 is not None and r5["state"] == "UNAVAILABLE"
        assert "warm-up request failed" in r5["reason"], r5
        assert log_has(server, "failed to load hot version 5")

        # 5. a good version whose files are replaced by broken ones keeps serving the good files
        bad = hot / ".tmp-3b"
        bad.mkdir()
        (bad / "model.onnx").write_bytes(b"broken")
        os.replace(bad / "model.onnx", hot / "3" / "model.onnx")
        bad.rmdir()
        timed("broken_in_place_s", lambda: metric_value(
            server, "shipyard_model_load_failure_total", model="hot", version="3") == 1,
              "the failed reload of version 3")
        assert factor_of(server, "hot") == (3, "3")
        r3 = row(index_rows(server), "hot", "3")
        assert r3 is not None and r3["state"] == "READY" and "reload failed" in r3["reason"], r3
        assert http_call(server, "GET", "/v2/models/hot/versions/3/ready")[0] == 200
        assert log_has(server, "failed to load hot version 3")

        # 6. removed version directories are unloaded; requests go to the newest left
        for v in (5, 4, 3):
            shutil.rmtree(hot / str(v))
        timed("removed_versions_s", lambda: served_versions(server, "hot") == ["1", "2"],
              "versions 3-5 to go")
        assert factor_of(server, "hot") == (2, "2")
        wait_until(lambda: metric_value(server, "shipyard_model_unload_total", model="hot",
                                        version="3") == 1, what="version 3 unloaded")

        # 7. a changed config.yaml is noticed: new policy and batch size, all versions reloaded
        cfg = {**HOT_CONFIG, "max_batch_size": 4, "version_policy": {"specific": [1]}}
        (hot / ".config.yaml.tmp").write_text(json.dumps(cfg), encoding="utf-8")
        os.replace(hot / ".config.yaml.tmp", hot / "config.yaml")
        timed("config_change_s", lambda: served_versions(server, "hot") == ["1"],
              "the new version policy")
        assert factor_of(server, "hot") == (1, "1")
        status, _, body = http_call(server, "GET", "/v2/models/hot/config")
        assert status == 200 and json.loads(body)["max_batch_size"] == 4, body
        assert metric_value(server, "shipyard_model_load_total", model="hot", version="1") == 2

        # 8. a new model (its folder renamed into place) is served
        staging = root / ".fresh-tmp"
        scale_model(staging / "1" / "model.onnx", 7.0)
        os.rename(staging, root / "fresh")
        timed("new_model_s", lambda: served_versions(server, "fresh") == ["1"], "model fresh")
        assert factor_of(server, "fresh") == (7, "1")
        assert factor_of(server, "hot") == (1, "1")
        status, _, _ = http_call(server, "GET", "/v2/health/ready")
        assert status == 200
        assert server.proc.poll() is None
    finally:
        rc = server.stop()
    assert rc == 0, "\n".join(server.log)
    record_figures("test_hot_reload", {"poll_interval_s": float(POLL), "seconds_to_notice":
                                       timings})


def _break_config(model_dir: Path) -> bytes:
    good = (model_dir / "config.yaml").read_bytes()
    (model_dir / ".config.tmp").write_text("max_batch_size: [oops\n", encoding="utf-8")
    os.replace(model_dir / ".config.tmp", model_dir / "config.yaml")
    return good


def _restore_config(model_dir: Path, good: bytes) -> None:
    (model_dir / ".config.tmp").write_bytes(good)  # undo the bad edit: the same bytes again
    os.replace(model_dir / ".config.tmp", model_dir / "config.yaml")


def _remove_versions(model_dir: Path) -> bytes:
    os.rename(model_dir / "1", model_dir / ".removed-1")
    return b""


def _restore_versions(model_dir: Path, _: bytes) -> None:
    os.rename(model_dir / ".removed-1", model_dir / "1")


@pytest.mark.parametrize(("breaks", "restores", "reason"), [
    (_break_config, _restore_config, "cannot read YAML"),
    (_remove_versions, _restore_versions, "no version to serve"),
], ids=["broken-config", "all-versions-removed"])
def test_model_level_failure_keeps_serving_reported_once_and_clears(
        tmp_path: Path, breaks: Callable[[Path], bytes], restores: Callable[[Path, bytes], None],
        reason: str) -> None:
    """A broken config.yaml (or a model left without any version directory) never replaces the
    good version; the failure shows in the index and in the failure metric (version label "").
    While nothing changes on disk it is reported once, not again on every scan; once the
    change is undone, the failure is no longer reported."""
    root = write_repository(tmp_path / "repo", {
        "m": ({1: partial(scale_model, factor=1.0)}, HOT_CONFIG),
    })
    server = start_server(root, "--watch", "--poll-interval", POLL)
    problems = []
    try:
        assert factor_of(server, "m") == (1, "1")
        saved = breaks(root / "m")
        wait_until(lambda: metric_value(server, "shipyard_model_load_failure_total", model="m",
                                        version=""), what="the failure to be reported")
        assert factor_of(server, "m") == (1, "1")
        r1 = row(index_rows(server), "m", "1")
        assert r1 is not None and r1["state"] == "READY" and reason in r1["reason"], r1
        time.sleep(10 * float(POLL))  # ten more scans of an unchanged repository
        failures = metric_value(server, "shipyard_model_load_failure_total", model="m",
                                version="")
        error_lines = sum("still serving the previous version" in line for line in server.log)
        if failures != 1:
            problems.append(f"the failure was counted {failures} times in ~2 s (expected once)")
        if error_lines != 1:
            problems.append(f"the failure was logged {error_lines} times in ~2 s (expected once)")
        restores(root / "m", saved)
        try:
            wait_until(lambda: row(index_rows(server), "m", "1") == {
                "name": "m", "version": "1", "state": "READY", "reason": ""}, timeout=5,
                what="the index to stop reporting the failure")
        except AssertionError:
            problems.append("after undoing the change the index still says "
                            f"{row(index_rows(server), 'm', '1')}")
        assert factor_of(server, "m") == (1, "1")
    finally:
        server.stop()
    record_figures(f"test_model_level_failure[{reason}]", {
        "seconds_broken": 10 * float(POLL), "load_failure_total": failures,
        "error_log_lines": error_lines})
    assert not problems, problems


# --------------------------------------------------------------------------------------------
# explicit model control
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explicit_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explicit-repo")
    shutil.copytree(DEMO_REPOSITORY / "risk", root / "risk")
    write_repository(root, {
        "scaled": (partial(scale_model, factor=2.0), {"max_batch_size": 8}),
        # ~0.1 s per request (so that requests are in flight while it is unloaded)
        "slow": (partial(slow_model, layers=slow_model_layers(0.1)), {"max_batch_size": 0}),
    })
    return root


@pytest.fixture(scope="module")
def explicit_server(explicit_repo: Path) -> Iterator[ServerProcess]:
    server = start_server(explicit_repo, "--model-control", "explicit", "--control-token", TOKEN,
                          "--load-model", "risk")
    yield server
    server.stop()


def test_explicit_loads_only_named_models(explicit_server: ServerProcess) -> None:
    assert http_call(explicit_server, "GET", "/v2/health/ready")[0] == 200
    assert http_call(explicit_server, "GET", "/v2/models/risk/ready")[0] == 200
    for name in ("scaled", "slow"):
        assert http_call(explicit_server, "GET", f"/v2/models/{name}/ready")[0] != 200
    rows = index_rows(explicit_server)  # the index needs no token
    assert {(r["name"], r["state"]) for r in rows} >= {
        ("risk", "READY"), ("scaled", "UNAVAILABLE"), ("slow", "UNAVAILABLE")}
    assert row(rows, "scaled", "") == {"name": "scaled", "version": "", "state": "UNAVAILABLE",
                                       "reason": "not loaded"}


@pytest.mark.parametrize("headers", [
    None, {"Authorization": "Bearer wrong-token-but-long-enough"},
    {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
], ids=["none", "wrong", "no-scheme", "basic", "longer"])
def test_explicit_control_needs_token_http(explicit_server: ServerProcess,
                                           headers: dict[str, str] | None) -> None:
    for path in ("/v2/repository/models/scaled/load", "/v2/repository/models/risk/unload"):
        status, _, body = http_call(explicit_server, "POST", path, b"{}", headers)
        assert status == 401, (path, body)
        assert "Authorization: Bearer" in json.loads(body)["error"]
    # reading the index reveals no more than /v2/models/{m}: it is open
    status, _, body = http_call(explicit_server, "POST", "/v2/repository/index", b"{}", headers)
    assert status == 200, body
    assert http_call(explicit_server, "GET", "/v2/models/risk/ready")[0] == 200
    assert http_call(explicit_server, "GET", "/v2/models/scaled/ready")[0] != 200


def test_explicit_control_needs_token_grpc(explicit_server: ServerProcess) -> None:
    wrong = {"authorization": "Bearer wrong-token-but-long-enough"}
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        for headers in (None, wrong):
            for call in (partial(client.load_model, "scaled"),
                         partial(client.unload_model, "risk")):
                with pytest.raises(InferenceServerException) as err:
                    call(headers=headers)
                assert grpc_status(err.value) == "UNAUTHENTICATED", err.value
            index = client.get_model_repository_index(headers=headers, as_json=True)
            assert any(m["name"] == "scaled" for m in index["models"])
        assert client.is_model_ready("risk")
        assert not client.is_model_ready("scaled")


def test_explicit_load_infer_unload(explicit_server: ServerProcess) -> None:
    grpc_auth = {"authorization": f"Bearer {TOKEN}"}
    # load over REST; inference needs no token
    status, _, body = http_call(explicit_server, "POST", "/v2/repository/models/scaled/load",
                                b"{}", AUTH)
    assert status == 200, body
    assert factor_of(explicit_server, "scaled") == (2, "1")
    assert metric_value(explicit_server, "shipyard_model_load_total", model="scaled",
                        version="1") == 1
    # unload over gRPC
    with grpcclient.InferenceServerClient(explicit_server.grpc_url) as client:
        client.unload_model("scaled", headers=grpc_auth)
        assert not client.is_model_ready("scaled")
        index = client.get_model_repository_index(headers=grpc_auth, as_json=True)
        assert any(m["name"] == "scaled" for m in index["models"])
        status, _, doc = infer_fp32(explicit_server, "scaled", X)
        assert status == 503, doc
        # load again over gRPC
        client.load_model("scaled", headers=grpc_auth)
        assert client.is_model_ready("scaled")
    assert factor_of(explicit_server, "scaled") == (2, "1")
    wait_until(lambda: metric_value(explicit_server, "shipyard_model_unload_total",
                                    model="scaled", version="1") == 1, what="unload metric")
    assert metric_value(explicit_server, "shipyard_model_load_total", model="scaled",
                        version="1") == 2
    # an unknown model is a 404, with the token
    status, _, body = http_call(explicit_server, "POST", "/v2/repository/models/nope/load",
                                b"{}", AUTH)
    assert status == 404, body


def test_explicit_unload_drains_in_flight(explicit_server: ServerProcess) -> None:
    status, _, body = http_call(explicit_server, "POST", "/v2/repository/models/slow/load",
                                b"{}", AUTH)
    assert status == 200, body
    n = 6
    xs = [np.full((1, 256), i + 1, dtype=np.float32) for i in range(n)]
    results: list[tuple[int, Any, float] | None] = [None] * n

    def call(i: int) -> None:
        status, _, doc = infer_fp32(explicit_server, "slow", xs[i])
        results[i] = (status, doc, time.monotonic())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()

    def admitted() -> bool:
        queued = metric_value(explicit_server, "shipyard_queue_depth", model="slow",
                              version="1") or 0
        running = metric_value(explicit_server, "shipyard_inflight_executions", model="slow",
                               version="1") or 0
        return queued + running == n

    wait_until(admitted, timeout=10, interval=0.01, what="all requests queued")
    t_unload = time.monotonic()
    status, _, body = http_call(explicit_server, "POST", "/v2/repository/models/slow/unload",
                                b"{}", AUTH)
    assert status == 200, body
    # new requests are refused at once...
    status, _, doc = infer_fp32(explicit_server, "slow", xs[0])
    assert status == 503, doc
    for t in threads:
        t.join(timeout=30)
    # ...while every admitted one got its answer
    pending_at_unload = 0
    for i, res in enumerate(results):
        assert res is not None
        status, doc, done = res
        assert status == 200, doc
        out = np.array(doc["outputs"][0]["data"], dtype=np.float32).reshape(xs[i].shape)
        assert np.array_equal(out, xs[i])
        pending_at_unload += done > t_unload
    assert pending_at_unload >= n - 2, "the unload did not overlap the requests"
    wait_until(lambda: metric_value(explicit_server, "shipyard_model_unload_total", model="slow",
                                    version="1") == 1, what="the drained version to unload")
    record_figures("test_explicit_unload_drains_in_flight", {
        "requests_admitted_before_unload": n, "answered_200": n,
        "still_in_flight_at_unload": pending_at_unload})


# --------------------------------------------------------------------------------------------
# load with a configuration and files (Triton's model-repository extension)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def override_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("override-repo")
    write_repository(root, {"scaled": (partial(scale_model, factor=2.0), {"max_batch_size": 8})})
    server = start_server(root, "--model-control", "explicit", "--control-token", TOKEN,
                          "--load-model", "scaled")
    yield server
    server.stop()


def onnx_bytes(tmp_path: Path, factor: float) -> bytes:
    return scale_model(tmp_path / f"x{factor}" / "model.onnx", factor=factor).read_bytes()


def load_error(server: ServerProcess, model: str, parameters: Any) -> tuple[int, str]:
    body = json.dumps({"parameters": parameters}).encode()
    status, _, answer = http_call(server, "POST", f"/v2/repository/models/{model}/load", body,
                                  AUTH)
    return status, json.loads(answer)["error"] if answer else ""


def test_load_with_config_override(override_server: ServerProcess) -> None:
    """``config`` (JSON) replaces config.yaml for that load, in config.yaml's fields or
    Triton's; tritonclient's load_model(config=...) works over both protocols; the served
    configuration loads back as it is; a plain load goes back to config.yaml."""
    server = override_server
    grpc_auth = {"authorization": f"Bearer {TOKEN}"}
    with httpclient.InferenceServerClient(server.http_url) as http, \
            grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
        assert http.get_model_config("scaled")["max_batch_size"] == 8
        http.load_model("scaled", headers=AUTH, config=json.dumps({"max_batch_size": 4}))
        assert http.get_model_config("scaled")["max_batch_size"] == 4
        # Triton's own field names, over gRPC
        triton = {"max_batch_size": 2, "dynamic_batching": {
            "preferred_batch_size": [2], "max_queue_delay_microseconds": "300"},
            "instance_group": [{"kind": "KIND_AUTO", "count": 2}],
            "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}]}
        grpc_client.load_model("scaled", headers=grpc_auth, config=json.dumps(triton))
        cfg = http.get_model_config("scaled")
        assert cfg["max_batch_size"] == 2
        assert cfg["dynamic_batching"] == {"preferred_batch_size": [2],
                                           "max_queue_delay_microseconds": 300}
        assert cfg["instance_group"][0]["count"] == 2
        assert factor_of(server, "scaled") == (2, "1")
        # what the server serves loads back unchanged, from either protocol's JSON
        served = http.get_model_config("scaled")
        http.load_model("scaled", headers=AUTH, config=json.dumps(served))
        assert http.get_model_config("scaled") == served
        from_grpc = grpc_client.get_model_config("scaled", as_json=True)["config"]
        grpc_client.load_model("scaled", headers=grpc_auth, config=json.dumps(from_grpc))
        assert http.get_model_config("scaled") == served
        # a plain load reads config.yaml again
        http.load_model("scaled", headers=AUTH)
        assert http.get_model_config("scaled")["max_batch_size"] == 8
        # refusals name the field; the model keeps serving as before
        for config, expected in (
                ({"max_batch_size": -1}, "max_batch_size"),
                ({"max_batchsize": 4}, "max_batchsize: unknown field"),
                ({"sequence_batching": {"max_sequence_idle_microseconds": 5}},
                 "sequence_batching"),
                ({"input": [{"name": "INPUT0", "data_type": "TYPE_FLOAT", "dims": [4]}]},
                 "input.0.data_type"),
                ({"output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4],
                              "label_filename": "labels.txt"}]}, "label_filename"),
                ({"instance_group": [{"count": 1}, {"count": 1}]}, "instance_group"),
                ({"trust": True}, "trust"),
                ({"platform": "tensorflow_savedmodel"}, "platform"),
                ({"input": [{"name": "other", "data_type": "TYPE_FP32", "dims": [4]}]},
                 "declares inputs ['other']")):
            status, error = load_error(server, "scaled", {"config": json.dumps(config)})
            assert status == 400 and expected in error, (config, status, error)
            assert "parameter 'config'" in error or "failed to load" in error, error
        assert load_error(server, "scaled", {"config": "{not json"})[0] == 400
        assert load_error(server, "scaled", {"config": {"max_batch_size": 4}})[0] == 400
        with pytest.raises(InferenceServerException) as err:
            grpc_client.load_model("scaled", headers=grpc_auth,
                                   config=json.dumps({"max_batch_size": "many"}))
        assert grpc_status(err.value) == "INVALID_ARGUMENT" and "max_batch_size" in str(
            err.value)
        assert http.get_model_config("scaled")["max_batch_size"] == 8
        assert factor_of(server, "scaled") == (2, "1")
        # the token is still needed
        with pytest.raises(InferenceServerException):
            http.load_model("scaled", config="{}")


def staged_folders(model: str) -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f"shipyard-load-*/{model}.*"))


def test_load_with_files(override_server: ServerProcess, tmp_path: Path) -> None:
    """``file:<version>/<path>`` parameters carry the model's files (with ``config``): the model
    is served from them, even one the repository does not have; a later load replaces them and
    the staged files go once their version is unloaded."""
    server = override_server
    grpc_auth = {"authorization": f"Bearer {TOKEN}"}
    with httpclient.InferenceServerClient(server.http_url) as http, \
            grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
        http.load_model("uploaded", headers=AUTH, config="{}",
                        files={"file:1/model.onnx": onnx_bytes(tmp_path, 3.0)})
        assert factor_of(server, "uploaded") == (3, "1")
        # over gRPC (bytes_param), two versions, a version policy in Triton's form
        grpc_client.load_model(
            "uploaded", headers=grpc_auth,
            config=json.dumps({"version_policy": {"all": {}}, "max_batch_size": 4}),
            files={"file:1/model.onnx": onnx_bytes(tmp_path, 5.0),
                   "file:2/model.onnx": onnx_bytes(tmp_path, 7.0)})
        assert factor_of(server, "uploaded") == (7, "2")
        assert factor_of(server, "uploaded", "1") == (5, "1")
        assert http.get_model_config("uploaded")["max_batch_size"] == 4
        assert any(r["name"] == "uploaded" and r["state"] == "READY"
                   for r in index_rows(server))
        # the files of the replaced load go once its version has drained
        wait_until(lambda: len(staged_folders("uploaded")) == 1, what="one staged folder")
        # a model that is not in the repository cannot be reloaded from it
        status, _, body = http_call(server, "POST", "/v2/repository/models/uploaded/load",
                                    b"", AUTH)
        assert status == 404, body
        http.unload_model("uploaded", headers=AUTH)
        wait_until(lambda: not staged_folders("uploaded"), what="the staged files to go")
        assert not http.is_model_ready("uploaded")
        # bad paths, bad base64, files without config, unknown parameters: 400 naming them
        good = base64.b64encode(onnx_bytes(tmp_path, 3.0)).decode()
        for params, expected in (
                ({"file:1/model.onnx": good}, "need 'config' too"),
                ({"config": "{}", "file:../1/model.onnx": good}, "'..'"),
                ({"config": "{}", "file:1/../../x": good}, "'..'"),
                ({"config": "{}", "file:/etc/model.onnx": good}, "relative path"),
                ({"config": "{}", "file:model.onnx": good}, "version folder"),
                ({"config": "{}", "file:v1/model.onnx": good}, "positive integer"),
                ({"config": "{}", "file:01/model.onnx": good}, "positive integer"),
                ({"config": "{}", "file:1//model.onnx": good}, "empty"),
                ({"config": "{}", "file:1/model.onnx": "not base64!"}, "not valid base64"),
                ({"config": "{}", "file:1/model.onnx": 12}, "base64"),
                ({"config": "{}", "overwrite": True}, "unknown load parameter 'overwrite'")):
            status, error = load_error(server, "uploaded", params)
            assert status == 400 and expected in error, (params, status, error)
        status, _, body = http_call(server, "POST", "/v2/repository/models/uploaded/load",
                                    b'{"params": {}}', AUTH)
        assert status == 400 and b"parameters" in body, body
        # files that are no model: the load fails, nothing is served, nothing stays staged
        status, error = load_error(server, "uploaded", {
            "config": "{}", "file:1/model.onnx": base64.b64encode(b"garbage").decode()})
        assert status == 400 and "failed to load" in error, error
        assert not http.is_model_ready("uploaded")
        with pytest.raises(InferenceServerException) as err:
            grpc_client.load_model("uploaded", headers=grpc_auth, config="{}",
                                   files={"file:1/../x": b"0"})
        assert grpc_status(err.value) == "INVALID_ARGUMENT" and "'..'" in str(err.value)
        with pytest.raises(InferenceServerException) as err:
            grpc_client.load_model("uploaded", headers=grpc_auth,
                                   files={"file:1/model.onnx": b"0"})
        assert grpc_status(err.value) == "INVALID_ARGUMENT" and "config" in str(err.value)
    assert factor_of(server, "scaled") == (2, "1")


def test_explicit_mode_without_token_fails_to_start(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "shipyard", "serve", "--model-repository",
            str(DEMO_REPOSITORY), "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
            "--model-control", "explicit", "--load-model", "risk"]
    env = {k: v for k, v in os.environ.items() if k != "SHIPYARD_CONTROL_TOKEN"}
    for extra, expected in (([], "needs control_token"),
                            (["--control-token", "short"], "at least 16 characters")):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60,
                              env=env)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr, done.stderr
        assert "listening" not in done.stderr


def test_explicit_readiness_waits_for_startup_models(tmp_path: Path) -> None:
    """Readiness is false until the --load-model models are loaded (a slow warm-up shows the
    window); liveness is true all along."""
    root = write_repository(tmp_path / "repo", {
        # ~1 s per run: the default warm-up (one row of zeros) keeps the model loading
        "slowwarm": (partial(slow_model, layers=slow_model_layers(1.0, 512, 4096), dim=512,
                             rows=4096), {"max_batch_size": 0}),
    })
    server, ready_logged = spawn_server(root, "--model-control", "explicit", "--control-token",
                                        TOKEN, "--load-model", "slowwarm")
    seen: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 30:
            live = http_call(server, "GET", "/v2/health/live", timeout=5)[0]
            ready = http_call(server, "GET", "/v2/health/ready", timeout=5)[0]
            seen.append((round(time.monotonic() - t0, 3), live, ready))
            if ready == 200:
                break
            time.sleep(0.02)
        not_ready = [s for s in seen if s[2] == 503]
        assert not_ready, f"never saw the server not ready: {seen}"
        assert all(live == 200 for _, live, _ in seen), seen
        assert seen[-1][2] == 200, seen
        # once ready it stays ready and the model is loaded
        assert ready_logged.wait(10)
        assert http_call(server, "GET", "/v2/models/slowwarm/ready")[0] == 200
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            assert client.is_server_live() and client.is_server_ready()
    finally:
        server.stop()
    record_figures("test_explicit_readiness_waits_for_startup_models", {
        "probes": len(seen), "probes_not_ready": len(not_ready),
        "not_ready_for_s": not_ready[-1][0], "ready_at_s": seen[-1][0]})
