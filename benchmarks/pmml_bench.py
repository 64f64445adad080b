"""PMML runtime benchmark: Shipyard serving a PMML model against jpmml_evaluator in-process.

    python benchmarks/pmml_bench.py [--seconds S] [--no-write]

Measured in one run (about three minutes), ``BATCH`` rows per call everywhere:

* in-process, one Python thread, in a loop over prebuilt input:

  - ``Evaluator.evaluateAll`` over a pandas DataFrame (the library's public batch API), with its
    default ``parallelism=-1`` (the JVM's common pool) and with ``parallelism=1``;
  - ``PythonEvaluatorUtil.evaluateAll`` on the JVM (the lower-level call under it, which the
    runtime itself makes: pickled column lists in, pickled column lists out, parallelism 1), on
    prebuilt column lists: the fastest honest use of jpmml_evaluator found, so the ceiling;
    also on the rows with missing values that wrk sends, and from two Python threads at once
    (JPype releases the GIL while Java runs);
  - ``PmmlRuntime.run`` on ``[BATCH, 1]`` numpy arrays (the runtime's own share of a request:
    the above plus numpy <-> lists);

* Shipyard: ``python -m shipyard serve`` on a repository holding the same model with the default
  config (dynamic batching, max_batch_size 32), at concurrency 16 with ``BATCH`` rows per
  request: perf_analyzer ``-b BATCH`` over REST (binary tensor extension, and JSON if
  perf_analyzer gets through it) and gRPC; wrk posting a prebuilt JSON body (fields
  ``[BATCH, 1]``, with JSON nulls as missing values, which perf_analyzer's input data cannot
  hold). The server's statistics give the rows per execution (the batcher merging requests).

The model is the test suite's logistic classifier (tests/pmml_models.py: a string field, a
double field with a missing-value replacement, an integer field). Results are printed and
written to the "PMML runtime" section of docs/benchmarks.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent),
                str(Path(__file__).resolve().parent.parent / "tests")]

from doc_sections import write_section  # noqa: E402
from pmml_models import CLASSIFIER  # noqa: E402
from serve_bench import (  # noqa: E402
    DOC,
    HOST,
    Processes,
    child_env,
    find_tool,
    perf_analyzer_env,
    source_info,
    wait_for_lines,
)

BATCH = 16
CONCURRENCY = 16
TARGET = 0.7
SECTION = "## PMML runtime"
MODEL = "classifier"
DATATYPES = {"sex": "BYTES", "age": "FP64", "n": "INT64"}


def rows(n: int, missing: bool = False) -> dict[str, list[Any]]:
    """``n`` rows of the classifier's fields; ``missing``: some ages and one sex are None."""
    rng = np.random.default_rng(0)
    sex: list[Any] = rng.choice(["male", "female"], n).tolist()
    age: list[Any] = rng.uniform(1, 80, n).round(1).tolist()
    if missing:
        age[1] = age[5] = None
        sex[3] = None
    return {"sex": sex, "age": age, "n": rng.integers(0, 5, n).tolist()}


def _rate(call: Callable[[], Any], seconds: float, threads: int = 1) -> float:
    """Rows/s of ``call`` (one batch) in a loop, in ``threads`` Python threads at once."""
    for _ in range(300):  # JIT warm-up
        call()
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            call()
            counts[i] += BATCH

    t0 = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def in_process(seconds: float, work: Path) -> dict[str, float]:
    import jpype
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    from shipyard.serving.config import ModelConfig
    from shipyard.serving.runtimes import create_runtime

    evaluator = make_evaluator(CLASSIFIER)
    one, holes = rows(BATCH), rows(BATCH, missing=True)
    frame = pd.DataFrame(one)
    util = jpype.JClass("org.jpmml.evaluator.python.PythonEvaluatorUtil")
    java = evaluator.javaEvaluator

    def low(batch: dict[str, list[Any]]) -> Callable[[], dict[str, Any]]:
        columns, data = list(batch), list(batch.values())

        def call() -> dict[str, Any]:
            blob = pickle.dumps({"columns": columns, "data": data}, protocol=2)
            got: dict[str, Any] = pickle.loads(bytes(util.evaluateAll(java, blob, None, 1)))
            return got
        return call

    # the lower-level call answers as the public one does
    want = evaluator.evaluateAll(frame)
    got = low(one)()
    assert got["errors"] is None
    by_name = dict(zip(got["columns"], got["data"], strict=True))
    np.testing.assert_allclose(by_name["probability(yes)"], want["probability(yes)"])

    folder = work / "inproc"
    folder.mkdir()
    (folder / "model.pmml").write_text(CLASSIFIER)
    rt = create_runtime(folder, ModelConfig.model_validate({"name": MODEL}))
    rt.load()
    arrays = {"sex": np.array(one["sex"], object).reshape(-1, 1),
              "age": np.array(one["age"], np.float64).reshape(-1, 1),
              "n": np.array(one["n"], np.int64).reshape(-1, 1)}
    outputs = [s.name for s in rt.metadata()[1]]
    return {
        "evaluateAll(DataFrame), parallelism -1 (default)":
            _rate(lambda: evaluator.evaluateAll(frame), seconds),
        "evaluateAll(DataFrame), parallelism 1":
            _rate(lambda: evaluator.evaluateAll(frame, parallelism=1), seconds),
        "PythonEvaluatorUtil.evaluateAll (the runtime's call)": _rate(low(one), seconds),
        "PythonEvaluatorUtil.evaluateAll, rows with missing values": _rate(low(holes), seconds),
        "PythonEvaluatorUtil.evaluateAll, 2 Python threads": _rate(low(one), seconds, 2),
        "PmmlRuntime.run on [16, 1] arrays": _rate(lambda: rt.run(arrays, outputs), seconds),
    }


def _stats(http_port: int) -> tuple[int, int, int]:
    """(inference_count, execution_count, failed requests) of the model so far."""
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/v2/models/{MODEL}/stats") as r:
        s = json.load(r)["model_stats"][0]
    return s["inference_count"], s["execution_count"], s["inference_stats"]["fail"]["count"]


class Served:
    """One measurement of the server: rows/s, p50 ms, rows per execution, note."""

    def __init__(self, label: str, rate: float, p50: float | None, per_exec: float,
                 note: str = "") -> None:
        self.label, self.rate, self.p50, self.per_exec, self.note = (label, rate, p50,
                                                                     per_exec, note)


def perf_analyzer(exe: str, protocol: str, fmt: str, url: str, data: Path, work: Path,
                  procs: Processes, seconds: float) -> tuple[float, float] | str:
    """(rows/s, p50 ms), or why perf_analyzer gave no result."""
    out = work / f"pa_{protocol}_{fmt}.csv"
    cmd = [exe, "-m", MODEL, "-u", url, "-i", protocol,
           "--concurrency-range", str(CONCURRENCY), "-b", str(BATCH),
           "--measurement-interval", str(int(seconds * 1000)), "--percentile=50",
           "-s", "1000", "-r", "3", "--input-data", str(data), "-f", str(out)]
    if protocol == "http":
        cmd += ["--input-tensor-format", fmt, "--output-tensor-format", fmt]
    log = work / f"pa_{protocol}_{fmt}.log"
    proc = procs.start(cmd, log, env=perf_analyzer_env())
    rc = proc.wait(seconds * 8 + 60)
    if rc != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        return f"perf_analyzer exited {rc}: {tail[0] if tail else 'no output'}"
    with open(out) as f:
        rec = next(csv.DictReader(f))
    return float(rec["Inferences/Second"]), float(rec["p50 latency"]) / 1000


def wrk(port: int, work: Path, seconds: float) -> tuple[float, float, int] | str:
    """(rows/s, p50 ms, non-2xx responses) of wrk posting the JSON body with missing values."""
    exe = shutil.which("wrk")
    if exe is None:
        return "wrk not found"
    batch = rows(BATCH, missing=True)
    body = json.dumps({"inputs": [
        {"name": name, "datatype": DATATYPES[name], "shape": [BATCH, 1], "data": values}
        for name, values in batch.items()]})
    assert body.count("null") == 3
    (work / "body.json").write_text(body)
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{work / "body.json"}", "rb")\n'
        'wrk.body = f:read("*a")\nf:close()\n'
        'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(
        [exe, "-t1", f"-c{CONCURRENCY}", f"-d{max(1, int(seconds * 2))}s", "--latency",
         "-s", str(script), f"http://{HOST}:{port}/v2/models/{MODEL}/infer"],
        capture_output=True, text=True, timeout=seconds * 2 + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\b", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rate is None or p50 is None:
        return f"wrk gave no result: {out[-300:]!r}"
    ms = float(p50.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)]
    return float(rate.group(1)) * BATCH, ms, int(bad.group(1)) if bad else 0


def served(exe: str, http: str, grpc: str, work: Path, procs: Processes,
           seconds: float) -> list[Served]:
    data = work / "data.json"
    one = rows(BATCH)
    # one row per step: perf_analyzer's -b 16 fills each request's 16 rows from it
    data.write_text(json.dumps({"data": [
        {name: {"content": [values[i]], "shape": [1]} for name, values in one.items()}
        for i in range(BATCH)]}))
    results = []
    runs: list[tuple[str, Callable[[], tuple[float, float] | tuple[float, float, int] | str]]]
    runs = [
        ("REST binary, perf_analyzer", lambda: perf_analyzer(
            exe, "http", "binary", f"{HOST}:{http}", data, work, procs, seconds)),
        ("gRPC, perf_analyzer", lambda: perf_analyzer(
            exe, "grpc", "binary", f"{HOST}:{grpc}", data, work, procs, seconds)),
        ("REST JSON, wrk (3 nulls in the body)", lambda: wrk(int(http), work, seconds)),
        ("REST JSON, perf_analyzer", lambda: perf_analyzer(
            exe, "http", "json", f"{HOST}:{http}", data, work, procs, seconds)),
    ]
    for label, run in runs:
        before = _stats(int(http))
        got = run()
        after = _stats(int(http))
        rows_done, execs, failed = (a - b for a, b in zip(after, before, strict=True))
        per_exec = rows_done / execs if execs else float("nan")
        notes = [f"{failed} failed requests"] if failed else []
        if isinstance(got, str):
            results.append(Served(label, float("nan"), None, per_exec,
                                  "; ".join([got, *notes])))
            continue
        if len(got) == 3 and got[2]:
            notes.append(f"{got[2]} non-2xx responses")
        results.append(Served(label, got[0], got[1], per_exec, "; ".join(notes)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement window")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    exe = find_tool("perf_analyzer")
    if exe is None:
        print("perf_analyzer not found (pip install tritonclient)", file=sys.stderr)
        return 2
    started = time.monotonic()
    procs = Processes()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = work / "repo"
        (repo / MODEL / "1").mkdir(parents=True)
        (repo / MODEL / "1" / "model.pmml").write_text(CLASSIFIER)  # default config
        log = work / "server.log"
        server = procs.start([sys.executable, "-m", "shipyard", "serve", "--model-repository",
                              str(repo), "--host", HOST, "--http-port", "0", "--grpc-port", "0"],
                             log, env=child_env())
        try:
            found = wait_for_lines(server, log, {
                "http": r"HTTP listening on http://[^:]+:(\d+)",
                "grpc": r"gRPC listening on [^:]+:(\d+)",
                "batch": r"loaded classifier version 1 \(max_batch_size (\d+)",
                "ready": r"ready: (serving)"}, 90)
            inproc = in_process(args.seconds, work)
            results = served(exe, found["http"], found["grpc"], work, procs, args.seconds)
        finally:
            procs.stop_all()
    took = time.monotonic() - started
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = list(inproc)
    public, ceiling, holes, two = (inproc[names[i]] for i in (0, 2, 3, 4))

    def ratio(v: float, base: float) -> str:
        return "" if v != v else f"{v / base:.2f}"

    table = ["| in-process (one thread unless said) | rows/s | / ceiling |",
             "| --- | ---: | ---: |"]
    table += [f"| {name} | {rate:,.0f} | {rate / ceiling:.2f} |" for name, rate in inproc.items()]
    served_table = [
        f"| Shipyard, c{CONCURRENCY} b{BATCH} | rows/s | p50 ms | rows per execution "
        "| / ceiling | target | / 2 threads | / public evaluateAll | note |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
    for r in results:
        base = holes if "nulls" in r.label else ceiling
        verdict = "" if r.rate != r.rate else "PASS" if r.rate / base >= TARGET else "MISS"
        served_table.append(
            f"| {r.label} | {'' if r.rate != r.rate else f'{r.rate:,.0f}'} | "
            f"{'' if r.p50 is None else f'{r.p50:.2f}'} | "
            f"{'' if r.per_exec != r.per_exec else f'{r.per_exec:.1f}'} | "
            f"{ratio(r.rate, base)} | {verdict} | {ratio(r.rate, two)} | "
            f"{ratio(r.rate, public)} | {r.note} |")
    text = "\n".join([
        SECTION, "",
        f"Written by `python benchmarks/pmml_bench.py` ({stamp}, {took:.0f} s; {source_info()}). "
        "The test suite's logistic PMML classifier (a string field, a double field with a "
        f"missing-value replacement, an integer field), {BATCH} rows per call everywhere; every "
        "figure is from this one run. In-process: jpmml_evaluator in a loop over prebuilt "
        "input, one Python thread unless said. The ceiling is the fastest honest in-process "
        "use found: the lower-level `PythonEvaluatorUtil.evaluateAll` that the runtime itself "
        "calls (pickled column lists, parallelism 1), "
        f"{ceiling / public:.0f}x the public `Evaluator.evaluateAll(DataFrame)` here, whose "
        "extra time goes to building and reading pandas frames; a served ratio against the "
        "public call overstates the server. The same call from two Python threads at once "
        "(both cores; the server runs one model instance) is given too, and the served rows "
        "against it. "
        f"Served: `shipyard serve` with the default config (dynamic batching, max_batch_size "
        f"{found['batch']}; fields `[-1, 1]`), concurrency {CONCURRENCY}, {BATCH} rows per "
        f"request: perf_analyzer `-b {BATCH}` (REST binary extension, gRPC, and REST JSON, "
        f"which perf_analyzer 2.41 may not get through) and wrk (`-t1 -c{CONCURRENCY}`, a "
        f"prebuilt JSON body of `[{BATCH}, 1]` fields holding 3 JSON nulls, compared with the "
        "ceiling on the same rows). Rows per execution: the server's inference_count / "
        f"execution_count over the load (> {BATCH}: requests merged). Target: >= {TARGET} of "
        "the ceiling.", "",
        *table, "",
        *served_table, "",
    ])
    print(text)
    if not args.no_write:
        write_section(DOC, "pmml", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
