"""Unit tests of Shipyard's own HTTP/1.1 server (``shipyard.serving.http.server``), and of
uvicorn as the alternative (``http_server: uvicorn``, ``shipyard.serving.http.uvicorn_server``).

Each test starts an :class:`HttpServer` (or a ``UvicornServer``) in-process, on a socket bound
to an ephemeral port of 127.0.0.1, in an event loop of its own (uvloop, as in production, and
the stock asyncio loop), under an overall timeout. Every test runs against both servers except
those marked ``@builtin_only(reason)``: behaviour uvicorn lacks (header-section limit and 431,
408 timeouts, the lingering close) or where it answers differently (HTTP/1.0 keep-alive,
pipelined garbage); where a test runs on both but uvicorn answers a detail differently (framing
of an answer the app gave no length, its own plain-text error answers), the test says so.

The server runs a small ASGI app written for that test (never the Shipyard model app: that one
runs on both servers in test_protocols.py and test_errors.py), and the test talks to it over
real TCP connections, writing raw request bytes and parsing the raw response bytes itself
(status line, headers, ``content-length`` or chunked framing) so that exactly what goes over
the wire is checked: statuses, bodies, header values, the order of pipelined answers, and
whether and when the server closes a connection.

Covered: keep-alive and ``Connection: close`` (HTTP/1.1 and 1.0), HEAD, pipelining, 400 / 431
for what the parser rejects, request bodies (``content-length``, chunked, larger than
``HIGH_WATER``, ``Expect: 100-continue``), chunked streaming answers, apps that fail, clients
that hang up, graceful shutdown, the keep-alive idle timeout, 408 for slow header sections and
stalled bodies, the lingering close after an error answer, and the ASGI scope; also the
server bugs these tests found (since fixed): shutdown leaving idle connections open or cutting
an answer still being flushed, an endless header line never answered 431, two answers to a
request whose body the parser rejected, HTTP/2.0 and 0.9 request lines reaching the app, 100
(Continue) sent to HTTP/1.0 clients, and framing headers on 204 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import hashlib
import json
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import uvloop

from shipyard.serving.http._protocol import HIGH_WATER, MAX_PIPELINED, HttpProtocol
from shipyard.serving.http.server import HttpServer
from shipyard.serving.http.uvicorn_server import UvicornServer

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Main = Callable[[], Awaitable[None]]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


# ---------------------------------------------------------------------------------------------
# servers and event loops
# ---------------------------------------------------------------------------------------------

#: the HTTP server that serving() starts: Shipyard's own, or uvicorn (http_server: uvicorn)
_SERVER_KIND: contextvars.ContextVar[str] = contextvars.ContextVar("server_kind")
T = TypeVar("T")


def builtin_only(reason: str) -> Callable[[T], T]:
    """Run the test against Shipyard's own server only: ``reason`` says what uvicorn lacks or
    does differently (every other test runs against both)."""

    def mark(test: T) -> T:
        test.builtin_only = reason  # type: ignore[attr-defined]
        return test

    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_kind" in metafunc.fixturenames:
        only = getattr(metafunc.function, "builtin_only", None)
        metafunc.parametrize("server_kind", ["builtin"] if only else ["builtin", "uvicorn"])


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest, server_kind: str) -> Callable[..., None]:
    """``run(main, timeout=10)``: run the coroutine function ``main`` in a fresh event loop,
    where serving() starts the server of this test's ``server_kind``."""

    def runner(main: Main, timeout: float = 10.0) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(main(), timeout)

        token = _SERVER_KIND.set(server_kind)
        try:
            if request.param == "uvloop":
                uvloop.run(bounded())
            else:
                asyncio.run(bounded())
        finally:
            _SERVER_KIND.reset(token)

    return runner


# ---------------------------------------------------------------------------------------------
# the client side: raw connections and a strict response parser
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]  # (lower-cased name, value) in wire order
    body: bytes
    chunked: bool = False

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (which must not appear more than once), or None."""
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    def json(self) -> Any:
        assert self.header("content-type") == "application/json"
        return json.loads(self.body)


class Client:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, target: str = "/", method: str = "GET", *,
                      headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                      version: str = "1.1") -> Response:
        await self.send(request_bytes(target, method, headers=headers, body=body,
                                      version=version))
        return await self.response(head=method == "HEAD")

    async def response(self, *, head: bool = False, timeout: float = 5.0) -> Response:
        return await asyncio.wait_for(self._response(head), timeout)

    async def _response(self, head: bool) -> Response:
        line = await self._line()
        version, status, reason = line.split(" ", 2)
        assert version in ("HTTP/1.1", "HTTP/1.0"), line
        headers: list[tuple[str, str]] = []
        while line := await self._line():
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.lower(), value.strip()))
        response = Response(version, int(status), reason, headers, b"")
        if head or response.status in (204, 304) or response.status < 200:
            return response
        if response.header("transfer-encoding") is not None:
            assert response.header("transfer-encoding") == "chunked"
            assert response.header("content-length") is None
            response.chunked = True
            response.body = await self._chunked_body()
        elif (length := response.header("content-length")) is not None:
            response.body = await self.reader.readexactly(int(length))
        else:  # delimited by the end of the connection
            response.body = await self.reader.read()
        return response

    async def _line(self) -> str:
        line = await self.reader.readuntil(b"\r\n")
        return line[:-2].decode("latin-1")

    async def _chunked_body(self) -> bytes:
        parts = []
        while True:
            size = int((await self._line()).partition(";")[0], 16)
            if size == 0:
                while await self._line():  # trailer fields
                    pass
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            assert await self.reader.readexactly(2) == b"\r\n"

    async def read_until_eof(self, timeout: float = 2.0) -> bytes:
        """Everything the server still sends, up to the end of the connection (which must
        come within ``timeout``)."""
        with contextlib.suppress(ConnectionResetError):
            return await asyncio.wait_for(self.reader.read(), timeout)
        return b""

    async def assert_closed(self, timeout: float = 2.0) -> None:
        """The server closes the connection within ``timeout`` without sending more."""
        assert await self.read_until_eof(timeout) == b""

    async def assert_open(self, wait: float = 0.1) -> None:
        """Nothing arrives and the connection stays open for ``wait`` seconds."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.reader.read(1), wait)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def request_bytes(target: str = "/", method: str = "GET", *,
                  headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                  version: str = "1.1") -> bytes:
    """A request with a ``host`` header, and a ``content-length`` one when it has a body."""
    lines = [f"{method} {target} HTTP/{version}", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Served:
    server: HttpServer | UvicornServer
    port: int
    clients: list[Client] = field(default_factory=list)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = Client(reader, writer)
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def serving(app: App, *, sndbuf: int | None = None,
                  **kwargs: Any) -> AsyncIterator[Served]:
    """Run ``HttpServer(app, **kwargs)`` (or ``UvicornServer``, in a uvicorn test) on an
    ephemeral port for the duration of the block; on the way out, close the test's connections
    and shut the server down (unless the test did). ``sndbuf``: SO_SNDBUF of the listening
    socket (inherited by accepted ones)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        server: HttpServer | UvicornServer
        if _SERVER_KIND.get() == "uvicorn":
            server = UvicornServer(app, **kwargs)
        else:
            server = HttpServer(app, **kwargs)
        await server.start(sock)
    except BaseException:
        sock.close()
        raise
    served = Served(server, sock.getsockname()[1])
    try:
        yield served
    finally:
        for client in served.clients:
            await client.close()
        if not server.stopping:
            await server.shutdown(1.0)
        sock.close()


# ---------------------------------------------------------------------------------------------
# ASGI app helpers
# ---------------------------------------------------------------------------------------------


async def answer(send: Send, status: int = 200, body: bytes = b"",
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> tuple[bytes, int]:
    """The whole request body and the number of ``http.request`` messages it came in."""
    parts, count = [], 0
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        parts.append(message["body"])
        count += 1
        if not message.get("more_body", False):
            return b"".join(parts), count


def digest(data: bytes) -> bytes:
    return b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``<method> <path>``, or for a request with a body its length and SHA-256."""
    body, _ = await read_body(receive)
    reply = digest(body) if body else f"{scope['method']} {scope['path']}".encode()
    await answer(send, 200, reply, [(b"content-type", b"text/plain")])


def refused(response: Response, server_kind: str, words: str) -> None:
    """One of the server's own error answers, which closes the connection: the builtin
    server's JSON ``{"error": ...}`` containing ``words``, or uvicorn's plain-text one (whose
    wording is uvicorn's)."""
    if server_kind == "builtin":
        assert words in error_message(response)
    else:
        assert response.header("connection") == "close"


def error_message(response: Response) -> str:
    """The message of one of the server's own JSON error answers."""
    document = response.json()
    assert isinstance(document, dict) and list(document) == ["error"], document
    assert isinstance(document["error"], str)
    assert response.header("connection") == "close"
    assert response.header("content-length") == str(len(response.body))
    return document["error"]


# ---------------------------------------------------------------------------------------------
# 1-2: keep-alive and closing
# ---------------------------------------------------------------------------------------------


def test_keep_alive_answers_several_requests_on_one_connection(run: Callable[..., None],
                                                             server_kind: str) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            for i in range(4):
                response = await client.request(f"/r{i}")
                assert (response.version, response.status, response.reason) == (
                    "HTTP/1.1", 200, "OK")
                assert response.body == f"GET /r{i}".encode()
                if server_kind == "builtin":  # one body message: framed with its length
                    assert response.header("content-length") == str(len(response.body))
                    assert response.header("transfer-encoding") is None
                else:  # uvicorn chunks an answer the app gave no content-length
                    assert response.chunked
                assert response.header("content-type") == "text/plain"
                assert response.header("connection") is None  # keep-alive is 1.1's default
                date = response.header("date")
                assert date is not None and _DATE.fullmatch(date), date
                sent = email.utils.parsedate_to_datetime(date).timestamp()
                assert abs(sent - time.time()) < 5
                assert len(srv.server.connections) == 1
            await client.assert_open()

    run(main)


def test_connection_close_from_the_client(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            assert (await client.request("/a")).status == 200
            response = await client.request("/b", headers=[("Connection", "close")])
            assert (response.status, response.body) == (200, b"GET /b")
            assert response.header("connection") == "close"
            await client.assert_closed()

    run(main)


def test_http10_request_closes_after_the_answer(run: Callable[..., None],
                                                server_kind: str) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            response = await client.request("/old", version="1.0")
            assert (response.status, response.body) == (200, b"GET /old")
            assert response.header("connection") == "close"
            if server_kind == "builtin":  # (uvicorn chunks it, although HTTP/1.0 has no chunks)
                assert response.header("content-length") == "8"
            await client.assert_closed()

    run(main)


@builtin_only("uvicorn closes every HTTP/1.0 connection after one answer")
def test_http10_keep_alive(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            for target in ("/one", "/two"):
                response = await client.request(target, version="1.0",
                                                headers=[("Connection", "keep-alive")])
                assert (response.status, response.body) == (200, f"GET {target}".encode())
                assert response.header("connection") == "keep-alive"
            await client.assert_open()
            response = await client.request("/three", version="1.0")
            assert response.header("connection") == "close"
            await client.assert_closed()

    run(main)


# ---------------------------------------------------------------------------------------------
# 3: HEAD
# ---------------------------------------------------------------------------------------------


def test_head_answer_has_the_length_but_no_body(run: Callable[..., None],
                                               server_kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(send, 200, b"0123456789" * 100)  # the same body for GET and HEAD

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            response = await client.request("/", "HEAD")
            assert response.status == 200
            # the app sent no length: the builtin server tells the body's; uvicorn none
            length = "1000" if server_kind == "builtin" else None
            assert response.header("content-length") == length
            assert response.header("transfer-encoding") is None
            # a stray body would be read as the next answer's status line
            response = await client.request("/", "GET")
            assert (response.status, response.body) == (200, b"0123456789" * 100)
            await client.assert_open()

    run(main)


def test_head_of_a_streamed_answer_has_no_body(run: Callable[..., None]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"abc", b"def"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            response = await client.request("/", "HEAD")
            assert response.status == 200
            assert response.header("transfer-encoding") is None
            response = await client.request("/", "GET")
            assert (response.status, response.body, response.chunked) == (200, b"abcdef", True)

    run(main)


# ---------------------------------------------------------------------------------------------
# 4: pipelining
# ---------------------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(run: Callable[..., None]) -> None:
    started: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.append(scope["path"])
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)
        await answer(send, 200, scope["path"].encode())

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/slow") + request_bytes("/fast1")
                              + request_bytes("/fast2"))
            bodies = [(await client.response()).body for _ in range(3)]
            assert bodies == [b"/slow", b"/fast1", b"/fast2"]
            assert started == ["/slow", "/fast1", "/fast2"]
            await client.assert_open()

    run(main)


def test_more_pipelined_requests_than_max_pipelined(run: Callable[..., None]) -> None:
    count = 3 * MAX_PIPELINED

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body, _ = await read_body(receive)
        await asyncio.sleep(0)
        await answer(send, 200, scope["path"].encode() + b":" + body)

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(b"".join(request_bytes(f"/{i}", "POST", body=b"x" * i)
                                       for i in range(1, count + 1)))
            for i in range(1, count + 1):
                response = await client.response()
                assert response.body == f"/{i}:".encode() + b"x" * i
            assert (await client.request("/last")).body == b"/last:"

    run(main)


@builtin_only("uvicorn answers the garbage's 400 at once, dropping the answer owed before it")
def test_pipelined_garbage_is_answered_400_after_the_valid_request(
        run: Callable[..., None]) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await asyncio.sleep(0.05)
        await answer(send, 200, b"valid")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/ok") + b"\x00\x01 garbage\r\n\r\n")
            response = await client.response()
            assert (response.status, response.body) == (200, b"valid")
            assert response.header("connection") is None
            response = await client.response()
            assert response.status == 400
            assert "malformed" in error_message(response)
            await client.assert_closed()
            assert calls == ["/ok"]

    run(main)


# ---------------------------------------------------------------------------------------------
# 5-6: what the parser rejects
# ---------------------------------------------------------------------------------------------


LIMIT = 4096


def _padded_request(size: int, shape: str) -> bytes:
    """A GET whose request line and header lines take ``size`` bytes (give or take a few),
    padded with one long header, many headers or a long request target."""
    head = b"GET / HTTP/1.1\r\nHost: test\r\n"
    pad = size - len(head)
    if shape == "long-target":
        request = head.replace(b"/", b"/" + b"a" * pad, 1) + b"\r\n"
    else:
        count = 1 if shape == "one-header" else 64
        lines = [b"X-Pad-%03d: %s\r\n" % (i, b"a" * (pad // count - 14)) for i in range(count)]
        request = head + b"".join(lines) + b"\r\n"
    assert abs(len(request) - size) < 150
    return request


@builtin_only("uvicorn has no header-section limit (no 431)")
@pytest.mark.parametrize("shape", ["one-header", "many-headers", "long-target"])
@pytest.mark.parametrize(("size", "status"), [(LIMIT - 200, 200), (LIMIT + 200, 431)],
                         ids=["under", "over"])
def test_header_section_limit(run: Callable[..., None], size: int, status: int,
                              shape: str) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["method"])
        await answer(send, 200, b"fine")

    async def main() -> None:
        async with serving(app, max_header_bytes=LIMIT) as srv:
            client = await srv.connect()
            await client.send(_padded_request(size, shape))
            response = await client.response()
            assert response.status == status
            if status == 200:
                assert response.body == b"fine"
                assert calls == ["GET"]
                await client.assert_open()
            else:
                assert response.reason == "Request Header Fields Too Large"
                assert f"exceeds {LIMIT} bytes" in error_message(response)
                assert calls == []
                await client.assert_closed()

    run(main)


@builtin_only("uvicorn has no header-section limit (no 431)")
def test_endless_header_line_gets_431(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app, max_header_bytes=LIMIT) as srv:
            client = await srv.connect()
            await client.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: ")
            for _ in range(16):  # 64 times the limit, and the line is still not finished
                await client.send(b"a" * LIMIT * 4)
            response = await client.response(timeout=1.0)
            assert response.status == 431

    run(main, timeout=5.0)


BAD_CHUNK = (b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\nzz\r\n")

MALFORMED = {
    "not-http": b"HELLO\r\n\r\n",
    "bad-request-line": b"GET / HTTP/1.1 extra\r\nHost: test\r\n\r\n",
    "bad-version": b"GET / HTTP/X.Y\r\nHost: test\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: test\r\nNo colon here\r\n\r\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\nHost: test\r\nBad Name: x\r\n\r\n",
    "bad-content-length": b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: ten\r\n\r\n",
    "duplicate-content-length": (b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n"
                                 b"Content-Length: 2\r\n\r\nab"),
    "length-and-chunked": (b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    # rejected after the headers, with the request already handed to the app
    "bad-chunk-size": BAD_CHUNK,
    "unknown-transfer-coding": (b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n"
                                b"\r\nabc"),
    "invalid-target": b"GET http://[ HTTP/1.1\r\nHost: test\r\n\r\n",
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_gets_400_and_close(run: Callable[..., None], data: bytes,
                                              server_kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer (what Shipyard's app does)
            if not message.get("more_body", False):
                break
        await answer(send, 200, b"should not be sent")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(data)
            response = await client.response()
            assert (response.status, response.reason) == (400, "Bad Request")
            refused(response, server_kind, "malformed")
            await client.assert_closed()

    run(main)


def test_request_with_a_body_the_parser_rejects_gets_only_400(run: Callable[..., None]) -> None:
    told: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        told.append(await receive())
        told.append(await receive())
        await answer(send, 200, b"an answer to half a body")  # an app that answers anyway

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(BAD_CHUNK)
            response = await client.response()
            assert told[-1] == {"type": "http.disconnect"}
            assert response.status == 400
            await client.assert_closed()

    run(main)


@builtin_only("uvicorn hands HTTP/2.0 and HTTP/0.9 request lines to the app")
@pytest.mark.parametrize("data", [b"GET / HTTP/2.0\r\nHost: test\r\n\r\n",
                                  b"GET /\r\nHost: test\r\n\r\n"], ids=["2.0", "0.9"])
def test_unsupported_http_version_is_refused(run: Callable[..., None], data: bytes) -> None:
    versions: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        versions.append(scope["http_version"])
        await answer(send, 200, b"ok")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(data)
            response = await client.response()
            assert versions == []
            assert response.status in (400, 505)
            await client.assert_closed()

    run(main)


def test_upgrade_request_is_answered_as_plain_http_then_closed(
        run: Callable[..., None], server_kind: str) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            response = await client.request("/ws", headers=[
                ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13")])
            assert (response.version, response.status, response.body) == (
                "HTTP/1.1", 200, b"GET /ws")
            if server_kind == "builtin":  # (uvicorn keeps the connection and reads on)
                assert response.header("connection") == "close"
                await client.assert_closed()

    run(main)


# ---------------------------------------------------------------------------------------------
# 7: request bodies
# ---------------------------------------------------------------------------------------------


def _chunked(pieces: Iterable[bytes]) -> bytes:
    """A chunked body (with a chunk extension and a trailer field)."""
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked", "large"])
def test_request_body_reaches_the_app_intact(run: Callable[..., None], framing: str) -> None:
    seen: list[tuple[int, int]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body, messages = await read_body(receive)
        seen.append((len(body), messages))
        await answer(send, 200, digest(body))

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            if framing == "content-length":
                body = b"hello, \x00 body \xff" * 10
                await client.send(request_bytes("/", "POST", body=body))
            elif framing == "chunked":
                pieces = [b"hello", b", ", b"chunked" * 1000, b"\r\n0\r\n"]
                body = b"".join(pieces)
                data = request_bytes("/", "POST", headers=[
                    ("Transfer-Encoding", "chunked")]) + _chunked(pieces)
                for cut in (80, 100, 3000, len(data)):  # cuts inside chunk sizes and data
                    await client.send(data[:cut])
                    data = data[cut:]
                    await asyncio.sleep(0.01)
            else:
                body = random.Random(7).randbytes(3 * 1024 * 1024)
                assert len(body) > 10 * HIGH_WATER
                await client.send(request_bytes("/", "POST", body=body)[:-len(body)])
                for i in range(0, len(body), 64 * 1024):
                    await client.send(body[i:i + 64 * 1024])
            response = await client.response()
            assert (response.status, response.body) == (200, digest(body))
            assert seen[0][0] == len(body)
            if framing == "large":
                assert seen[0][1] > 1  # streamed in pieces, not buffered whole
            # the connection is still in step: a second request on it works
            response = await client.request("/", "POST", body=b"again")
            assert response.body == digest(b"again")

    run(main)


def test_expect_100_continue(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            body = b"x" * 5000
            head = request_bytes("/up", "POST", body=body,
                                 headers=[("Expect", "100-continue")])[:-len(body)]
            await client.send(head)
            interim = await asyncio.wait_for(client.reader.readexactly(len(CONTINUE)), 2.0)
            assert interim == CONTINUE
            await client.assert_open()  # the final answer waits for the body
            await client.send(body)
            response = await client.response()
            assert (response.status, response.body) == (200, digest(body))
            # the next request on the connection gets no 100 of its own
            assert (await client.request("/next")).body == b"GET /next"

    run(main)


@builtin_only("uvicorn sends 100 Continue to HTTP/1.0 clients too")
def test_expect_100_continue_is_ignored_for_http10(run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/", "POST", version="1.0", body=b"hello",
                                            headers=[("Expect", "100-continue")]))
            response = await client.response()
            assert (response.status, response.body) == (200, digest(b"hello"))

    run(main)


def test_expect_100_continue_refused_before_reading_the_body(
        run: Callable[..., None]) -> None:
    received: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        length = int(dict(scope["headers"])[b"content-length"])
        if length > 1000:
            await answer(send, 413, b"too large", [(b"connection", b"close")])
            return
        received.append(await receive())
        await answer(send, 200, b"ok")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(b"PUT /big HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
                              b"Content-Length: 10000000\r\n\r\n")
            response = await client.response()
            assert (response.status, response.body) == (413, b"too large")
            assert response.header("connection") == "close"  # once, not the app's and ours
            await client.assert_closed()
            assert received == []

    run(main)


# ---------------------------------------------------------------------------------------------
# 8: streaming answers
# ---------------------------------------------------------------------------------------------


def test_streamed_answer_is_chunked(run: Callable[..., None]) -> None:
    pieces = [b"hello ", b"", b"chunked " * 5000, b"world"]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        last = b"!" if scope["path"] == "/bang" else b""
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            for path, last in (("/bang", b"!"), ("/", b"")):
                response = await client.request(path)
                assert response.status == 200
                assert response.chunked
                assert response.header("content-type") == "text/plain"
                assert response.body == b"".join(pieces) + last
            await client.assert_open()

    run(main)


def test_streamed_answer_with_content_length_is_not_chunked(run: Callable[..., None]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"01234", "more_body": True})
        await send({"type": "http.response.body", "body": b"56789"})

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            for _ in range(2):
                response = await client.request("/")
                assert (response.status, response.body, response.chunked) == (
                    200, b"0123456789", False)

    run(main)


@builtin_only("uvicorn chunks a streamed answer to an HTTP/1.0 client")
def test_streamed_answer_to_http10_is_not_chunked(run: Callable[..., None]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part1 ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/", version="1.0",
                                            headers=[("Connection", "keep-alive")]))
            raw = await client.read_until_eof()  # HTTP/1.0 has no chunks: the end is the close
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b"\r\nconnection: close\r\n" in head
            assert b"transfer-encoding" not in head.lower()
            assert b"content-length" not in head.lower()
            assert body == b"part1 part2"

    run(main)


def test_204_answer_has_no_framing_headers(run: Callable[..., None]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(send, 204)

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            response = await client.request("/")
            assert response.status == 204
            assert response.header("transfer-encoding") is None
            assert response.header("content-length") is None

    run(main)


# ---------------------------------------------------------------------------------------------
# 9: apps that fail
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["raises", "returns", "raises-after-start"])
def test_app_failing_before_answering_gets_500(run: Callable[..., None], failure: str,
                                               server_kind: str) -> None:
    if failure == "raises-after-start" and server_kind == "uvicorn":
        pytest.skip("uvicorn writes the head at http.response.start: a 500 cannot follow it")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/fine":
            await answer(send, 200, b"fine")
            return
        if failure == "raises":
            raise RuntimeError("boom")
        if failure == "raises-after-start":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("boom")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            assert (await client.request("/fine")).status == 200
            response = await client.request("/fail")
            assert (response.status, response.reason) == (500, "Internal Server Error")
            refused(response, server_kind, "internal error")
            await client.assert_closed()
            # the server goes on serving other connections
            other = await srv.connect()
            assert (await other.request("/fine")).body == b"fine"

    run(main)


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_app_failing_mid_answer_gets_its_connection_closed(run: Callable[..., None],
                                                           framing: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"100")] if framing == "content-length" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/"))
            raw = await client.read_until_eof()  # the end comes, and nothing more after it
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            if framing == "chunked":
                assert b"\r\ntransfer-encoding: chunked" in head
                assert body == b"7\r\npartial\r\n"  # no last chunk
            else:
                assert b"\r\ncontent-length: 100" in head
                assert body == b"partial"
            assert not srv.server.connections

    run(main)


# ---------------------------------------------------------------------------------------------
# 10: clients that hang up
# ---------------------------------------------------------------------------------------------


def test_client_hanging_up_mid_body_makes_receive_return_disconnect(
        run: Callable[..., None]) -> None:
    async def main() -> None:
        messages: list[Message] = []
        disconnected = asyncio.Event()
        answered: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] == "http.disconnect":
                    break
            disconnected.set()
            await answer(send, 200, b"nobody listens")  # dropped, without an error
            answered.append("yes")

        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n"
                              + b"0123456789")
            await asyncio.sleep(0.05)
            await client.close()
            await asyncio.wait_for(disconnected.wait(), 2.0)
            assert messages[-1] == {"type": "http.disconnect"}
            body = messages[:-1]
            assert all(m["type"] == "http.request" and m["more_body"] for m in body)
            assert b"".join(m["body"] for m in body) == b"0123456789"
            await asyncio.sleep(0.05)
            assert answered == ["yes"]
            assert not srv.server.connections

    run(main)


def test_receive_waiting_when_the_answer_completes_returns_disconnect(
        run: Callable[..., None]) -> None:
    async def main() -> None:
        got: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def listen(receive: Receive) -> None:
            got.set_result(await receive())

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await read_body(receive)
            listener = asyncio.create_task(listen(receive))  # e.g. a disconnect watcher
            await asyncio.sleep(0.01)
            await answer(send, 200, b"done")
            try:
                await asyncio.wait_for(asyncio.shield(got), 1.0)
            finally:
                listener.cancel()

        async with serving(app) as srv:
            client = await srv.connect()
            assert (await client.request("/")).body == b"done"
            await asyncio.wait_for(asyncio.shield(got), 1.5)
            assert got.result() == {"type": "http.disconnect"}

    run(main)


# ---------------------------------------------------------------------------------------------
# 11: graceful shutdown
# ---------------------------------------------------------------------------------------------


def _slow_app(started: asyncio.Event, release: asyncio.Event) -> App:
    """Answers its path; on ``/slow`` only once ``release`` is set."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            started.set()
            await release.wait()
        await answer(send, 200, scope["path"].encode())

    return app


def test_shutdown_lets_the_request_in_flight_finish(run: Callable[..., None]) -> None:
    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()
        async with serving(_slow_app(started, release)) as srv:
            busy = await srv.connect()
            await busy.send(request_bytes("/slow"))
            await asyncio.wait_for(started.wait(), 2.0)
            idle = await srv.connect()
            assert (await idle.request("/fast")).body == b"/fast"

            began = time.monotonic()
            shutdown = asyncio.create_task(srv.server.shutdown(grace_s=2.0))
            try:
                await asyncio.sleep(0.1)
                with pytest.raises(ConnectionRefusedError):
                    await srv.connect()
                assert not shutdown.done()
                await busy.assert_open()
            finally:
                release.set()
            response = await busy.response()
            assert (response.status, response.body) == (200, b"/slow")
            assert response.header("connection") == "close"
            await busy.assert_closed()
            await idle.assert_closed()
            await asyncio.wait_for(shutdown, 1.0)
            assert time.monotonic() - began < 1.5  # it did not wait out the grace period
            assert not srv.server.connections

    run(main)


def _server_side(srv: Served, client: Client) -> HttpProtocol:
    host, port = client.writer.get_extra_info("sockname")[:2]
    return next(c for c in srv.server.connections if c.client == (host, port))


def test_shutdown_closes_idle_connections_at_once(run: Callable[..., None],
                                                  server_kind: str) -> None:
    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()
        async with serving(_slow_app(started, release)) as srv:
            busy = await srv.connect()
            await busy.send(request_bytes("/slow"))
            await asyncio.wait_for(started.wait(), 2.0)
            busy_side = _server_side(srv, busy)
            # idle connections, listed after the busy one (the server keeps them oldest first):
            # a shutdown that stopped at the first busy connection would leave them open
            idle: list[Client] = []
            for _ in range(3):
                idle.append(await srv.connect())
                assert (await idle[-1].request("/fast")).status == 200
            if server_kind == "builtin":  # (uvicorn keeps its connections in a set)
                order = list(srv.server.connections)
                assert order[0] is busy_side
                assert {order.index(_server_side(srv, c)) for c in idle} == {1, 2, 3}

            shutdown = asyncio.create_task(srv.server.shutdown(grace_s=2.0))
            try:
                for client in idle:
                    await client.assert_closed(timeout=0.5)
            finally:
                release.set()
                await asyncio.wait_for(shutdown, 3.0)
            assert (await busy.response()).status == 200

    run(main)


def test_shutdown_cancels_the_app_when_the_grace_period_ends(run: Callable[..., None]) -> None:
    grace = 0.5

    async def main() -> None:
        started = asyncio.Event()
        cancelled: list[str] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            started.set()
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:  # what Shipyard's app does
                cancelled.append(scope["path"])
                await answer(send, 503, b"stopped")

        async with serving(app) as srv:
            client = await srv.connect()
            await client.send(request_bytes("/stuck"))
            await asyncio.wait_for(started.wait(), 2.0)
            began = time.monotonic()
            await asyncio.wait_for(srv.server.shutdown(grace_s=grace), grace + 1.5)
            elapsed = time.monotonic() - began
            assert grace - 0.05 <= elapsed < grace + 1.5
            assert cancelled == ["/stuck"]
            response = await client.response()
            assert (response.status, response.body) == (503, b"stopped")
            assert response.header("connection") == "close"
            await client.assert_closed()

    run(main)


def test_shutdown_does_not_cut_an_answer_being_flushed(run: Callable[..., None]) -> None:
    size = 48 * 1024  # more than the small socket buffers hold, less than the write high water

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await answer(send, 200, b"z" * size, [(b"content-length", b"%d" % size)])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # small kernel buffers, so that most of the answer waits in the server's transport
        async with serving(app, sndbuf=2048) as srv:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
                sock.setblocking(False)  # read only when asked to (no stream reading ahead)
                await loop.sock_connect(sock, ("127.0.0.1", srv.port))
                await loop.sock_sendall(sock, request_bytes("/"))
                await asyncio.sleep(0.2)  # the app has answered; nothing was read yet
                shutdown = asyncio.create_task(srv.server.shutdown(grace_s=3.0))
                await asyncio.sleep(0.1)  # (what cuts the answer short does so at once)
                raw = b""
                while data := await loop.sock_recv(sock, 65536):
                    raw += data
                await asyncio.wait_for(shutdown, 1.0)  # right after the last byte went out
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b"\r\ncontent-length: %d\r\n" % size in head + b"\r\n"
            assert len(body) == size

    run(main)


# ---------------------------------------------------------------------------------------------
# 12: keep-alive idle timeout
# ---------------------------------------------------------------------------------------------


def test_idle_connections_are_closed_after_keep_alive_s(run: Callable[..., None],
                                                       server_kind: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(1.6)  # longer than keep_alive_s: busy, not idle
        await answer(send, 200, scope["path"].encode())

    async def main() -> None:
        async with serving(app, keep_alive_s=1.0) as srv:
            used = await srv.connect()
            assert (await used.request("/a")).body == b"/a"
            silent = await srv.connect()  # never sends anything
            busy = await srv.connect()
            await busy.send(request_bytes("/slow"))
            began = time.monotonic()
            await used.assert_closed(timeout=3.0)
            if server_kind == "builtin":  # (uvicorn never times out one that sent nothing)
                await silent.assert_closed(timeout=3.0)
            assert 0.9 <= time.monotonic() - began <= 3.0
            response = await busy.response(timeout=3.0)
            assert (response.status, response.body) == (200, b"/slow")
            assert response.header("connection") is None

    run(main)


# ---------------------------------------------------------------------------------------------
# 13: the ASGI scope
# ---------------------------------------------------------------------------------------------


def test_asgi_scope(run: Callable[..., None]) -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await answer(send, 200, b"")

    async def main() -> None:
        async with serving(app) as srv:
            client = await srv.connect()
            await client.request("/a%20b/%C3%A9?x=1&y=%20", "POST",
                                 headers=[("X-Custom-Header", "Value Kept"),
                                          ("x-second", "two")],
                                 body=b"data")
            await client.request("http://x/y?q=1")
            await client.request("/plain")
            await client.request("/", version="1.0", headers=[("Connection", "keep-alive")])

            first, absolute, plain, old = scopes
            assert first["type"] == "http"
            assert first["asgi"]["version"] == "3.0"
            assert (first["method"], first["scheme"], first["root_path"]) == ("POST", "http", "")
            assert first["path"] == "/a b/\u00e9"
            assert first["raw_path"] == b"/a%20b/%C3%A9"
            assert first["query_string"] == b"x=1&y=%20"
            assert first["http_version"] == "1.1"
            assert first["headers"] == [
                (b"host", b"test"), (b"x-custom-header", b"Value Kept"), (b"x-second", b"two"),
                (b"content-length", b"4")]
            assert first["server"] == ("127.0.0.1", srv.port)
            client_addr = first["client"]
            assert client_addr[0] == "127.0.0.1" and isinstance(client_addr[1], int)

            assert (absolute["path"], absolute["raw_path"], absolute["query_string"]) == (
                "/y", b"/y", b"q=1")
            assert (old["http_version"], old["method"], old["path"]) == ("1.0", "GET", "/")
            assert (plain["path"], plain["raw_path"], plain["query_string"]) == (
                "/plain", b"/plain", b"")

    run(main)


# ---------------------------------------------------------------------------------------------
# 14: slow clients (408) and the lingering close after an error answer
# ---------------------------------------------------------------------------------------------


@builtin_only("uvicorn has no header-section timeout (no 408)")
def test_a_header_section_trickled_too_slowly_gets_408(run: Callable[..., None]) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await answer(send, 200, b"ok")

    async def main() -> None:
        async with serving(app, header_timeout_s=1.0, keep_alive_s=30.0) as srv:
            slow = await srv.connect()
            await slow.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n")
            began = time.monotonic()
            answered: list[Response] = []

            async def trickle() -> None:  # one byte every 0.2 s: never idle, never done
                with contextlib.suppress(ConnectionError):
                    for _ in range(40):
                        await slow.send(b"X")
                        await asyncio.sleep(0.2)

            trickling = asyncio.create_task(trickle())
            answered.append(await slow.response(timeout=4.0))
            waited = time.monotonic() - began
            trickling.cancel()
            response = answered[0]
            assert (response.status, response.reason) == (408, "Request Timeout")
            assert "header section not complete within 1 s" in error_message(response)
            assert 0.9 <= waited <= 3.0
            await slow.assert_closed()
            assert calls == []
            # other connections are not affected
            other = await srv.connect()
            assert (await other.request("/fine")).body == b"ok"

    run(main)


@builtin_only("uvicorn has no header-section timeout (no 408)")
def test_a_stalled_header_section_gets_408_not_a_silent_idle_close(
        run: Callable[..., None]) -> None:
    async def main() -> None:
        async with serving(echo_app, header_timeout_s=1.0, keep_alive_s=1.0) as srv:
            client = await srv.connect()
            await client.send(b"GET / HTTP/1.1\r\nHost: te")
            response = await client.response(timeout=4.0)
            assert response.status == 408
            await client.assert_closed()

    run(main)


@builtin_only("uvicorn has no request-body timeout (no 408)")
def test_a_stalled_request_body_gets_408(run: Callable[..., None]) -> None:
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:  # what Shipyard's app does: read the body, give up on a disconnect
            message = await receive()
            messages.append(message)
            if message["type"] == "http.disconnect":
                return
            if not message.get("more_body", False):
                break
        await answer(send, 200, b"should not be sent")

    async def main() -> None:
        async with serving(app, body_timeout_s=1.0) as srv:
            client = await srv.connect()
            await client.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n"
                              + b"0123456789")
            began = time.monotonic()
            response = await client.response(timeout=4.0)
            assert 0.9 <= time.monotonic() - began <= 3.0
            assert (response.status, response.reason) == (408, "Request Timeout")
            assert "no bytes received for 1 s" in error_message(response)
            await client.assert_closed()
            assert messages[-1] == {"type": "http.disconnect"}
            assert b"".join(m.get("body", b"") for m in messages) == b"0123456789"

    run(main)


@builtin_only("tests the builtin server's header and body timeouts")
def test_slow_but_steady_clients_and_slow_apps_are_not_timed_out(
        run: Callable[..., None]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body, _ = await read_body(receive)
        if scope["path"] == "/slow":
            await asyncio.sleep(1.6)  # longer than both timeouts: the app, not the client
        await answer(send, 200, digest(body))

    async def main() -> None:
        async with serving(app, header_timeout_s=1.0, body_timeout_s=1.0) as srv:
            client = await srv.connect()
            payload = bytes(range(256)) * 8
            await client.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n"
                              % len(payload))
            for i in range(0, len(payload), 256):  # a piece every 0.25 s, 2 s in all
                await client.send(payload[i:i + 256])
                await asyncio.sleep(0.25)
            response = await client.response()
            assert (response.status, response.body) == (200, digest(payload))
            response = await client.request("/slow", "POST", body=b"abc")
            assert (response.status, response.body) == (200, digest(b"abc"))
            await client.assert_open()

    run(main, timeout=15.0)


@builtin_only("the lingering close after a 431 is the builtin server's")
def test_an_error_answer_reaches_a_client_that_is_still_sending(
        run: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    """After a 431 the server keeps reading (and dropping) what the client sends: closing
    with unread bytes would reset the connection, and the client's next write would fail
    before it ever read the answer."""
    import shipyard.serving.http._protocol as protocol_module

    monkeypatch.setattr(protocol_module, "LINGER_S", 1.0)

    async def main() -> None:
        async with serving(echo_app, max_header_bytes=LIMIT) as srv:
            client = await srv.connect()
            await client.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: ")
            for _ in range(64):  # 4 MiB after the limit was passed: every write must succeed
                await client.send(b"a" * 65536)
                await asyncio.sleep(0)
            response = await client.response(timeout=2.0)
            assert response.status == 431
            assert await client.read_until_eof() == b""  # FIN right after the answer
            assert srv.server.connections  # lingering: the client has not closed yet
            began = time.monotonic()
            while srv.server.connections and time.monotonic() - began < 3.0:
                await asyncio.sleep(0.05)
            assert not srv.server.connections  # closed by the server after LINGER_S
            assert 0.5 <= time.monotonic() - began <= 2.5

    run(main)
