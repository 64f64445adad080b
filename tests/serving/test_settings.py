"""Triton's logging and trace extensions against real ``shipyard serve`` processes.

* ``/v2/logging`` and gRPC ``LogSettings`` through tritonclient's ``get_log_settings`` /
  ``update_log_settings``: the level of the shipyard loggers changes while the server runs
  (shown by which request lines reach the log), the format too; unknown keys and wrong types
  are refused naming the key;
* ``/v2/trace/setting``, ``/v2/models/{m}/trace/setting`` and gRPC ``TraceSetting``: Triton's
  settings, reported truthfully (tracing OFF), updates that change nothing accepted, the rest
  refused;
* with a control token, changing either needs it (reading does not).

This process imports ``tritonclient.grpc`` and never ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, http_call, start_server, wait_until

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-control-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEFAULT_LOG = {"log_file": "", "log_info": True, "log_warning": True, "log_error": True,
               "log_verbose_level": 0, "log_format": "text"}
DEFAULT_TRACE = {"trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1",
                 "log_frequency": "0", "trace_file": "", "trace_mode": "triton"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("settings-repo")
    shutil.copytree(DEMO_REPOSITORY / "risk", root / "risk")
    (root / "broken" / "1").mkdir(parents=True)  # no model file: never ready (503)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    s = start_server(repo)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token_server(repo: Path) -> Iterator[ServerProcess]:
    s = start_server(repo, "--control-token", TOKEN)
    yield s
    s.stop()


def post(server: ServerProcess, path: str, doc: Any, headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    status, _, body = http_call(server, "POST", path, json.dumps(doc).encode(), headers)
    return status, json.loads(body) if body else None


def grpc_log_settings(resp: Any) -> dict[str, Any]:
    return {k: getattr(v, str(v.WhichOneof("parameter_choice")))
            for k, v in resp.settings.items()}


def logged_after(server: ServerProcess, mark: str) -> bool:
    """Whether a request for the model ``mark`` (a fresh name) left a line in the log."""
    return any(mark in line for line in list(server.log))


def poke(server: ServerProcess, status: int) -> str:
    """A request refused with ``status`` (404: logged at INFO; 503: at DEBUG), marked by a
    fresh id; returns the id."""
    mark = uuid.uuid4().hex
    if status == 404:
        got = http_call(server, "GET", f"/v2/models/nope-{mark}")[0]
    else:
        got = http_call(server, "POST", "/v2/models/broken/infer", b"{}",
                        {"X-Request-ID": mark})[0]
    assert got == status
    return mark


def test_log_settings_change_the_log_at_run_time(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.http_url) as http, \
            grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
        assert http.get_log_settings() == DEFAULT_LOG
        assert grpc_log_settings(grpc_client.get_log_settings()) == DEFAULT_LOG
        assert {"logging", "trace"} <= set(http.get_server_metadata()["extensions"])
        try:
            # at the start (--log-level info): INFO lines, no DEBUG ones
            info, debug = poke(server, 404), poke(server, 503)
            wait_until(lambda: logged_after(server, info), what="the INFO line")
            assert not logged_after(server, debug)
            # verbose over REST: DEBUG lines too
            after = http.update_log_settings({"log_verbose_level": 1})
            assert after == {**DEFAULT_LOG, "log_verbose_level": 1}
            debug = poke(server, 503)
            wait_until(lambda: logged_after(server, debug), what="the DEBUG line")
            # INFO off over gRPC: neither (WARNING and ERROR stay on)
            resp = grpc_client.update_log_settings({"log_info": False, "log_verbose_level": 0})
            assert grpc_log_settings(resp) == {**DEFAULT_LOG, "log_info": False}
            info, debug = poke(server, 404), poke(server, 503)
            # JSON lines from now on (the change itself is logged at INFO, once INFO is on)
            http.update_log_settings({"log_format": "json", "log_info": True})
            marker = poke(server, 404)
            wait_until(lambda: logged_after(server, marker), what="a JSON line")
            assert not logged_after(server, info) and not logged_after(server, debug)
            line = next(line for line in server.log if marker in line)
            assert json.loads(line)["logger"] == "shipyard.http"
            assert http.get_log_settings()["log_format"] == "json"
            # Triton's name of the plain format
            assert http.update_log_settings({"log_format": "default"})["log_format"] == "text"
        finally:
            http.update_log_settings(DEFAULT_LOG)
        assert http.get_log_settings() == DEFAULT_LOG


@pytest.mark.parametrize(("settings", "expected"), [
    ({"log_info": "yes"}, "'log_info' must be true or false"),
    ({"log_error": 1}, "'log_error' must be true or false"),
    ({"log_verbose_level": -1}, "'log_verbose_level' must be an integer >= 0"),
    ({"log_verbose_level": True}, "'log_verbose_level' must be an integer"),
    ({"log_format": "ISO8601"}, "'log_format' must be"),
    ({"log_file": "/tmp/shipyard.log"}, "'log_file' can only be ''"),
    ({"log_level": "debug"}, "unknown log setting 'log_level'"),
    ({"log_info": None}, "'log_info' needs a value"),
    ({"log_info": False, "log_warning": "no"}, "'log_warning'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_log_settings_refusals_name_the_key(server: ServerProcess, settings: dict[str, Any],
                                            expected: str) -> None:
    status, doc = post(server, "/v2/logging", settings)
    assert status == 400 and expected in doc["error"], (status, doc)
    # nothing of a refused change applies
    assert json.loads(http_call(server, "GET", "/v2/logging")[2]) == DEFAULT_LOG


def test_log_settings_refusals_over_grpc_and_odd_bodies(server: ServerProcess) -> None:
    request = service_pb2.LogSettingsRequest()
    request.settings["log_info"].uint32_param = 1  # a number where a bool belongs
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.LogSettings(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'log_info'" in (info.value.details() or "")
    for body in (b"[1]", b"{not json", b'"log_info"'):
        status, _, answer = http_call(server, "POST", "/v2/logging", body)
        assert status == 400, (body, answer)
    # an empty body changes nothing
    status, _, answer = http_call(server, "POST", "/v2/logging", b"")
    assert status == 200 and json.loads(answer) == DEFAULT_LOG


def test_trace_settings_are_reported_and_refused_truthfully(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.http_url) as http, \
            grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
        assert http.get_trace_settings() == DEFAULT_TRACE
        assert http.get_trace_settings("risk") == DEFAULT_TRACE
        as_json = grpc_client.get_trace_settings(as_json=True)["settings"]
        assert {k: v["value"] for k, v in as_json.items()} == {
            k: v if isinstance(v, list) else [v] for k, v in DEFAULT_TRACE.items()}
        model = grpc_client.get_trace_settings("risk", as_json=True)["settings"]
        assert model == as_json
        # what changes nothing is accepted (tritonclient's own calls, both protocols)
        assert http.update_trace_settings(settings={"trace_level": ["OFF"]}) == DEFAULT_TRACE
        assert http.update_trace_settings("risk", {"trace_rate": None, "trace_count": "-1"}
                                          ) == DEFAULT_TRACE
        grpc_client.update_trace_settings("risk", {"trace_level": "OFF", "trace_rate": None})
        # turning tracing on, or changing its settings, is refused naming the setting
        for settings, name in (({"trace_level": ["TIMESTAMPS"]}, "trace_level"),
                               ({"trace_rate": "1"}, "trace_rate"),
                               ({"trace_file": "/tmp/trace.json"}, "trace_file"),
                               ({"trace_mode": "opentelemetry"}, "trace_mode")):
            with pytest.raises(InferenceServerException, match=name) as err:
                http.update_trace_settings(settings=settings)
            assert "records no traces" in str(err.value)
            with pytest.raises(InferenceServerException, match=name) as err:
                grpc_client.update_trace_settings(settings=settings)
            assert "INVALID_ARGUMENT" in str(err.value.status())
        status, doc = post(server, "/v2/trace/setting", {"trace_levels": ["OFF"]})
        assert status == 400 and "unknown trace setting 'trace_levels'" in doc["error"]
        status, doc = post(server, "/v2/trace/setting", {"trace_rate": {"a": 1}})
        assert status == 400 and "'trace_rate'" in doc["error"]
        # an unknown model
        assert http_call(server, "GET", "/v2/models/nope/trace/setting")[0] == 404
        assert post(server, "/v2/models/nope/trace/setting", {})[0] == 404
        with pytest.raises(InferenceServerException) as err:
            grpc_client.get_trace_settings("nope")
        assert "NOT_FOUND" in str(err.value.status())
        assert http.get_trace_settings() == DEFAULT_TRACE


def test_changing_settings_needs_the_token_when_there_is_one(
        token_server: ServerProcess) -> None:
    server = token_server
    grpc_auth = {"authorization": f"Bearer {TOKEN}"}
    with httpclient.InferenceServerClient(server.http_url) as http, \
            grpcclient.InferenceServerClient(server.grpc_url) as grpc_client:
        assert http.get_log_settings() == DEFAULT_LOG  # reading is open
        assert http.get_trace_settings() == DEFAULT_TRACE
        assert grpc_log_settings(grpc_client.get_log_settings()) == DEFAULT_LOG
        for path, doc in (("/v2/logging", {"log_verbose_level": 1}),
                          ("/v2/trace/setting", {"trace_level": ["OFF"]}),
                          ("/v2/models/risk/trace/setting", {"trace_level": ["OFF"]})):
            for headers in (None, {"Authorization": "Bearer wrong-token-but-long-enough"}):
                status, answer = post(server, path, doc, headers)
                assert status == 401 and "Authorization: Bearer" in answer["error"], answer
        with pytest.raises(InferenceServerException) as err:
            grpc_client.update_log_settings({"log_verbose_level": 1})
        assert "UNAUTHENTICATED" in str(err.value.status())
        with pytest.raises(InferenceServerException) as err:
            grpc_client.update_trace_settings(settings={"trace_level": ["OFF"]})
        assert "UNAUTHENTICATED" in str(err.value.status())
        assert http.get_log_settings() == DEFAULT_LOG
        # with the token
        assert http.update_log_settings({"log_warning": False}, headers=AUTH)[
            "log_warning"] is False
        resp = grpc_client.update_log_settings({"log_warning": True}, headers=grpc_auth)
        assert grpc_log_settings(resp) == DEFAULT_LOG
        grpc_client.update_trace_settings(settings={"trace_level": ["OFF"]}, headers=grpc_auth)
