"""``shipyard serve --workers N``: throughput of the ``risk`` model with 1, 2, ... N workers
against the same bare ceilings, in one run.

    python benchmarks/workers_bench.py [--workers 1,2] [--duration S] [--concurrency C]
                                       [--scale-load] [--wrk-threads T]
                                       [--grpc-clients-per-worker K]
                                       [--output FILE | --no-write]

REST: ``wrk`` (``-c C`` connections, JSON infer requests); gRPC: Triton's ``perf_analyzer``
(concurrency C, raw binary inputs).

With ``--scale-load`` (the 16-core run, ``benchmarks/device/run.sh``) N workers face N times the
one-worker load: C x N wrk connections, and for gRPC K x N perf_analyzer processes side by side
(``--grpc-clients-per-worker K``, each with its share of the concurrency, their rates summed).
One perf_analyzer sends all its calls over one HTTP/2 connection, and ``SO_REUSEPORT`` hands
each connection to one worker, so a single client would keep every other worker idle.

The ceilings are the bare ASGI app and the bare grpc.aio server of ``serve_bench.py`` (one
process each, canned replies). Each row also gives the CPU
each worker process used (cores), which shows how the load spread over the workers. The
result is printed and written as the section ``workers`` of docs/benchmarks.md
(``benchmarks/doc_sections.py``; ``workers-scaling`` with ``--scale-load``). Every process
started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from doc_sections import write_section
from serve_bench import (
    BENCH_DIR,
    DOC,
    HOST,
    RISK_INPUT,
    SRC,
    Processes,
    child_env,
    fetch_canned,
    find_tool,
    machine,
    perf_analyzer_env,
    source_info,
    wait_for_lines,
)

from shipyard.bench._load import cpu_seconds  # shipyard bench's /proc reader

_STARTED = re.compile(r"worker \d+ started \(pid (\d+)\)")


@dataclass
class Row:
    """One measurement."""

    target: str
    protocol: str
    workers: int
    throughput: float = 0.0
    p50_ms: float | None = None
    #: CPU used by each server process during the measurement (cores)
    cpu: list[float] = field(default_factory=list)
    error: str = ""


def _cpu_s(pid: int) -> float:
    return cpu_seconds(pid) or 0.0  # 0 for a process that is gone


@contextlib.contextmanager
def _server_cpu(row: Row, pids: list[int]) -> Iterator[None]:
    """``row.cpu``: the cores each server process used while the block ran."""
    before = [_cpu_s(p) for p in pids]
    t0 = time.monotonic()
    yield
    wall = time.monotonic() - t0
    row.cpu = [(_cpu_s(p) - b) / wall for p, b in zip(pids, before, strict=True)]


def _measure(row: Row, pids: list[int], cmd: list[str], env: dict[str, str] | None,
             timeout_s: float) -> str:
    with _server_cpu(row, pids):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if out.returncode != 0:
        row.error = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1][:200]
    return out.stdout


def wrk_rest(row: Row, port: int, pids: list[int], args: argparse.Namespace,
             workdir: Path) -> None:
    """REST JSON infer requests with wrk."""
    body = json.dumps({"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32",
                                   "data": RISK_INPUT.ravel().tolist()}]})
    script = workdir / "infer.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    connections = _load(args, row.workers)
    threads = max(1, min(args.wrk_threads, connections))
    text = _measure(row, pids, [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{args.duration:g}s",
        "--latency", "-s", str(script), f"http://{HOST}:{port}/v2/models/risk/infer"],
        None, args.duration + 30)
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        row.throughput = float(m.group(1))
    if m := re.search(r"50%\s+([\d.]+)(us|ms|s)\b", text):
        row.p50_ms = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    if re.search(r"Non-2xx or 3xx responses", text):
        row.error = "non-2xx answers: " + text.split("Non-2xx or 3xx responses:")[1].split()[0]


def _load(args: argparse.Namespace, workers: int) -> int:
    """The concurrency of a row: C, or C x N with ``--scale-load``."""
    return args.concurrency * workers if args.scale_load else args.concurrency


def pa_grpc(row: Row, port: int, pids: list[int], args: argparse.Namespace,
            workdir: Path, exe: str) -> None:
    """gRPC infer requests (raw inputs) with perf_analyzer: 3 windows of ``duration``; with
    ``--grpc-clients-per-worker K``, K x N processes at once (one connection each), summed."""
    total = _load(args, row.workers)
    clients = max(1, args.grpc_clients_per_worker * row.workers)
    clients = min(clients, total)
    shares = [total // clients + (i < total % clients) for i in range(clients)]
    tag = f"{row.target}_{row.workers}".replace(" ", "_")
    csvs = [workdir / f"pa_{tag}_{i}.csv" for i in range(clients)]
    cmds = [[exe, "-m", "risk", "-u", f"{HOST}:{port}", "-i", "grpc",
             "--concurrency-range", str(share),
             "--measurement-interval", str(int(args.duration * 1000 / 3)), "-s", "1000",
             "-r", "3", "--percentile=50", "--input-data", "random", "-f", str(out)]
            for share, out in zip(shares, csvs, strict=True)]
    _measure_all(row, pids, cmds, perf_analyzer_env(), args.duration * 3 + 60)
    rates, p50s = [], []
    for out in csvs:
        if out.exists():
            with open(out) as f:
                rec = next(csv.DictReader(f))
            rates.append(float(rec["Inferences/Second"]))
            p50s.append(float(rec["p50 latency"]) / 1000)
    if len(rates) == clients:
        row.throughput = sum(rates)
        row.p50_ms = sorted(p50s)[len(p50s) // 2]  # the median client's p50
    elif not row.error:
        row.error = f"perf_analyzer wrote {len(rates)} of {clients} CSVs"


def _measure_all(row: Row, pids: list[int], cmds: list[list[str]], env: dict[str, str],
                 timeout_s: float) -> None:
    """Run ``cmds`` side by side (one is :func:`_measure`'s case); CPU per server process."""
    if len(cmds) == 1:
        _measure(row, pids, cmds[0], env, timeout_s)
        return
    errors = []
    with _server_cpu(row, pids):
        deadline = time.monotonic() + timeout_s
        procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=env) for c in cmds]
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                errors.append("perf_analyzer timed out")
                continue
            if proc.returncode != 0:
                errors.append(
                    (err.strip() or f"exit code {proc.returncode}").splitlines()[-1][:200])
    if errors:
        row.error = f"{len(errors)} of {len(cmds)} clients failed: {errors[0]}"


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    """Every measurement; and the RSS (MiB) of each worker of the largest run."""
    exe = find_tool("perf_analyzer")
    if exe is None or find_tool("wrk") is None:
        raise SystemExit("needs wrk and perf_analyzer (tritonclient[all]) on PATH")
    repo = SRC / "shipyard" / "demo" / "repository"
    workdir = Path(tempfile.mkdtemp(prefix="workers_bench_"))
    procs = Processes()
    rows: list[Row] = []
    rss: dict[str, float] = {}
    try:
        canned_path = workdir / "canned.json"
        for n in args.workers:
            log = workdir / f"server_{n}.log"
            server = procs.start([sys.executable, "-m", "shipyard", "serve", "--model-repository",
                                  str(repo), "--host", HOST, "--http-port", "0", "--grpc-port",
                                  "0", "--grace-period", "2", "--workers", str(n)], log,
                                 env=child_env())
            ports = wait_for_lines(server, log, {
                "http": r"HTTP listening on http://[^:]+:(\d+)",
                "grpc": r"gRPC listening on [^\s]+:(\d+)", "ready": r"ready: serving"}, 120)
            http_port, grpc_port = int(ports["http"]), int(ports["grpc"])
            pids = ([int(p) for p in _STARTED.findall(log.read_text())] if n > 1
                    else [server.pid])
            if not canned_path.exists():
                canned_path.write_text(json.dumps(fetch_canned(http_port, grpc_port)))
            for protocol in ("REST", "gRPC"):
                row = Row("shipyard", protocol, n)
                print(f"shipyard --workers {n} {protocol} ...", flush=True)
                if protocol == "REST":
                    wrk_rest(row, http_port, pids, args, workdir)
                else:
                    pa_grpc(row, grpc_port, pids, args, workdir, exe)
                rows.append(row)
            if n == max(args.workers):
                rss = {f"pid {p}": _rss_mib(p) for p in pids}
                rss["parent"] = _rss_mib(server.pid) if n > 1 else 0.0
            procs.stop(server)
        for script, protocol, pattern in (
                ("bare_asgi.py", "REST", r"HTTP listening on http://[^:]+:(\d+)"),
                ("bare_grpc.py", "gRPC", r"gRPC listening on [^\s]+:(\d+)")):
            log = workdir / f"{script}.log"
            proc = procs.start([sys.executable, str(BENCH_DIR / script), "--canned",
                                str(canned_path), "--host", HOST, "--port", "0"], log,
                               env=child_env())
            port = int(wait_for_lines(proc, log, {"port": pattern}, 30)["port"])
            row = Row(f"bare {'ASGI' if protocol == 'REST' else 'gRPC'}", protocol, 1)
            print(f"{row.target} ...", flush=True)
            if protocol == "REST":
                wrk_rest(row, port, [proc.pid], args, workdir)
            else:
                pa_grpc(row, port, [proc.pid], args, workdir, exe)
            rows.append(row)
            procs.stop(proc)
    finally:
        procs.stop_all()
    return rows, rss


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def render(rows: list[Row], rss: dict[str, float], args: argparse.Namespace) -> str:
    """The ``workers`` section of docs/benchmarks.md."""
    info = machine()
    load = (f"{args.concurrency} x N" if args.scale_load else str(args.concurrency))
    clients = (f"{args.grpc_clients_per_worker} x N processes side by side, rates summed"
               if args.grpc_clients_per_worker else "one process")
    grpc = f"concurrency {load} ({clients})"
    one = {r.protocol: r.throughput for r in rows if r.target == "shipyard" and r.workers == 1}
    lines = [
        "## Serving on every core (`--workers N`)" + (
            f": the scaling run on {info['nproc']} cores" if args.scale_load else ""), "",
        f"Run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {info['nproc']} "
        f"cores ({info['cpu']}), {source_info()}. The `risk` model; REST: wrk "
        f"({args.wrk_threads} threads), {load} connections, JSON infer requests; gRPC: "
        f"perf_analyzer, {grpc}, raw binary inputs; {args.duration:g} s per row. "
        "The load generator runs on the same cores as the server. Goal (issue 14): N workers "
        "serve >= 0.7 x N x the one-worker figure while cores are free.", "",
        "| target | protocol | workers | infer/s | x one worker | / N (goal >= 0.7) | p50 ms "
        "| CPU per process (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = efficiency = "-"
        if r.target == "shipyard" and one.get(r.protocol):
            x = r.throughput / one[r.protocol]
            ratio = f"{x:.2f}"
            if r.workers > 1:
                efficiency = f"{x / r.workers:.2f} {'PASS' if x / r.workers >= 0.7 else 'MISS'}"
        p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.2f}"
        cpu = ", ".join(f"{c:.2f}" for c in r.cpu)
        note = f" ({r.error})" if r.error else ""
        lines.append(f"| {r.target} | {r.protocol} | {r.workers} | {r.throughput:,.0f}{note} "
                     f"| {ratio} | {efficiency} | {p50} | {cpu} |")
    lines += ["", "`SO_REUSEPORT` spreads connections, not calls: wrk's connections land on "
              "the workers by a hash of their addresses, while one perf_analyzer sends all its "
              "gRPC calls over one HTTP/2 connection, so one worker serves them all (the CPU "
              "column says which). gRPC clients scale over workers only with several channels "
              "(connections): hence several perf_analyzer processes in the scaled runs, whose "
              "connections still land by hash, so a worker may get none. With the load "
              "generator on the same cores, little gain is to be expected below a few free "
              "cores per worker."]
    if rss:
        lines += ["", "RSS with the four demo models loaded, largest run: " + ", ".join(
            f"{k} {v:.0f} MiB" for k, v in rss.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print, and write docs/benchmarks.md's ``workers`` section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--duration", type=float, default=6.0, metavar="S",
                        help="seconds per measurement (gRPC: 3 windows of S/3)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="connections (REST) and concurrency (gRPC) at one worker")
    parser.add_argument("--scale-load", action="store_true",
                        help="N workers get N times the concurrency (each its own share)")
    parser.add_argument("--wrk-threads", type=int, default=2, metavar="T",
                        help="wrk's threads (default 2; more where cores are free)")
    parser.add_argument("--grpc-clients-per-worker", type=int, default=0, metavar="K",
                        help="K x N perf_analyzer processes side by side (default: one)")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in str(args.workers).split(",")]
    rows, rss = run(args)
    text = render(rows, rss, args)
    print(text)
    if not args.no_write:
        # the scaled run (the 16-core machine's) keeps its own section beside this machine's
        name = "workers-scaling" if args.scale_load else "workers"
        write_section(args.output, name, text)
        print(f"wrote the '{name}' section of {args.output}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
