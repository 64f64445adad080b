"""--strict-readiness: ready only with at least one model and every model ready (Triton's), so
a Kubernetes or KServe pod whose model failed to load, or whose repository is empty, gets no
traffic; without it the server is ready once its start-up loads are done."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from conftest import DEMO_REPOSITORY, http_call, start_server


def _repository(tmp_path: Path, broken: bool) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(DEMO_REPOSITORY / "risk", repo / "risk")
    if broken:
        (repo / "bad" / "1").mkdir(parents=True)
        (repo / "bad" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    return repo


@pytest.mark.parametrize(("broken", "strict", "ready"), [
    (False, True, True), (True, True, False), (True, False, True)])
def test_a_model_that_failed_to_load(tmp_path: Path, broken: bool, strict: bool,
                                     ready: bool) -> None:
    server = start_server(_repository(tmp_path, broken),
                          *(["--strict-readiness"] if strict else []))
    try:
        status, _, _ = http_call(server, "GET", "/v2/health/ready")
        assert status == (200 if ready else 503)
        assert http_call(server, "GET", "/v2/health/live")[0] == 200
        assert http_call(server, "GET", "/v2/models/risk/ready")[0] == 200  # still serves
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert client.is_server_ready() is ready
        finally:
            client.close()
    finally:
        server.stop()


def test_an_empty_repository_is_not_ready_when_strict(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for extra, want in ((["--strict-readiness"], 503), ([], 200)):
        server = start_server(tmp_path / "empty", *extra)
        try:
            assert http_call(server, "GET", "/v2/health/ready")[0] == want
        finally:
            server.stop()
