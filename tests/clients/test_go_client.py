"""The Go client example (clients/go): built from the project's .proto files with Debian's Go
toolchain, run against a real ``shipyard serve``, and its answers compared with the server's
answers over REST for the same rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, ServerProcess, _unavailable
from sklearn.datasets import load_breast_cancer

BUILD = ROOT / "clients" / "go" / "build.sh"
GOCODE = Path("/usr/share/gocode/src")

#: what the build needs -> the Debian package that provides it
_TOOLS = {"go": "golang-go", "protoc": "protobuf-compiler", "protoc-gen-go": "protoc-gen-go",
          "protoc-gen-go-grpc": "protoc-gen-go-grpc"}
_LIBRARIES = {"google.golang.org/grpc": "golang-google-grpc-dev",
              "google.golang.org/protobuf": "golang-google-protobuf-dev"}


def _missing_packages() -> list[str]:
    missing = [pkg for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
    return missing + [pkg for lib, pkg in _LIBRARIES.items() if not (GOCODE / lib).is_dir()]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/go/build.sh into a temporary folder; the program's path."""
    missing = _missing_packages()
    if missing:
        _unavailable(f"no Go toolchain to build clients/go: missing Debian package(s) "
                    f"{' '.join(missing)} (scripts/install_system_deps.sh installs them)")
    out = tmp_path_factory.mktemp("go")
    done = subprocess.run(["bash", str(BUILD), str(out)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    program = out / "bin" / "shipyard-go"
    assert program.is_file()
    return program


def _run(program: Path, server: ServerProcess, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run([str(program), "-addr", server.grpc_url, *args], capture_output=True,
                          text=True, timeout=60, check=False)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def _rest(server: ServerProcess, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(f"http://{server.http_url}{path}", data=data,
                                timeout=30) as answer:
        return json.load(answer)


def _rows(server: ServerProcess) -> np.ndarray:
    """Three real rows of the breast-cancer data (of its first 256): the first (malignant,
    score near 1) and the two whose scores over REST are nearest 0.5 (so a wrong row or a
    wrong order shows)."""
    x = load_breast_cancer().data.astype(np.float32)[:256]  # risk's max_batch_size
    answer = _rest(server, "/v2/models/risk/infer", {"inputs": [
        {"name": "features", "datatype": "FP32", "shape": list(x.shape),
         "data": x.ravel().tolist()}]})
    scores = np.asarray(answer["outputs"][0]["data"], dtype=np.float32)
    uncertain = np.argsort(np.abs(scores - 0.5))[:2]
    assert all(0.02 < scores[i] < 0.98 for i in uncertain), scores[uncertain]
    return x[[0, *uncertain]]


def test_go_client_matches_rest(go_client: Path, demo_server: ServerProcess) -> None:
    metadata = _rest(demo_server, "/v2/models/risk")
    for row in _rows(demo_server):
        text = ",".join(repr(float(v)) for v in row)
        rc, lines = _run(go_client, demo_server, "-model", "risk", "-features", text)
        assert rc == 0, lines
        by_call = {line["call"]: line for line in lines}
        assert list(by_call) == ["ServerLive", "ModelMetadata", "ModelInfer", "Predict"]
        assert by_call["ServerLive"]["live"] is True
        meta = by_call["ModelMetadata"]
        assert meta["name"] == "risk" and meta["versions"] == metadata["versions"]
        assert meta["inputs"] == metadata["inputs"]
        assert meta["outputs"] == metadata["outputs"]

        rest = _rest(demo_server, "/v2/models/risk/infer", {"inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 30],
             "data": row.tolist()}]})["outputs"][0]
        (out,) = by_call["ModelInfer"]["outputs"]
        assert (out["name"], out["datatype"], out["shape"]) == \
            (rest["name"], rest["datatype"], rest["shape"])
        assert np.float32(out["data"][0]) == np.float32(rest["data"][0])

        predicted = _rest(demo_server, "/predict", {"features": row.tolist()})["result"]
        assert np.float32(by_call["Predict"]["score"]) == np.float32(predicted[0])


def test_go_client_reports_server_errors(go_client: Path, demo_server: ServerProcess) -> None:
    """A refused call ends the program with status 1 and the server's message as JSON."""
    rc, lines = _run(go_client, demo_server, "-model", "risk", "-features", "1,2,3")
    assert rc == 1
    assert lines[-1]["call"] == "ModelInfer"
    assert "InvalidArgument" in lines[-1]["error"] and "risk" in lines[-1]["error"]
    rc, lines = _run(go_client, demo_server, "-model", "no-such-model")
    assert rc == 1 and lines[-1]["call"] == "ModelMetadata"
    assert "no-such-model" in lines[-1]["error"]
