"""TLS (REST and gRPC, mutual TLS) and bearer-token authentication against real
``shipyard serve`` processes, with real clients: tritonclient HTTP over https, tritonclient
gRPC with TLS channel credentials, httpx, and the standard library's ssl for the refusals.

The certificates come from tests/tls_support.py (shared with tests/client/test_tls.py): a CA,
a server certificate for 127.0.0.1 / localhost signed by it, a client certificate signed by
it, and a second, unrelated CA (a client that trusts only that one must refuse the server).

The servers' tests import ``tritonclient``, never ``shipyard.serving``; two unit tests call
the settings and :func:`shipyard.serving.tls.load_tls` directly (precedence, encrypted keys).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography.hazmat.primitives import serialization
from sklearn.datasets import load_breast_cancer
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, start_server
from tls_support import Pki, make_pki, tls_args

pytestmark = pytest.mark.timeout(180)

AUTH_TOKEN = "auth-token-for-the-tests-0123456789"
CONTROL_TOKEN = "control-token-for-the-tests-0123456789"
BEARER = {"authorization": f"Bearer {AUTH_TOKEN}"}
#: one real patient of scikit-learn's bundled data set, the demo ``risk`` model's input
ROW = load_breast_cancer().data[:1].astype(np.float32)


# -- certificates (tests/tls_support.py) ---------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _risk_http(client: httpclient.InferenceServerClient,
               headers: dict[str, str] | None = None) -> np.ndarray:
    inp = httpclient.InferInput("features", list(ROW.shape), "FP32")
    inp.set_data_from_numpy(ROW)
    # a copy: tritonclient.http adds its own headers to the dict it is given
    result = client.infer("risk", [inp], headers=None if headers is None else dict(headers))
    out: np.ndarray | None = result.as_numpy(result.get_response()["outputs"][0]["name"])
    assert out is not None
    return out


def _risk_grpc(client: grpcclient.InferenceServerClient,
               headers: dict[str, str] | None = None) -> np.ndarray:
    inp = grpcclient.InferInput("features", list(ROW.shape), "FP32")
    inp.set_data_from_numpy(ROW)
    result = client.infer("risk", [inp], headers=headers)
    out: np.ndarray | None = result.as_numpy(result.get_response().outputs[0].name)
    assert out is not None
    return out


# -- start-up mistakes ----------------------------------------------------------------------


def _serve_fails(*args: str) -> str:
    """Run ``shipyard serve`` with ``args``: it must exit 2 with one line; that line."""
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(DEMO_REPOSITORY),
         "--http-port", "0", "--grpc-port", "0", *args],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_startup_mistakes_are_one_line_naming_the_flag(pki: Pki, tmp_path: Path) -> None:
    line = _serve_fails("--tls-cert", str(tmp_path / "missing.pem"),
                        "--tls-key", str(pki.server_key))
    assert "--tls-cert" in line and "missing.pem" in line and "cannot read" in line
    line = _serve_fails("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.other_key))
    assert "--tls-key" in line and "is not the private key of --tls-cert" in line
    line = _serve_fails("--tls-cert", str(pki.server_cert))
    assert "without --tls-key" in line
    line = _serve_fails("--tls-client-ca", str(pki.ca))
    assert "--tls-client-ca needs --tls-cert" in line
    line = _serve_fails("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                        "--tls-client-ca", str(pki.client_key))  # a key, not a certificate
    assert "--tls-client-ca" in line
    line = _serve_fails("--auth-token", "short")
    assert "auth_token" in line and "at least 16" in line and "short" not in line  # no echo
    line = _serve_fails("--auth-token-file", str(tmp_path / "nope"))
    assert "--auth-token-file" in line and "cannot read" in line


def test_encrypted_key_is_refused_without_a_prompt(pki: Pki, tmp_path: Path) -> None:
    from shipyard.serving.errors import InvalidInput
    from shipyard.serving.tls import load_tls

    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(InvalidInput, match=r"--tls-key .* is encrypted"):
        load_tls(pki.server_cert, locked, None)
    files = load_tls(pki.server_cert, pki.server_key, pki.ca)
    assert files is not None and files.mutual and files.cert.startswith(b"-----BEGIN")
    assert load_tls(None, None, None) is None


def test_auth_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.serving.config import ServerSettings
    from shipyard.serving.errors import InvalidInput

    token_file = tmp_path / "token"
    token_file.write_text(f"  {AUTH_TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("SHIPYARD_AUTH_TOKEN_FILE", str(token_file))
    assert ServerSettings.resolve({}).auth_token == AUTH_TOKEN  # the file's, stripped
    # the CLI's token replaces the environment's file (CLI > environment) ...
    assert ServerSettings.resolve({"auth_token": CONTROL_TOKEN}).auth_token == CONTROL_TOKEN
    # ... and one layer giving both is refused
    with pytest.raises(InvalidInput, match="not both"):
        ServerSettings.resolve({"auth_token": CONTROL_TOKEN, "auth_token_file": token_file})
    settings = ServerSettings.resolve({})
    assert AUTH_TOKEN not in repr(settings)  # never in a log line that prints the settings
    assert ServerSettings.resolve({"auth_metrics": True}).auth_metrics


# -- TLS, with the auth token and --auth-metrics ---------------------------------------------


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[ServerProcess]:
    import os

    os.environ["SHIPYARD_AUTH_TOKEN"] = AUTH_TOKEN  # the environment path of the setting
    try:
        s = start_server(DEMO_REPOSITORY, *tls_args(pki), "--auth-metrics")
    finally:
        del os.environ["SHIPYARD_AUTH_TOKEN"]
    yield s
    s.stop()


def test_tritonclient_http_over_https(tls_server: ServerProcess, pki: Pki) -> None:
    assert any("HTTP listening on https://" in line for line in tls_server.log)
    client = httpclient.InferenceServerClient(
        tls_server.http_url, ssl=True, ssl_options={"ca_certs": str(pki.ca)}, insecure=False)
    try:
        assert client.is_server_live()  # health: open even with the auth token
        scores = _risk_http(client, BEARER)
        assert scores.shape[0] == 1 and np.all((scores >= 0) & (scores <= 1))
        with pytest.raises(InferenceServerException, match="Authorization"):
            _risk_http(client)
    finally:
        client.close()


def test_tritonclient_grpc_over_tls(tls_server: ServerProcess, pki: Pki) -> None:
    assert any("(TLS)" in line and "gRPC listening" in line for line in tls_server.log)
    client = grpcclient.InferenceServerClient(
        tls_server.grpc_url, ssl=True, root_certificates=str(pki.ca))
    try:
        assert client.is_server_live() and client.is_server_ready()
        scores = _risk_grpc(client, BEARER)
        https = httpclient.InferenceServerClient(
            tls_server.http_url, ssl=True, ssl_options={"ca_certs": str(pki.ca)})
        try:  # the same answer whichever frontend carries it
            np.testing.assert_allclose(scores, _risk_http(https, BEARER), rtol=1e-6)
        finally:
            https.close()
        with pytest.raises(InferenceServerException) as err:
            _risk_grpc(client)
        assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    finally:
        client.close()


def test_httpx_over_tls_and_auth_metrics(tls_server: ServerProcess, pki: Pki) -> None:
    with httpx.Client(base_url=f"https://{tls_server.http_url}", verify=str(pki.ca)) as c:
        assert c.get("/v2/health/ready").status_code == 200
        refused = c.get("/metrics")  # --auth-metrics
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        metrics = c.get("/metrics", headers=BEARER)
        assert metrics.status_code == 200 and "# TYPE" in metrics.text


def test_client_that_does_not_trust_the_ca_refuses(tls_server: ServerProcess,
                                                   pki: Pki) -> None:
    with httpx.Client(verify=str(pki.other_ca)) as c, pytest.raises(httpx.ConnectError,
                                                                     match="CERTIFICATE"):
        c.get(f"https://{tls_server.http_url}/v2/health/live")


def test_plain_http_to_a_tls_port_fails_cleanly(tls_server: ServerProcess, pki: Pki) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # the server closes: no hang
            answer += chunk
    assert b"HTTP/1.1 200" not in answer  # nothing served in clear text
    with pytest.raises(httpx.RemoteProtocolError), httpx.Client() as c:
        c.get(f"http://{tls_server.http_url}/v2/health/live")
    channel = grpc.insecure_channel(tls_server.grpc_url)  # plaintext gRPC to a TLS port
    try:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=3)
    finally:
        channel.close()
    # ... and the server keeps serving over TLS
    with httpx.Client(verify=str(pki.ca)) as c:
        assert c.get(f"https://{tls_server.http_url}/v2/health/live").status_code == 200
    assert tls_server.proc.poll() is None
    assert not any("Traceback" in line for line in tls_server.log)


# -- mutual TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["builtin", "uvicorn"])
def mtls_server(request: pytest.FixtureRequest, pki: Pki) -> Iterator[ServerProcess]:
    s = start_server(DEMO_REPOSITORY, *tls_args(pki, mutual=True),
                     "--http-server", request.param)
    yield s
    s.stop()


def test_mutual_tls_rest(mtls_server: ServerProcess, pki: Pki) -> None:
    client = httpclient.InferenceServerClient(
        mtls_server.http_url, ssl=True, insecure=False,
        ssl_options={"ca_certs": str(pki.ca), "certfile": str(pki.client_cert),
                     "keyfile": str(pki.client_key)})
    try:
        assert _risk_http(client).shape[0] == 1  # no auth token on this server
    finally:
        client.close()
    with httpx.Client(verify=str(pki.ca)) as c, pytest.raises(
            (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        c.get(f"https://{mtls_server.http_url}/v2/health/live")  # no client certificate
    with httpx.Client(verify=str(pki.ca)) as c:  # the refusal cost the server nothing
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        with httpx.Client(verify=ctx) as ok:
            assert ok.get(f"https://{mtls_server.http_url}/v2/health/live").status_code == 200
    assert mtls_server.proc.poll() is None


def test_mutual_tls_grpc(mtls_server: ServerProcess, pki: Pki) -> None:
    assert any("client certificates required" in line for line in mtls_server.log)
    client = grpcclient.InferenceServerClient(
        mtls_server.grpc_url, ssl=True, root_certificates=str(pki.ca),
        private_key=str(pki.client_key), certificate_chain=str(pki.client_cert))
    try:
        assert _risk_grpc(client).shape[0] == 1
    finally:
        client.close()
    anonymous = grpcclient.InferenceServerClient(
        mtls_server.grpc_url, ssl=True, root_certificates=str(pki.ca))
    try:
        with pytest.raises(InferenceServerException) as err:
            anonymous.is_server_live()
        assert err.value.status() == "StatusCode.UNAVAILABLE"
    finally:
        anonymous.close()


# -- bearer token, plain transport -----------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(AUTH_TOKEN + "\n", encoding="utf-8")
    s = start_server(DEMO_REPOSITORY, "--auth-token-file", str(token_file),
                     "--model-control", "explicit", "--load-model", "risk",
                     "--control-token", CONTROL_TOKEN)
    yield s
    s.stop()


def test_rest_needs_the_token_health_and_metrics_stay_open(auth_server: ServerProcess) -> None:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(ROW.shape),
                        "data": ROW.ravel().tolist()}]}
    with httpx.Client(base_url=f"http://{auth_server.http_url}") as c:
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert c.get(path).status_code == 200, path
        for method, path, doc in (
            ("POST", "/v2/models/risk/infer", body),
            ("POST", "/predict", {"features": ROW.ravel().tolist()}),
            ("GET", "/v2/models/risk", None),
            ("GET", "/v2", None),
            ("POST", "/v2/repository/index", {}),
            ("GET", "/v2/models/stats", None),
        ):
            missing = c.request(method, path, json=doc)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"].startswith("Bearer")
            assert "'Authorization: Bearer <auth token>'" in missing.json()["error"]
            assert "missing" in missing.json()["error"]
            wrong = c.request(method, path, json=doc,
                              headers={"authorization": f"Bearer {AUTH_TOKEN}x"})
            assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
            basic = c.request(method, path, json=doc, headers={"authorization": "Basic eDp5"})
            assert basic.status_code == 401 and "is not 'Bearer" in basic.json()["error"]
            assert c.request(method, path, json=doc, headers=BEARER).status_code == 200, path
        # the control token is accepted in the auth token's place ...
        control = {"authorization": f"Bearer {CONTROL_TOKEN}"}
        infer = c.post("/v2/models/risk/infer", json=body, headers=control)
        assert infer.status_code == 200
        assert infer.json() == c.post("/v2/models/risk/infer", json=body, headers=BEARER).json()
        # ... but the auth token never grants a control call
        load = c.post("/v2/repository/models/risk/load", headers=BEARER)
        assert load.status_code == 401 and "control token" in load.json()["error"]
        assert c.post("/v2/repository/models/risk/load", headers=control).status_code == 200


def test_grpc_needs_the_token_except_health(auth_server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(auth_server.grpc_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        for call in (lambda h: _risk_grpc(client, h),
                     lambda h: client.get_model_metadata("risk", headers=h),
                     lambda h: client.is_model_ready("risk", headers=h),
                     lambda h: client.get_model_repository_index(headers=h),
                     lambda h: client.get_server_metadata(headers=h)):
            with pytest.raises(InferenceServerException) as err:
                call(None)
            assert err.value.status() == "StatusCode.UNAUTHENTICATED"
            assert "authorization" in str(err.value.message())
            with pytest.raises(InferenceServerException) as err:
                call({"authorization": "Bearer not-the-token-at-all"})
            assert err.value.status() == "StatusCode.UNAUTHENTICATED"
            assert call(BEARER) is not None
    finally:
        client.close()


def test_grpc_stream_needs_the_token(auth_server: ServerProcess) -> None:
    results: list[tuple[object, object]] = []
    inp = grpcclient.InferInput("features", list(ROW.shape), "FP32")
    inp.set_data_from_numpy(ROW)
    for headers in (None, BEARER):
        client = grpcclient.InferenceServerClient(auth_server.grpc_url)
        try:
            done: list[tuple[object, object]] = []

            def callback(result: object, error: object,
                         done: list[tuple[object, object]] = done) -> None:
                done.append((result, error))

            client.start_stream(callback=callback, headers=headers)
            try:
                client.async_stream_infer("risk", [inp], request_id="1")
            except InferenceServerException:  # the server already ended the stream
                assert headers is None and done
            client.stop_stream()
            results.append(done[0] if done else (None, None))
        finally:
            client.close()
    refused, answered = results
    assert refused[0] is None and isinstance(refused[1], InferenceServerException)
    assert refused[1].status() == "StatusCode.UNAUTHENTICATED"
    assert answered[1] is None and answered[0] is not None
