"""A client's TLS: the CA it trusts (``ca_file``), the certificate it presents for mutual TLS
(``cert_file`` + ``key_file``), read once from PEM files and checked before the first call,
and what a failed handshake reads as (:class:`~shipyard.client.errors.TlsError`, one line
that names the problem and the fix, never a raw OpenSSL traceback)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from shipyard.client.errors import InvalidArgument, TlsError

__all__ = ["TlsConfig", "handshake_error", "refused_after_handshake", "tls_config"]


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """What each transport needs: httpx's ``verify`` (a context that also holds the client's
    certificate) and gRPC's three PEM byte strings."""

    verify: bool | ssl.SSLContext
    """httpx's ``verify``: True (certifi's CAs), False (no verification) or a context."""
    root_certificates: bytes | None
    """gRPC: the PEM CA(s) to trust (None: gRPC's own roots)."""
    private_key: bytes | None
    """gRPC: the client's PEM private key (mutual TLS), or None."""
    certificate_chain: bytes | None
    """gRPC: the client's PEM certificate chain (mutual TLS), or None."""
    cert_file: str | None
    """The client certificate's path, for messages (None: the client presents none)."""


class _Encrypted(Exception):
    """The key asked for a passphrase."""


def _no_passphrase() -> bytes:
    raise _Encrypted


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{field} {str(path)!r} cannot be read: {exc.strerror}") from exc


def _load_cert_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    """``ctx.load_cert_chain`` with the client's mistakes as one-line InvalidArguments (an
    encrypted key is refused, never prompted for)."""
    try:
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise InvalidArgument(f"key_file {str(key)!r} is encrypted; pass an unencrypted PEM key "
                              "(e.g. openssl pkey -in KEY -out PLAIN)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise InvalidArgument(f"key_file {str(key)!r} is not the private key of cert_file "
                                  f"{str(cert)!r}; pass the key the certificate was issued "
                                  "for") from exc
        raise InvalidArgument(f"cert_file {str(cert)!r} / key_file {str(key)!r}: OpenSSL "
                              f"cannot load them ({exc.reason or exc}); pass a PEM certificate "
                              "(chain) and its PEM private key") from exc


def tls_config(url: str, tls: bool, grpc: bool, ca_file: str | Path | None, verify: bool,
               cert_file: str | Path | None, key_file: str | Path | None) -> TlsConfig:
    """Read and check the PEM files of a client of ``url``; InvalidArgument (one line naming
    the argument and the file) when one cannot be read or the certificate and key do not go
    together."""
    if (cert_file is None) != (key_file is None):
        given, missing = ("cert_file", "key_file") if key_file is None else ("key_file",
                                                                            "cert_file")
        raise InvalidArgument(f"{given} was given without {missing}; mutual TLS needs both "
                              "the client's PEM certificate (cert_file) and its unencrypted "
                              "PEM key (key_file)")
    if cert_file is not None and not tls:
        raise InvalidArgument(f"cert_file and key_file are for TLS, but {url} is not; use "
                              "https:// or grpcs://")
    roots = None if ca_file is None else _read(Path(ca_file), "ca_file")
    chain = key = None
    ctx: ssl.SSLContext | None = None
    if roots is not None or cert_file is not None:
        if roots is not None:
            try:
                ctx = ssl.create_default_context(cadata=roots.decode("ascii", "replace"))
            except ssl.SSLError as exc:
                raise InvalidArgument(f"ca_file {str(ca_file)!r}: OpenSSL cannot load it "
                                      f"({exc.reason or exc}); pass the PEM certificate(s) of "
                                      "the CA that signed the server's certificate") from exc
        else:
            ctx = httpx.create_ssl_context(verify=verify, trust_env=False)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    if cert_file is not None and key_file is not None:
        assert ctx is not None
        chain = _read(Path(cert_file), "cert_file")
        key = _read(Path(key_file), "key_file")
        _load_cert_chain(ctx, Path(cert_file), Path(key_file))
    if grpc:
        return TlsConfig(verify, roots, key, chain, None if cert_file is None else str(cert_file))
    return TlsConfig(verify if ctx is None else ctx, None, None, None,
                     None if cert_file is None else str(cert_file))


#: OpenSSL's reasons, as Python's ssl and gRPC's BoringSSL spell them, of a handshake that
#: failed for good (trying again cannot help), and what each means
_VERIFY = re.compile(r"CERTIFICATE_VERIFY_FAILED\]?:?\s*(?:certificate verify failed:\s*)?"
                     r"([^(:\n]*)", re.IGNORECASE)
_ALERTS = ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "CERTIFICATE_REQUIRED", "TLSV1_ALERT_UNKNOWN_CA",
           "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
           "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE")


def handshake_error(where: str, detail: str, cert_file: str | None) -> TlsError | None:
    """The TlsError of a failure whose text shows a TLS handshake that failed for good: the
    server's certificate not trusted, not for this host, or this client's refused; None for
    anything else."""
    if m := _VERIFY.search(detail):
        reason = m.group(1).strip().rstrip(".") or "certificate verify failed"
        if "mismatch" in reason.lower():
            return TlsError(f"TLS handshake with {where} failed: the server's certificate is "
                            f"not issued for this host ({reason}); connect by a name or "
                            "address the certificate lists")
        return TlsError(f"TLS handshake with {where} failed: this client does not trust the "
                        f"server's certificate ({reason}); pass the PEM CA that signed it as "
                        "ca_file (CLI: --ca-file)")
    upper = detail.upper()
    for alert in _ALERTS:
        if alert in upper:
            return refused_after_handshake(where, cert_file, f" ({alert})")
    if "WRONG_VERSION_NUMBER" in upper or "PACKET_LENGTH_TOO_LONG" in upper:
        return TlsError(f"TLS handshake with {where} failed: the server does not speak TLS "
                        "there; use http:// or grpc:// (or its TLS port)")
    return None


def refused_after_handshake(where: str, cert_file: str | None, alert: str = "") -> TlsError:
    """A server that closed the connection right after the TLS handshake, before its first
    answer: mutual TLS refusing this client's certificate, or the absence of one."""
    if cert_file is None:
        return TlsError(f"the server at {where} refused the connection after the TLS "
                        f"handshake{alert}: it requires a client certificate (mutual TLS, the "
                        "server's --tls-client-ca); pass cert_file= and key_file= (CLI: "
                        "--cert-file/--key-file)")
    return TlsError(f"the server at {where} refused the connection after the TLS "
                    f"handshake{alert}: it does not accept this client's certificate "
                    f"{cert_file!r}; pass one signed by the CA of the server's --tls-client-ca")
