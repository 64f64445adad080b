"""Side-by-side measurement of model variants (fp32, INT8, pruned, ...) as ONNX files.

:func:`compare_onnx` runs each file with ONNX Runtime on the CPU, in this process, and
measures: top-1 accuracy on the given test split; file size; latency of one image (batch 1,
median over ``latency_runs`` calls, in milliseconds); and throughput at batch 64 (images per
second, the best of ``rounds`` rounds of ``iterations`` calls: the best round is the least
disturbed by other work on the machine). Speed is measured once per entry of ``threads``:
ORT's intra-op thread count (``None`` = the session default, one thread per physical core),
with one inter-op thread. Rounds interleave the variants, so a burst of load elsewhere hits
all of them alike.

The :class:`Comparison` it returns is data (``rows``, ``to_dict()``) and a markdown table
(``to_markdown()``) for a run's report, with each speed relative to the ``baseline`` row.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import ConfigError
from shipyard.export.quantize import _input_name, _split_test, onnx_predict, ort_session

__all__ = ["Comparison", "VariantMeasurement", "compare_onnx"]


@dataclass
class VariantMeasurement:
    """One model file's numbers; speeds are keyed by the thread count (``"default"`` for the
    session default)."""

    name: str
    path: str
    bytes: int
    accuracy: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Median latency at batch 1, per thread setting."""
    throughput: dict[str, float] = field(default_factory=dict)
    """Best images per second at batch ``batch_size``, per thread setting."""
    note: str = ""


@dataclass
class Comparison:
    rows: list[VariantMeasurement]
    threads: list[str]
    batch_size: int
    latency_runs: int
    rounds: int
    iterations: int
    samples: int
    baseline: str

    def row(self, name: str) -> VariantMeasurement:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def speedup(self, name: str, threads: str) -> float:
        """Throughput of ``name`` over the baseline's, at ``threads``."""
        return self.row(name).throughput[threads] / self.row(self.baseline).throughput[threads]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        base = self.row(self.baseline)
        head = ["model", "accuracy", "Δ points", "size", "size x"]
        for t in self.threads:
            label = "default thr" if t == "default" else f"{t} thr"
            head += [f"b1 p50 ms ({label})", f"b{self.batch_size} img/s ({label})", "x fp32"
                     if self.baseline == "fp32" else f"x {self.baseline}"]
        with_notes = any(r.note for r in self.rows)
        if with_notes:
            head.append("note")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            acc = "n/a" if r.accuracy is None else f"{100 * r.accuracy:.2f}%"
            drop = ("" if r.accuracy is None or base.accuracy is None or r is base
                    else f"{100 * (r.accuracy - base.accuracy):+.2f}")
            cells = [r.name, acc, drop, _size(r.bytes), f"{r.bytes / base.bytes:.2f}"]
            for t in self.threads:
                cells += [f"{r.latency_ms[t]:.3f}", f"{r.throughput[t]:,.0f}",
                          f"{r.throughput[t] / base.throughput[t]:.2f}"]
            if with_notes:
                cells.append(r.note)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _key(threads: int | None) -> str:
    return "default" if threads is None else str(threads)


def compare_onnx(
    models: Mapping[str, str | Path],
    test: Any,
    *,
    threads: Sequence[int | None] = (1, 2),
    batch_size: int = 64,
    latency_runs: int = 200,
    rounds: int = 5,
    iterations: int = 10,
    baseline: str | None = None,
    notes: Mapping[str, str] | None = None,
    input_name: str | None = None,
) -> Comparison:
    """Measure every ``{name: model.onnx}`` of ``models`` (see the module docstring).

    ``test``: float32 inputs ``[N, ...]`` or an ``(inputs, labels)`` pair (accuracy needs the
    labels); speed uses its first images. ``baseline``: the row speeds and sizes are relative
    to (default: the first). ``notes``: a free-text column per name."""
    if not models:
        raise ConfigError("compare_onnx models is empty: give {name: path to .onnx}")
    baseline = baseline or next(iter(models))
    if baseline not in models:
        raise ConfigError(f"baseline {baseline!r} is not one of the models {list(models)}")
    if not threads:
        raise ConfigError("threads must name at least one thread count (or None = default)")
    for t in threads:
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ConfigError(f"threads entries must be integers >= 1 or None, got {t!r}")
    for label, value in (("batch_size", batch_size), ("latency_runs", latency_runs),
                         ("rounds", rounds), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
    x, y = _split_test(test)
    if len(x) == 0:
        raise ConfigError("compare_onnx test data is empty")
    batch = np.ascontiguousarray(np.resize(x, (batch_size, *x.shape[1:])).astype(x.dtype))
    singles = [np.ascontiguousarray(x[i % len(x):i % len(x) + 1]) for i in range(32)]
    rows: list[VariantMeasurement] = []
    sessions: dict[tuple[str, str], Any] = {}
    for name, path in models.items():
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model {name!r}: {str(path)!r} does not exist")
        for t in threads:
            sessions[name, _key(t)] = ort_session(path, t)
        acc = None
        if y is not None:
            out = onnx_predict(sessions[name, _key(threads[-1])], x, input_name=input_name)
            acc = float(np.mean(out.argmax(1) == y))
        rows.append(VariantMeasurement(name, str(path), path.stat().st_size, acc,
                                       note=(notes or {}).get(name, "")))
    inputs = {k: _input_name(s, input_name) for k, s in sessions.items()}
    best: dict[tuple[str, str], float] = {}
    latencies: dict[tuple[str, str], list[float]] = {k: [] for k in sessions}
    per_round = max(1, latency_runs // rounds)
    for k, s in sessions.items():  # warm-up
        for _ in range(3):
            s.run(None, {inputs[k]: batch})
            s.run(None, {inputs[k]: singles[0]})
    for _ in range(rounds):
        for k, s in sessions.items():
            feed = {inputs[k]: batch}
            start = time.perf_counter()
            for _ in range(iterations):
                s.run(None, feed)
            rate = batch_size * iterations / (time.perf_counter() - start)
            best[k] = max(best.get(k, 0.0), rate)
            for i in range(per_round):
                one = {inputs[k]: singles[i % len(singles)]}
                start = time.perf_counter()
                s.run(None, one)
                latencies[k].append(1e3 * (time.perf_counter() - start))
    for r in rows:
        for t in threads:
            r.throughput[_key(t)] = best[r.name, _key(t)]
            r.latency_ms[_key(t)] = statistics.median(latencies[r.name, _key(t)])
    return Comparison(rows, [_key(t) for t in threads], batch_size, per_round * rounds, rounds,
                      iterations, len(x), baseline)
