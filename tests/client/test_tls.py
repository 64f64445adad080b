"""``shipyard.client`` over TLS and mutual TLS, against real ``shipyard serve`` processes
started with ``--tls-cert/--tls-key`` (and ``--tls-client-ca``): sync and async, REST (https)
and gRPC (grpcs), the demo ``risk`` and ``sms`` models answering as the server's own
``/v2/models/{m}/predict`` does; a client that does not trust the CA, or that mutual TLS
refuses, gets one :class:`TlsError` naming the problem and the fix (at once: never retried,
never a hang, never a raw ssl traceback); and ``shipyard health`` / ``predict`` with
``--ca-file`` / ``--cert-file`` / ``--key-file``.

The certificates come from tests/tls_support.py (shared with tests/serving/test_tls_auth.py).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from cli_support import one_error_line, shipyard
from conftest import DEMO_REPOSITORY, ServerProcess, start_server
from cryptography.hazmat.primitives import serialization
from sklearn.datasets import load_breast_cancer
from tls_support import Pki, make_pki, tls_args

from shipyard.client import (
    AsyncClient,
    Client,
    InvalidArgument,
    Prediction,
    TlsError,
    Unavailable,
)

pytestmark = pytest.mark.timeout(180)

TEXTS = ["WINNER!! You have won a 1000 pound prize. Call 09061701461 to claim now",
         "Are we still on for lunch tomorrow? I'll bring the notes"]
ROWS = load_breast_cancer().data[:6].astype(np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """risk and sms of the demo repository (two models start faster than four)."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("risk", "sms"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    return root


@pytest.fixture(scope="module")
def tls_server(pki: Pki, repository: Path) -> Iterator[ServerProcess]:
    s = start_server(repository, *tls_args(pki))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, repository: Path) -> Iterator[ServerProcess]:
    s = start_server(repository, *tls_args(pki, mutual=True))
    yield s
    s.stop()


def _urls(server: ServerProcess) -> dict[str, str]:
    return {"rest": f"https://{server.http_url}", "grpc": f"grpcs://{server.grpc_url}"}


def _reference(server: ServerProcess, pki: Pki, *, mutual: bool) -> dict[str, Any]:
    """The server's own predict route over https (httpx, the standard library's ssl): risk's
    scores and sms's labels and probabilities, what the client must reproduce."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if mutual:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    with httpx.Client(base_url=f"https://{server.http_url}", verify=ctx, timeout=30) as c:
        risk = c.post("/v2/models/risk/predict", json={"features": ROWS.tolist()})
        sms = c.post("/v2/models/sms/predict", json={"text": TEXTS})
    assert risk.status_code == 200 and sms.status_code == 200, (risk.text, sms.text)
    return {"risk": risk.json()["result"], "sms": sms.json()}


def _check(risk: list[Prediction], scores: np.ndarray, sms: list[Prediction],
           reference: dict[str, Any]) -> None:
    np.testing.assert_allclose([p.value for p in risk], reference["risk"], rtol=1e-6)
    np.testing.assert_allclose(scores[:, 0], reference["risk"], rtol=1e-6)
    assert [p.label for p in sms] == reference["sms"]["labels"] == ["spam", "ham"]
    for p, theirs in zip(sms, reference["sms"]["predictions"], strict=True):
        np.testing.assert_allclose([float(lab.probability or 0) for lab in p.labels],
                                   [t["probability"] for t in theirs], atol=2e-5)


def _sync(url: str, **tls: Any) -> tuple[list[Prediction], np.ndarray, list[Prediction]]:
    with Client(url, **tls) as client:
        assert client.live() and client.ready()
        return (client.predict("risk", ROWS), client.infer("risk", {"features": ROWS})["score"],
                client.predict("sms", TEXTS))


def _async(url: str, **tls: Any) -> tuple[list[Prediction], np.ndarray, list[Prediction]]:
    async def run() -> tuple[list[Prediction], np.ndarray, list[Prediction]]:
        async with AsyncClient(url, **tls) as client:
            assert await client.live() and await client.ready()
            risk, out, sms = await asyncio.gather(
                client.predict("risk", ROWS), client.infer("risk", {"features": ROWS}),
                client.predict("sms", TEXTS))
            return risk, out["score"], sms
    return asyncio.run(run())


# -- TLS ------------------------------------------------------------------------------------


def test_tls_sync_and_async_rest_and_grpc(tls_server: ServerProcess, pki: Pki) -> None:
    reference = _reference(tls_server, pki, mutual=False)
    for url in _urls(tls_server).values():
        for call in (_sync, _async):
            _check(*call(url, ca_file=pki.ca), reference)


def _refused(make: Any, match: str) -> TlsError:
    """``make()`` must raise TlsError matching ``match`` at once, after one attempt."""
    t0 = time.monotonic()
    with pytest.raises(TlsError, match=match) as info:
        make()
    assert time.monotonic() - t0 < 3, "a failed handshake is not retried nor waited on"
    error = info.value
    assert isinstance(error, Unavailable) and error.attempts == 1 and error.status is None
    assert "\n" not in error.message and "Traceback" not in error.message
    assert "_ssl.c" not in error.message  # OpenSSL's reason, not its source line
    return error


def test_a_client_that_does_not_trust_the_ca_gets_a_tls_error(tls_server: ServerProcess,
                                                              pki: Pki) -> None:
    for url in _urls(tls_server).values():
        for ca in (pki.other_ca, None):  # the unrelated CA; the default roots
            def sync(url: str = url, ca: Path | None = ca) -> Any:
                return _sync(url, ca_file=ca, timeout_s=20)

            def asynchronous(url: str = url, ca: Path | None = ca) -> Any:
                return _async(url, ca_file=ca, timeout_s=20)

            for make in (sync, asynchronous):
                error = _refused(make, "does not trust the server's certificate")
                assert url in error.message and "ca_file" in error.message
                assert "unable to get local issuer certificate" in error.message


def test_a_tls_url_to_a_plain_server_names_the_scheme(demo_server: ServerProcess,
                                                      pki: Pki) -> None:
    for url in (f"https://{demo_server.http_url}", f"grpcs://{demo_server.grpc_url}"):
        error = _refused(lambda url=url: _sync(url, ca_file=pki.ca, timeout_s=20),
                         "does not speak TLS")
        assert "http:// or grpc://" in error.message


# -- mutual TLS -----------------------------------------------------------------------------


def test_mutual_tls_needs_a_certificate_the_ca_signed(mtls_server: ServerProcess,
                                                      pki: Pki) -> None:
    reference = _reference(mtls_server, pki, mutual=True)
    for url in _urls(mtls_server).values():
        for call in (_sync, _async):
            error = _refused(lambda call=call, url=url: call(url, ca_file=pki.ca),
                             "requires a client certificate")
            assert "cert_file" in error.message and "key_file" in error.message
            # a certificate the server's client CA did not sign (a self-signed one)
            error = _refused(lambda call=call, url=url: call(
                url, ca_file=pki.ca, cert_file=pki.other_ca, key_file=pki.other_key),
                "does not accept this client's certificate")
            assert str(pki.other_ca) in error.message
            _check(*call(url, ca_file=pki.ca, cert_file=pki.client_cert,
                         key_file=pki.client_key), reference)
    assert mtls_server.proc.poll() is None  # the refusals cost the server nothing


def test_certificate_arguments_are_checked_before_any_call(pki: Pki, tmp_path: Path) -> None:
    url = "https://127.0.0.1:1"  # nothing listens: every check happens before a connection
    for kind in (Client, AsyncClient):
        with pytest.raises(InvalidArgument, match=r"cert_file '.*missing\.pem' cannot be read: "
                                                  "No such file"):
            kind(url, cert_file=tmp_path / "missing.pem", key_file=pki.client_key)
        with pytest.raises(InvalidArgument, match=r"key_file '.*nope\.key' cannot be read"):
            kind("grpcs://127.0.0.1:1", cert_file=pki.client_cert, key_file=tmp_path / "nope.key")
        with pytest.raises(InvalidArgument, match="cert_file was given without key_file"):
            kind(url, cert_file=pki.client_cert)
        with pytest.raises(InvalidArgument, match="key_file was given without cert_file"):
            kind(url, key_file=pki.client_key)
        with pytest.raises(InvalidArgument, match=r"key_file '.*other\.key' is not the private "
                                                  r"key of cert_file '.*client\.pem'"):
            kind("grpcs://127.0.0.1:1", cert_file=pki.client_cert, key_file=pki.other_key)
        with pytest.raises(InvalidArgument, match=r"are for TLS, but http://127\.0\.0\.1:1 is not"):
            kind("http://127.0.0.1:1", cert_file=pki.client_cert, key_file=pki.client_key)
        with pytest.raises(InvalidArgument, match=r"ca_file '.*client\.key': OpenSSL cannot "
                                                  "load it"):
            kind(url, ca_file=pki.client_key)
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(InvalidArgument, match=r"key_file '.*locked\.key' is encrypted"):
        Client(url, cert_file=pki.client_cert, key_file=locked)  # refused, never prompted


# -- the command line -----------------------------------------------------------------------


def test_health_and_predict_commands_over_tls_and_mutual_tls(
        tls_server: ServerProcess, mtls_server: ServerProcess, pki: Pki,
        tmp_path: Path) -> None:
    for url in _urls(tls_server).values():
        ok = shipyard("health", "--url", url, "--ca-file", str(pki.ca), "--model", "sms")
        assert ok.returncode == 0, ok
        assert "live yes, ready yes" in ok.stdout and "model 'sms': ready yes" in ok.stdout
        line = one_error_line(shipyard("health", "--url", url, "--ca-file", str(pki.other_ca)))
        assert "does not trust the server's certificate" in line and "--ca-file" in line
    mtls = _urls(mtls_server)
    line = one_error_line(shipyard("health", "--url", mtls["rest"], "--ca-file", str(pki.ca)))
    assert "requires a client certificate" in line and "--cert-file/--key-file" in line
    line = one_error_line(shipyard("health", "--url", mtls["grpc"], "--ca-file", str(pki.ca),
                                   "--cert-file", str(pki.client_cert)))
    assert "cert_file was given without key_file" in line
    cert = ("--ca-file", str(pki.ca), "--cert-file", str(pki.client_cert),
            "--key-file", str(pki.client_key))
    for url in mtls.values():
        ok = shipyard("health", "--url", url, *cert, "--model", "risk")
        assert ok.returncode == 0 and "model 'risk': ready yes" in ok.stdout, ok
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    done = shipyard("predict", mtls["grpc"], "--model", "sms", "--data", str(texts),
                    "-o", str(out), "--quiet", *cert)
    assert done.returncode == 0, done
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + len(TEXTS) and rows[1].split(",")[1] == "spam", rows
    line = one_error_line(shipyard("predict", mtls["rest"], "--model", "sms", "--data",
                                   str(texts), "--ca-file", str(pki.ca)))
    assert "requires a client certificate" in line
