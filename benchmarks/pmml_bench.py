"""PMML runtime benchmark: Shipyard serving a PMML model against jpmml_evaluator in-process.

    python benchmarks/pmml_bench.py [--seconds S] [--no-write]

Measured in one run (about a minute):

* in-process: ``jpmml_evaluator``'s ``Evaluator.evaluateAll`` over a pandas DataFrame of
  ``BATCH`` rows, in a loop (the reference evaluator at its own batch API);
* Shipyard: ``python -m shipyard serve`` on a repository holding the same model, loaded by
  Triton's ``perf_analyzer`` at concurrency 16 with ``BATCH`` rows per request (served with
  max_batch_size 0: perf_analyzer cannot shape a batched input whose rows are scalars), over REST
  (binary tensor extension: perf_analyzer 2.41 writes only the first FP64 element into a JSON
  body) and gRPC.

The model is the test suite's logistic classifier (tests/pmml_models.py: a string field, a
double field with a missing-value replacement, an integer field); the load has no missing
values (perf_analyzer's input data cannot hold a JSON null). Results are printed and
written to the "PMML runtime" section of docs/benchmarks.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

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
#: perf_analyzer 2.41 writes only the first element of an FP64 tensor into a JSON body (the
#: server then refuses the request), so REST is measured with the binary tensor extension
JSON_FLAG = "binary"
SECTION = "## PMML runtime"


def rows(n: int) -> dict[str, list[object]]:
    # no missing values: perf_analyzer's input data has no way to write a JSON null
    rng = np.random.default_rng(0)
    age = rng.uniform(1, 80, n).round(1).tolist()
    return {"sex": rng.choice(["male", "female"], n).tolist(), "age": age,
            "n": rng.integers(0, 5, n).tolist()}


def in_process(seconds: float) -> float:
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    evaluator = make_evaluator(CLASSIFIER)
    frame = pd.DataFrame(rows(BATCH))
    for _ in range(200):  # JIT warm-up
        evaluator.evaluateAll(frame)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        evaluator.evaluateAll(frame)
        done += BATCH
    return done / (time.perf_counter() - t0)


def perf_analyzer(exe: str, protocol: str, url: str, data: Path, work: Path, procs: Processes,
                  seconds: float) -> tuple[float, float]:
    out = work / f"pa_{protocol}.csv"
    cmd = [exe, "-m", "classifier", "-u", url, "-i", protocol,
           "--concurrency-range", str(CONCURRENCY), "-b", "1",
           "--measurement-interval", str(int(seconds * 1000)), "--percentile=50",
           "-s", "1000", "-r", "3", "--input-data", str(data), "-f", str(out)]
    if protocol == "http":
        cmd += ["--input-tensor-format", JSON_FLAG, "--output-tensor-format", JSON_FLAG]
    log = work / f"pa_{protocol}.log"
    proc = procs.start(cmd, log, env=perf_analyzer_env())
    rc = proc.wait(seconds * 8 + 60)
    if rc != 0 or not out.exists():
        raise RuntimeError(f"perf_analyzer {protocol} failed:\n{log.read_text()[-2000:]}")
    with open(out) as f:
        rec = next(csv.DictReader(f))
    return float(rec["Inferences/Second"]) * BATCH, float(rec["p50 latency"]) / 1000


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
        (repo / "classifier" / "1").mkdir(parents=True)
        (repo / "classifier" / "1" / "model.pmml").write_text(CLASSIFIER)
        # perf_analyzer cannot shape a batched input whose rows are scalars (dims []), so the
        # model is served unbatched (max_batch_size 0, inputs [-1]) with BATCH rows a request
        (repo / "classifier" / "config.yaml").write_text("max_batch_size: 0\n")
        one = rows(BATCH)
        data = work / "data.json"
        data.write_text(json.dumps({"data": [
            {name: {"content": values, "shape": [BATCH]} for name, values in one.items()}]}))
        log = work / "server.log"
        server = procs.start([sys.executable, "-m", "shipyard", "serve", "--model-repository",
                              str(repo), "--host", HOST, "--http-port", "0", "--grpc-port", "0"],
                             log, env=child_env())
        try:
            found = wait_for_lines(server, log, {
                "http": r"HTTP listening on http://[^:]+:(\d+)",
                "grpc": r"gRPC listening on [^:]+:(\d+)", "ready": r"ready: (serving)"}, 90)
            inproc = in_process(args.seconds)
            rest, rest_p50 = perf_analyzer(exe, "http", f"{HOST}:{found['http']}", data, work,
                                           procs, args.seconds)
            grpc, grpc_p50 = perf_analyzer(exe, "grpc", f"{HOST}:{found['grpc']}", data, work,
                                           procs, args.seconds)
        finally:
            procs.stop_all()
    took = time.monotonic() - started
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def verdict(v: float) -> str:
        return "PASS" if v / inproc >= TARGET else "MISS"

    text = "\n".join([
        SECTION, "",
        f"Written by `python benchmarks/pmml_bench.py` ({stamp}, {took:.0f} s; {source_info()}). "
        "The test suite's logistic PMML classifier (a string field, a double field with a "
        "missing-value replacement, an integer field) scored "
        f"{BATCH} rows at a time. In-process = `jpmml_evaluator` `evaluateAll` on a pandas "
        f"DataFrame of {BATCH} rows in a loop; Shipyard = `shipyard serve` loaded by "
        f"perf_analyzer at concurrency {CONCURRENCY}, {BATCH} rows per request (the model served "
        "with max_batch_size 0: perf_analyzer cannot shape batched scalar rows; REST with the "
        "binary tensor extension, since perf_analyzer 2.41 puts only the first FP64 element into a "
        "JSON body; "
        "gRPC; no missing values in the load, since perf_analyzer's input data cannot hold a "
        "JSON null). Target: >= "
        f"{TARGET} of in-process.", "",
        "| what | rows/s | p50 ms | / in-process | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| in-process jpmml_evaluator | {inproc:,.0f} | | 1.00 | |",
        f"| Shipyard REST (binary) c{CONCURRENCY} b{BATCH} | {rest:,.0f} | {rest_p50:.2f} | "
        f"{rest / inproc:.2f} | {verdict(rest)} |",
        f"| Shipyard gRPC c{CONCURRENCY} b{BATCH} | {grpc:,.0f} | {grpc_p50:.2f} | "
        f"{grpc / inproc:.2f} | {verdict(grpc)} |",
        "",
    ])
    print(text)
    if not args.no_write:
        write_section(DOC, "pmml", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
