"""The bad-input matrix against a real ``shipyard serve`` process.

Every malformed request must get a client error (HTTP 4xx, gRPC INVALID_ARGUMENT / NOT_FOUND /
RESOURCE_EXHAUSTED) whose message names the field, the bad value and what was expected; never a
500. REST requests are sent raw with ``http.client`` (JSON, the binary tensor extension with
``Inference-Header-Content-Length``, gzip), gRPC ones with raw ``ModelInferRequest`` messages
(``tritonclient.grpc.service_pb2``) or ``tritonclient.grpc``. This process imports
``tritonclient.grpc`` and must never import ``shipyard.serving.grpc``.

After the matrix the server must still be alive and answer correctly.
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, start_server
from onnx_models import add_sub_model, identity_model, write_repository

SMALL_LIMIT = 100_000
BIG = 1 << 62

# --------------------------------------------------------------------------------------------
# servers and clients
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models (risk, cnn) plus tiny typed models."""
    root = tmp_path_factory.mktemp("errors-repo")
    for name in ("risk", "cnn"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    mbs8 = {"max_batch_size": 8}
    write_repository(root, {
        "id_int32": (partial(identity_model, datatype_onnx="INT32"), mbs8),
        "id_uint8": (partial(identity_model, datatype_onnx="UINT8"), mbs8),
        "id_bytes": (partial(identity_model, datatype_onnx="BYTES"), mbs8),
        "simple": (add_sub_model, mbs8),
    })
    return root


@pytest.fixture(scope="module")
def server(repository: Path, http_server: str) -> Iterator[ServerProcess]:
    proc = start_server(repository, "--http-server", http_server)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def small_server(repository: Path, http_server: str) -> Iterator[ServerProcess]:
    """The same repository with a 100 kB body / message limit."""
    proc = start_server(repository, "--max-body-bytes", str(SMALL_LIMIT),
                        "--http-server", http_server)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.grpc_url)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def triton_grpc(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        assert self.headers.get("content-type") == "application/json", self.headers
        doc = self.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc
        return str(doc["error"])


def send(server: ServerProcess, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def send_raw(server: ServerProcess, head: bytes, body_parts: Iterable[bytes] = ()) -> Reply:
    """Write a request by hand (``head`` ends with the blank line), then read the reply.

    Used where the server answers before reading the whole body: the client stops writing and
    reads, so the answer cannot be lost to a reset of a connection still being written to."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=20) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)


def expect(reply: Reply, status: int, fragments: Iterable[str]) -> str:
    """The reply has ``status`` and an error message containing every fragment."""
    assert reply.status != 500, f"server error: {reply.body[:500]!r}"
    assert reply.status == status, f"got {reply.status}: {reply.body[:500]!r}"
    message = reply.error
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def features(**override: Any) -> dict[str, Any]:
    """A valid JSON input for model risk; keyword arguments replace fields."""
    return {"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30,
            **override}


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return dumps({"inputs": list(inputs), **extra})


def infer_path(model: str, version: str = "") -> str:
    return f"/v2/models/{model}{f'/versions/{version}' if version else ''}/infer"


def binary_request(header: dict[str, Any], blob: bytes,
                   header_length: str | None = None) -> tuple[bytes, dict[str, str]]:
    head = dumps(header)
    hlen = str(len(head)) if header_length is None else header_length
    return head + blob, {"Inference-Header-Content-Length": hlen,
                         "Content-Type": "application/octet-stream"}


def bin_input(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape,
            "parameters": {"binary_data_size": size}}


def bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def risk_reference(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DEMO_REPOSITORY / "risk" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (score,) = session.run(["score"], {"features": x})
    return np.asarray(score)


#: Two rows of scikit-learn's breast-cancer data: sample 0 (malignant), sample 19 (benign).
MALIGNANT = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
             1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003,
             0.006193, 25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601,
             0.1189]
BENIGN = [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766,
          0.2699, 0.7886, 2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023,
          15.11, 19.26, 99.7, 711.2, 0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259]


def risk_rows() -> np.ndarray:
    """Malignant, benign, and their midpoint (a score between the two)."""
    m, b = np.array(MALIGNANT), np.array(BENIGN)
    return np.stack([m, b, (m + b) / 2]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# REST, JSON bodies
# --------------------------------------------------------------------------------------------

JSON_CASES = [
    pytest.param("risk", b'{"inputs": [', ["request body is not valid JSON"],
                 id="malformed-json"),
    pytest.param("risk", b"\xff\xfe{}", ["not valid JSON"], id="not-utf8"),
    pytest.param("risk", b"[1, 2]", ["request body must be a JSON object", "got list"],
                 id="body-is-a-list"),
    pytest.param("risk", b'"hello"', ["must be a JSON object", "got str"], id="body-is-a-string"),
    pytest.param("risk", b"{}", ["'inputs'", "non-empty list"], id="missing-inputs"),
    pytest.param("risk", dumps({"inputs": []}), ["'inputs'", "non-empty list"],
                 id="empty-inputs"),
    pytest.param("risk", dumps({"inputs": features()}), ["'inputs'", "list"],
                 id="inputs-not-a-list"),
    pytest.param("risk", dumps({"inptus": [features()]}),
                 ["needs 'inputs'", "ignored unknown field(s) ['inptus']"],
                 id="misspelt-request-field"),
    pytest.param("risk", dumps({"inputs": [5]}), ["inputs[0]", "JSON object", "int"],
                 id="input-not-an-object"),
    pytest.param("risk", dumps({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}),
                 ["inputs[0]", "'name'"], id="input-without-name"),
    pytest.param("risk", body({"name": "features", "datatype": "FP32", "shape": [1, 30],
                               "datta": [0.5] * 30}),
                 ["input 'features' has no 'data'", "ignored unknown field(s) ['datta']"],
                 id="misspelt-input-field"),
    pytest.param("risk", body(features(datatype="INT32", data=[1] * 30)),
                 ["'features'", "expects datatype FP32", "got INT32"], id="wrong-datatype"),
    pytest.param("risk", body(features(datatype="FLOAT")),
                 ["'features'", "unknown datatype 'FLOAT'", "'FP32'"], id="unknown-datatype"),
    pytest.param("risk", body(features(shape=[1, 29], data=[0.5] * 29)),
                 ["'features'", "expects shape [-1, 30]", "got [1, 29]"], id="wrong-shape"),
    pytest.param("risk", body(features(shape=[30])),
                 ["'features'", "[-1, 30]", "got [30]"], id="wrong-rank"),
    pytest.param("risk", body(features(shape="1x30")),
                 ["'features'", "shape must be a list of integers", "'1x30'"],
                 id="shape-not-a-list"),
    pytest.param("risk", body(features(shape=[1.0, 30])),
                 ["'features'", "list of integers", "[1.0, 30]"], id="shape-of-floats"),
    pytest.param("risk", body(features(shape=[-1, 30])),
                 ["'features'", "[-1, 30]", "negative"], id="negative-shape"),
    pytest.param("risk", body(features(shape=[65536, 65536, 2])),
                 ["'features'", "[65536, 65536, 2]", "2147483648"], id="huge-shape"),
    pytest.param("risk", body(features(shape=[0, BIG, BIG], data=[])), ["'features'"],
                 id="huge-shape-with-a-zero-dimension"),
    pytest.param("risk", body(features(data=[0.5] * 29)),
                 ["'features'", "29 element(s)", "[1, 30] needs 30"], id="data-length"),
    pytest.param("risk", body(features(data=[0.5] * 31)),
                 ["'features'", "31 element(s)", "needs 30"], id="data-too-long"),
    pytest.param("risk", body(features(shape=[2, 30], data=[[0.5] * 30, [0.5] * 29])),
                 ["'features'", "nesting depth", "has 29 element(s)", "needs 30"],
                 id="ragged-nested-numbers"),
    pytest.param("id_bytes", body(tensor("INPUT0", "BYTES", [2, 4],
                                         [["a", "b", "c", "d", "e"], ["f", "g", "h"]])),
                 ["'INPUT0'"], id="ragged-nested-bytes"),
    pytest.param("risk", body(features(data=["a"] * 30)),
                 ["'features'", "FP32 data must be numbers", "got 'a' (element 0)"],
                 id="strings-in-fp32"),
    pytest.param("risk", body(features(data=[None] * 30)), ["'features'", "None"],
                 id="nulls-in-fp32"),
    pytest.param("id_int32", body(tensor("INPUT0", "INT32", [1, 4], [1, 2.5, 3, 4])),
                 ["'INPUT0'", "INT32", "integer", "2.5"], id="float-in-int32"),
    pytest.param("id_int32", body(tensor("INPUT0", "INT32", [1, 4], [2**31, 0, 0, 0])),
                 ["'INPUT0'", "value 2147483648", "INT32 [-2147483648, 2147483647]"],
                 id="out-of-range-int32"),
    pytest.param("id_uint8", body(tensor("INPUT0", "UINT8", [1, 4], [0, -1, 2, 3])),
                 ["'INPUT0'", "value -1", "UINT8 [0, 255]"], id="out-of-range-uint8"),
    pytest.param("id_bytes", body(tensor("INPUT0", "BYTES", [1, 4], ["a", 5, "c", "d"])),
                 ["'INPUT0'", "BYTES data must be strings", "got 5"], id="number-in-bytes"),
    pytest.param("risk", body({"name": "features", "datatype": "FP32", "shape": [1, 30]}),
                 ["'features'", "no 'data'"], id="input-without-data"),
    pytest.param("simple", body(tensor("INPUT0", "FP32", [1, 16], [0] * 16)),
                 ["model 'simple'", "missing input(s) ['INPUT1']"], id="missing-input"),
    pytest.param("risk", body(features(), tensor("foo", "FP32", [1], [1])),
                 ["no input 'foo'", "its inputs are ['features']"], id="unknown-input"),
    pytest.param("risk", body(features(), features()), ["'features'", "given twice"],
                 id="duplicate-input"),
    pytest.param("simple", body(tensor("INPUT0", "FP32", [1, 16], [0] * 16),
                                tensor("INPUT1", "FP32", [2, 16], [0] * 32)),
                 ["'INPUT1'", "batch size 2", "other inputs have 1"], id="batch-mismatch"),
    pytest.param("risk", body(features(), outputs=[{"name": "nope"}]),
                 ["no output 'nope'", "its outputs are ['score']"], id="unknown-output"),
    pytest.param("risk", body(features(), outputs={"name": "score"}), ["'outputs'", "list"],
                 id="outputs-not-a-list"),
    pytest.param("risk", body(features(shape=[257, 30], data=[0.5] * 257 * 30)),
                 ["'features'", "batch size 257", "1..256"], id="batch-too-large"),
    pytest.param("risk", body(features(shape=[0, 30], data=[])),
                 ["'features'", "batch size 0", "1..256"], id="batch-of-zero"),
    pytest.param("risk", body(features(), parameters={"timeout": -5}),
                 ["'timeout'", "-5"], id="negative-timeout"),
    pytest.param("risk", body(features(), id=5), ["'id'", "5"], id="id-not-a-string"),
]


@pytest.mark.parametrize(("model", "payload", "fragments"), JSON_CASES)
def test_rest_json_bad_request(server: ServerProcess, model: str, payload: bytes,
                               fragments: list[str]) -> None:
    reply = send(server, "POST", infer_path(model), payload,
                 {"Content-Type": "application/json"})
    expect(reply, 400, fragments)


ROUTE_CASES = [
    pytest.param("POST", infer_path("nope"), 404, ["unknown model 'nope'", "'risk'"],
                 id="unknown-model"),
    pytest.param("GET", "/v2/models/nope", 404, ["unknown model 'nope'"],
                 id="unknown-model-metadata"),
    pytest.param("POST", infer_path("risk", "7"), 404,
                 ["model 'risk' has no version '7'", "served versions: [1]"],
                 id="unknown-version"),
    pytest.param("GET", "/v2/models/nope/ready", 404, ["unknown model 'nope'"],
                 id="unknown-model-ready"),
    pytest.param("GET", "/v2/models/risk/versions/9", 404, ["no version '9'"],
                 id="unknown-version-metadata"),
    pytest.param("POST", infer_path("risk", "abc"), 404, ["no version 'abc'"],
                 id="non-numeric-version"),
    pytest.param("POST", infer_path("risk", "-1"), 404, ["no version '-1'"],
                 id="negative-version"),
    pytest.param("POST", infer_path("risk", "%C2%B2"), 404, ["no version '\u00b2'"],
                 id="unicode-digit-version"),
    pytest.param("GET", "/v2/nothing", 404, ["no route '/v2/nothing'"], id="unknown-v2-route"),
    pytest.param("GET", "/nothing/at/all", 404, ["no route '/nothing/at/all'"],
                 id="unknown-route"),
    pytest.param("GET", "/v2/models/risk/bogus", 404, ["no route '/v2/models/risk/bogus'"],
                 id="unknown-model-route-get"),
    pytest.param("POST", "/v2/models/risk/bogus", 404, ["/v2/models/risk/bogus"],
                 id="unknown-model-route-post"),
    pytest.param("GET", infer_path("risk"), 405, ["method GET not allowed", "use POST"],
                 id="get-on-infer"),
    pytest.param("DELETE", infer_path("risk"), 405, ["DELETE", "POST"], id="delete-on-infer"),
    pytest.param("PUT", "/v2/health/ready", 405, ["method PUT not allowed", "use GET"],
                 id="put-on-health"),
    pytest.param("POST", "/v2/models/risk/config", 405, ["POST", "use GET"],
                 id="post-on-config"),
]


@pytest.mark.parametrize(("method", "path", "status", "fragments"), ROUTE_CASES)
def test_rest_unknown_model_version_route_and_method(
    server: ServerProcess, method: str, path: str, status: int, fragments: list[str]
) -> None:
    payload = body(features()) if method == "POST" else b""
    reply = send(server, method, path, payload)
    expect(reply, status, fragments)
    if status == 405:
        allowed = fragments[-1].removeprefix("use ")
        assert reply.headers.get("allow") == {"GET": "GET, HEAD"}.get(allowed, allowed)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "-inf"])
def test_rest_bad_timeout_header(server: ServerProcess, value: str) -> None:
    reply = send(server, "POST", infer_path("risk"), body(features()), {"Timeout-Ms": value})
    expect(reply, 400, ["Timeout-Ms must be a positive number", repr(value)])


# --------------------------------------------------------------------------------------------
# REST, binary tensor extension
# --------------------------------------------------------------------------------------------

INT_BLOB = np.arange(4, dtype="<i4").tobytes()
INT_HEADER = {"inputs": [bin_input("INPUT0", "INT32", [1, 4], 16)]}
WORDS = [b"a", b"bb", b"ccc", b"dddd"]
WORDS_BLOB = bytes_blob(WORDS)


NOT_UTF8_BLOB = bytes_blob([b"\xff\xfe", b"a", b"b", b"c"])


def _bytes_header(size: int) -> dict[str, Any]:
    return {"inputs": [bin_input("INPUT0", "BYTES", [1, 4], size)]}


BINARY_CASES = [
    pytest.param("id_int32", INT_HEADER, INT_BLOB, "100000",
                 ["Inference-Header-Content-Length is '100000'",
                  f"body has {len(dumps(INT_HEADER)) + 16} bytes"],
                 id="header-length-past-the-body"),
    pytest.param("id_int32", INT_HEADER, INT_BLOB, "abc",
                 ["Inference-Header-Content-Length is 'abc'"], id="header-length-not-a-number"),
    pytest.param("id_int32", INT_HEADER, INT_BLOB, "-5",
                 ["Inference-Header-Content-Length is '-5'"], id="header-length-negative"),
    pytest.param("id_int32", INT_HEADER, INT_BLOB, "0",
                 ["JSON header of the binary request is not valid JSON"],
                 id="header-length-zero"),
    pytest.param("id_int32", INT_HEADER, INT_BLOB, str(len(dumps(INT_HEADER)) - 3),
                 ["JSON header of the binary request is not valid JSON"],
                 id="header-length-too-short"),
    pytest.param("id_int32", {"inputs": [bin_input("INPUT0", "INT32", [1, 4], 32)]}, INT_BLOB,
                 None, ["'INPUT0'", "binary_data_size 32", "(16 bytes left)"],
                 id="binary-size-past-the-end"),
    pytest.param("id_int32", INT_HEADER, INT_BLOB + b"xx", None,
                 ["2 byte(s) that no input claims"], id="leftover-bytes"),
    pytest.param("id_int32", {"inputs": [bin_input("INPUT0", "INT32", [1, 4], 12)]},
                 INT_BLOB[:12], None, ["'INPUT0'", "12 bytes", "[1, 4] of INT32 needs 16"],
                 id="binary-size-does-not-match-shape"),
    pytest.param("id_int32", {"inputs": [bin_input("INPUT0", "INT32", [1, 4], -4)]}, b"",
                 None, ["'INPUT0'", "binary_data_size must be a non-negative integer", "-4"],
                 id="binary-size-negative"),
    pytest.param("id_int32", {"inputs": [{**bin_input("INPUT0", "INT32", [1, 4], 16),
                                          "data": [1, 2, 3, 4]}]}, INT_BLOB, None,
                 ["'INPUT0'", "both 'data' and binary_data_size"], id="data-and-binary"),
    pytest.param("id_bytes", _bytes_header(len(WORDS_BLOB) - 2), WORDS_BLOB[:-2], None,
                 ["'INPUT0'", "BYTES element 3 claims 4 bytes", "only 2 remain"],
                 id="bytes-truncated-element"),
    pytest.param("id_bytes", _bytes_header(len(WORDS_BLOB) - 6), WORDS_BLOB[:-6], None,
                 ["'INPUT0'", "truncated", "4-byte length prefix"],
                 id="bytes-truncated-length-prefix"),
    pytest.param("id_bytes", _bytes_header(len(bytes_blob(WORDS[:3]))), bytes_blob(WORDS[:3]),
                 None, ["'INPUT0'", "holds 3 element(s)", "[1, 4] needs 4"],
                 id="bytes-too-few-elements"),
    pytest.param("id_bytes", _bytes_header(len(NOT_UTF8_BLOB)), NOT_UTF8_BLOB, None,
                 ["'INPUT0'"], id="bytes-not-utf8-for-a-string-model"),
    pytest.param("risk", {"inputs": [bin_input("features", "FP32", [1, 29], 116)]},
                 b"\0" * 116, None, ["'features'", "expects shape [-1, 30]", "got [1, 29]"],
                 id="risk-wrong-shape"),
    pytest.param("risk", {"inputs": [bin_input("features", "FP64", [1, 30], 240)]},
                 b"\0" * 240, None, ["'features'", "expects datatype FP32", "got FP64"],
                 id="risk-wrong-datatype"),
]


@pytest.mark.parametrize(("model", "header", "blob", "header_length", "fragments"),
                         BINARY_CASES)
def test_rest_binary_bad_request(server: ServerProcess, model: str, header: dict[str, Any],
                                 blob: bytes, header_length: str | None,
                                 fragments: list[str]) -> None:
    payload, headers = binary_request(header, blob, header_length)
    expect(send(server, "POST", infer_path(model), payload, headers), 400, fragments)


def test_rest_binary_valid_requests_work(server: ServerProcess) -> None:
    """Controls for the binary cases: the same requests, well formed, succeed."""
    payload, headers = binary_request(INT_HEADER, INT_BLOB)
    reply = send(server, "POST", infer_path("id_int32"), payload, headers)
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == [0, 1, 2, 3]

    header = {**_bytes_header(len(WORDS_BLOB)),
              "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
    payload, headers = binary_request(header, WORDS_BLOB)
    reply = send(server, "POST", infer_path("id_bytes"), payload, headers)
    assert reply.status == 200, reply.body
    hlen = int(reply.headers["inference-header-content-length"])
    out = json.loads(reply.body[:hlen])["outputs"][0]
    assert out["shape"] == [1, 4]
    assert out["parameters"]["binary_data_size"] == len(WORDS_BLOB)
    assert reply.body[hlen:] == WORDS_BLOB


# --------------------------------------------------------------------------------------------
# REST, Content-Encoding
# --------------------------------------------------------------------------------------------

INT_JSON = body(tensor("INPUT0", "INT32", [1, 4], [5, 6, 7, 8]))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_body_works(server: ServerProcess, encoding: str) -> None:
    payload = gzip.compress(INT_JSON) if encoding == "gzip" else zlib.compress(INT_JSON)
    reply = send(server, "POST", infer_path("id_int32"), payload,
                 {"Content-Encoding": encoding, "Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    assert reply.json()["outputs"][0]["data"] == [5, 6, 7, 8]


def test_garbage_gzip_is_400(server: ServerProcess) -> None:
    reply = send(server, "POST", infer_path("id_int32"), b"this is not gzip at all",
                 {"Content-Encoding": "gzip"})
    expect(reply, 400, ["not valid gzip data"])


def test_truncated_gzip_is_400(server: ServerProcess) -> None:
    """A gzip stream without its trailer (CRC32 + length) is incomplete and must be refused;
    today the server inflates what is there and runs the request."""
    payload = gzip.compress(INT_JSON)[:-8]
    reply = send(server, "POST", infer_path("id_int32"), payload, {"Content-Encoding": "gzip"})
    expect(reply, 400, ["gzip"])


def test_unsupported_content_encoding_is_400(server: ServerProcess) -> None:
    reply = send(server, "POST", infer_path("id_int32"), INT_JSON, {"Content-Encoding": "br"})
    expect(reply, 400, ["Content-Encoding 'br' is not supported", "gzip"])


# --------------------------------------------------------------------------------------------
# size limits (a second server with --max-body-bytes 100000)
# --------------------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A valid id_int32 request of about ``size`` bytes (padding in the request id)."""
    doc = {"id": "", "inputs": [tensor("INPUT0", "INT32", [1, 4], [1, 2, 3, 4])]}
    doc["id"] = "x" * (size - len(dumps(doc)))
    return dumps(doc)


def test_body_below_the_limit_works(small_server: ServerProcess) -> None:
    reply = send(small_server, "POST", infer_path("id_int32"), _padded(SMALL_LIMIT - 1000))
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["outputs"][0]["data"] == [1, 2, 3, 4]


def test_oversize_body_is_413(small_server: ServerProcess) -> None:
    """Content-Length above the limit: 413 before the body is read (none is sent)."""
    size = 2 * SMALL_LIMIT
    head = (f"POST {infer_path('id_int32')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    reply = send_raw(small_server, head)
    expect(reply, 413, [f"{size} bytes", f"limit of {SMALL_LIMIT} bytes", "max_body_bytes"])
    assert reply.headers.get("connection") == "close"


def test_oversize_chunked_body_is_413(small_server: ServerProcess) -> None:
    """No Content-Length (chunked): the server counts and stops once past the limit."""
    head = (f"POST {infer_path('id_int32')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"[" * 30_000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 4  # 120 kB, not terminated
    reply = send_raw(small_server, head, parts)
    expect(reply, 413, [f"limit of {SMALL_LIMIT} bytes", "max_body_bytes"])


JSON_LIMIT = 20_000


@pytest.fixture(scope="module")
def json_limited_server(repository: Path, http_server: str) -> Iterator[ServerProcess]:
    """The same repository with a 20 kB limit on the JSON part of REST requests."""
    proc = start_server(repository, "--max-json-bytes", str(JSON_LIMIT),
                        "--http-server", http_server)
    yield proc
    proc.stop()


def test_json_above_max_json_bytes_is_413_binary_is_not(
    json_limited_server: ServerProcess,
) -> None:
    """Large tensors must come as binary: the same 10 images are refused as 40 kB of JSON and
    accepted as 31 kB of binary data behind a small JSON header."""
    images = np.linspace(0, 1, 10 * 784, dtype=np.float32).reshape(10, 1, 28, 28)
    as_json = dumps({"inputs": [tensor("image", "FP32", [10, 1, 28, 28], images.tolist())]})
    assert len(as_json) > JSON_LIMIT
    reply = send(json_limited_server, "POST", infer_path("cnn"), as_json)
    expect(reply, 413, [f"{len(as_json)} bytes", f"limit of {JSON_LIMIT} bytes",
                        "max_json_bytes", "binary tensor data extension"])
    header = dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [10, 1, 28, 28],
                                "parameters": {"binary_data_size": images.nbytes}}]})
    reply = send(json_limited_server, "POST", infer_path("cnn"), header + images.tobytes(),
                 {"Inference-Header-Content-Length": str(len(header))})
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["outputs"][0]["shape"] == [10, 10]
    rows = dumps({"features": images.reshape(10, 784).tolist()})
    expect(send(json_limited_server, "POST", "/v2/models/cnn/predict", rows), 413,
           ["max_json_bytes"])


def test_gzip_bomb_is_413(small_server: ServerProcess) -> None:
    payload = gzip.compress(b" " * (20 * SMALL_LIMIT))
    assert len(payload) < SMALL_LIMIT
    reply = send(small_server, "POST", infer_path("id_int32"), payload,
                 {"Content-Encoding": "gzip"})
    expect(reply, 413, ["decompressed body", str(SMALL_LIMIT)])


def test_grpc_message_above_the_limit_is_resource_exhausted(
    small_server: ServerProcess,
) -> None:
    with grpc.insecure_channel(small_server.grpc_url) as channel:
        small_stub = pb_grpc.GRPCInferenceServiceStub(channel)
        ok = small_stub.ModelInfer(
            grpc_request("id_int32", [("INPUT0", "INT32", [1, 4])], [INT_BLOB],
                         request_id="y" * (SMALL_LIMIT - 1000)), timeout=10)
        assert np.frombuffer(ok.raw_output_contents[0], "<i4").tolist() == [0, 1, 2, 3]
        big = grpc_request("id_int32", [("INPUT0", "INT32", [8, 4])], [b"\0" * 128],
                           request_id="y" * (2 * SMALL_LIMIT))
        with pytest.raises(grpc.RpcError) as info:
            small_stub.ModelInfer(big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(SMALL_LIMIT) in (info.value.details() or "")


# --------------------------------------------------------------------------------------------
# gRPC
# --------------------------------------------------------------------------------------------


def grpc_request(model: str, inputs: list[tuple[str, str, list[int]]],
                 raw: list[bytes] | None = None, *, version: str = "",
                 contents: dict[int, tuple[str, list[Any]]] | None = None,
                 outputs: list[str] | None = None, request_id: str = "",
                 ) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for i, (name, datatype, shape) in enumerate(inputs):
        t = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        if contents and i in contents:
            field, values = contents[i]
            getattr(t.contents, field).extend(values)
    for blob in raw or []:
        msg.raw_input_contents.append(blob)
    for name in outputs or []:
        msg.outputs.add(name=name)
    return msg


FEATURES = ("features", "FP32", [1, 30])
RISK_RAW = b"\0" * 120
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
GrpcCase = Callable[[], pb.ModelInferRequest]

GRPC_CASES = [
    pytest.param(lambda: grpc_request("risk", [FEATURES], [RISK_RAW, RISK_RAW]), INVALID,
                 ["raw_input_contents has 2 entries", "there are 1 inputs"],
                 id="raw-count-mismatch"),
    pytest.param(lambda: grpc_request("simple", [("INPUT0", "FP32", [1, 16]),
                                                 ("INPUT1", "FP32", [1, 16])], [b"\0" * 64]),
                 INVALID, ["raw_input_contents has 1 entries", "there are 2 inputs"],
                 id="raw-count-too-few"),
    pytest.param(lambda: grpc_request("risk", []), INVALID, ["no inputs"], id="no-inputs"),
    pytest.param(lambda: grpc_request("risk", [("features", "INT32", [1, 30])], [RISK_RAW]),
                 INVALID, ["'features'", "expects datatype FP32", "got INT32"],
                 id="wrong-datatype"),
    pytest.param(lambda: grpc_request("risk", [("features", "FLOAT", [1, 30])], [RISK_RAW]),
                 INVALID, ["'features'", "unknown datatype 'FLOAT'"], id="unknown-datatype"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP32", [1, 29])], [b"\0" * 116]),
                 INVALID, ["'features'", "expects shape [-1, 30]", "got [1, 29]"],
                 id="wrong-shape"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP32", [-1, 30])], [RISK_RAW]),
                 INVALID, ["'features'", "[-1, 30]", "negative"], id="negative-shape"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP32", [65536, 65536, 2])],
                                      [RISK_RAW]),
                 INVALID, ["'features'", "[65536, 65536, 2]", "2147483648"], id="huge-shape"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP32", [0, BIG, BIG])], [b""]),
                 INVALID, ["'features'"], id="huge-shape-with-a-zero-dimension"),
    pytest.param(lambda: grpc_request("risk", [FEATURES], [b"\0" * 116]), INVALID,
                 ["'features'", "116 bytes", "[1, 30] of FP32 needs 120"], id="raw-length"),
    pytest.param(lambda: grpc_request("risk", [FEATURES],
                                      contents={0: ("fp32_contents", [0.5] * 29)}),
                 INVALID, ["'features'", "29 element(s)", "needs 30"], id="contents-length"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP16", [1, 30])]), INVALID,
                 ["'features'", "FP16 has no typed contents field", "raw_input_contents"],
                 id="fp16-without-raw"),
    pytest.param(lambda: grpc_request("id_uint8", [("INPUT0", "UINT8", [1, 4])],
                                      contents={0: ("uint_contents", [1, 300, 2, 3])}),
                 INVALID, ["'INPUT0'", "value 300", "UINT8 [0, 255]"], id="out-of-range-uint8"),
    pytest.param(lambda: grpc_request("simple", [("INPUT0", "FP32", [1, 16])], [b"\0" * 64]),
                 INVALID, ["missing input(s) ['INPUT1']"], id="missing-input"),
    pytest.param(lambda: grpc_request("risk", [FEATURES, ("foo", "FP32", [1])],
                                      [RISK_RAW, b"\0" * 4]),
                 INVALID, ["no input 'foo'", "['features']"], id="unknown-input"),
    pytest.param(lambda: grpc_request("risk", [FEATURES, FEATURES], [RISK_RAW, RISK_RAW]),
                 INVALID, ["'features'", "given twice"], id="duplicate-input"),
    pytest.param(lambda: grpc_request("risk", [FEATURES], [RISK_RAW], outputs=["nope"]),
                 INVALID, ["no output 'nope'", "['score']"], id="unknown-output"),
    pytest.param(lambda: grpc_request("risk", [("features", "FP32", [257, 30])],
                                      [RISK_RAW * 257]),
                 INVALID, ["'features'", "batch size 257", "1..256"], id="batch-too-large"),
    pytest.param(lambda: grpc_request("id_bytes", [("INPUT0", "BYTES", [1, 4])],
                                      [struct.pack("<I", 10) + b"abc"]),
                 INVALID, ["'INPUT0'", "BYTES element 0 claims 10 bytes", "only 3 remain"],
                 id="bytes-truncated"),
    pytest.param(lambda: grpc_request("id_bytes", [("INPUT0", "BYTES", [1, 4])],
                                      contents={0: ("bytes_contents", [b"a", b"b", b"c"])}),
                 INVALID, ["'INPUT0'", "bytes_contents has 3 element(s)", "needs 4"],
                 id="bytes-contents-count"),
    pytest.param(lambda: grpc_request("id_bytes", [("INPUT0", "BYTES", [1, 4])],
                                      [NOT_UTF8_BLOB]),
                 INVALID, ["'INPUT0'"], id="bytes-not-utf8-for-a-string-model"),
    pytest.param(lambda: grpc_request("nope", [FEATURES], [RISK_RAW]), NOT_FOUND,
                 ["unknown model 'nope'", "'risk'"], id="unknown-model"),
    pytest.param(lambda: grpc_request("risk", [FEATURES], [RISK_RAW], version="7"), NOT_FOUND,
                 ["no version '7'", "served versions: [1]"], id="unknown-version"),
    pytest.param(lambda: grpc_request("risk", [FEATURES], [RISK_RAW], version="abc"),
                 NOT_FOUND, ["no version 'abc'"], id="non-numeric-version"),
    pytest.param(lambda: grpc_request("risk", [FEATURES], [RISK_RAW], version="\u00b2"),
                 NOT_FOUND, ["no version '\u00b2'"], id="unicode-digit-version"),
]


@pytest.mark.parametrize(("make", "code", "fragments"), GRPC_CASES)
def test_grpc_bad_request(stub: pb_grpc.GRPCInferenceServiceStub, make: GrpcCase,
                          code: grpc.StatusCode, fragments: list[str]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(make(), timeout=10)
    details = info.value.details() or ""
    assert info.value.code() == code, f"{info.value.code()}: {details}"
    for fragment in fragments:
        assert fragment in details, f"{fragment!r} not in {details!r}"


def test_grpc_malformed_protobuf_is_invalid_argument(server: ServerProcess) -> None:
    """Bytes that are not a ModelInferRequest are the gRPC twin of malformed JSON: expect
    INVALID_ARGUMENT naming the message type (today: UNKNOWN, and a traceback in the log)."""
    with grpc.insecure_channel(server.grpc_url) as channel:
        raw_call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            raw_call(b"\xff\xff\xff\xff", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "ModelInferRequest" in (info.value.details() or "")


def test_grpc_unknown_method_is_unimplemented(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        raw_call = channel.unary_unary("/inference.GRPCInferenceService/Nope")
        with pytest.raises(grpc.RpcError) as info:
            raw_call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_triton_grpc_client_sees_the_status_codes(
    triton_grpc: grpcclient.InferenceServerClient,
) -> None:
    x = np.zeros((1, 29), np.float32)
    inp = grpcclient.InferInput("features", [1, 29], "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as info:
        triton_grpc.infer("risk", [inp])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "got [1, 29]" in info.value.message()
    assert "[-1, 30]" in info.value.message()

    with pytest.raises(InferenceServerException) as info:
        triton_grpc.infer("nope", [inp])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'nope'" in info.value.message()

    with pytest.raises(InferenceServerException) as info:
        triton_grpc.get_model_metadata("risk", model_version="3")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "no version '3'" in info.value.message()


# --------------------------------------------------------------------------------------------
# after the matrix
# --------------------------------------------------------------------------------------------


def test_server_still_serves_correctly_after_the_matrix(
    server: ServerProcess, stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    assert server.proc.poll() is None, "server process died"
    assert send(server, "GET", "/v2/health/live").status == 200
    assert send(server, "GET", "/v2/health/ready").status == 200
    x = risk_rows()
    expected = risk_reference(x)
    assert expected.shape == (3, 1)
    assert expected[0, 0] > 0.9  # P(malignant) of a malignant sample
    assert expected[1, 0] < 0.2  # ... and of a benign one

    reply = send(server, "POST", infer_path("risk"), body(
        features(shape=[3, 30], data=x.tolist())))
    assert reply.status == 200, reply.body
    out = reply.json()["outputs"][0]
    assert (out["name"], out["datatype"], out["shape"]) == ("score", "FP32", [3, 1])
    np.testing.assert_allclose(np.array(out["data"]).reshape(3, 1), expected, rtol=1e-5,
                               atol=1e-6)
    assert all(0.0 <= v <= 1.0 for v in out["data"])

    payload, headers = binary_request(
        {"inputs": [bin_input("features", "FP32", [3, 30], x.nbytes)],
         "parameters": {"binary_data_output": True}}, x.astype("<f4").tobytes())
    reply = send(server, "POST", infer_path("risk"), payload, headers)
    assert reply.status == 200, reply.body
    hlen = int(reply.headers["inference-header-content-length"])
    np.testing.assert_allclose(np.frombuffer(reply.body[hlen:], "<f4").reshape(3, 1),
                               expected, rtol=1e-5, atol=1e-6)

    resp = stub.ModelInfer(grpc_request("risk", [("features", "FP32", [3, 30])],
                                        [x.astype("<f4").tobytes()]), timeout=10)
    assert list(resp.outputs[0].shape) == [3, 1]
    np.testing.assert_allclose(np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(3, 1),
                               expected, rtol=1e-5, atol=1e-6)
    assert server.proc.poll() is None, "server process died"


def test_no_request_hit_the_unhandled_error_path(
    server: ServerProcess, small_server: ServerProcess,
) -> None:
    """Every bad request above must be a client error: none may reach the server's last-resort
    handler (HTTP 500 / gRPC INTERNAL), which logs 'unhandled error'."""
    for proc in (server, small_server):
        assert proc.proc.poll() is None
        unhandled = [line for line in proc.log if "unhandled error" in line]
        assert unhandled == []
