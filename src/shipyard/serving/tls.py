"""TLS for both frontends: the server's certificate and key, and optionally a client CA
(mutual TLS), read and checked once at start-up (protocol-free: the standard library's
:mod:`ssl` only; the gRPC frontend builds its credentials from the same bytes).

:func:`load_tls` turns the settings into :class:`TlsFiles` or raises
:class:`~shipyard.serving.errors.InvalidInput` with one line naming the flag and the fix
(a file that cannot be read, a file that is not PEM, a key that does not match the
certificate, an encrypted key); the CLI prints it and exits 2.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from shipyard.serving.errors import InvalidInput

__all__ = ["TlsFiles", "load_tls"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of a TLS server, read and checked (see :func:`load_tls`)."""

    cert_path: Path
    """The server's certificate chain (``--tls-cert``): its own certificate first."""
    key_path: Path
    """The private key of that certificate (``--tls-key``), unencrypted."""
    client_ca_path: Path | None
    """CA certificates that sign the clients' certificates (``--tls-client-ca``); when set,
    a client without such a certificate is refused during the handshake (mutual TLS)."""
    cert: bytes
    """The bytes of ``cert_path``."""
    key: bytes
    """The bytes of ``key_path``."""
    client_ca: bytes | None
    """The bytes of ``client_ca_path``."""

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by the client CA."""
        return self.client_ca is not None

    def ssl_context(self, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
        """A server-side context (TLS 1.2 or newer) for the REST frontend."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path, password=_encrypted)
        if self.client_ca_path is not None:
            ctx.load_verify_locations(cafile=self.client_ca_path)
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def _encrypted() -> NoReturn:
    """The password callback: never prompt on the terminal for an encrypted key."""
    raise _EncryptedKey


class _EncryptedKey(Exception):
    pass


def _read(path: Path, flag: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"{flag} {str(path)!r}: cannot read it ({exc.strerror or exc}); pass the path of "
            f"{what}") from exc
    if b"-----BEGIN " not in data:
        raise InvalidInput(f"{flag} {str(path)!r} is not a PEM file (no '-----BEGIN' line); "
                           f"pass {what} in PEM format")
    return data


def load_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsFiles | None:
    """The checked TLS files, or None when TLS is off (no ``cert``); raises InvalidInput with
    the flag and the fix for every mistake."""
    if cert is None and key is None:
        if client_ca is not None:
            raise InvalidInput("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS "
                               "is a TLS server that also checks its clients")
        return None
    if cert is None:
        raise InvalidInput("--tls-key was given without --tls-cert; pass the server's "
                           "certificate with --tls-cert FILE")
    if key is None:
        raise InvalidInput("--tls-cert was given without --tls-key; pass the certificate's "
                           "private key with --tls-key FILE")
    files = TlsFiles(
        cert_path=cert, key_path=key, client_ca_path=client_ca,
        cert=_read(cert, "--tls-cert", "the server's PEM certificate (chain)"),
        key=_read(key, "--tls-key", "the certificate's PEM private key"),
        client_ca=None if client_ca is None else _read(
            client_ca, "--tls-client-ca", "the PEM certificate(s) of the CA that signs clients"),
    )
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        probe.load_cert_chain(cert, key, password=_encrypted)
    except _EncryptedKey:
        raise InvalidInput(f"--tls-key {str(key)!r} is encrypted; pass an unencrypted key "
                           "(e.g. openssl pkey -in KEY -out PLAIN) kept readable only by the "
                           "server's user") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise InvalidInput(
                f"--tls-key {str(key)!r} is not the private key of --tls-cert {str(cert)!r}; "
                "pass the key the certificate was issued for") from exc
        raise InvalidInput(
            f"--tls-cert {str(cert)!r} / --tls-key {str(key)!r}: OpenSSL cannot load them "
            f"({exc.reason or exc}); pass a PEM certificate and its PEM private key") from exc
    if client_ca is not None:
        try:
            probe.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise InvalidInput(
                f"--tls-client-ca {str(client_ca)!r}: OpenSSL cannot load it "
                f"({exc.reason or exc}); pass the PEM certificate(s) of the CA that signs "
                "the clients' certificates") from exc
    return files
