"""Hostile input (issue #4): a generated corpus of malformed and adversarial requests against a
real ``shipyard serve`` process, over REST JSON, REST binary, raw HTTP/1.1 sockets and gRPC.

Contract for every case: the server answers with a client error (HTTP 4xx; gRPC
INVALID_ARGUMENT / NOT_FOUND / RESOURCE_EXHAUSTED / ...), or with success where the input is odd
but legal; never a 5xx, never INTERNAL / UNKNOWN, never a crash or a hang (every call runs under
a client timeout). After every case the server must still answer a valid request correctly
(checked against in-process onnxruntime on the demo ``risk`` model), and at the end its log must
hold no "unhandled error" and no traceback.

The corpus goes further than ``test_errors.py`` (which checks exact messages of ordinary
mistakes): truncations, deep nesting, overflowing shapes, NaN / infinities, invalid UTF-8,
duplicated keys, BOMs, wrong content types, lying lengths, path traversal in model names,
pipelining, slowloris-style partial requests, disconnects mid-body, protobuf garbage, 100 MB
bodies with the server's RSS watched (psutil) and huge counts of inputs and outputs.

This process may import ``tritonclient.grpc`` messages; it never imports ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import codecs
import gzip
import http.client
import json
import math
import random
import select
import shutil
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.grpc import service_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, start_server
from onnx_models import identity_model, write_repository

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a dev dependency
    psutil = None

TOKEN = "hostile-control-token-0123456789"
MIB = 1 << 20
LIMIT = 64 * MIB  # the server's default max_body_bytes
HUNDRED_MB = 100 * MIB
TIMEOUT = 10.0  # every client call is bounded by this (seconds)

# --------------------------------------------------------------------------------------------
# reference data (in-process onnxruntime on the demo risk model)
# --------------------------------------------------------------------------------------------

MALIGNANT = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
             1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003,
             0.006193, 25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601,
             0.1189]
BENIGN = [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766,
          0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023,
          15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259]
ROWS = np.stack([np.array(MALIGNANT), np.array(BENIGN),
                 (np.array(MALIGNANT) + np.array(BENIGN)) / 2]).astype(np.float32)


def _reference() -> np.ndarray:
    session = ort.InferenceSession(str(DEMO_REPOSITORY / "risk" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (score,) = session.run(["score"], {"features": ROWS})
    return np.asarray(score)


EXPECTED = _reference()


def check_scores(values: Any) -> None:
    got = np.asarray(values, dtype=np.float64).reshape(EXPECTED.shape)
    np.testing.assert_allclose(got, EXPECTED, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# request builders
# --------------------------------------------------------------------------------------------


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def features(**override: Any) -> dict[str, Any]:
    """A valid JSON input of model risk (one row); keyword arguments replace fields."""
    return {"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30,
            **override}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return dumps({"inputs": list(inputs), **extra})


VALID = body(features())
VALID_ROWS = body(features(shape=[3, 30], data=ROWS.tolist()))


def infer(model: str = "risk") -> str:
    return f"/v2/models/{model}/infer"


def deep_list(n: int) -> str:
    return "[" * n + "]" * n


def deep_dict(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


def splice(doc: bytes, marker: str, replacement: str | bytes) -> bytes:
    """``doc`` with the JSON string ``"<marker>"`` replaced by raw JSON text."""
    raw = replacement.encode("utf-8") if isinstance(replacement, str) else replacement
    token = json.dumps(marker).encode()
    assert doc.count(token) == 1, (marker, doc[:200])
    return doc.replace(token, raw)


def bin_input(name: str, datatype: str, shape: list[int], size: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape,
            "parameters": {"binary_data_size": size}}


def binary(header: dict[str, Any] | bytes, blob: bytes, hlen: str | bytes | None = None,
           ) -> tuple[bytes, tuple[tuple[str, str | bytes], ...]]:
    head = header if isinstance(header, bytes) else dumps(header)
    length = str(len(head)) if hlen is None else hlen
    return head + blob, (("Inference-Header-Content-Length", length),
                         ("Content-Type", "application/octet-stream"))


def bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


RISK_HEADER = {"inputs": [bin_input("features", "FP32", [1, 30], 120)]}
RISK_BLOB = np.full(30, 0.5, "<f4").tobytes()


def http_request(path: str, payload: bytes, *, method: str = "POST",
                 headers: tuple[bytes, ...] = (b"Content-Type: application/json",),
                 content_length: int | str | None = None) -> bytes:
    """A complete HTTP/1.1 request, by hand."""
    length = len(payload) if content_length is None else content_length
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers]
    if length != "":
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


VALID_REQUEST = http_request(infer(), VALID_ROWS)

# -- protobuf by hand (for bytes the message classes refuse to build) --------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field_number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


def infer_msg(model: str = "risk", inputs: list[tuple[str, str, list[int]]] | None = None,
              raw: list[bytes] | None = None, *, version: str = "", request_id: str = "",
              contents: dict[int, tuple[str, list[Any]]] | None = None,
              outputs: list[str] | None = None,
              params: dict[str, tuple[str, Any]] | None = None) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    specs = [("features", "FP32", [1, 30])] if inputs is None else inputs
    for i, (name, datatype, shape) in enumerate(specs):
        t = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        if contents and i in contents:
            kind, values = contents[i]
            getattr(t.contents, kind).extend(values)
    blobs = [RISK_BLOB] if raw is None and inputs is None and not contents else raw or []
    for blob in blobs:
        msg.raw_input_contents.append(blob)
    for name in outputs or []:
        msg.outputs.add(name=name)
    for key, (kind, value) in (params or {}).items():
        setattr(msg.parameters[key], kind, value)
    return msg


def ser(msg: Any) -> bytes:
    return bytes(msg.SerializeToString())


def predict_msg(values: list[float] | np.ndarray) -> bytes:
    return ld(1, np.asarray(values, "<f4").tobytes()) if len(values) else b""


VALID_RISK_MSG = ser(infer_msg("risk", [("features", "FP32", [3, 30])], [ROWS.tobytes()]))

# --------------------------------------------------------------------------------------------
# servers, clients, the context each case runs in
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models (risk, cnn) plus tiny identity models for BYTES, BOOL and FP16."""
    root = tmp_path_factory.mktemp("hostile-repo")
    for name in ("risk", "cnn"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    mbs8 = {"max_batch_size": 8}
    write_repository(root, {
        "id_bytes": (partial(identity_model, datatype_onnx="BYTES"), mbs8),
        "id_bool": (partial(identity_model, datatype_onnx="BOOL"), mbs8),
        "id_fp16": (partial(identity_model, datatype_onnx="FP16"), mbs8),
    })
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    """Default settings: 64 MiB body / message limit, model control 'none'."""
    proc = start_server(repository)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def explicit_server(repository: Path) -> Iterator[ServerProcess]:
    """Model control 'explicit' with a token: load / unload are reachable (path traversal)."""
    proc = start_server(repository, "--model-control", "explicit", "--control-token", TOKEN,
                        "--load-model", "risk")
    yield proc
    proc.stop()


@dataclass
class Target:
    server: ServerProcess
    channel: grpc.Channel

    def unary(self, method: str) -> Callable[..., bytes]:
        return self.channel.unary_unary(method)  # raw bytes in, raw bytes out


def _target(server: ServerProcess) -> Iterator[Target]:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel(server.grpc_url, options=options)
    yield Target(server, channel)
    channel.close()


@pytest.fixture(scope="module")
def main_target(server: ServerProcess) -> Iterator[Target]:
    yield from _target(server)


@pytest.fixture(scope="module")
def explicit_target(explicit_server: ServerProcess) -> Iterator[Target]:
    yield from _target(explicit_server)


# --------------------------------------------------------------------------------------------
# transport helpers
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def rest_call(server: ServerProcess, method: str, path: str, payload: bytes,
              headers: tuple[tuple[str, str | bytes], ...]) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        names = {k.lower() for k, _ in headers}
        for key, value in headers:
            conn.putheader(key, value)
        if "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(payload)))
        conn.endheaders(payload or None)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


class _Unclosable:
    """A buffered reader that ignores ``close()`` (HTTPResponse closes it after each body)."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)

    def close(self) -> None:
        pass


class _SockFile:
    """Lets several ``http.client.HTTPResponse`` objects read one buffered stream in turn."""

    def __init__(self, fp: Any) -> None:
        self._fp = _Unclosable(fp)

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return self._fp


def read_responses(sock: socket.socket, wanted: int) -> tuple[list[Reply], str]:
    """Parse up to ``wanted`` HTTP responses; stop early at EOF or a reset. Returns the replies
    and how reading ended ("count", "closed" or "reset"). A timeout propagates (= a hang)."""
    fp = sock.makefile("rb")
    replies: list[Reply] = []
    while len(replies) < wanted:
        resp = http.client.HTTPResponse(_SockFile(fp))  # type: ignore[arg-type]
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, http.client.BadStatusLine):
            return replies, "closed"
        except (ConnectionResetError, BrokenPipeError):
            return replies, "reset"
        replies.append(Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                             resp.read()))
        if resp.will_close:
            return replies, "closed"
    return replies, "count"


class RssWatch:
    """Samples the server's resident memory in a thread: ``peak_growth`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid) if psutil is not None else None
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        assert self.proc is not None
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> RssWatch:
        if self.proc is not None:
            self.base = self.peak = self.proc.memory_info().rss
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def peak_growth(self) -> int:
        return self.peak - self.base


# --------------------------------------------------------------------------------------------
# the case types
# --------------------------------------------------------------------------------------------

#: any status below 500 (the input is odd but legal, so success is fine too)
NO_5XX = frozenset(range(100, 500))
#: the client asked for a deadline it cannot meet: 504 is the documented answer
DEADLINE = frozenset({*range(100, 500), 504})
#: odd but valid: it must be answered
OK = frozenset({200})

GRPC_CLIENT_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION,
})


@dataclass
class Case:
    id: str
    #: "rest" (JSON), "binary" (REST binary extension), "raw" (hand-written HTTP), "grpc"
    kind: str
    #: which server: "main" (default settings) or "explicit" (load/unload API, token)
    target: str = field(default="main", kw_only=True)
    #: the server's RSS may grow at most this much while the case runs (needs psutil)
    max_rss_growth: int | None = field(default=None, kw_only=True)
    #: the case must finish within this many seconds
    max_seconds: float = field(default=TIMEOUT + 5, kw_only=True)

    def run(self, target: Target) -> None:
        raise NotImplementedError


@dataclass
class Rest(Case):
    method: str = "POST"
    path: str = "/v2/models/risk/infer"
    #: the body, or a function that builds it (large ones are built only when the case runs)
    payload: bytes | Callable[[], bytes] = field(default=b"", repr=False)
    headers: tuple[tuple[str, str | bytes], ...] = (("Content-Type", "application/json"),)
    #: allowed statuses; None = any 4xx
    allow: frozenset[int] | None = None
    check: Callable[[Reply], None] | None = None

    def run(self, target: Target) -> None:
        payload = self.payload() if callable(self.payload) else self.payload
        reply = rest_call(target.server, self.method, self.path, payload, self.headers)
        if self.allow is not None:
            assert reply.status in self.allow, f"{reply.status}: {reply.body[:500]!r}"
        else:
            assert reply.status < 500, f"server error {reply.status}: {reply.body[:500]!r}"
            assert 400 <= reply.status < 500, f"expected a 4xx, got {reply.status}: " \
                                              f"{reply.body[:300]!r}"
        is_json = reply.headers.get("content-type") == "application/json"
        if is_json and self.method != "HEAD" and reply.status != 200:
            doc = reply.json()  # an error from the app is {"error": "..."}
            assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc
        if is_json and self.method != "HEAD" and reply.status == 200 and reply.body:
            reply.json()  # a success must be well-formed JSON
        if self.check is not None:
            self.check(reply)


@dataclass
class Raw(Case):
    """Bytes written to a socket by hand, in ``pieces``; then, by ``mode``:

    * ``read``: read up to ``responses`` replies (a timeout is a hang and fails the case);
      every reply must be below 500, and with ``first_ok`` the first is a correct risk answer;
      ``need_reply`` requires at least one reply;
    * ``close``: close right after writing (disconnect mid-request, slowloris, half headers);
    * ``reset``: abort with a TCP RST after writing;
    * ``drain``: read whatever comes for ``drain_s`` seconds (gRPC port: binary HTTP/2 frames).
    """

    pieces: tuple[bytes, ...] = field(default=(), repr=False)
    mode: str = "read"
    responses: int = 1
    first_ok: bool = False
    need_reply: bool = True
    pause_s: float = 0.0
    #: read one reply after each piece but the last (requests in separate round trips)
    read_between: bool = False
    #: every reply is a client error (and there is one)
    expect_4xx: bool = False
    port: str = "http"
    drain_s: float = 1.0

    def run(self, target: Target) -> None:
        srv = target.server
        port = srv.http_port if self.port == "http" else srv.grpc_port
        replies: list[Reply] = []
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            for i, piece in enumerate(self.pieces):
                try:
                    sock.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server hung up on us: allowed, read what it said
                if i < len(self.pieces) - 1:
                    if self.read_between:
                        replies += read_responses(sock, 1)[0]
                    if self.pause_s:
                        time.sleep(self.pause_s)
            if self.mode == "close":
                return
            if self.mode == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if self.mode == "drain":
                sock.settimeout(self.drain_s)
                try:
                    while sock.recv(65536):
                        pass
                except (TimeoutError, ConnectionResetError):
                    pass
                return
            replies += read_responses(sock, self.responses - len(replies))[0]
        if self.need_reply:
            assert replies, "the server closed the connection without an answer"
        for reply in replies:
            assert reply.status < 500, f"server error {reply.status}: {reply.body[:300]!r}"
        if self.expect_4xx:
            assert replies, "no answer"
            assert all(400 <= r.status < 500 for r in replies), [r.status for r in replies]
        if self.first_ok:
            assert replies and replies[0].status == 200, replies[:1]
            check_scores(replies[0].json()["outputs"][0]["data"])
            for reply in replies[1:]:
                assert reply.status == 200 or 400 <= reply.status < 500, reply


@dataclass
class Stream(Case):
    """A body far above the limit, streamed in 1 MiB pieces until the server answers (or hangs
    up); the answer must be 413 and come fast."""

    head: bytes = field(default=b"", repr=False)
    total: int = HUNDRED_MB
    chunked: bool = False

    def run(self, target: Target) -> None:
        piece = b"\0" * MIB
        frame = b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece
        with socket.create_connection(("127.0.0.1", target.server.http_port),
                                      timeout=TIMEOUT) as sock:
            sock.sendall(self.head)
            sent = 0
            try:
                while sent < self.total:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        break
                    sock.sendall(frame)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass
            replies, _ = read_responses(sock, 1)
        assert replies, f"no answer after {sent} body bytes"
        assert replies[0].status == 413, (replies[0].status, replies[0].body[:300])


@dataclass
class Grpc(Case):
    method: str = "/inference.GRPCInferenceService/ModelInfer"
    payload: bytes | Callable[[], bytes] = field(default=b"", repr=False)
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    #: success is acceptable (odd but legal input)
    ok: bool = False
    #: allowed codes; None = GRPC_CLIENT_CODES
    codes: frozenset[grpc.StatusCode] | None = None
    check: Callable[[bytes], None] | None = None

    def run(self, target: Target) -> None:
        call = target.unary(self.method)
        payload = self.payload() if callable(self.payload) else self.payload
        try:
            answer = call(payload, timeout=TIMEOUT, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
                f"{code}: {details}"
            assert code != grpc.StatusCode.DEADLINE_EXCEEDED or (
                self.codes and code in self.codes), \
                f"DEADLINE_EXCEEDED though no deadline was asked for: {details}"
            assert code in (self.codes or GRPC_CLIENT_CODES), f"{code}: {details}"
            return
        assert self.ok, f"expected an error, got success ({len(answer)} bytes)"
        if self.check is not None:
            self.check(answer)


# --------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------


def rest_json_cases() -> Iterator[Case]:
    # -- truncated bodies -----------------------------------------------------------------------
    full = dumps({"id": "trunc", "parameters": {"binary_data_output": False},
                  "inputs": [features(shape=[2, 30], data=[[0.5] * 30, [0.25] * 30])],
                  "outputs": [{"name": "score"}]})
    n = len(full)
    for cut in sorted({0, 1, 2, 10, n // 4, n // 2, 3 * n // 4, n - 2, n - 1}):
        yield Rest(f"json-truncated-at-{cut}-of-{n}", "rest", payload=full[:cut])

    # -- deep nesting ---------------------------------------------------------------------------
    yield Rest("nest-top-array-10000", "rest", payload=deep_list(10_000).encode())
    yield Rest("nest-top-object-10000", "rest", payload=deep_dict(10_000).encode())
    yield Rest("nest-unclosed-100000", "rest", payload=b"[" * 100_000)
    yield Rest("nest-top-array-1000", "rest", payload=deep_list(1000).encode())
    for depth in (1000, 10_000):
        yield Rest(f"nest-data-{depth}", "rest",
                   payload=splice(body(features(data="@")), "@", deep_list(depth)))
        yield Rest(f"nest-shape-{depth}", "rest",
                   payload=splice(body(features(shape="@")), "@", deep_list(depth)))
    yield Rest("nest-datatype-list-1000", "rest",
               payload=splice(body(features(datatype="@")), "@", deep_list(1000)))
    yield Rest("nest-name-list-1000", "rest",
               payload=splice(body(features(name="@")), "@", deep_list(1000)))
    yield Rest("nest-id-list-1000", "rest",
               payload=splice(body(features(), id="@"), "@", deep_list(1000)))
    yield Rest("nest-output-name-1000", "rest",
               payload=splice(body(features(), outputs=[{"name": "@"}]), "@", deep_list(1000)))
    yield Rest("nest-binary-data-size-1000", "rest", payload=splice(
        body(features(parameters={"binary_data_size": "@"})), "@", deep_list(1000)))
    yield Rest("nest-timeout-parameter-1000", "rest", payload=splice(
        body(features(), parameters={"timeout": "@"}), "@", deep_dict(1000)))
    yield Rest("nest-data-element-dict-1000", "rest", payload=splice(
        body(features(data=["@", *[0.5] * 29])), "@", deep_dict(1000)))
    yield Rest("nest-bytes-element-dict-1000", "rest", path=infer("id_bytes"), payload=splice(
        body({"name": "INPUT0", "datatype": "BYTES", "shape": [1, 4],
              "data": ["@", "b", "c", "d"]}), "@", deep_dict(1000)))
    yield Rest("nest-request-parameters-1000", "rest", allow=NO_5XX, payload=splice(
        body(features(), parameters={"x": "@"}), "@", deep_dict(1000)))
    yield Rest("nest-input-parameters-1000", "rest", allow=NO_5XX, payload=splice(
        body(features(parameters={"x": "@"})), "@", deep_list(1000)))
    yield Rest("nest-output-binary-data-1000", "rest", allow=NO_5XX, payload=splice(
        body(features(), outputs=[{"name": "score", "parameters": {"binary_data": "@"}}]),
        "@", deep_list(1000)))
    yield Rest("nest-predict-features-1000", "rest", path="/predict",
               payload=b'{"features": ' + deep_list(1000).encode() + b"}")
    yield Rest("nest-predict-features-dict-1000", "rest", path="/predict",
               payload=b'{"features": [' + deep_dict(1000).encode() + b"]}")
    yield Rest("nest-predict-column-value-1000", "rest", path="/predict",
               payload=b'{"features": {"features": ' + deep_list(1000).encode() + b"}}")

    # -- shapes: negative, huge, overflowing, not integers ----------------------------------------
    shapes: list[tuple[str, Any]] = [
        ("negative-second", [1, -30]), ("int64-min", [-(2**63), 30]),
        ("int64-max", [2**63 - 1, 30]), ("uint64-max", [2**64 - 1, 30]),
        ("above-uint64", [2**64, 30]), ("2-pow-100", [2**100, 30]),
        ("2-pow-31-rows", [2**31, 1]), ("2-pow-31-cols", [1, 2**31]),
        ("product-just-above-limit", [46_341, 46_341]),
        ("product-at-limit", [65_536, 32_768]), ("scalar", []), ("rank-33", [1] * 33),
        ("rank-32", [1] * 32), ("rank-1000000", [1] * 1_000_000), ("bool-dim", [True, 30]),
        ("null-dim", [None, 30]), ("string-dim", ["1", 30]), ("list-dim", [[1], 30]),
        ("float-dim", [1, 30.0]), ("object", {"0": 1, "1": 30}), ("null", None),
        ("trailing-zero", [1, 30, 0]), ("transposed", [30, 1]), ("reshaped", [2, 15]),
        ("negative-zero-float", [-0.0, 30]),
    ]
    for name, shape in shapes:
        yield Rest(f"shape-{name}", "rest", payload=body(features(shape=shape)))
    yield Rest("shape-missing", "rest", payload=body(
        {"name": "features", "datatype": "FP32", "data": [0.5] * 30}))
    yield Rest("shape-scalar-with-scalar-data", "rest", payload=body(features(shape=[], data=0.5)))

    # -- NaN and infinities (risk takes FP32) ------------------------------------------------------
    for token in ("NaN", "-NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999",
                  "1E400"):
        yield Rest(f"float-literal-{token}", "rest",
                   payload=splice(body(features(data=["@", *[0.5] * 29])), "@", token))
    for text in ("NaN", "Infinity", "-inf"):
        yield Rest(f"float-string-{text}", "rest",
                   payload=body(features(data=[text, *[0.5] * 29])))
    for value in (3.5e38, -3.5e38, 1.7976931348623157e308):
        yield Rest(f"float-overflows-fp32-{value:g}", "rest",
                   payload=body(features(data=[value, *[0.5] * 29])))
    for value in (1e-50, 5e-324, -0.0, 2.0**64, 3.4e38):
        yield Rest(f"float-odd-but-legal-{value:g}", "rest", allow=NO_5XX,
                   payload=body(features(data=[value, *[0.5] * 29])))
    fp16 = partial(dict, name="INPUT0", datatype="FP16", shape=[1, 4])
    yield Rest("fp16-overflow-65520", "rest", path=infer("id_fp16"),
               payload=body(fp16(data=[65520.0, 0, 0, 0])))
    yield Rest("fp16-overflow-1e5", "rest", path=infer("id_fp16"),
               payload=body(fp16(data=[-1e5, 0, 0, 0])))
    yield Rest("fp16-max-65504", "rest", path=infer("id_fp16"), allow=frozenset({200}),
               payload=body(fp16(data=[65504.0, -65504.0, 6e-8, 0])))
    yield Rest("predict-fp64-huge-values", "rest", path="/predict", allow=NO_5XX,
               payload=dumps({"features": [1e308] * 30}))
    yield Rest("predict-literal-nan", "rest", path="/predict",
               payload=b'{"features": [NaN' + b", 0.5" * 29 + b"]}")
    yield Rest("predict-literal-infinity", "rest", path="/predict",
               payload=b'{"features": [1e999' + b", 0.5" * 29 + b"]}")

    # -- datatypes ------------------------------------------------------------------------------
    samples = {"BOOL": [True] * 30, "BYTES": ["a"] * 30}
    for dt in ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
               "FP16", "FP64", "BYTES"):
        yield Rest(f"datatype-{dt}-for-fp32-input", "rest",
                   payload=body(features(datatype=dt, data=samples.get(dt, [1] * 30))))
    weird: list[tuple[str, Any]] = [
        ("lowercase", "fp32"), ("empty", ""), ("leading-space", " FP32"),
        ("trailing-space", "FP32 "), ("nul", "FP32\x00"), ("triton-prefix", "TYPE_FP32"),
        ("bf16", "BF16"), ("fp8", "FP8"), ("string", "STRING"), ("repeated", "FP32" * 1000),
        ("emoji", "\U0001f4a3"), ("null", None), ("int", 32), ("bool", True), ("float", 1.5),
        ("list", ["FP32"]), ("empty-list", []), ("object", {"FP32": 1}),
    ]
    for name, dt in weird:
        yield Rest(f"datatype-{name}", "rest", payload=body(features(datatype=dt)))

    def answered_by(model: str) -> Callable[[Reply], None]:
        def check(reply: Reply) -> None:
            assert reply.json()["model_name"] == model
        return check

    # -- unknown fields: ignored (the OIP schema allows extra properties) ------------------------
    yield Rest("unknown-field-proto", "rest", payload=body(features(), __proto__={}), allow=OK)
    yield Rest("unknown-field-empty-key", "rest", payload=dumps({"inputs": [features()], "": 1}),
               allow=OK)
    yield Rest("unknown-field-100k-key", "rest", allow=OK,
               payload=dumps({"inputs": [features()], "x" * 100_000: 1}))
    yield Rest("unknown-field-inputs-with-space", "rest",
               payload=dumps({"inputs ": [features()]}))
    yield Rest("unknown-field-uppercase-inputs", "rest", payload=dumps({"INPUTS": [features()]}))
    # the body's model_name does not pick the model: the path does (risk answers, not cnn)
    yield Rest("unknown-field-model-name", "rest", payload=body(features(), model_name="cnn"),
               allow=OK, check=answered_by("risk"))
    yield Rest("unknown-input-field-Name", "rest", payload=body({**features(), "Name": "x"}),
               allow=OK)
    yield Rest("unknown-input-field-contents", "rest", allow=OK,
               payload=body({**features(), "contents": {"fp32_contents": [1]}}))
    yield Rest("unknown-input-field-contents-without-data", "rest",
               payload=body({k: v for k, v in features().items() if k != "data"}
                            | {"contents": {"fp32_contents": [1]}}))
    yield Rest("unknown-output-field", "rest", allow=OK,
               payload=body(features(), outputs=[{"name": "score", "binary_data": True}]))
    yield Rest("unknown-request-parameters-are-free-form", "rest", allow=NO_5XX,
               payload=body(features(), parameters={"foo": 1, "binary_data_output": "yes"}))

    # -- duplicated keys (last one wins in orjson; either answer is fine, never a 5xx) ----------
    good = json.dumps([features()])
    bad = json.dumps([features(shape=[1, 29])])
    yield Rest("dup-key-inputs-bad-then-good", "rest", allow=NO_5XX,
               payload=f'{{"inputs": {bad}, "inputs": {good}}}'.encode())
    yield Rest("dup-key-inputs-good-then-bad", "rest",
               payload=f'{{"inputs": {good}, "inputs": {bad}}}'.encode())
    one = json.dumps(features())[1:-1]
    yield Rest("dup-key-shape", "rest", allow=NO_5XX,
               payload=f'{{"inputs": [{{{one}, "shape": [1, 29]}}]}}'.encode())
    yield Rest("dup-key-datatype", "rest", allow=NO_5XX,
               payload=f'{{"inputs": [{{"datatype": "INT32", {one}}}]}}'.encode())
    yield Rest("dup-key-data", "rest", allow=NO_5XX,
               payload=f'{{"inputs": [{{{one}, "data": [1]}}]}}'.encode())
    ids = ", ".join(f'"id": "{i}"' for i in range(1000))
    yield Rest("dup-key-id-1000-times", "rest", allow=NO_5XX,
               payload=f'{{{ids}, "inputs": {good}}}'.encode())

    # -- byte order marks and other encodings ---------------------------------------------------
    yield Rest("bom-utf8-then-valid-json", "rest", allow=NO_5XX, payload=codecs.BOM_UTF8 + VALID)
    yield Rest("bom-only", "rest", payload=codecs.BOM_UTF8)
    yield Rest("utf16-le-with-bom", "rest", payload=VALID.decode().encode("utf-16"))
    yield Rest("utf16-be-without-bom", "rest", payload=VALID.decode().encode("utf-16-be"))
    yield Rest("utf32", "rest", payload=VALID.decode().encode("utf-32"))
    head = dumps(RISK_HEADER)
    payload, headers = binary(codecs.BOM_UTF8 + head, RISK_BLOB)
    yield Rest("bom-in-binary-json-header", "binary", payload=payload, headers=headers,
               allow=NO_5XX)

    # -- content types --------------------------------------------------------------------------
    for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=xyz",
                  "application/x-www-form-urlencoded", "application/json; charset=utf-16",
                  "application/octet-stream", "", "*/*", "application/json, text/html",
                  "image/png"):
        yield Rest(f"content-type-{ctype or 'empty'}-valid-json".replace(" ", ""), "rest",
                   payload=VALID, headers=(("Content-Type", ctype),), allow=NO_5XX)
    yield Rest("content-type-xml-body", "rest", payload=b"<inputs><x>1</x></inputs>",
               headers=(("Content-Type", "application/xml"),))
    yield Rest("content-type-multipart-body", "rest",
               headers=(("Content-Type", "multipart/form-data; boundary=xyz"),),
               payload=b"--xyz\r\nContent-Disposition: form-data; name=\"inputs\"\r\n\r\n"
                       b"1\r\n--xyz--\r\n")
    yield Rest("content-type-form-body", "rest", payload=b"inputs=1&features=2",
               headers=(("Content-Type", "application/x-www-form-urlencoded"),))
    yield Rest("content-type-octet-stream-binary-body-without-header-length", "binary",
               payload=RISK_BLOB, headers=(("Content-Type", "application/octet-stream"),))

    # -- unicode and invalid UTF-8 in JSON --------------------------------------------------------
    invalid_utf8 = {"ff": b"\xff", "overlong-nul": b"\xc0\x80", "surrogate-d800": b"\xed\xa0\x80",
                    "truncated-euro": b"\xe2\x82", "five-byte": b"\xf8\x88\x80\x80\x80",
                    "above-10ffff": b"\xf4\x90\x80\x80"}
    for name, raw in invalid_utf8.items():
        yield Rest(f"json-invalid-utf8-{name}-in-id", "rest",
                   payload=splice(body(features(), id="@"), "@", b'"x' + raw + b'"'))
    yield Rest("json-invalid-utf8-in-input-name", "rest",
               payload=splice(body(features(name="@")), "@", b'"feat\xffures"'))
    for esc in ("\\ud800", "\\udc00", "\\ud83d", "\\ud800\\u0041"):
        yield Rest(f"json-lone-surrogate-{esc[2:6]}-{len(esc)}", "rest",
                   payload=splice(body(features(name="@")), "@", f'"x{esc}"'))
    yield Rest("json-raw-nul-byte-in-string", "rest",
               payload=splice(body(features(), id="@"), "@", b'"a\x00b"'))
    yield Rest("json-raw-control-chars-in-string", "rest",
               payload=splice(body(features(), id="@"), "@", b'"a\x01\x1f\nb"'))
    for name, text in (("nul", "features\x00"), ("escaped-nul-prefix", "\x00features"),
                       ("emoji", "\U0001f4a3"), ("rtl-override", "\u202efeatures"),
                       ("zero-width", "feat\u200bures"), ("fullwidth", "\uff46eatures"),
                       ("combining", "fe\u0301atures")):
        yield Rest(f"input-name-{name}", "rest", payload=body(features(name=text)))

    def echoes(request_id: str) -> Callable[[Reply], None]:
        def check(reply: Reply) -> None:
            assert reply.json().get("id") == request_id
        return check

    for name, rid in (("emoji", "\U0001f600\U0001f4a3"), ("rtl", "\u202e\u05d0\u05d1"),
                      ("nul", "a\x00b"), ("bmp-max", "\uffff"), ("astral-max", "\U0010ffff"),
                      ("1mb", "\u00e9" * 500_000)):
        yield Rest(f"request-id-{name}-echoed", "rest", allow=frozenset({200}),
                   payload=body(features(), id=rid), check=echoes(rid))

    def echoes_bytes(values: list[str]) -> Callable[[Reply], None]:
        def check(reply: Reply) -> None:
            assert reply.json()["outputs"][0]["data"] == values
        return check

    for name, text in (("emoji", "\U0001f600"), ("rtl", "\u202e\u05d0"), ("nul", "\x00"),
                       ("nuls", "\x00" * 1000), ("1mb", "x" * MIB), ("nonchar", "\uffff"),
                       ("astral", "\U0010ffff")):
        values = [text, "b", "", "d"]
        yield Rest(f"bytes-json-{name}-round-trip", "rest", path=infer("id_bytes"),
                   allow=frozenset({200}), check=echoes_bytes(values), payload=body(
                       {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 4],
                        "data": values}))

    # -- huge counts ------------------------------------------------------------------------------
    yield Rest("count-10000-distinct-inputs", "rest", payload=body(
        *[features(name=f"x{i}") for i in range(10_000)]))
    yield Rest("count-20000-duplicate-inputs", "rest", payload=body(
        *[features() for _ in range(20_000)]))
    yield Rest("count-100000-empty-input-objects", "rest",
               payload=dumps({"inputs": [{}] * 100_000}))
    yield Rest("count-10000-duplicate-outputs", "rest", allow=NO_5XX,
               payload=body(features(), outputs=[{"name": "score"}] * 10_000))
    yield Rest("count-10000-unknown-outputs", "rest",
               payload=body(features(), outputs=[{"name": f"o{i}"} for i in range(10_000)]))
    yield Rest("count-3000000-data-elements", "rest",
               payload=body(features(data=[0] * 3_000_000)))
    yield Rest("count-100000-request-parameters", "rest", allow=NO_5XX,
               payload=body(features(), parameters={f"p{i}": i for i in range(100_000)}))
    yield Rest("count-3000000-bytes-elements", "rest", path=infer("id_bytes"), payload=body(
        {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 4], "data": [""] * 3_000_000}))


def rest_route_cases() -> Iterator[Case]:
    # -- model names: traversal, encodings, unicode ---------------------------------------------
    names = {
        "traversal-encoded-slash": "..%2F..%2Fetc%2Fpasswd",
        "traversal-encoded-dots": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "traversal-double-encoded": "%252e%252e%252fetc%252fpasswd",
        "traversal-backslash": "..%5C..%5Cwindows%5Cwin.ini",
        "traversal-overlong-utf8": "%C0%AE%C0%AE%C0%AFetc",
        "traversal-iis-unicode": "%u002e%u002e%u2215etc",
        "dotdot": "..", "dot": ".", "dots3": "...", "dotdot-encoded": "%2e%2e",
        "nul-suffix": "risk%00", "nul-only": "%00", "nul-onnx": "risk%00.onnx",
        "emoji": "%F0%9F%92%A3", "rtl": "%E2%80%AEksir", "invalid-utf8": "%FF%FE",
        "long-5000": "x" * 5000, "trailing-space": "risk%20", "leading-space": "%20risk",
        "uppercase": "RISK", "crlf-injection": "risk%0d%0aX-Injected:%201",
        "newline-suffix": "risk%0a", "semicolon": "risk;ls", "encoded-query": "risk%3Fx%3D1",
        "device-name": "con", "encoded-subpath": "risk%2F..%2Frisk", "percent-alone": "%",
        "bad-percent": "%zz", "tilde": "~root", "file-name": "risk.onnx",
        "version-subpath": "cnn%2F1",
    }
    for name, segment in names.items():
        yield Rest(f"model-name-{name}-infer", "rest", path=f"/v2/models/{segment}/infer",
                   payload=VALID)
    for name in ("traversal-encoded-slash", "dotdot-encoded", "nul-suffix", "emoji",
                 "invalid-utf8", "newline-suffix"):
        segment = names[name]
        for route in ("", "/ready", "/config", "/stats"):
            yield Rest(f"model-name-{name}-get{route.replace('/', '-') or '-metadata'}",
                       "rest", method="GET", path=f"/v2/models/{segment}{route}", headers=())
        yield Rest(f"model-name-{name}-predict", "rest", path=f"/v2/models/{segment}/predict",
                   payload=dumps({"features": [0.5] * 30}))
    for name, path in (("models-traversal", "/v2/models/../../etc/passwd/infer"),
                       ("model-then-traversal", "/v2/models/risk/../../../etc/passwd"),
                       ("root-traversal", "/../../../etc/passwd"),
                       ("version-traversal", "/v2/models/risk/versions/../../cnn/infer"),
                       ("infer-dotdot-infer", "/v2/models/risk/infer/../infer"),
                       ("dot-segment", "/v2/models/risk/./infer"),
                       ("double-slashes", "//v2//models//risk//infer"),
                       ("absolute-etc", "/v2/models//etc/passwd/infer")):
        yield Rest(f"path-{name}", "rest", path=path, payload=VALID)
    # repository API in the default mode: refused whatever the name
    for name in ("traversal-encoded-slash", "dotdot", "nul-suffix", "emoji"):
        yield Rest(f"repository-load-{name}-refused", "rest",
                   path=f"/v2/repository/models/{names[name]}/load", payload=b"{}")
    yield Rest("repository-unload-risk-refused", "rest",
               path="/v2/repository/models/risk/unload", payload=b"{}")
    # explicit mode with the right token: load / unload must never leave the repository
    auth = (("Authorization", f"Bearer {TOKEN}"),)
    for name in ("traversal-encoded-slash", "traversal-encoded-dots", "traversal-backslash",
                 "dotdot", "dot", "dotdot-encoded", "nul-suffix", "emoji", "invalid-utf8",
                 "newline-suffix", "long-5000", "encoded-subpath", "tilde"):
        for action in ("load", "unload"):
            yield Rest(f"explicit-{action}-{name}", "rest", target="explicit", headers=auth,
                       path=f"/v2/repository/models/{names[name]}/{action}", payload=b"")
    yield Rest("explicit-load-absolute-path", "rest", target="explicit", headers=auth,
               path="/v2/repository/models/%2Fetc/load", payload=b"")
    yield Rest("explicit-load-without-token", "rest", target="explicit",
               path="/v2/repository/models/risk/load", payload=b"")
    yield Rest("explicit-load-wrong-token", "rest", target="explicit",
               headers=(("Authorization", "Bearer " + "A" * 10_000),),
               path="/v2/repository/models/risk/load", payload=b"")
    yield Rest("explicit-load-non-latin-token", "rest", target="explicit",
               headers=(("Authorization", b"Bearer \xff\xfe\x00"),),
               path="/v2/repository/models/risk/load", payload=b"")
    yield Rest("explicit-index-garbage-body", "rest", target="explicit", headers=auth,
               path="/v2/repository/index", payload=b"\xff" * 1000, allow=NO_5XX)

    # -- versions -------------------------------------------------------------------------------
    for name, version in (("huge", "9" * 30), ("float", "1.0"), ("space", "%201"),
                          ("plus", "+1"), ("zero", "0"), ("minus-zero", "-0"),
                          ("exponent", "1e0"), ("fullwidth", "%EF%BC%91"), ("nul", "1%00"),
                          ("hex", "0x1")):
        yield Rest(f"version-{name}", "rest", path=f"/v2/models/risk/versions/{version}/infer",
                   payload=VALID)
    yield Rest("version-leading-zero", "rest", path="/v2/models/risk/versions/01/infer",
               payload=VALID, allow=NO_5XX)

    # -- methods and odd paths ------------------------------------------------------------------
    for method in ("PATCH", "OPTIONS", "TRACE", "PUT", "DELETE", "FOO", "post", "HEAD"):
        yield Rest(f"method-{method}-on-infer", "rest", method=method, path=infer(),
                   payload=VALID if method not in ("HEAD", "TRACE") else b"")
    for name, path in (("trailing-slash", "/v2/models/risk/infer/"),
                       ("query-invalid-utf8", "/v2/models/risk/infer?x=%ff&y"),
                       ("fragment", "/v2/models/risk/infer#frag")):
        yield Rest(f"path-{name}", "rest", path=path, payload=VALID, allow=NO_5XX)
    for name, path in (("percent", "/%"), ("bad-percent", "/v2/models/%zz/infer"),
                       ("100k", "/v2/models/" + "a" * 100_000 + "/infer"),
                       ("encoded-nul-route", "/v2/health/live%00"),
                       ("unicode-route", "/v2/%E2%80%AEhealth/live")):
        yield Rest(f"path-{name}", "rest", path=path, payload=VALID)

    # -- headers ----------------------------------------------------------------------------------
    for value in ("1e308", "1.7976931348623157e308", b"\xff\xfe", b"5\xff", "0x10", "-0",
                  "1e-400", "5 ms"):
        label = value.hex() if isinstance(value, bytes) else value
        yield Rest(f"timeout-ms-{label}", "rest", payload=VALID,
                   headers=(("Content-Type", "application/json"), ("Timeout-Ms", value)),
                   allow=DEADLINE if value == "1e-400" else None)
    for value in ("1e300", "1_000", " 5 ", "1e-300"):
        yield Rest(f"timeout-ms-odd-but-legal-{value.strip()}", "rest", payload=VALID,
                   headers=(("Timeout-Ms", value),), allow=DEADLINE)
    for name, timeout in (("uint64-max", 2**64 - 1), ("int64-max", 2**63 - 1), ("one-us", 1)):
        yield Rest(f"timeout-parameter-{name}", "rest", allow=DEADLINE,
                   payload=body(features(), parameters={"timeout": timeout}))
    for name, timeout in (("float", 1.5), ("string", "5"), ("bool", True), ("above-uint64",
                                                                          2**64)):
        yield Rest(f"timeout-parameter-{name}", "rest",
                   payload=body(features(), parameters={"timeout": timeout}))
    for name, rid in (("10k", "r" * 10_000), ("non-ascii", b"\xff\xfe"),
                      ("utf8-emoji", "\U0001f4a3".encode()), ("tab", "a\tb")):
        yield Rest(f"x-request-id-{name}", "rest", payload=VALID,
                   headers=(("X-Request-ID", rid),), allow=frozenset({200}))
    gz = gzip.compress(VALID)
    for name, encoding, payload in (("gzip-twice-declared", "gzip, gzip", gz),
                                    ("x-gzip", "x-gzip", gz), ("deflate-of-gzip", "deflate", gz),
                                    ("gzip-empty-body", "gzip", b""),
                                    ("gzip-of-garbage-json", "gzip", gzip.compress(b"\xff{[")),
                                    ("gzip-trailing-garbage", "gzip", gz + b"garbage"),
                                    ("gzip-two-members", "gzip", gz + gz),
                                    ("non-latin", b"\xff", VALID)):
        yield Rest(f"content-encoding-{name}", "rest", payload=payload,
                   headers=(("Content-Encoding", encoding),))
    for name, encoding, payload in (("uppercase-gzip", "GZIP", gz),
                                    ("identity", "identity", VALID)):
        yield Rest(f"content-encoding-{name}", "rest", payload=payload, allow=frozenset({200}),
                   headers=(("Content-Encoding", encoding),))


def rest_binary_cases() -> Iterator[Case]:
    head = dumps(RISK_HEADER)
    total = len(head) + len(RISK_BLOB)
    lies: list[tuple[str, str | bytes]] = [
        ("empty", ""), ("space", " "), ("plus", "+0"), ("hex", "0x10"), ("exponent", "1e2"),
        ("float", f"{len(head)}.0"), ("30-digits", "9" * 30), ("minus-zero", "-0"),
        ("superscript", "\u00b2"), ("arabic-digit", "\u0661".encode()),
        ("one-more", str(len(head) + 1)), ("one-less", str(len(head) - 1)),
        ("whole-body", str(total)), ("past-body", str(total + 1)), ("5000-digits", "1" * 5000),
        ("underscore", "1_0"), ("nul", b"1\x00"),
    ]
    for name, value in lies:
        payload, headers = binary(head, RISK_BLOB, value)
        yield Rest(f"header-length-{name}", "binary", payload=payload, headers=headers)
    euro = dumps({**RISK_HEADER, "id": "\u20ac\u20ac"})
    cut = euro.index("\u20ac".encode()) + 1
    payload, headers = binary(euro, RISK_BLOB, str(cut))
    yield Rest("header-length-inside-a-utf8-character", "binary", payload=payload,
               headers=headers)
    payload, _ = binary(head, RISK_BLOB)
    yield Rest("header-length-twice", "binary", payload=payload, headers=(
        ("Inference-Header-Content-Length", "3"),
        ("Inference-Header-Content-Length", str(len(head)))), allow=NO_5XX)

    for name, size in (("string", "120"), ("float", 120.0), ("bool", True), ("null", None),
                       ("int64-max", 2**63 - 1), ("uint64-max", 2**64 - 1),
                       ("int64-min", -(2**63)), ("list", [120]), ("object", {}),
                       ("above-uint64", 2**64)):
        payload, headers = binary({"inputs": [bin_input("features", "FP32", [1, 30], size)]},
                                  RISK_BLOB)
        yield Rest(f"binary-data-size-{name}", "binary", payload=payload, headers=headers)
    for keep in (0, 1, 60, 119):
        payload, headers = binary(head, RISK_BLOB[:keep])
        yield Rest(f"binary-blob-truncated-to-{keep}", "binary", payload=payload,
                   headers=headers)
    for keep in (1, len(head) // 2, len(head) - 1):
        payload, _ = binary(head, RISK_BLOB)
        yield Rest(f"binary-body-truncated-in-json-at-{keep}", "binary",
                   payload=payload[:keep], headers=binary(head, b"")[1])

    specials = {"nan": [np.nan], "inf": [np.inf], "minus-inf": [-np.inf],
                "max-fp32": [np.finfo(np.float32).max], "denormal": [1e-45],
                "mixed": [np.nan, np.inf, -np.inf, 0.0]}
    for name, values in specials.items():
        blob = np.resize(np.array(values, "<f4"), 30).astype("<f4").tobytes()
        payload, headers = binary(RISK_HEADER, blob)
        yield Rest(f"binary-fp32-{name}", "binary", payload=payload, headers=headers,
                   allow=NO_5XX)
    snan = struct.pack("<I", 0x7F800001) * 30
    payload, headers = binary(RISK_HEADER, snan)
    yield Rest("binary-fp32-signalling-nan", "binary", payload=payload, headers=headers,
               allow=NO_5XX)
    fp16_header = {"inputs": [bin_input("INPUT0", "FP16", [1, 4], 8)]}
    for name, raw in (("nan-inf", np.array([np.nan, np.inf, -np.inf, 0], "<f2").tobytes()),
                      ("all-ones", b"\xff" * 8)):
        payload, headers = binary(fp16_header, raw)
        yield Rest(f"binary-fp16-{name}", "binary", path=infer("id_fp16"), payload=payload,
                   headers=headers, allow=NO_5XX)
    bool_header = {"inputs": [bin_input("INPUT0", "BOOL", [1, 4], 4)]}
    for name, raw in (("byte-2", b"\x02\x00\x01\x00"), ("byte-ff", b"\xff\xff\xff\xff")):
        payload, headers = binary(bool_header, raw)
        yield Rest(f"binary-bool-{name}", "binary", path=infer("id_bool"), payload=payload,
                   headers=headers, allow=NO_5XX)

    def bytes_case(name: str, blob: bytes, allow: frozenset[int] | None = None,
                   shape: list[int] | None = None) -> Rest:
        header = {"inputs": [bin_input("INPUT0", "BYTES", shape or [1, 4], len(blob))],
                  "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
        payload, headers = binary(header, blob)
        return Rest(f"binary-bytes-{name}", "binary", path=infer("id_bytes"), payload=payload,
                    headers=headers, allow=allow)

    words = [b"a", b"b", b"c"]
    for name, prefix in (("ffffffff", 0xFFFFFFFF), ("80000000", 0x80000000),
                         ("7fffffff", 0x7FFFFFFF)):
        yield bytes_case(f"length-prefix-{name}", bytes_blob(words) + struct.pack("<I", prefix))
    yield bytes_case("five-elements-for-four", bytes_blob([*words, b"d", b"e"]))
    yield bytes_case("zero-elements-for-four", b"")
    yield bytes_case("nul-bytes-elements", bytes_blob([b"\x00", b"\x00\x00", b"", b"x"]),
                     allow=frozenset({200}))
    for name, raw in (("ff", b"\xff"), ("overlong-nul", b"\xc0\x80"),
                      ("surrogate", b"\xed\xa0\x80"), ("truncated-euro", b"\xe2\x82"),
                      ("five-byte", b"\xf8\x88\x80\x80\x80"), ("above-10ffff", b"\xf4\x90\x80\x80"),
                      ("bom-utf16", b"\xff\xfeA\x00")):
        yield bytes_case(f"invalid-utf8-{name}", bytes_blob([raw, *words]))
    yield bytes_case("4m-empty-elements-for-four", b"\0" * (16 * MIB), shape=[1, 4])
    yield bytes_case("1m-elements-shape-mismatch", b"\0" * (4 * MIB), shape=[MIB])

    payload, headers = binary({"inputs": [bin_input("features", "FP32", [1, 30], 120)] * 2},
                              RISK_BLOB * 2)
    yield Rest("binary-same-input-twice", "binary", payload=payload, headers=headers)
    payload, headers = binary(b"[1, 2, 3]", RISK_BLOB)
    yield Rest("binary-header-is-a-list", "binary", payload=payload, headers=headers)
    payload, headers = binary(b'{"inputs": "\xff"}', RISK_BLOB)
    yield Rest("binary-header-invalid-utf8", "binary", payload=payload, headers=headers)
    many = {"inputs": [bin_input(f"x{i}", "FP32", [0], 0) for i in range(100_000)]}
    payload, headers = binary(many, b"")
    yield Rest("binary-100000-empty-inputs", "binary", payload=payload, headers=headers)
    payload, headers = binary({"inputs": [bin_input("features", "FP32", [0, 30], 0)]}, b"")
    yield Rest("binary-zero-rows", "binary", payload=payload, headers=headers)
    payload, headers = binary({"inputs": [bin_input("features", "FP32", [0, 2**62, 2**62],
                                                    0)]}, b"")
    yield Rest("binary-zero-rows-huge-dims", "binary", payload=payload, headers=headers)
    payload, headers = binary({"inputs": [bin_input("features", "BYTES", [1, 30], 4 * 30)]},
                              b"\0" * 120)
    yield Rest("binary-bytes-for-fp32-input", "binary", payload=payload, headers=headers)


def raw_http_cases() -> Iterator[Case]:
    # -- pipelining -----------------------------------------------------------------------------
    yield Raw("pipeline-garbage-after-valid", "raw", pieces=(VALID_REQUEST + b"GARBAGE\r\n\r\n",),
              responses=2, first_ok=True)
    yield Raw("garbage-after-valid-once-answered", "raw", read_between=True,
              pieces=(VALID_REQUEST, b"GARBAGE\r\n\r\n"), responses=2, first_ok=True)
    rng = random.Random(4)
    noise = bytes(rng.randrange(256) for _ in range(512))
    yield Raw("pipeline-random-bytes-after-valid", "raw", pieces=(VALID_REQUEST + noise,),
              responses=2, first_ok=True)
    yield Raw("pipeline-two-valid-then-nuls", "raw",
              pieces=(VALID_REQUEST * 2 + b"\x00" * 64,), responses=3, first_ok=True)
    yield Raw("pipeline-valid-then-partial-request", "raw",
              pieces=(VALID_REQUEST + b"POST /v2/models/risk/infer HTTP/1.1\r\nContent-Len",),
              responses=1, first_ok=True)
    yield Raw("pipeline-valid-then-bad-header", "raw",
              pieces=(VALID_REQUEST + b"GET /v2/health/live HTTP/1.1\r\nBad Header\r\n\r\n",),
              responses=2, first_ok=True)
    yield Raw("pipeline-valid-then-oversize", "raw", pieces=(
        VALID_REQUEST + http_request(infer(), b"", content_length=HUNDRED_MB),), responses=2,
        first_ok=True)
    yield Raw("content-length-shorter-than-body", "raw",
              pieces=(http_request(infer(), VALID + b"xxxxxxxxxx", content_length=len(VALID) - 5),),
              responses=1)
    yield Raw("http10-body-until-close", "raw", need_reply=False, responses=2, pieces=(
        b"POST /v2/models/risk/infer HTTP/1.0\r\nHost: x\r\n\r\n" + b"\0" * MIB,))

    # -- slowloris-ish partial requests and disconnects (bounded: send, then hang up) -----------
    partial_head = http_request(infer(), VALID)[:60]
    yield Raw("slowloris-request-line-then-close", "raw", mode="close",
              pieces=(b"POST /v2/mod",))
    yield Raw("slowloris-dribbled-headers-then-close", "raw", mode="close", pause_s=0.01,
              pieces=tuple(partial_head[i:i + 3] for i in range(0, len(partial_head), 3)))
    yield Raw("slowloris-headers-without-blank-line-then-close", "raw", mode="close",
              pieces=(b"POST /v2/models/risk/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10",))
    yield Raw("slowloris-dribbled-body-then-close", "raw", mode="close", pause_s=0.01,
              pieces=(http_request(infer(), b"", content_length=100), *[b"[" * 1] * 10))
    yield Raw("disconnect-mid-body", "raw", mode="close",
              pieces=(http_request(infer(), VALID[:100], content_length=10_000),))
    yield Raw("disconnect-after-1mib-of-2mib", "raw", mode="close",
              pieces=(http_request(infer(), b" " * MIB, content_length=2 * MIB),))
    yield Raw("reset-mid-body", "raw", mode="reset",
              pieces=(http_request(infer(), VALID[:100], content_length=len(VALID)),))
    yield Raw("reset-mid-chunked-body", "raw", mode="reset", pieces=(
        http_request(infer(), b"", content_length="",
                     headers=(b"Transfer-Encoding: chunked",)) + b"100\r\n" + b"[" * 50,))
    yield Raw("disconnect-mid-chunked-body", "raw", mode="close", pieces=(
        http_request(infer(), b"", content_length="",
                     headers=(b"Transfer-Encoding: chunked",)) + b"10\r\n0123456789",))
    yield Raw("disconnect-mid-gzip-body", "raw", mode="close", pieces=(
        http_request(infer(), gzip.compress(VALID)[:20], content_length=500,
                     headers=(b"Content-Encoding: gzip",)),))
    yield Raw("disconnect-mid-binary-body", "raw", mode="close", pieces=(
        http_request(infer(), dumps(RISK_HEADER) + RISK_BLOB[:7], content_length=5000, headers=(
            f"Inference-Header-Content-Length: {len(dumps(RISK_HEADER))}".encode(),)),))
    yield Raw("reset-right-after-connect", "raw", mode="reset", pieces=())
    yield Raw("disconnect-before-reading-the-reply", "raw", mode="close",
              pieces=(VALID_REQUEST,))

    # -- malformed HTTP -------------------------------------------------------------------------
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
    malformed = {
        "request-line-binary": b"\x00\x01\x02\x03\r\n\r\n",
        "http-version-9.9": b"GET /v2/health/live HTTP/9.9\r\nHost: x\r\n\r\n",
        "tls-client-hello": bytes.fromhex("16030100a5010000a10303") + bytes(range(96)),
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "connect-method": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        "lowercase-method": http_request(infer(), VALID, method="post"),
        "unknown-method": b"FOO /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        "nul-in-path": b"GET /v2/health/live\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "space-in-path": b"GET /v2/models/ri sk HTTP/1.1\r\nHost: x\r\n\r\n",
        "bare-lf": b"GET /v2/health/live HTTP/1.1\nHost: x\n\n",
        "header-without-colon": live + b"Bad Header\r\n\r\n",
        "header-with-nul": live + b"X-A: a\x00b\r\n\r\n",
        "header-obs-fold": live + b"X-A: a\r\n  b\r\n\r\n",
        "header-name-with-space": live + b"X A: b\r\n\r\n",
        "request-line-1mb": b"GET /" + b"a" * MIB + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "content-length-negative": http_request(infer(), b"", content_length=-1),
        "content-length-not-a-number": http_request(infer(), b"", content_length="abc"),
        "content-length-overflow": http_request(infer(), b"", content_length="9" * 30),
        "content-length-twice-different": http_request(
            infer(), b"{}x", headers=(b"Content-Length: 3",), content_length=2),
        "content-length-and-chunked": http_request(
            infer(), b"2\r\n{}\r\n0\r\n\r\n", content_length=5,
            headers=(b"Transfer-Encoding: chunked",)),
        "chunk-size-not-hex": http_request(infer(), b"zz\r\n{}\r\n0\r\n\r\n", content_length="",
                                           headers=(b"Transfer-Encoding: chunked",)),
        "chunk-size-overflow": http_request(infer(), b"f" * 20 + b"\r\n", content_length="",
                                            headers=(b"Transfer-Encoding: chunked",)),
        "transfer-encoding-unknown": http_request(infer(), b"{}", content_length="",
                                                  headers=(b"Transfer-Encoding: foo",)),
        "expect-100-continue-100mb": http_request(
            infer(), b"", content_length=HUNDRED_MB, headers=(b"Expect: 100-continue",)),
    }
    for name, data in malformed.items():
        yield Raw(f"http-{name}", "raw", pieces=(data,), expect_4xx=True)
    tolerated = {
        "http09-request": b"GET /v2/health/live\r\n\r\n",
        "absolute-form-uri": b"GET http://evil.example/v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        "header-100kb": live + b"X-A: " + b"a" * 100_000 + b"\r\n\r\n",
        "headers-10000": live + b"X-A: b\r\n" * 10_000 + b"\r\n",
        "websocket-upgrade": live + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             b"Sec-WebSocket-Version: 13\r\n\r\n",
        "h2c-upgrade": live + b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "expect-100-continue-valid": http_request(infer(), VALID,
                                                  headers=(b"Expect: 100-continue",)),
        "chunked-valid": http_request(infer(), b"%x\r\n%s\r\n0\r\n\r\n" % (len(VALID), VALID),
                                      content_length="", headers=(b"Transfer-Encoding: chunked",)),
        "chunked-with-extensions-and-trailers": http_request(
            infer(), b"%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(VALID), VALID),
            content_length="", headers=(b"Transfer-Encoding: chunked",)),
        "no-host-header": b"GET /v2/health/live HTTP/1.1\r\n\r\n",
        "x-request-id-control-chars": live + b"X-Request-ID: a\x01\x7fb\r\n\r\n",
    }
    for name, data in tolerated.items():
        yield Raw(f"http-tolerated-{name}", "raw", pieces=(data,))

    # -- the gRPC port, spoken to badly ---------------------------------------------------------
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for name, data, mode in (
        ("http1-request", live + b"\r\n", "drain"),
        ("random-bytes", bytes(random.Random(7).randrange(256) for _ in range(4096)), "drain"),
        ("preface-then-garbage-frame", preface + b"\x00\x00\x04\xff\x00\x00\x00\x00\x00abcd",
         "drain"),
        ("preface-then-huge-frame-length", preface + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01",
         "drain"),
        ("half-preface-then-close", preface[:10], "close"),
        ("tls-client-hello", bytes.fromhex("16030100a5010000a10303") + bytes(96), "drain"),
        ("reset-after-preface", preface, "reset"),
    ):
        yield Raw(f"grpc-port-{name}", "raw", pieces=(data,), mode=mode, port="grpc",
                  drain_s=0.5)


def grpc_cases() -> Iterator[Case]:
    # -- bytes that are not a ModelInferRequest -------------------------------------------------
    group = varint(99 << 3 | 3)
    end = varint(99 << 3 | 4)
    garbage = {
        "empty": b"", "nul": b"\x00", "ff-16": b"\xff" * 16,
        "length-4gib": b"\x0a\xff\xff\xff\xff\x0f",
        "length-2gib-field-7": b"\x3a\x80\x80\x80\x80\x08",
        "overlong-varint": b"\x08" + b"\xff" * 11, "wire-type-7": b"\x0f",
        "field-zero": b"\x00\x00", "group-without-end": b"\x0b",
        "groups-10000-deep": group * 10_000 + end * 10_000,
        "groups-50-deep": group * 50 + end * 50,
        "mismatched-group-end": group + varint(98 << 3 | 4),
        "valid-plus-trailing-ff": VALID_RISK_MSG + b"\xff",
        "unknown-field-varint": VALID_RISK_MSG + varint(99 << 3) + varint(5),
        "unknown-field-1mb": VALID_RISK_MSG + ld(99, b"\0" * MIB),
        "json-instead-of-protobuf": VALID,
    }
    ok_garbage = {"unknown-field-varint", "unknown-field-1mb", "groups-50-deep"}
    for name, data in garbage.items():
        yield Grpc(f"grpc-garbage-{name}", "grpc", payload=data, ok=name in ok_garbage)
    for cut in (1, 5, len(VALID_RISK_MSG) // 2, len(VALID_RISK_MSG) - 1):
        yield Grpc(f"grpc-truncated-at-{cut}", "grpc", payload=VALID_RISK_MSG[:cut])
    rng = random.Random(11)
    for i, size in enumerate((8, 64, 512, 4096, 65536)):
        data = bytes(rng.randrange(256) for _ in range(size))
        yield Grpc(f"grpc-random-{i}-{size}-bytes", "grpc", payload=data, ok=True)
    # invalid UTF-8 in proto3 string fields
    base = ser(infer_msg(""))
    yield Grpc("grpc-invalid-utf8-model-name", "grpc", payload=base + ld(1, b"ri\xffsk"))
    yield Grpc("grpc-invalid-utf8-version", "grpc", payload=base + ld(1, b"risk") + ld(2, b"\xff"))
    yield Grpc("grpc-invalid-utf8-id", "grpc", payload=base + ld(1, b"risk") + ld(3, b"\xc0\x80"))
    bad_input = ld(1, b"feat\xffures") + ld(2, b"FP32") + ld(3, varint(1) + varint(30))
    yield Grpc("grpc-invalid-utf8-input-name", "grpc",
               payload=ld(1, b"risk") + ld(5, bad_input) + ld(7, RISK_BLOB))
    bad_type = ld(1, b"features") + ld(2, b"FP\xed\xa0\x80") + ld(3, varint(1) + varint(30))
    yield Grpc("grpc-invalid-utf8-datatype", "grpc",
               payload=ld(1, b"risk") + ld(5, bad_type) + ld(7, RISK_BLOB))

    # -- model names and versions -----------------------------------------------------------------
    for name, model in (("empty", ""), ("traversal", "../../etc/passwd"), ("dotdot", ".."),
                        ("nul", "risk\x00"), ("emoji", "\U0001f4a3"), ("rtl", "\u202eksir"),
                        ("long-10000", "x" * 10_000), ("subpath", "risk/1"), ("upper", "RISK"),
                        ("newline", "risk\n"), ("absolute", "/etc/passwd")):
        yield Grpc(f"grpc-model-name-{name}", "grpc", payload=ser(infer_msg(model)))
    for name, version in (("minus-one", "-1"), ("float", "1.0"), ("huge", "9" * 30),
                          ("fullwidth", "\uff11"), ("nul", "1\x00"), ("space", " 1")):
        yield Grpc(f"grpc-version-{name}", "grpc", payload=ser(infer_msg(version=version)))
    yield Grpc("grpc-version-leading-zero", "grpc", payload=ser(infer_msg(version="01")),
               ok=True)

    # -- raw_input_contents count / size mismatches --------------------------------------------
    for name, raw in (("size-0", [b""]), ("size-1", [b"\0"]), ("size-119", [RISK_BLOB[:119]]),
                      ("size-121", [RISK_BLOB + b"\0"]), ("size-1mib", [b"\0" * MIB]),
                      ("three-for-one-input", [RISK_BLOB] * 3)):
        yield Grpc(f"grpc-raw-{name}", "grpc",
                   payload=ser(infer_msg(inputs=[("features", "FP32", [1, 30])], raw=raw)))
    yield Grpc("grpc-raw-without-inputs", "grpc", payload=ser(infer_msg(inputs=[],
                                                                        raw=[RISK_BLOB])))
    yield Grpc("grpc-raw-and-contents-both", "grpc", codes=frozenset(
        {grpc.StatusCode.INVALID_ARGUMENT}), payload=ser(infer_msg(
        inputs=[("features", "FP32", [1, 30])], raw=[RISK_BLOB],
        contents={0: ("fp32_contents", [0.5] * 30)})))
    yield Grpc("grpc-raw-empty-entries-two-inputs", "grpc", payload=ser(infer_msg(
        inputs=[("features", "FP32", [1, 30]), ("x", "FP32", [1, 30])], raw=[b"", b""])))

    # -- huge / negative / overflowing shapes ---------------------------------------------------
    for name, shape in (("int64-max", [2**63 - 1, 30]), ("int64-min", [-(2**63), 30]),
                        ("2-pow-31", [2**31, 1]), ("cols-2-pow-31", [1, 2**31]),
                        ("product-above-limit", [46_341, 46_341]),
                        ("zero-and-int64-max", [0, 2**63 - 1]), ("scalar", []),
                        ("rank-33", [1] * 33), ("rank-10000", [1] * 10_000),
                        ("all-negative", [-1, -30]), ("product-at-limit", [65_536, 32_768]),
                        ("product-overflows-int64", [2**32, 2**32, 2**32])):
        yield Grpc(f"grpc-shape-{name}", "grpc", payload=ser(infer_msg(
            inputs=[("features", "FP32", shape)], raw=[RISK_BLOB])))
        yield Grpc(f"grpc-shape-{name}-contents", "grpc", payload=ser(infer_msg(
            inputs=[("features", "FP32", shape)], contents={0: ("fp32_contents", [0.5] * 30)})))

    # -- datatypes ------------------------------------------------------------------------------
    for name, dt in (("empty", ""), ("lowercase", "fp32"), ("nul", "FP32\x00"), ("bf16", "BF16"),
                     ("string", "STRING"), ("emoji", "\U0001f4a3"), ("repeated", "FP32" * 1000),
                     ("int64", "INT64"), ("fp64", "FP64")):
        yield Grpc(f"grpc-datatype-{name}", "grpc", payload=ser(infer_msg(
            inputs=[("features", dt, [1, 30])], raw=[RISK_BLOB])))

    # -- typed contents ---------------------------------------------------------------------------
    features_spec = [("features", "FP32", [1, 30])]
    for kind, values in (("int_contents", [1] * 30), ("bool_contents", [True] * 30),
                         ("fp64_contents", [0.5] * 30), ("bytes_contents", [b"a"] * 30),
                         ("uint64_contents", [2**64 - 1] * 30)):
        yield Grpc(f"grpc-contents-{kind}-for-fp32", "grpc", payload=ser(infer_msg(
            inputs=features_spec, contents={0: (kind, values)})))
    for name, value in (("nan", math.nan), ("inf", math.inf), ("minus-inf", -math.inf)):
        yield Grpc(f"grpc-contents-fp32-{name}", "grpc", ok=True, payload=ser(infer_msg(
            inputs=features_spec, contents={0: ("fp32_contents", [value] * 30)})))
    yield Grpc("grpc-contents-fp16-has-no-field", "grpc", payload=ser(infer_msg(
        "id_fp16", [("INPUT0", "FP16", [1, 4])], contents={0: ("uint_contents", [1] * 4)})))
    yield Grpc("grpc-contents-1m-fp32", "grpc", payload=ser(infer_msg(
        inputs=features_spec, contents={0: ("fp32_contents", [0.5] * 1_000_000)})))
    bytes_spec = [("INPUT0", "BYTES", [1, 4])]
    for name, raw in (("ff", b"\xff"), ("overlong", b"\xc0\x80"), ("surrogate", b"\xed\xa0\x80")):
        yield Grpc(f"grpc-bytes-contents-invalid-utf8-{name}", "grpc", payload=ser(infer_msg(
            "id_bytes", bytes_spec, contents={0: ("bytes_contents", [raw, b"b", b"c", b"d"])})))
    yield Grpc("grpc-bytes-contents-10000-for-4", "grpc", payload=ser(infer_msg(
        "id_bytes", bytes_spec, contents={0: ("bytes_contents", [b"x"] * 10_000)})))
    yield Grpc("grpc-bytes-raw-length-prefix-ffffffff", "grpc", payload=ser(infer_msg(
        "id_bytes", bytes_spec, [bytes_blob([b"a", b"b", b"c"]) + b"\xff\xff\xff\xff"])))
    yield Grpc("grpc-bytes-raw-nul-elements", "grpc", ok=True, payload=ser(infer_msg(
        "id_bytes", bytes_spec, [bytes_blob([b"\x00", b"", b"\x00\x00", b"d"])])))
    yield Grpc("grpc-bool-raw-byte-2", "grpc", ok=True, payload=ser(infer_msg(
        "id_bool", [("INPUT0", "BOOL", [1, 4])], [b"\x02\xff\x01\x00"])))

    # -- counts -----------------------------------------------------------------------------------
    yield Grpc("grpc-10000-inputs", "grpc", payload=ser(infer_msg(
        inputs=[(f"x{i}", "FP32", [1, 30]) for i in range(10_000)], raw=[RISK_BLOB] * 10_000)))
    yield Grpc("grpc-10000-duplicate-inputs", "grpc", payload=ser(infer_msg(
        inputs=features_spec * 10_000, raw=[RISK_BLOB] * 10_000)))
    yield Grpc("grpc-10000-duplicate-outputs", "grpc", ok=True,
               payload=ser(infer_msg(outputs=["score"] * 10_000)))
    yield Grpc("grpc-10000-unknown-outputs", "grpc",
               payload=ser(infer_msg(outputs=[f"o{i}" for i in range(10_000)])))
    yield Grpc("grpc-10000-parameters", "grpc", ok=True, payload=ser(infer_msg(
        params={f"p{i}": ("int64_param", i) for i in range(10_000)})))

    # -- parameters and deadlines ---------------------------------------------------------------
    for name, param in (("negative", ("int64_param", -5)), ("string", ("string_param", "abc")),
                        ("int64-max", ("int64_param", 2**63 - 1)), ("bool", ("bool_param", True)),
                        ("uint64-max", ("uint64_param", 2**64 - 1)),
                        ("double-nan", ("double_param", math.nan))):
        yield Grpc(f"grpc-timeout-parameter-{name}", "grpc", ok=True,
                   payload=ser(infer_msg(params={"timeout": param})))
    yield Grpc("grpc-timeout-parameter-one-us", "grpc", ok=True,
               codes=GRPC_CLIENT_CODES | {grpc.StatusCode.DEADLINE_EXCEEDED},
               payload=ser(infer_msg(params={"timeout": ("int64_param", 1)})))

    # -- metadata ---------------------------------------------------------------------------------
    for name, md in (("x-request-id-1000", (("x-request-id", "r" * 1000),)),
                     ("x-request-id-16k", (("x-request-id", "r" * 16_000),)),
                     ("authorization-garbage", (("authorization", "Bearer ../" + "a" * 500),)),
                     ("binary-header", (("x-request-id-bin", b"\xff\x00\xfe"),)),
                     ("many-headers", tuple((f"x-h{i}", "v") for i in range(200)))):
        yield Grpc(f"grpc-metadata-{name}", "grpc", payload=VALID_RISK_MSG, metadata=md,
                   ok=True)

    # -- the other RPCs ---------------------------------------------------------------------------
    svc = "/inference.GRPCInferenceService/"
    for rpc in ("ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata",
                "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
                "RepositoryModelUnload"):
        yield Grpc(f"grpc-{rpc}-garbage", "grpc", method=svc + rpc, payload=b"\xff\xff\xff")
    for name, model in (("traversal", "../../etc/passwd"), ("nul", "risk\x00"),
                        ("long", "x" * 10_000)):
        yield Grpc(f"grpc-ModelMetadata-{name}", "grpc", method=svc + "ModelMetadata",
                   payload=ser(pb.ModelMetadataRequest(name=model)))
        yield Grpc(f"grpc-ModelConfig-{name}", "grpc", method=svc + "ModelConfig",
                   payload=ser(pb.ModelConfigRequest(name=model)))
        yield Grpc(f"grpc-ModelStatistics-{name}", "grpc", method=svc + "ModelStatistics",
                   payload=ser(pb.ModelStatisticsRequest(name=model)))
        yield Grpc(f"grpc-ModelReady-{name}", "grpc", method=svc + "ModelReady", ok=True,
                   payload=ser(pb.ModelReadyRequest(name=model)))
        yield Grpc(f"grpc-RepositoryModelLoad-{name}", "grpc",
                   method=svc + "RepositoryModelLoad",
                   payload=ser(pb.RepositoryModelLoadRequest(model_name=model)))
    yield Grpc("grpc-ModelStatistics-bad-version", "grpc", method=svc + "ModelStatistics",
               payload=ser(pb.ModelStatisticsRequest(name="risk", version="abc")))
    yield Grpc("grpc-unknown-method", "grpc", method=svc + "Nope", payload=b"")
    yield Grpc("grpc-unknown-service", "grpc", method="/evil.Service/Infer", payload=b"")
    yield Grpc("grpc-method-path-traversal", "grpc", method="/../inference/ModelInfer",
               payload=b"")
    # explicit mode with the token: loading never leaves the repository
    auth = (("authorization", f"Bearer {TOKEN}"),)
    for name, model in (("traversal", "../../etc/passwd"), ("dotdot", ".."), ("dot", "."),
                        ("absolute", "/etc"), ("newline", "risk\n"), ("nul", "risk\x00"),
                        ("backslash", "..\\..\\etc"), ("empty", "")):
        for rpc, message in (("RepositoryModelLoad", pb.RepositoryModelLoadRequest),
                             ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest)):
            yield Grpc(f"grpc-explicit-{rpc}-{name}", "grpc", target="explicit",
                       method=svc + rpc, metadata=auth, payload=ser(message(model_name=model)))
    yield Grpc("grpc-explicit-load-without-token", "grpc", target="explicit",
               method=svc + "RepositoryModelLoad",
               payload=ser(pb.RepositoryModelLoadRequest(model_name="risk")))

    # -- the seed's ModelService.Predict ----------------------------------------------------------
    predict = "/ModelService/Predict"
    for name, payload, ok in (
        ("empty", b"", False), ("garbage", b"\xff\xff", False),
        ("29-features", predict_msg([0.5] * 29), False),
        ("30-nan", predict_msg([math.nan] * 30), True),
        ("30-inf", predict_msg([math.inf] * 30), True),
        ("1m-features", predict_msg([0.5] * 1_000_000), False),
        ("unpacked-30", b"".join(varint(1 << 3 | 5) + struct.pack("<f", 0.5)
                                 for _ in range(30)), True),
        ("varint-wire-type", varint(1 << 3) + varint(5), False),
        ("truncated-packed", predict_msg([0.5] * 30)[:-3], False),
    ):
        yield Grpc(f"grpc-predict-{name}", "grpc", method=predict, payload=payload, ok=ok)
    for name, model in (("traversal", "../../etc/passwd"), ("cnn-with-30", "cnn"),
                        ("empty", ""), ("percent-encoded", "%2e%2e")):
        yield Grpc(f"grpc-predict-model-metadata-{name}", "grpc", method=predict,
                   payload=predict_msg([0.5] * 30), metadata=(("model", model),),
                   ok=model == "")


def big_cases() -> Iterator[Case]:
    """100 MB bodies: refused with 413 / RESOURCE_EXHAUSTED, fast, with bounded memory."""
    fast = {"max_seconds": 10.0, "max_rss_growth": 256 * MIB}
    head = http_request(infer(), b"", content_length=HUNDRED_MB)
    yield Stream("big-100mb-content-length", "raw", head=head, **fast)
    yield Stream("big-100mb-chunked", "raw", chunked=True, head=http_request(
        infer(), b"", content_length="", headers=(b"Transfer-Encoding: chunked",)), **fast)
    yield Stream("big-100mb-binary-extension", "binary", head=http_request(
        infer(), b"", content_length=HUNDRED_MB,
        headers=(b"Inference-Header-Content-Length: 10",)), **fast)
    yield Stream("big-100mb-predict", "raw", head=http_request(
        "/predict", b"", content_length=HUNDRED_MB), **fast)
    yield Rest("big-gzip-bomb-100mb", "rest", payload=lambda: gzip.compress(b" " * HUNDRED_MB),
               headers=(("Content-Encoding", "gzip"),), allow=frozenset({413}), **fast)
    yield Rest("big-deflate-bomb-100mb", "rest", allow=frozenset({413}),
               payload=lambda: zlib.compress(b"[" * HUNDRED_MB),
               headers=(("Content-Encoding", "deflate"),), **fast)
    too_big = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
    yield Grpc("big-grpc-100mb-raw-input", "grpc", codes=too_big, **fast, payload=lambda: ser(
        infer_msg(inputs=[("features", "FP32", [1, 30])], raw=[b"\0" * HUNDRED_MB])))
    yield Grpc("big-grpc-100mb-predict", "grpc", method="/ModelService/Predict",
               payload=lambda: predict_msg(np.full(HUNDRED_MB // 4, 0.5)), codes=too_big, **fast)
    yield Grpc("big-grpc-100mb-garbage", "grpc", payload=lambda: b"\xff" * HUNDRED_MB,
               codes=too_big, **fast)


def corpus() -> list[Case]:
    cases = [*rest_json_cases(), *rest_route_cases(), *rest_binary_cases(), *raw_http_cases(),
             *grpc_cases(), *big_cases()]
    return cases


CORPUS = corpus()


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------


def test_corpus_is_large_and_covers_every_transport() -> None:
    ids = [c.id for c in CORPUS]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    kinds = {k: sum(c.kind == k for c in CORPUS) for k in ("rest", "binary", "raw", "grpc")}
    print(f"hostile corpus: {len(CORPUS)} cases {kinds}")
    assert len(CORPUS) >= 200
    assert all(n >= 20 for n in kinds.values()), kinds


def healthy(target: Target) -> None:
    """The server is alive and answers a valid request correctly, over REST and gRPC."""
    srv = target.server
    assert srv.proc.poll() is None, "server process died:\n" + "\n".join(srv.log[-30:])
    reply = rest_call(srv, "POST", infer(), VALID_ROWS, (("Content-Type", "application/json"),))
    assert reply.status == 200, reply.body[:300]
    check_scores(reply.json()["outputs"][0]["data"])
    answer = pb.ModelInferResponse.FromString(
        target.unary("/inference.GRPCInferenceService/ModelInfer")(VALID_RISK_MSG,
                                                                   timeout=TIMEOUT))
    check_scores(np.frombuffer(answer.raw_output_contents[0], "<f4"))


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_hostile_request(case: Case, request: pytest.FixtureRequest) -> None:
    target: Target = request.getfixturevalue(f"{case.target}_target")
    start = time.monotonic()
    with RssWatch(target.server.proc.pid) as rss:
        case.run(target)
    elapsed = time.monotonic() - start
    assert elapsed < case.max_seconds, f"took {elapsed:.1f} s"
    if case.max_rss_growth is not None and psutil is not None:
        print(f"{case.id}: {elapsed:.2f} s, server RSS +{rss.peak_growth / MIB:.0f} MiB")
        assert rss.peak_growth <= case.max_rss_growth, \
            f"server RSS grew by {rss.peak_growth / MIB:.0f} MiB"
    healthy(target)


# -- large bodies inside the limit: memory amplification, measured ----------------------------


def _grpc_fp32_contents(count: int) -> bytes:
    """ModelInferRequest for risk with ``count`` values in fp32_contents (field 6)."""
    tensor = (ld(1, b"features") + ld(2, b"FP32") + ld(3, varint(1) + varint(30))
              + ld(5, ld(6, np.full(count, 0.5, "<f4").tobytes())))
    return ld(1, b"risk") + ld(5, tensor)


def _json_floats(count: int) -> bytes:
    return (b'{"inputs":[{"name":"features","datatype":"FP32","shape":[1,30],"data":['
            + b"0.5," * (count - 1) + b"0.5]}]}")


@pytest.mark.parametrize(("kind", "build"), [
    pytest.param("rest", lambda: _json_floats(15_000_000), id="rest-57mib-json-floats"),
    pytest.param("rest", lambda: _json_floats(4_000_000), id="rest-15mib-json-floats"),
    pytest.param("grpc", lambda: _grpc_fp32_contents(15_000_000), id="grpc-57mib-fp32-contents"),
])
def test_in_limit_body_memory_is_bounded(main_target: Target, kind: str,
                                         build: Callable[[], bytes],
                                         record_property: Callable[[str, Any], None]) -> None:
    """A large body under the 64 MiB limit whose element count is wrong: a 4xx, and the RSS it
    costs stays bounded (recorded: the ratio to the body size is the amplification). JSON above
    max_json_bytes (16 MiB) is refused with 413 before it is parsed."""
    payload = build()
    assert len(payload) < LIMIT
    start = time.monotonic()
    with RssWatch(main_target.server.proc.pid) as rss:
        if kind == "rest":
            reply = rest_call(main_target.server, "POST", infer(), payload, ())
            expected = 413 if len(payload) > 16 * MIB else 400
            assert reply.status == expected, reply.body[:300]
        else:
            with pytest.raises(grpc.RpcError) as info:
                main_target.unary("/inference.GRPCInferenceService/ModelInfer")(
                    payload, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    elapsed = time.monotonic() - start
    record_property("seconds", round(elapsed, 2))
    record_property("rss_growth_mib", rss.peak_growth // MIB)
    print(f"{kind}: {len(payload) / MIB:.0f} MiB body -> {elapsed:.2f} s, "
          f"RSS +{rss.peak_growth / MIB:.0f} MiB")
    if psutil is not None:
        # about 16x (measured: +236 MiB) the largest JSON the server parses (16 MiB), or a few
        # times the largest message it decodes (64 MiB)
        assert rss.peak_growth < (384 if kind == "rest" else 512) * MIB
    healthy(main_target)


# -- after the corpus -------------------------------------------------------------------------


def test_server_answers_correctly_after_the_corpus(main_target: Target) -> None:
    srv = main_target.server
    assert srv.proc.poll() is None
    healthy(main_target)
    payload, headers = binary({"inputs": [bin_input("features", "FP32", [3, 30], ROWS.nbytes)],
                               "parameters": {"binary_data_output": True}},
                              ROWS.astype("<f4").tobytes())
    reply = rest_call(srv, "POST", infer(), payload, headers)
    assert reply.status == 200, reply.body[:300]
    hlen = int(reply.headers["inference-header-content-length"])
    check_scores(np.frombuffer(reply.body[hlen:], "<f4"))
    reply = rest_call(srv, "POST", "/predict", dumps({"features": ROWS.tolist()}), ())
    assert reply.status == 200, reply.body[:300]
    check_scores(reply.json()["result"])


@pytest.mark.parametrize("name", ["server", "explicit_server"])
def test_log_has_no_unhandled_error(name: str, request: pytest.FixtureRequest) -> None:
    srv: ServerProcess = request.getfixturevalue(name)
    assert srv.proc.poll() is None, "server process died"
    time.sleep(0.2)  # let the reader thread catch up with the last lines
    bad = [line for line in srv.log if "unhandled error" in line or "Traceback" in line]
    first = srv.log.index(bad[0]) if bad else 0
    assert bad == [], (f"{len(bad)} bad log line(s); the first with what follows it:\n"
                       + "\n".join(srv.log[first:first + 30]))
