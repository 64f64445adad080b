"""Triton's system shared-memory extension against a real server, with tritonclient's own
``tritonclient.utils.shared_memory`` regions over REST (JSON and binary) and gRPC (unary and
ModelStreamInfer); the hostile cases; CUDA shared memory's refusal; perf_analyzer with
``--shared-memory system``.

Like test_protocols.py this process imports ``tritonclient.grpc``, so it never imports
``shipyard.serving.grpc`` (both register the protobuf package ``inference``).
"""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import ServerProcess, http_call, start_server
from onnx_models import add_sub_model, string_model, write_repository
from test_perf_analyzer import RUN_TIMEOUT_S, _success_count

from shipyard.serving.errors import ErrorCode, InvalidInput
from shipyard.serving.shm import ShmRef, SystemSharedMemory

PROTOCOLS = ["http", "grpc"]
DIMS = 16
NBYTES = DIMS * 4  # one [1, 16] FP32 tensor


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shm_repo")
    return write_repository(root, {
        "simple": (partial(add_sub_model, dims=(DIMS,)), {"max_batch_size": 8}),
        "strings": (partial(string_model, dims=(2,)), {"max_batch_size": 8}),
    })


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    proc = start_server(repository)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def session(repository: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(repository / "simple" / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])


def client(server: ServerProcess, protocol: str) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(server.http_url)
    return grpcclient.InferenceServerClient(server.grpc_url)


def module(protocol: str) -> Any:
    return httpclient if protocol == "http" else grpcclient


@contextmanager
def region(byte_size: int) -> Iterator[tuple[str, str, Any]]:
    """A fresh POSIX shm object made by tritonclient: (region name, key, handle)."""
    tag = uuid.uuid4().hex[:12]
    name, key = f"r_{tag}", f"/shipyard_test_{tag}"
    handle = shm.create_shared_memory_region(name, key, byte_size)
    try:
        yield name, key, handle
    finally:
        shm.destroy_shared_memory_region(handle)


@contextmanager
def registered(c: Any, byte_size: int) -> Iterator[tuple[str, str, Any]]:
    with region(byte_size) as (name, key, handle):
        c.register_system_shared_memory(name, key, byte_size)
        try:
            yield name, key, handle
        finally:
            c.unregister_system_shared_memory(name)


def sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((1, DIMS)).astype(np.float32)
    b = rng.standard_normal((1, DIMS)).astype(np.float32)
    return a, b


def expected(session: ort.InferenceSession, a: np.ndarray, b: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    out0, out1 = session.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
    return out0, out1


def output_params(result: Any, name: str, protocol: str) -> dict[str, Any]:
    """The parameters of an output answered through shared memory (checking it has no data):
    none over REST, as Triton (its C++ client wants binary_data_size in any parameters)."""
    out = result.get_output(name)
    if protocol == "http":
        assert "data" not in out and "parameters" not in out, out
        return {}
    params = {}
    for key, p in out.parameters.items():
        params[key] = getattr(p, p.WhichOneof("parameter_choice"))
    return params


def raises(fn: Callable[[], Any]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn()
    return info.value


def check_refused(exc: InferenceServerException, protocol: str, *words: str,
                  http_status: str = "400", grpc_status: str = "INVALID_ARGUMENT") -> None:
    status = str(exc.status())
    if protocol == "http":
        assert status == http_status, (status, exc.message())
    else:
        assert status == f"StatusCode.{grpc_status}", (status, exc.message())
    for word in words:
        assert word in exc.message(), (word, exc.message())


def assert_healthy(server: ServerProcess, session: ort.InferenceSession) -> None:
    """The server is alive and answers an ordinary request correctly."""
    assert server.proc.poll() is None, "\n".join(server.log[-30:])
    a, b = sample()
    c = httpclient.InferenceServerClient(server.http_url)
    inputs = [httpclient.InferInput("INPUT0", [1, DIMS], "FP32"),
              httpclient.InferInput("INPUT1", [1, DIMS], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = c.infer("simple", inputs)
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), expected(session, a, b)[0],
                               rtol=1e-6)


# -- extensions ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_extension_is_advertised(server: ServerProcess, protocol: str) -> None:
    md = client(server, protocol).get_server_metadata()
    extensions = md["extensions"] if protocol == "http" else list(md.extensions)
    assert "system_shared_memory" in extensions
    assert "cuda_shared_memory" not in extensions


# -- inference through shared memory -------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inputs_and_outputs_in_shm(server: ServerProcess, session: ort.InferenceSession,
                                   protocol: str) -> None:
    """Triton's simple_*_shm_client: both inputs in one region (the second at an offset),
    both outputs in another; results read from the region, none in the response."""
    c, m = client(server, protocol), module(protocol)
    a, b = sample()
    with registered(c, 2 * NBYTES) as (iname, _, ihandle), \
            registered(c, 2 * NBYTES + 8) as (oname, _, ohandle):
        shm.set_shared_memory_region(ihandle, [a, b])
        inputs = [m.InferInput("INPUT0", [1, DIMS], "FP32"),
                  m.InferInput("INPUT1", [1, DIMS], "FP32")]
        inputs[0].set_shared_memory(iname, NBYTES)
        inputs[1].set_shared_memory(iname, NBYTES, offset=NBYTES)
        outputs = [m.InferRequestedOutput("OUTPUT0"), m.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory(oname, NBYTES)
        outputs[1].set_shared_memory(oname, NBYTES + 8, offset=NBYTES)
        result = c.infer("simple", inputs, outputs=outputs)

        out0 = shm.get_contents_as_numpy(ohandle, np.float32, [1, DIMS])
        out1 = shm.get_contents_as_numpy(ohandle, np.float32, [1, DIMS], offset=NBYTES)
        want0, want1 = expected(session, a, b)
        np.testing.assert_allclose(out0, want0, rtol=1e-6)
        np.testing.assert_allclose(out1, want1, rtol=1e-6)
        params0 = output_params(result, "OUTPUT0", protocol)
        params1 = output_params(result, "OUTPUT1", protocol)
        if protocol == "grpc":
            assert params0 == {"shared_memory_region": oname, "shared_memory_byte_size": NBYTES}
            assert params1 == {"shared_memory_region": oname, "shared_memory_byte_size": NBYTES,
                               "shared_memory_offset": NBYTES}
        assert list(result.get_output("OUTPUT0")["shape"] if protocol == "http"
                    else result.get_output("OUTPUT0").shape) == [1, DIMS]
        if protocol == "grpc":  # one raw entry per output, empty for those in shm (Triton's)
            assert list(result.get_response().raw_output_contents) == [b"", b""]


@pytest.mark.parametrize("protocol", ["http-binary", "http-json", "grpc"])
def test_mixed_shm_and_body(server: ServerProcess, session: ort.InferenceSession,
                            protocol: str) -> None:
    """INPUT0 and OUTPUT0 in shared memory, INPUT1 and OUTPUT1 in the request and the
    answer (gRPC: raw_input_contents then holds only INPUT1, as tritonclient sends it)."""
    kind = protocol.split("-")[0]
    c, m = client(server, kind), module(kind)
    binary = protocol != "http-json"
    a, b = sample()
    with registered(c, NBYTES) as (iname, _, ihandle), \
            registered(c, NBYTES) as (oname, _, ohandle):
        shm.set_shared_memory_region(ihandle, [a])
        inputs = [m.InferInput("INPUT0", [1, DIMS], "FP32"),
                  m.InferInput("INPUT1", [1, DIMS], "FP32")]
        inputs[0].set_shared_memory(iname, NBYTES)
        if kind == "http":
            inputs[1].set_data_from_numpy(b, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput("OUTPUT0"),
                       httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary)]
        else:
            inputs[1].set_data_from_numpy(b)
            outputs = [grpcclient.InferRequestedOutput("OUTPUT0"),
                       grpcclient.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory(oname, NBYTES)
        result = c.infer("simple", inputs, outputs=outputs)
        want0, want1 = expected(session, a, b)
        np.testing.assert_allclose(shm.get_contents_as_numpy(ohandle, np.float32, [1, DIMS]),
                                   want0, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), want1, rtol=1e-6)
        output_params(result, "OUTPUT0", kind)  # no data in the answer


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_tensors_in_shm(server: ServerProcess, protocol: str) -> None:
    """BYTES in Triton's length-prefixed layout, in and out."""
    c, m = client(server, protocol), module(protocol)
    data = np.array([[b"hello", b""], [b"nul \x00 inside", "ünï".encode()]], dtype=np.object_)
    blob = serialize_byte_tensor(data)
    raw = blob.item() if blob.ndim == 0 else blob.tobytes()
    with registered(c, len(raw)) as (iname, _, ihandle), \
            registered(c, 256) as (oname, _, ohandle):
        shm.set_shared_memory_region(ihandle, [blob])
        inp = m.InferInput("INPUT0", [2, 2], "BYTES")
        inp.set_shared_memory(iname, len(raw))
        out = m.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory(oname, 256)
        result = c.infer("strings", [inp], outputs=[out])
        got = shm.get_contents_as_numpy(ohandle, np.object_, [2, 2])
        assert got.tolist() == data.tolist()
        if protocol == "grpc":
            assert output_params(result, "OUTPUT0", protocol)["shared_memory_byte_size"] \
                == len(raw)
        else:
            assert output_params(result, "OUTPUT0", protocol) == {}


def test_stream_infer_with_shm(server: ServerProcess, session: ort.InferenceSession) -> None:
    """ModelStreamInfer shares the unary call's codec."""
    c = grpcclient.InferenceServerClient(server.grpc_url)
    a, b = sample()
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with registered(c, 2 * NBYTES) as (iname, _, ihandle), \
            registered(c, NBYTES) as (oname, _, ohandle):
        shm.set_shared_memory_region(ihandle, [a, b])
        inputs = [grpcclient.InferInput("INPUT0", [1, DIMS], "FP32"),
                  grpcclient.InferInput("INPUT1", [1, DIMS], "FP32")]
        inputs[0].set_shared_memory(iname, NBYTES)
        inputs[1].set_shared_memory(iname, NBYTES, offset=NBYTES)
        out = grpcclient.InferRequestedOutput("OUTPUT1")
        out.set_shared_memory(oname, NBYTES)
        c.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            c.async_stream_infer("simple", inputs, outputs=[out], request_id="s1")
            result, error = answers.get(timeout=30)
        finally:
            c.stop_stream()
        assert error is None, error
        assert result.get_response().id == "s1"
        np.testing.assert_allclose(shm.get_contents_as_numpy(ohandle, np.float32, [1, DIMS]),
                                   expected(session, a, b)[1], rtol=1e-6)


# -- status and unregister -----------------------------------------------------------------


def _status(c: Any, protocol: str, name: str = "") -> dict[str, dict[str, Any]]:
    if protocol == "http":
        rows = c.get_system_shared_memory_status(name)
    else:
        rows = list(c.get_system_shared_memory_status(name, as_json=True)
                    .get("regions", {}).values())
    # proto3 JSON leaves out zeros: offset 0 comes back absent over gRPC
    return {r["name"]: {"name": r["name"], "key": r["key"], "offset": int(r.get("offset", 0)),
                        "byte_size": int(r.get("byte_size", 0))} for r in rows}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_status_and_unregister(server: ServerProcess, protocol: str) -> None:
    c = client(server, protocol)
    other = client(server, "grpc" if protocol == "http" else "http")
    with region(256) as (n1, k1, _), region(64) as (n2, k2, _):
        c.register_system_shared_memory(n1, k1, 200, offset=56)
        c.register_system_shared_memory(n2, k2, 64)
        everything = _status(c, protocol)
        assert everything[n1] == {"name": n1, "key": k1, "offset": 56, "byte_size": 200}
        assert everything[n2] == {"name": n2, "key": k2, "offset": 0, "byte_size": 64}
        assert _status(c, protocol, n2) == {n2: everything[n2]}
        # one registry behind both protocols
        assert n1 in _status(other, "grpc" if protocol == "http" else "http")

        c.unregister_system_shared_memory(n1)
        assert n1 not in _status(c, protocol)
        exc = raises(lambda: c.get_system_shared_memory_status(n1))
        check_refused(exc, protocol, n1, "not registered", http_status="404",
                      grpc_status="NOT_FOUND")
        c.unregister_system_shared_memory(n1)  # again: a no-op, as in Triton
        c.unregister_system_shared_memory()  # all
        assert n2 not in _status(c, protocol)


def _shm_fds(server: ServerProcess, key: str) -> list[str]:
    target = "/dev/shm/" + key.lstrip("/")
    fd_dir = Path(f"/proc/{server.proc.pid}/fd")
    found = []
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == target:
                found.append(fd.name)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_unregister_closes_the_object(server: ServerProcess) -> None:
    c = httpclient.InferenceServerClient(server.http_url)
    with region(64) as (name, key, _):
        c.register_system_shared_memory(name, key, 64)
        assert len(_shm_fds(server, key)) == 1
        c.unregister_system_shared_memory(name)
        assert _shm_fds(server, key) == []
        c.register_system_shared_memory(name, key, 64)
        c.unregister_system_shared_memory()
        assert _shm_fds(server, key) == []


# -- hostile registration ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_register_refusals(server: ServerProcess, session: ort.InferenceSession,
                           protocol: str) -> None:
    c = client(server, protocol)
    missing = f"/shipyard_missing_{uuid.uuid4().hex[:8]}"
    exc = raises(lambda: c.register_system_shared_memory("nope", missing, 64))
    check_refused(exc, protocol, missing, "create it first")
    exc = raises(lambda: c.register_system_shared_memory("nope", "/../../etc/passwd", 64))
    check_refused(exc, protocol, "/../../etc/passwd", "POSIX shared-memory name")
    with region(64) as (name, key, _):
        exc = raises(lambda: c.register_system_shared_memory(name, key, 65))
        check_refused(exc, protocol, "65", "64 bytes", "at most 64")
        exc = raises(lambda: c.register_system_shared_memory(name, key, 8, offset=60))
        check_refused(exc, protocol, "offset 60", "at most 4")
        exc = raises(lambda: c.register_system_shared_memory(name, key, 0))
        check_refused(exc, protocol, "byte_size", "from 1")
        c.register_system_shared_memory(name, key, 64)
        try:
            exc = raises(lambda: c.register_system_shared_memory(name, key, 32))
            check_refused(exc, protocol, name, "already registered", http_status="409",
                          grpc_status="ALREADY_EXISTS")
            assert _status(c, protocol, name)[name]["byte_size"] == 64  # unchanged
        finally:
            c.unregister_system_shared_memory(name)
    if protocol == "grpc":  # uint64 fields beyond int64
        with region(64) as (name, key, _):
            exc = raises(lambda: c.register_system_shared_memory(name, key, 1 << 63))
            check_refused(exc, protocol, "byte_size", str(1 << 63))
    assert_healthy(server, session)


@pytest.mark.parametrize(("body", "words"), [
    (b'{"key": "%KEY%", "offset": -1, "byte_size": 8}', ["offset", "-1"]),
    (b'{"key": "%KEY%", "offset": 0, "byte_size": "8"}', ["byte_size", "'8'", "integer"]),
    (b'{"key": "%KEY%", "byte_size": true}', ["byte_size", "True"]),
    (b'{"key": "%KEY%", "byte_size": 1e3}', ["byte_size", "1000.0"]),
    (b'{"key": "%KEY%", "byte_size": 99999999999999999999}', ["byte_size", "integer", "1e+20"]),
    (b'{"key": "%KEY%", "byte_size": 9223372036854775808}', ["byte_size"]),
    (b'{"key": 5, "byte_size": 8}', ["'key'", "5"]),
    (b'{"key": "%KEY%"}', ["needs 'byte_size'"]),
    (b'{"byte_size": 8}', ["needs 'key'"]),
    (b'{"key": "%KEY%", "byte_size": 8, "size": 1}', ["unknown field", "size"]),
    (b'[1, 2]', ["JSON object", "list"]),
    (b'{"key": ', ["not valid JSON"]),
])
def test_register_rest_bodies(server: ServerProcess, body: bytes, words: list[str]) -> None:
    """Wrong JSON types and numbers in the REST register body: 400 naming the field."""
    with region(64) as (name, key, _):
        status, _, answer = http_call(server, "POST",
                                      f"/v2/systemsharedmemory/region/{name}/register",
                                      body.replace(b"%KEY%", key.encode()))
        assert status == 400, answer
        message = json.loads(answer)["error"]
        for word in words:
            assert word in message, (word, message)
        status, _, answer = http_call(server, "GET", "/v2/systemsharedmemory/status")
        assert name not in answer.decode()


# -- hostile inference ---------------------------------------------------------------------


def _infer(c: Any, m: Any, in_name: str, in_size: int, in_offset: int = 0,
           out: tuple[str, int, int] | None = None) -> Any:
    """INPUT0 from shared memory (as asked), INPUT1 in the request; OUTPUT0 to ``out``."""
    inputs = [m.InferInput("INPUT0", [1, DIMS], "FP32"),
              m.InferInput("INPUT1", [1, DIMS], "FP32")]
    inputs[0].set_shared_memory(in_name, in_size, offset=in_offset)
    inputs[1].set_data_from_numpy(np.ones((1, DIMS), np.float32))
    outputs = None
    if out is not None:
        requested = m.InferRequestedOutput("OUTPUT0")
        requested.set_shared_memory(out[0], out[1], offset=out[2])
        outputs = [requested]
    return c.infer("simple", inputs, outputs=outputs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inference_refusals(server: ServerProcess, session: ort.InferenceSession,
                            protocol: str) -> None:
    c, m = client(server, protocol), module(protocol)
    with registered(c, NBYTES) as (name, _, handle), \
            registered(c, NBYTES) as (oname, _, _):
        shm.set_shared_memory_region(handle, [np.zeros((1, DIMS), np.float32)])
        cases = [
            (lambda: _infer(c, m, "never_registered", NBYTES),
             ["'never_registered'", "not registered"]),
            (lambda: _infer(c, m, name, NBYTES, in_offset=4),
             ["shared_memory_offset 4", f"= {NBYTES + 4}", f"{NBYTES} bytes"]),
            (lambda: _infer(c, m, name, NBYTES - 4),
             ["INPUT0", f"shared_memory_byte_size is {NBYTES - 4}", f"to {NBYTES}"]),
            (lambda: _infer(c, m, name, NBYTES, out=(oname, NBYTES - 4, 0)),
             ["OUTPUT0", f"takes {NBYTES} bytes", f"is {NBYTES - 4}", f"at least {NBYTES}"]),
            (lambda: _infer(c, m, name, NBYTES, out=(oname, NBYTES, 8)),
             ["OUTPUT0", "shared_memory_offset 8", "runs past the end"]),
            (lambda: _infer(c, m, name, NBYTES, out=("ghost", NBYTES, 0)),
             ["OUTPUT0", "'ghost'", "not registered"]),
        ]
        for call, words in cases:
            check_refused(raises(call), protocol, *words)
        if protocol == "grpc":
            exc = raises(lambda: _infer(c, m, name, NBYTES, in_offset=(1 << 63) - 1))
            check_refused(exc, protocol, "runs past the end")
    assert_healthy(server, session)


@pytest.mark.parametrize(("params", "extra", "words"), [
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": -64}, {},
     ["shared_memory_byte_size", "-64"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": 64,
      "shared_memory_offset": -1}, {}, ["shared_memory_offset", "-1"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": "64"}, {},
     ["shared_memory_byte_size", "'64'"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": 64.0}, {},
     ["shared_memory_byte_size", "64.0"]),
    ({"shared_memory_region": "%R%"}, {}, ["needs shared_memory_byte_size"]),
    ({"shared_memory_region": 7, "shared_memory_byte_size": 64}, {},
     ["shared_memory_region", "7"]),
    ({"shared_memory_byte_size": 64}, {}, ["need 'shared_memory_region'"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": 64},
     {"data": [0] * DIMS}, ["also data"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": 1 << 64}, {},
     ["shared_memory_byte_size", "integer"]),
    ({"shared_memory_region": "%R%", "shared_memory_byte_size": 64,
      "shared_memory_offset": (1 << 63) - 1}, {}, ["shared_memory_offset", "runs past the end"]),
])
def test_inference_rest_json_refusals(server: ServerProcess, session: ort.InferenceSession,
                                      params: dict[str, Any], extra: dict[str, Any],
                                      words: list[str]) -> None:
    c = httpclient.InferenceServerClient(server.http_url)
    with registered(c, NBYTES) as (name, _, _):
        params = {k: (name if v == "%R%" else v) for k, v in params.items()}
        doc = {"inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, DIMS], "parameters": params,
             **extra},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, DIMS], "data": [0] * DIMS}]}
        body = json.dumps(doc).encode()
        status, _, answer = http_call(server, "POST", "/v2/models/simple/infer", body)
        assert status == 400, answer
        message = json.loads(answer)["error"]
        for word in words:
            assert word in message, (word, message)
        # the same parameters on a requested output
        doc["inputs"][0] = doc["inputs"][1] | {"name": "INPUT0"}
        doc["outputs"] = [{"name": "OUTPUT0", "parameters": params}]
        if not extra:
            status, _, answer = http_call(server, "POST", "/v2/models/simple/infer",
                                          json.dumps(doc).encode())
            assert status == 400, answer
    assert_healthy(server, session)


def test_grpc_raw_contents_count(server: ServerProcess) -> None:
    """raw_input_contents holds one entry per input not in shared memory: a request with
    an entry for the shm input too is refused with the count explained."""
    c = grpcclient.InferenceServerClient(server.grpc_url)
    with registered(c, NBYTES) as (name, _, _):
        msg = service_pb2.ModelInferRequest(model_name="simple")
        t0 = msg.inputs.add(name="INPUT0", datatype="FP32", shape=[1, DIMS])
        t0.parameters["shared_memory_region"].string_param = name
        t0.parameters["shared_memory_byte_size"].int64_param = NBYTES
        msg.inputs.add(name="INPUT1", datatype="FP32", shape=[1, DIMS])
        msg.raw_input_contents.extend([b"\0" * NBYTES, b"\0" * NBYTES])
        with grpc.insecure_channel(server.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(msg, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "1 of them in shared memory" in info.value.details()
            del msg.raw_input_contents[0]
            answer = stub.ModelInfer(msg, timeout=10)
            assert [o.name for o in answer.outputs] == ["OUTPUT0", "OUTPUT1"]


# -- CUDA shared memory --------------------------------------------------------------------


def _cuda_reason() -> str:
    if glob.glob("/dev/nvidia[0-9]*"):
        return "does not implement CUDA shared memory"
    return "CUDA shared memory needs a GPU and this server has none"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v2/cudasharedmemory/status"),
    ("GET", "/v2/cudasharedmemory/region/r0/status"),
    ("POST", "/v2/cudasharedmemory/region/r0/register"),
    ("POST", "/v2/cudasharedmemory/unregister"),
    ("POST", "/v2/cudasharedmemory/region/r0/unregister"),
])
def test_cuda_rest_refused(server: ServerProcess, method: str, path: str) -> None:
    body = b'{"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 8}' \
        if method == "POST" else None
    status, _, answer = http_call(server, method, path, body)
    assert status == 501, answer
    message = json.loads(answer)["error"]
    assert _cuda_reason() in message
    assert "system shared memory" in message


def test_cuda_clients_refused(server: ServerProcess) -> None:
    h = httpclient.InferenceServerClient(server.http_url)
    g = grpcclient.InferenceServerClient(server.grpc_url)
    calls = [
        ("http", lambda: h.get_cuda_shared_memory_status()),
        ("http", lambda: h.register_cuda_shared_memory("r0", b"\0" * 64, 0, 8)),
        ("http", lambda: h.unregister_cuda_shared_memory()),
        ("grpc", lambda: g.get_cuda_shared_memory_status()),
        ("grpc", lambda: g.register_cuda_shared_memory("r0", b"\0" * 64, 0, 8)),
        ("grpc", lambda: g.unregister_cuda_shared_memory("r0")),
    ]
    for protocol, call in calls:
        check_refused(raises(call), protocol, _cuda_reason(), http_status="501",
                      grpc_status="UNIMPLEMENTED")


# -- the registry in process ---------------------------------------------------------------


def test_registry_survives_a_shrunk_object(tmp_path: Path) -> None:
    """A client that truncates its object after registering gets refusals, not SIGBUS."""
    registry = SystemSharedMemory(directory=tmp_path)
    obj = tmp_path / "obj"
    obj.write_bytes(b"\1" * 128)
    registry.register("r", "/obj", 0, 128)
    ref = ShmRef("r", 64, 64)
    assert registry.read(ref) == b"\1" * 64
    registry.write(ref, b"\2" * 64)
    assert obj.read_bytes()[64:] == b"\2" * 64
    os.truncate(obj, 32)
    with pytest.raises(InvalidInput, match="shrunk"):
        registry.read(ref)
    with pytest.raises(InvalidInput, match="shrunk"):
        registry.write(ref, b"\3" * 8)
    assert obj.stat().st_size == 32  # never grown back
    registry.close()
    assert len(registry) == 0


def test_registry_refuses_links_and_odd_keys(tmp_path: Path) -> None:
    registry = SystemSharedMemory(directory=tmp_path)
    (tmp_path / "real").write_bytes(b"\0" * 16)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dir").mkdir()
    for key, word in [("/link", "symbolic link"), ("/dir", "Is a directory"),
                      ("/", "POSIX"), ("/a/b", "POSIX"), ("/..", "POSIX"), ("", "POSIX")]:
        with pytest.raises(InvalidInput, match=word) as info:
            registry.register("r", key, 0, 8)
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert len(registry) == 0
    registry.register("r", "real", 0, 16)  # glibc's shm_open takes the name without '/'
    assert registry.status() == [{"name": "r", "key": "real", "offset": 0, "byte_size": 16}]
    registry.close()


# -- perf_analyzer -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_perf_analyzer_system_shm(perf_analyzer: tuple[Path, dict[str, str]],
                                  server: ServerProcess, protocol: str) -> None:
    exe, env = perf_analyzer
    url = server.http_url if protocol == "http" else server.grpc_url
    before_ok, _ = _success_count(server, "simple")
    fails_before = _fail_count(server)
    cmd = [str(exe), "-m", "simple", "-u", url, "-i", protocol, "-b", "1",
           "--shared-memory", "system", "--output-shared-memory-size", "1024",
           "--concurrency-range", "2", "--measurement-interval", "1000",
           "--max-trials", "3", "--stability-percentage", "999"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    m = re.search(r"Client:\s*\n\s*Request count: (\d+)", output)
    assert m and int(m.group(1)) > 0, output[-4000:]
    after_ok, _ = _success_count(server, "simple")
    assert after_ok - before_ok >= int(m.group(1))
    assert _fail_count(server) == fails_before  # no failed request
    # perf_analyzer unregisters what it registered
    status, _, answer = http_call(server, "GET", "/v2/systemsharedmemory/status")
    assert status == 200 and json.loads(answer) == [], answer


def _fail_count(server: ServerProcess) -> int:
    _, _, answer = http_call(server, "GET", "/v2/models/simple/stats")
    (row,) = json.loads(answer)["model_stats"]
    return int(row["inference_stats"]["fail"]["count"])
