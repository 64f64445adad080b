"""Per model-version statistics: Triton's statistics extension and the Prometheus histograms."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

__all__ = ["SECONDS_BUCKETS", "Duration", "Histogram", "ModelStats"]

#: Latency histogram bucket upper bounds (seconds).
SECONDS_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Histogram:
    """A lock-free-enough histogram (updated from the event loop thread only)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, ending with +Inf."""
        out, total = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds) to this histogram."""
        if other.bounds != self.bounds:
            raise ValueError(f"cannot merge histograms of bounds {other.bounds} into {self.bounds}")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def merge(self, other: Duration) -> None:
        """Add ``other``'s count and time."""
        self.add(other.ns, other.count)


@dataclass
class ModelStats:
    """Counters for one model version. Updated on the event loop thread."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    #: batch size -> (executions, compute_input, compute_infer, compute_output)
    batch: dict[int, tuple[Duration, Duration, Duration]] = field(default_factory=dict)
    #: failed requests by error code
    failures: dict[str, int] = field(default_factory=dict)
    #: requests the batcher refused or dropped: "queue_full", "timeout"
    rejections: dict[str, int] = field(default_factory=dict)
    request_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    queue_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    compute_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def on_request(self, ok: bool, duration_ns: int, reason: str = "") -> None:
        if ok:
            self.success.add(duration_ns)
            self.last_inference_ms = time.time_ns() // 1_000_000
        else:
            self.fail.add(duration_ns)
            self.failures[reason] = self.failures.get(reason, 0) + 1
        self.request_seconds.observe(duration_ns / 1e9)

    def on_execution(
        self, rows: int, queue_ns: list[int], input_ns: int, infer_ns: int, output_ns: int,
        ok: bool,
    ) -> None:
        if not ok:
            return
        n = len(queue_ns)
        self.execution_count += 1
        self.inference_count += rows
        for q in queue_ns:
            self.queue.add(q)
            self.queue_seconds.observe(q / 1e9)
        # Triton convention: every request of a batch is charged the batch's compute time.
        self.compute_input.add(input_ns * n, n)
        self.compute_infer.add(infer_ns * n, n)
        self.compute_output.add(output_ns * n, n)
        self.compute_seconds.observe((input_ns + infer_ns + output_ns) / 1e9)
        self.batch_size.observe(rows)
        entry = self.batch.get(rows)
        if entry is None:
            entry = self.batch[rows] = (Duration(), Duration(), Duration())
        entry[0].add(input_ns)
        entry[1].add(infer_ns)
        entry[2].add(output_ns)

    def on_rejected(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def merge(self, other: ModelStats) -> None:
        """Add ``other``'s counters (another worker's, for the same model version) to these:
        counts and times add, ``last_inference_ms`` is the later of the two."""
        for name in ("success", "fail", "queue", "compute_input", "compute_infer",
                     "compute_output"):
            getattr(self, name).merge(getattr(other, name))
        self.inference_count += other.inference_count
        self.execution_count += other.execution_count
        self.last_inference_ms = max(self.last_inference_ms, other.last_inference_ms)
        for size, durations in other.batch.items():
            mine = self.batch.get(size)
            if mine is None:
                mine = self.batch[size] = (Duration(), Duration(), Duration())
            for a, b in zip(mine, durations, strict=True):
                a.merge(b)
        for table, more in ((self.failures, other.failures),
                            (self.rejections, other.rejections)):
            for key, n in more.items():
                table[key] = table.get(key, 0) + n
        for name in ("request_seconds", "queue_seconds", "compute_seconds", "batch_size"):
            getattr(self, name).merge(getattr(other, name))

    def copy(self) -> ModelStats:
        """An independent copy (merging into it leaves these counters alone)."""
        out = ModelStats()
        out.merge(self)
        return out
