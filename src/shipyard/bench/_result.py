"""What a capacity report is made of: its settings, the in-process ceiling, a level of load,
the whole result (``bench.json``), and the user's mistakes (:class:`BenchError`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.bench._load import LoadResult
from shipyard.client._vocab import ModelInfo

__all__ = ["MAX_CONCURRENCY", "MAX_LEVELS", "PROTOCOLS", "BenchError", "BenchResult",
           "BenchSettings", "Ceiling", "Level", "parse_concurrency"]

#: what ``--protocol`` offers
PROTOCOLS = ("rest-json", "rest-binary", "grpc")
#: most levels of concurrency one run measures, and the most connections of one level
MAX_LEVELS, MAX_CONCURRENCY = 16, 4096


class BenchError(Exception):
    """A mistake the user can fix (unknown model, bad concurrency list, unreachable URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """What is wrong and how to fix it."""


@dataclass
class BenchSettings:
    """What ``shipyard bench`` measures."""

    model: str
    """The model's name."""
    url: str | None = None
    """A running server to measure; None: start ``shipyard serve`` on 127.0.0.1."""
    repository: Path | None = None
    """The repository to serve and to load the in-process ceiling from (None: the demo)."""
    concurrency: list[int] = field(default_factory=lambda: [1, 16, 64])
    """Requests in flight, one level each."""
    duration_s: float = 5.0
    """Seconds of load per level (and of the in-process loop)."""
    batch: int = 1
    """Rows per request."""
    protocols: list[str] | None = None
    """Of :data:`PROTOCOLS`; None: rest-json (rest-binary for an image model, whose PNG bytes
    JSON cannot carry)."""
    data: Path | None = None
    """Items to send (read as ``shipyard predict`` reads them); None: a built-in sample."""
    load_tool: str = "auto"
    """auto (wrk for REST when on PATH), wrk or builtin."""
    output: Path | None = None
    """Report folder (None: ``bench/<model>-<timestamp>``)."""
    token: str | None = None
    """Bearer token for a server with an auth token."""


@dataclass
class Ceiling:
    """The model called in this process in a loop, one request at a time."""

    batch: int
    requests: int
    seconds: float
    p50_ms: float

    @property
    def rows_per_s(self) -> float:
        """Rows per second."""
        return self.batch * self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Level:
    """One protocol at one concurrency."""

    protocol: str
    concurrency: int
    batch: int
    load: LoadResult
    server_success: int | None = None
    """How much the server's own success count grew during the level (None: unknown)."""
    formed_batch: float | None = None
    """Rows per execution the server's batcher formed (inference / execution counts)."""
    server_cpu_s: float | None = None
    ceiling_at_formed: Ceiling | None = None
    """In-process at the batch the server formed, where that differs from the request's."""

    @property
    def rows_per_s(self) -> float:
        """Served rows per second."""
        return self.load.requests_per_s * self.batch


@dataclass
class BenchResult:
    """A whole run: settings, ceiling, levels, notes, and where the report went."""

    settings: BenchSettings
    info: ModelInfo
    url: str
    started_server: bool
    ceiling: Ceiling | None
    levels: list[Level]
    notes: list[str]
    folder: Path
    plot: bool = False
    machine: dict[str, Any] = field(default_factory=dict)

    def ratio(self, level: Level) -> float | None:
        """Served rows/s over the in-process ceiling's (None without a ceiling)."""
        if self.ceiling is None or self.ceiling.rows_per_s <= 0:
            return None
        return level.rows_per_s / self.ceiling.rows_per_s

    def ratio_at_formed(self, level: Level) -> float | None:
        """Served rows/s over the in-process rows/s at the batch the server's batcher formed
        (the fair ceiling where it merged requests; :meth:`ratio` where it did not)."""
        at = level.ceiling_at_formed
        if at is None or at.rows_per_s <= 0:
            return self.ratio(level)
        return level.rows_per_s / at.rows_per_s

    def to_json(self) -> dict[str, Any]:
        """The bench.json document."""
        s = self.settings

        def ceiling(c: Ceiling | None) -> dict[str, Any] | None:
            return None if c is None else {
                "batch": c.batch, "requests": c.requests, "seconds": c.seconds,
                "requests_per_s": c.requests / c.seconds if c.seconds else 0.0,
                "rows_per_s": c.rows_per_s, "p50_ms": c.p50_ms}

        wall = {id(lv): lv.load.seconds for lv in self.levels}
        return {
            "model": self.info.name, "url": self.url, "started_server": self.started_server,
            "batch": s.batch, "duration_s": s.duration_s, "concurrency": s.concurrency,
            "data": None if s.data is None else str(s.data), "machine": self.machine,
            "in_process": ceiling(self.ceiling),
            "levels": [{
                "protocol": lv.protocol, "concurrency": lv.concurrency, "tool": lv.load.tool,
                "requests": lv.load.requests, "errors": lv.load.errors,
                "seconds": lv.load.seconds, "requests_per_s": lv.load.requests_per_s,
                "rows_per_s": lv.rows_per_s, "p50_ms": lv.load.p50_ms,
                "p90_ms": lv.load.p90_ms, "p99_ms": lv.load.p99_ms, "ratio": self.ratio(lv),
                "ratio_at_formed": self.ratio_at_formed(lv),
                "server_success": lv.server_success, "formed_batch": lv.formed_batch,
                "client_cpu_cores": lv.load.client_cpu_s / wall[id(lv)] if wall[id(lv)]
                else None,
                "server_cpu_cores": None if lv.server_cpu_s is None or not wall[id(lv)]
                else lv.server_cpu_s / wall[id(lv)],
                "in_process_at_formed": ceiling(lv.ceiling_at_formed),
                "error_detail": lv.load.detail,
            } for lv in self.levels],
            "notes": self.notes,
        }


def parse_concurrency(text: str) -> list[int]:
    """``"1,16,64"`` -> [1, 16, 64]; BenchError for anything but positive integers."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise BenchError(f"--concurrency: {text!r} is not a comma-separated list of positive "
                         "integers, e.g. 1,16,64")
    levels = [int(p) for p in parts]
    if len(levels) > MAX_LEVELS or max(levels) > MAX_CONCURRENCY:
        raise BenchError(f"--concurrency: {text!r}: at most {MAX_LEVELS} levels of at most "
                         f"{MAX_CONCURRENCY} requests in flight")
    return levels
