"""Test certificates, made with ``cryptography``, for the TLS tests of the server
(tests/serving/test_tls_auth.py) and of the client (tests/client/test_tls.py): a CA, a server
certificate for 127.0.0.1 / localhost signed by it, a client certificate signed by it, and a
second, unrelated CA (a client that trusts only that one must refuse the server)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki", "tls_args"]


@dataclass(frozen=True)
class Pki:
    """PEM files of one test run."""

    ca: Path
    """The CA that signed the server's and the client's certificates."""
    server_cert: Path
    """The server's certificate (127.0.0.1, localhost), signed by :attr:`ca`."""
    server_key: Path
    """Its unencrypted key."""
    client_cert: Path
    """A client certificate (extended key usage: client auth), signed by :attr:`ca`."""
    client_key: Path
    """Its unencrypted key."""
    other_ca: Path
    """An unrelated, self-signed CA that signed nothing here."""
    other_key: Path
    """The unrelated CA's key (a key that is not the server certificate's)."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    elif server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None,
           key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        assert key is not None
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def make_pki(folder: Path) -> Pki:
    """A fresh CA, server and client certificates and an unrelated CA, as PEM files in
    ``folder``."""
    ca_key, server_key, client_key, other_key = _key(), _key(), _key(), _key()
    ca = _cert("Shipyard test CA", ca_key, None, ca_key, ca=True)
    other = _cert("Unrelated CA", other_key, None, other_key, ca=True)
    return Pki(
        ca=_write(folder / "ca.pem", ca),
        server_cert=_write(folder / "server.pem",
                           _cert("127.0.0.1", server_key, ca, ca_key, server=True)),
        server_key=_write(folder / "server.key", key=server_key),
        client_cert=_write(folder / "client.pem", _cert("test client", client_key, ca, ca_key)),
        client_key=_write(folder / "client.key", key=client_key),
        other_ca=_write(folder / "other-ca.pem", other),
        other_key=_write(folder / "other.key", key=other_key),
    )


def tls_args(pki: Pki, *, mutual: bool = False) -> list[str]:
    """``shipyard serve``'s TLS options for ``pki`` (with ``--tls-client-ca``: mutual TLS)."""
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    return [*args, "--tls-client-ca", str(pki.ca)] if mutual else args
