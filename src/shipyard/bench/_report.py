"""The capacity report: a table (stdout), ``bench.json``, ``bench.md`` and ``bench.png``."""

from __future__ import annotations

import json
import math

from shipyard.bench._result import BenchResult, Level

__all__ = ["COLUMNS", "print_table", "rows", "write_report"]

#: the table's columns (stdout and bench.md)
COLUMNS = ["concurrency", "protocol", "requests/s", "rows/s", "p50 ms", "p90 ms", "p99 ms",
           "errors", "served/in-process", "batch formed", "/ in-process at that batch",
           "load tool", "client cores",
           "server cores"]


def _f(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _cores(cpu_s: float | None, wall_s: float) -> str:
    return "n/a" if cpu_s is None or wall_s <= 0 else f"{cpu_s / wall_s:.2f}"


def _row(result: BenchResult, lv: Level) -> list[str]:
    ratio, at_formed = result.ratio(lv), result.ratio_at_formed(lv)
    return [str(lv.concurrency), lv.protocol, _f(lv.load.requests_per_s),
            _f(lv.rows_per_s), _f(lv.load.p50_ms, 2), _f(lv.load.p90_ms, 2),
            _f(lv.load.p99_ms, 2), str(lv.load.errors),
            "n/a" if ratio is None else f"{ratio:.2f}", _f(lv.formed_batch, 1),
            "n/a" if at_formed is None else f"{at_formed:.2f}", lv.load.tool,
            _cores(lv.load.client_cpu_s, lv.load.seconds),
            _cores(lv.server_cpu_s, lv.load.seconds)]


def rows(result: BenchResult) -> list[list[str]]:
    """The table's cells, a row per level."""
    return [_row(result, lv) for lv in result.levels]


def _title(result: BenchResult) -> str:
    c = result.ceiling
    ceiling = "no in-process ceiling" if c is None else (
        f"in-process ceiling {_f(c.rows_per_s)} rows/s (batch {c.batch}, p50 "
        f"{_f(c.p50_ms, 3)} ms)")
    return (f"{result.info.name} at {result.url}: batch {result.settings.batch}, "
            f"{result.settings.duration_s:g} s per level; {ceiling}")


def print_table(result: BenchResult) -> None:
    """The table on stdout (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_title(result), title_justify="left")
    for i, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if i in (1, 11) else "right", no_wrap=True)
    for cells in rows(result):
        table.add_row(*cells)
    Console(width=max(200, Console().width)).print(table)


def _markdown(result: BenchResult) -> str:
    lines = [f"# Capacity report: {result.info.name}", "", _title(result) + ".", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if i in (1, 11) else "---:" for i in range(len(COLUMNS)))
             + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(result)]
    formed = [(lv, lv.ceiling_at_formed) for lv in result.levels if lv.ceiling_at_formed]
    if formed:
        lines += ["", "In-process at the batch the server formed:", ""]
        lines += [f"- {lv.protocol} c={lv.concurrency}: batch {c.batch}: {_f(c.rows_per_s)} "
                  f"rows/s (served {_f(lv.rows_per_s)})" for lv, c in formed if c is not None]
    m = result.machine
    lines += ["", f"Machine: {m.get('cores')} core(s), {m.get('platform')}, Python "
              f"{m.get('python')}.", ""]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def _plot(result: BenchResult) -> bool:
    try:
        import matplotlib
    except ModuleNotFoundError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    protocols = list(dict.fromkeys(lv.protocol for lv in result.levels))
    for i, p in enumerate(protocols):
        color = f"C{i}"
        mine = [lv for lv in result.levels if lv.protocol == p]
        xs = [lv.concurrency for lv in mine]
        left.plot(xs, [lv.rows_per_s for lv in mine], marker="o", color=color,
                  label=f"served ({p})")
        for q, style in (("p50_ms", "-"), ("p90_ms", "--"), ("p99_ms", ":")):
            values = [getattr(lv.load, q) for lv in mine]
            right.plot(xs, [math.nan if v is None else v for v in values], style, marker="o",
                       color=color, label=f"{p} {q[:3]}")
    if result.ceiling is not None:
        left.axhline(result.ceiling.rows_per_s, color="black", linestyle="--",
                     label=f"in-process (batch {result.ceiling.batch})")
    for ax, ylabel in ((left, "rows/s"), (right, "latency (ms)")):
        ax.set_xscale("log", base=2)
        levels = sorted({lv.concurrency for lv in result.levels})
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.minorticks_off()
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylim(bottom=0)
    left.set_title("throughput")
    right.set_title("latency percentiles")
    fig.suptitle(f"{result.info.name}: batch {result.settings.batch}, "
                 f"{result.machine.get('cores')} core(s)")
    fig.tight_layout()
    fig.savefig(result.folder / "bench.png", dpi=110)
    plt.close(fig)
    return True


def write_report(result: BenchResult) -> None:
    """bench.json, bench.md and bench.png (a note instead of the PNG without matplotlib)."""
    result.folder.mkdir(parents=True, exist_ok=True)
    result.plot = _plot(result)
    if not result.plot:
        result.notes.append("no bench.png: the plot needs pip install matplotlib")
    (result.folder / "bench.json").write_text(json.dumps(result.to_json(), indent=2) + "\n",
                                              encoding="utf-8")
    (result.folder / "bench.md").write_text(_markdown(result), encoding="utf-8")
