"""The REST transport (KServe V2 over HTTP, binary tensor data extension), sync and async, on
one ``httpx`` client each (keep-alive: one connection serves call after call)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from shipyard.client._retry import check_in_time
from shipyard.client._tls import TlsConfig, handshake_error, refused_after_handshake
from shipyard.client._vocab import OutputRequest
from shipyard.client.errors import (
    ClientError,
    DeadlineExceeded,
    Unavailable,
    error_for_http,
)
from shipyard.protocol.errors import InvalidInput
from shipyard.protocol.types import Array, datatype_of
from shipyard.protocol.wire import decode_json_data, decode_raw, encode_raw

__all__ = ["AsyncRestTransport", "RestTransport"]

_JSON = {"Content-Type": "application/json"}


def _model_path(model: str, version: str) -> str:
    base = f"/v2/models/{quote(model, safe='')}"
    return f"{base}/versions/{quote(version, safe='')}" if version else base


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _error(response: httpx.Response) -> ClientError:
    """The typed exception of an error answer, with the server's message."""
    text = response.text
    message = text.strip() or response.reason_phrase or f"HTTP {response.status_code}"
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        message = doc["error"]
    return error_for_http(response.status_code, message,
                          _retry_after(response.headers.get("retry-after")))


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise _error(response)
    return response


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(_check(response).content)
    except ValueError as exc:
        raise ClientError(f"the server answered {response.request.url.path} with a body that "
                          f"is not JSON: {exc}", status=response.status_code) from exc


def _ready(response: httpx.Response) -> bool:
    """A health answer: 200 ready, 503 not ready (with a body), anything else an error."""
    if response.status_code == 200:
        return True
    if response.status_code == 503 and response.headers.get("content-type", "").startswith(
            "application/json") and "ready" in response.text:
        return False
    raise _error(response)


def encode_infer(inputs: Mapping[str, Array], outputs: list[OutputRequest] | None,
                 parameters: Mapping[str, Any] | None, request_id: str,
                 timeout_s: float | None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``POST .../infer``: every input and output binary."""
    blobs = []
    tensors = []
    for name, array in inputs.items():
        blob = encode_raw(array)
        blobs.append(blob)
        tensors.append({"name": name, "datatype": datatype_of(array),
                        "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(blob)}})
    doc: dict[str, Any] = {"inputs": tensors,
                           "parameters": {**(parameters or {}), "binary_data_output": True}}
    if request_id:
        doc["id"] = request_id
    if outputs is not None:
        doc["outputs"] = [
            {"name": o.name, "parameters": {"binary_data": True, **(
                {"classification": o.classification} if o.classification else {})}}
            for o in outputs]
    header = json.dumps(doc, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}
    if timeout_s is not None:
        headers["Timeout-Ms"] = str(max(1, int(timeout_s * 1000)))
    return b"".join([header, *blobs]), headers


def decode_infer(response: httpx.Response) -> dict[str, Array]:
    """The outputs of an infer answer (binary parts as zero-copy, read-only views)."""
    body = _check(response).content
    length = response.headers.get("inference-header-content-length")
    hlen = int(length) if length is not None else len(body)
    try:
        doc = json.loads(body[:hlen])
        out: dict[str, Array] = {}
        pos = hlen
        view = memoryview(body)
        for o in doc.get("outputs", []):
            name, datatype, shape = o["name"], o["datatype"], tuple(o["shape"])
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                out[name] = decode_raw(name, datatype, shape, view[pos:pos + size])
                pos += size
            else:
                out[name] = decode_json_data(name, datatype, shape, o.get("data", []))
        return out
    except (ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise ClientError(f"the server's infer answer is malformed: {exc}",
                          status=response.status_code) from exc


def _index(doc: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in doc] if isinstance(doc, list) else []


class _Base:
    """What the sync and async REST transports share: URLs, headers, how errors read."""

    def __init__(self, url: str, token: str | None, control_token: str | None,
                 tls: TlsConfig | None) -> None:
        self.url = url.rstrip("/")
        self._tls = tls
        #: whether any answer came yet (a server that closes before the first one, right
        #: after the TLS handshake, is mutual TLS refusing this client)
        self._answered = False
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        control = control_token or token
        self._control = {"Authorization": f"Bearer {control}"} if control else {}

    def _failure(self, exc: httpx.HTTPError, timeout_s: float | None) -> ClientError:
        if self.url.startswith("https://") and not isinstance(exc, httpx.TimeoutException):
            cert = None if self._tls is None else self._tls.cert_file
            detail = str(exc)
            if (tls := handshake_error(self.url, detail, cert)) is not None:
                return tls
            if not self._answered and (
                    isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError)
                    or "UNEXPECTED_EOF" in detail or "EOF occurred" in detail):
                return refused_after_handshake(self.url, cert)
        if isinstance(exc, httpx.TimeoutException):
            return DeadlineExceeded(f"no answer from {self.url} within {timeout_s:.3g} s "
                                    f"({type(exc).__name__})" if timeout_s is not None else
                                    f"no answer from {self.url} ({type(exc).__name__})")
        return Unavailable(f"cannot reach the server at {self.url}: {exc or type(exc).__name__}")


def _client_kwargs(url: str, tls: TlsConfig | None, headers: dict[str, str]) -> dict[str, Any]:
    return {"base_url": url, "headers": headers, "verify": True if tls is None else tls.verify,
            "timeout": None, "trust_env": False}


class RestTransport(_Base):
    """Blocking REST calls on one ``httpx.Client``."""

    def __init__(self, url: str, *, token: str | None = None, control_token: str | None = None,
                 tls: TlsConfig | None = None) -> None:
        super().__init__(url, token, control_token, tls)
        self.http = httpx.Client(**_client_kwargs(self.url, tls, self._headers))

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _send(self, method: str, path: str, timeout_s: float | None, **kw: Any
              ) -> httpx.Response:
        start = time.monotonic()
        try:
            response = self.http.request(method, path, timeout=timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise self._failure(exc, timeout_s) from exc
        self._answered = True
        check_in_time(start, timeout_s, self.url)
        return response

    def live(self, timeout_s: float | None) -> bool:
        return _ready(self._send("GET", "/v2/health/live", timeout_s))

    def ready(self, timeout_s: float | None) -> bool:
        return _ready(self._send("GET", "/v2/health/ready", timeout_s))

    def server_metadata(self, timeout_s: float | None) -> dict[str, Any]:
        return dict(_json(self._send("GET", "/v2", timeout_s)))

    def model_metadata(self, model: str, version: str, timeout_s: float | None
                       ) -> dict[str, Any]:
        return dict(_json(self._send("GET", _model_path(model, version), timeout_s)))

    def model_ready(self, model: str, version: str, timeout_s: float | None) -> bool:
        return _ready(self._send("GET", _model_path(model, version) + "/ready", timeout_s))

    def infer(self, model: str, version: str, inputs: Mapping[str, Array],
              outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
              request_id: str, timeout_s: float | None) -> dict[str, Array]:
        body, headers = encode_infer(inputs, outputs, parameters, request_id, timeout_s)
        return decode_infer(self._send("POST", _model_path(model, version) + "/infer",
                                       timeout_s, content=body, headers=headers))

    def repository_index(self, timeout_s: float | None) -> list[dict[str, Any]]:
        return _index(_json(self._send("POST", "/v2/repository/index", timeout_s,
                                       content=b"{}", headers={**_JSON, **self._control})))

    def load(self, model: str, timeout_s: float | None) -> None:
        _check(self._send("POST", f"/v2/repository/models/{quote(model, safe='')}/load",
                          timeout_s, content=b"{}", headers={**_JSON, **self._control}))

    def unload(self, model: str, timeout_s: float | None) -> None:
        _check(self._send("POST", f"/v2/repository/models/{quote(model, safe='')}/unload",
                          timeout_s, content=b"{}", headers={**_JSON, **self._control}))


class AsyncRestTransport(_Base):
    """Awaitable REST calls on one ``httpx.AsyncClient``."""

    def __init__(self, url: str, *, token: str | None = None, control_token: str | None = None,
                 tls: TlsConfig | None = None) -> None:
        super().__init__(url, token, control_token, tls)
        self.http = httpx.AsyncClient(**_client_kwargs(self.url, tls, self._headers))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def _send(self, method: str, path: str, timeout_s: float | None, **kw: Any
                    ) -> httpx.Response:
        start = time.monotonic()
        try:
            response = await self.http.request(method, path, timeout=timeout_s, **kw)
        except httpx.HTTPError as exc:
            raise self._failure(exc, timeout_s) from exc
        self._answered = True
        check_in_time(start, timeout_s, self.url)
        return response

    async def live(self, timeout_s: float | None) -> bool:
        return _ready(await self._send("GET", "/v2/health/live", timeout_s))

    async def ready(self, timeout_s: float | None) -> bool:
        return _ready(await self._send("GET", "/v2/health/ready", timeout_s))

    async def server_metadata(self, timeout_s: float | None) -> dict[str, Any]:
        return dict(_json(await self._send("GET", "/v2", timeout_s)))

    async def model_metadata(self, model: str, version: str, timeout_s: float | None
                             ) -> dict[str, Any]:
        return dict(_json(await self._send("GET", _model_path(model, version), timeout_s)))

    async def model_ready(self, model: str, version: str, timeout_s: float | None) -> bool:
        return _ready(await self._send("GET", _model_path(model, version) + "/ready",
                                       timeout_s))

    async def infer(self, model: str, version: str, inputs: Mapping[str, Array],
                    outputs: list[OutputRequest] | None, parameters: Mapping[str, Any] | None,
                    request_id: str, timeout_s: float | None) -> dict[str, Array]:
        body, headers = encode_infer(inputs, outputs, parameters, request_id, timeout_s)
        return decode_infer(await self._send("POST", _model_path(model, version) + "/infer",
                                             timeout_s, content=body, headers=headers))

    async def repository_index(self, timeout_s: float | None) -> list[dict[str, Any]]:
        return _index(_json(await self._send("POST", "/v2/repository/index", timeout_s,
                                             content=b"{}", headers={**_JSON, **self._control})))

    async def load(self, model: str, timeout_s: float | None) -> None:
        _check(await self._send("POST", f"/v2/repository/models/{quote(model, safe='')}/load",
                                timeout_s, content=b"{}", headers={**_JSON, **self._control}))

    async def unload(self, model: str, timeout_s: float | None) -> None:
        _check(await self._send(
            "POST", f"/v2/repository/models/{quote(model, safe='')}/unload", timeout_s,
            content=b"{}", headers={**_JSON, **self._control}))
