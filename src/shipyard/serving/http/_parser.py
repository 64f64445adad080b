"""The parsing half of a connection of Shipyard's HTTP/1.1 server: bytes in through httptools
(llhttp), the header-section limit, and one :class:`Request` with its ASGI scope out per
request; what the parser rejects becomes the connection's last answer (400, 431)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

import httptools

from shipyard.serving.http._request import Request, error_answer
from shipyard.serving.http.asgi import Scope

if TYPE_CHECKING:
    from shipyard.serving.http._protocol import HttpProtocol

__all__ = ["RequestParser"]

log = logging.getLogger("shipyard.http.server")

_ASGI = {"version": "3.0", "spec_version": "2.3"}


class _HeadersTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class RequestParser:
    """Feeds one connection's bytes to httptools and hands each parsed request to it."""

    def __init__(self, conn: HttpProtocol, max_header_bytes: int) -> None:
        self.conn = conn
        self.max_header_bytes = max_header_bytes
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        # the header-section limit, counted twice: exactly, from the parser's callbacks (a
        # section that ends within one read), and from the bytes read while a section is open
        # (httptools holds a header line until it ends, so an endless line never calls back)
        self.header_bytes = 0
        self.in_headers = True  # the next bytes belong to a request's header section
        self.raw_header_bytes = 0
        self.headers_since: float | None = None  # a header section began then, not yet ended

    def feed(self, data: bytes) -> None:
        """Parse ``data``; when the parser cannot go on, stop the connection's parsing with
        the answer that says why."""
        conn = self.conn
        if self.in_headers:  # bytes of a header section that has not ended (at least)
            self.raw_header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Shipyard speaks HTTP/1.1 only: answer the request as plain HTTP, then close
            # (the bytes after it belong to the other protocol)
            conn.stop_parsing(None)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadersTooLarge):
                conn.stop_parsing(self._too_large())
            elif isinstance(cause, _BadRequest):
                conn.stop_parsing(self._error(400, f"malformed HTTP request: {cause}"))
            else:
                log.exception("HTTP parser callback failed")
                conn.stop_parsing(self._error(500, "internal error while parsing the request"))
        except httptools.HttpParserError as exc:
            conn.stop_parsing(self._error(400, f"malformed HTTP request: {exc}"))
        else:
            # httptools holds a header line until it ends: an endless one is caught here
            if self.in_headers and self.raw_header_bytes > self.max_header_bytes:
                conn.stop_parsing(self._too_large())

    def _error(self, status: int, message: str) -> bytes:
        return error_answer(status, message, self.conn.server.date)

    def _too_large(self) -> bytes:
        return self._error(431, f"request header section exceeds {self.max_header_bytes} "
                           "bytes; send fewer or shorter headers")

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.headers_since = self.conn.last_read

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise _BadRequest(f"invalid request target {self.url[:100]!r}") from None
        raw_path: bytes = parsed.path or b"/"
        if b"%" in raw_path or not raw_path.isascii():
            path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
        else:
            path = raw_path.decode("ascii")
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _BadRequest(f"HTTP/{version} is not supported here; use HTTP/1.1")
        self.in_headers = False
        self.raw_header_bytes = 0
        self.headers_since = None
        headers = self.headers
        expect = False
        if version == "1.1":  # HTTP/1.0 has no 100 (Continue): RFC 9110 10.1.1
            for name, value in headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    expect = True
        conn = self.conn
        scope: Scope = {
            "type": "http", "asgi": _ASGI, "http_version": version,
            "method": parser.get_method().decode("ascii", "replace"),
            "scheme": conn.server.scheme,
            "path": path, "raw_path": raw_path, "query_string": parsed.query or b"",
            "root_path": "", "headers": headers, "client": conn.client,
            "server": conn.sockname,
        }
        conn.request_parsed(Request(conn, scope, parser.should_keep_alive(), expect))

    def on_body(self, body: bytes) -> None:
        self.conn.body_parsed(body)

    def on_message_complete(self) -> None:
        self.in_headers = True
        self.raw_header_bytes = 0
        self.conn.message_complete()
