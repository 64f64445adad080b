"""Request-body helpers of the REST frontend: header integers, gzip/deflate bodies within a
limit, the ``Timeout-Ms`` header, and dropping the rest of a refused body."""

from __future__ import annotations

import asyncio
import math
import zlib
from typing import Any

from shipyard.protocol.wire import deadline_from_ms
from shipyard.serving.errors import InvalidInput, PayloadTooLarge
from shipyard.serving.http.asgi import Message, Receive

__all__ = ["decompress", "discard", "header_int", "timeout_header"]


def header_int(value: bytes | None) -> int | None:
    """A header's non-negative integer value; None when absent or not a plain short number."""
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


async def discard(receive: Receive, message: Message, budget: int) -> None:
    """Read and drop the rest of a body (bounded in bytes and time), so a client that sends
    its whole body before reading gets our error reply instead of a broken pipe."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while message.get("more_body", False) and budget > 0:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return
        budget -= len(message.get("body", b""))


def decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc == b"identity":
        return body
    if enc not in (b"gzip", b"deflate"):
        raise InvalidInput(
            f"Content-Encoding {enc.decode('latin-1')!r} is not supported; use gzip or deflate")
    d = zlib.decompressobj(wbits=31 if enc == b"gzip" else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {enc.decode()} data: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not d.eof:
        raise InvalidInput(f"{enc.decode()} body is truncated (its end marker is missing)")
    if d.unused_data:
        raise InvalidInput(
            f"{len(d.unused_data)} byte(s) follow the end of the {enc.decode()} stream; send "
            "one compressed stream")
    return out


def timeout_header(headers: dict[bytes, bytes], request: Any) -> None:
    raw = headers.get(b"timeout-ms")
    if raw is None:
        return
    given = raw.decode("latin-1")
    try:
        ms = float(given)
    except ValueError:
        ms = math.nan
    deadline = deadline_from_ms(ms, "header Timeout-Ms", given)
    if request.deadline_ns is None or deadline < request.deadline_ns:
        request.deadline_ns = deadline
