"""Retries with exponential backoff, full jitter and the server's ``Retry-After``, within one
deadline that spans every attempt."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shipyard.client.errors import ClientError, DeadlineExceeded, TlsError
from shipyard.protocol.errors import ErrorCode

__all__ = ["RetryPolicy", "check_in_time", "retry_async", "retry_sync"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before trying a failed call again."""

    max_attempts: int = 4
    """Attempts in all, the first included (1 = never retry)."""
    initial_backoff_s: float = 0.05
    """The first wait; each later one doubles, up to ``max_backoff_s``."""
    max_backoff_s: float = 2.0
    """The longest wait backoff alone asks for."""
    jitter: bool = True
    """Wait a uniformly random time up to the backoff ("full jitter"), so that many clients
    refused at once do not come back at once."""
    max_retry_after_s: float = 30.0
    """The longest ``Retry-After`` honoured (a longer one gives up at once)."""
    retry_on: frozenset[ErrorCode] = field(
        default=frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RESOURCE_EXHAUSTED}))
    """The codes worth another attempt: the server (or model) is busy or not there yet."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("RetryPolicy backoffs must be >= 0 seconds")

    def retryable(self, error: ClientError) -> bool:
        """Whether ``error`` is worth another attempt (a :class:`TlsError` never is: the same
        handshake would fail again)."""
        return (error.code is not None and error.code in self.retry_on
                and not isinstance(error, TlsError))

    def delay_s(self, attempt: int, error: ClientError) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), or None to give
        up (``Retry-After`` longer than :attr:`max_retry_after_s`)."""
        backoff = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        wait = random.uniform(0, backoff) if self.jitter else backoff
        if error.retry_after_s is not None:
            if error.retry_after_s > self.max_retry_after_s:
                return None
            wait = max(wait, error.retry_after_s)
        return wait


#: no retries at all
NO_RETRY = RetryPolicy(max_attempts=1)


def check_in_time(start: float, timeout_s: float | None, where: str) -> None:
    """Refuse an answer from ``where`` that came later than ``timeout_s`` after ``start``
    (``time.monotonic()``): neither transport's own timeout bounds the whole call to the
    deadline (httpx bounds each step, connect, write, read; gRPC's client enforces a deadline
    only to about a millisecond: answers to a 0.1 ms deadline arrived after 0.8 ms)."""
    if timeout_s is not None and time.monotonic() - start > timeout_s:
        raise DeadlineExceeded(f"no answer from {where} within {timeout_s:.3g} s")


def _expired(what: str, timeout_s: float | None) -> DeadlineExceeded:
    return DeadlineExceeded(f"{what}: the deadline of {timeout_s} s passed")


def _next_wait(policy: RetryPolicy, attempt: int, error: ClientError,
               deadline: float | None) -> float | None:
    """The wait before the next attempt, or None to raise ``error`` now."""
    error.attempts = attempt
    if attempt >= policy.max_attempts or not policy.retryable(error):
        return None
    wait = policy.delay_s(attempt, error)
    if wait is None or (deadline is not None and time.monotonic() + wait >= deadline):
        return None
    return wait


def retry_sync(policy: RetryPolicy, what: str, timeout_s: float | None,
               attempt: Callable[[float | None], T]) -> T:
    """``attempt(seconds left)`` until it succeeds, fails for good, or the deadline passes."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    n = 0
    while True:
        n += 1
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise _expired(what, timeout_s)
        try:
            return attempt(left)
        except ClientError as error:
            wait = _next_wait(policy, n, error, deadline)
            if wait is None:
                raise
        time.sleep(wait)


async def retry_async(policy: RetryPolicy, what: str, timeout_s: float | None,
                      attempt: Callable[[float | None], Awaitable[T]]) -> T:
    """The awaitable twin of :func:`retry_sync`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    n = 0
    while True:
        n += 1
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise _expired(what, timeout_s)
        try:
            return await attempt(left)
        except ClientError as error:
            wait = _next_wait(policy, n, error, deadline)
            if wait is None:
                raise
        await asyncio.sleep(wait)
