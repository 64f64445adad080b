"""Text serving benchmark: one SMS message per request, served vs in-process, in one run.

    python benchmarks/text_bench.py [--repo DIR --model NAME] [--seconds S] [--quick]
                                    [--no-write]

The model (default: the tests' token-id classifier, ``tests/onnx_models.py``
``text_classifier_model``, with a WordPiece tokenizer trained on the SMS spam collection,
written into a temporary repository) is served behind its declared steps; ``--repo`` and
``--model`` name any served text model instead (one BYTES input, ``preprocess`` steps that
end in what its ONNX graph takes).

* in-process ceiling: the model's ``preprocess`` steps (from its config.yaml, built with
  ``shipyard.transforms.build_steps``, the code the server runs) + an ONNX Runtime session
  with the server's session settings, in one thread (tokenizers' own parallelism off), at
  batch 1, at 16, and at the batch the server formed at concurrency 16 (its statistics:
  inferences / executions during that load);
* served: ``python -m shipyard serve`` on 127.0.0.1, one ~40-token message per request, over
  REST JSON (V2, BYTES data as a string), REST binary (the binary tensor extension), gRPC
  (tritonclient.grpc.aio) and ``POST /predict {"text": ...}``: concurrency 1 latency (p50 /
  p99, a Python client) and concurrency 16 throughput (wrk for REST JSON when installed,
  ``--wrk-all`` for every REST row; else Python threads; tritonclient's asyncio gRPC client
  for gRPC);
* the ratio of each c16 throughput to the in-process throughput at the server's batch; the
  goal is >= 0.7.

Every measurement is bounded in time (``--seconds``; ``--quick``: a short smoke run) and
count; traffic stays on 127.0.0.1; the server is stopped at the end (also on Ctrl-C or
SIGTERM). The section "Text serving (SMS messages)" of docs/benchmarks.md is replaced (see
doc_sections.py) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from doc_sections import write_section  # noqa: E402
from serve_bench import signals_as_exit  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SMS = ROOT.parent / "shared" / "data" / "sms_spam" / "SMSSpamCollection"
GOAL = 0.7
CONCURRENCY = 16
TARGET_TOKENS = 40
#: messages sent in turn (each request carries one)
POOL = 64
#: no load loop sends more than this many requests, whatever --seconds says
MAX_REQUESTS = 200_000


# -- the model ---------------------------------------------------------------------------------


def default_repository(work: Path, texts: list[str]) -> tuple[Path, str]:
    """The tests' text classifier behind text_normalize + tokenize and softmax + top_k +
    labels, written under ``work``."""
    from onnx_models import TEXT_LABELS, TEXT_PREPROCESS, text_classifier_repository

    config = {
        "backend": "onnx", "max_batch_size": 64,
        "preprocess": TEXT_PREPROCESS,
        "postprocess": [{"softmax": {}}, {"top_k": {"k": 2}},
                        {"labels": {"labels": list(TEXT_LABELS)}}],
    }
    repo = work / "repo"
    text_classifier_repository(repo, texts, {"sms": config})
    return repo, "sms"


def load_config(repo: Path, model: str) -> tuple[dict[str, Any], Path]:
    """The model's config.yaml (as a dict) and its newest version folder."""
    import yaml

    folder = repo / model
    if not folder.is_dir():
        raise SystemExit(f"--model: no folder {str(folder)!r} in the repository")
    versions = sorted((int(p.name), p) for p in folder.iterdir()
                      if p.is_dir() and p.name.isdigit())
    if not versions:
        raise SystemExit(f"--model: {str(folder)!r} has no version folder")
    file = folder / "config.yaml"
    config = yaml.safe_load(file.read_text(encoding="utf-8")) if file.exists() else {}
    return config or {}, versions[-1][1]


def pick_messages(texts: list[str], steps: list[Any], n: int = POOL) -> tuple[list[str], float]:
    """The ``n`` messages whose token count (the tokenize step's tokenizer, special tokens
    included; else words) is nearest :data:`TARGET_TOKENS`, and their mean count."""
    from shipyard.transforms import Tokenize, apply_steps

    at = next((i for i, s in enumerate(steps) if isinstance(s, Tokenize)), None)
    tok = None if at is None else steps[at].load()
    before = steps[:at] if at is not None else []

    def count(text: str) -> int:
        if tok is None:
            return len(text.split())
        made: Any = np.array([text.encode()], dtype=object)
        if before:
            made = apply_steps(before, made)
        return len(tok.tokenizer_.encode(made[0].decode()).ids)

    counted = sorted(((abs(count(t) - TARGET_TOKENS), i, t) for i, t in enumerate(texts)
                      if t.strip()))
    chosen = [t for _, _, t in counted[:n]]
    return chosen, float(np.mean([count(t) for t in chosen]))


# -- in-process ceiling ------------------------------------------------------------------------


class Ceiling:
    """The preprocess steps + an ONNX Runtime session, as the server sets them up."""

    def __init__(self, config: dict[str, Any], version: Path) -> None:
        import onnxruntime as ort

        from shipyard.transforms import build_steps

        self.steps = build_steps(config.get("preprocess") or [], base_dir=version)
        rt = config.get("onnxruntime") or {}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(rt.get("intra_op_threads", 1))
        opts.inter_op_num_threads = int(rt.get("inter_op_threads", 1))
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(version / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, texts: list[str]) -> None:
        from shipyard.transforms import apply_steps

        batch: Any = np.array([t.encode() for t in texts], dtype=object)
        if self.steps:
            batch = apply_steps(self.steps, batch)
        if isinstance(batch, dict):
            feeds = {k: np.asarray(v) for k, v in batch.items()}
        else:
            (graph_in,) = self.inputs
            array = np.asarray(batch)
            if graph_in.type == "tensor(string)":
                array = np.array([v.decode() if isinstance(v, bytes) else v for v in array],
                                 dtype=object).reshape(-1, 1)
            feeds = {graph_in.name: array}
        self.session.run(self.outputs, feeds)

    def rate(self, messages: list[str], batch: int, seconds: float) -> float:
        """Messages/s at ``batch`` messages per run, for about ``seconds``."""
        batches = [[messages[(i * batch + j) % len(messages)] for j in range(batch)]
                   for i in range(max(1, len(messages) // batch))]
        for b in batches[:3]:
            self.run(b)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds and n * batch < MAX_REQUESTS:
            self.run(batches[n % len(batches)])
            n += 1
        return n * batch / (time.perf_counter() - t0)


# -- the server --------------------------------------------------------------------------------


@contextmanager
def served(repo: Path, log: Path) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """``shipyard serve`` on 127.0.0.1 (ports chosen by the system); stopped on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("TOKENIZERS_PARALLELISM", None)  # the server runs as it would in production
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(repo),
             "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"],
            stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            text = log.read_text(errors="replace")
            http_m = re.search(r"HTTP listening on http://[^:]+:(\d+)", text)
            grpc_m = re.search(r"gRPC listening on [^:]+:(\d+)", text)
            if http_m and grpc_m and "ready: serving" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{text[-2000:]}")
            time.sleep(0.2)
        yield int(http_m.group(1)), int(grpc_m.group(1)), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stats(port: int, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of the model, from the server's statistics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/v2/models/{model}/stats")
        doc = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    s = doc["model_stats"][0]
    return int(s["inference_count"]), int(s["execution_count"])


# -- request bodies ----------------------------------------------------------------------------


def v2_json(input_name: str, text: str) -> bytes:
    return json.dumps({"inputs": [{"name": input_name, "datatype": "BYTES", "shape": [1, 1],
                                   "data": [text]}]}).encode()


def v2_binary(input_name: str, text: str) -> tuple[bytes, int]:
    raw = text.encode()
    raw = struct.pack("<I", len(raw)) + raw
    header = json.dumps({"inputs": [{"name": input_name, "datatype": "BYTES", "shape": [1, 1],
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + raw, len(header)


def predict_json(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


class RestLoad:
    """One REST scenario: a path and, per message, a body and its headers."""

    def __init__(self, name: str, path: str, bodies: list[tuple[bytes, dict[str, str]]]) -> None:
        self.name, self.path, self.bodies = name, path, bodies


def rest_loads(model: str, input_name: str, messages: list[str]) -> list[RestLoad]:
    infer = f"/v2/models/{model}/infer"
    binary = [v2_binary(input_name, m) for m in messages]
    return [
        RestLoad("REST JSON (V2 BYTES)", infer, [
            (v2_json(input_name, m), {"Content-Type": "application/json"}) for m in messages]),
        RestLoad("REST binary", infer, [
            (body, {"Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(n)}) for body, n in binary]),
        RestLoad("/predict {\"text\"}", f"/v2/models/{model}/predict", [
            (predict_json(m), {"Content-Type": "application/json"}) for m in messages]),
    ]


# -- load generators ---------------------------------------------------------------------------


def _quantiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    a = np.asarray(latencies) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def rest_c1(port: int, load: RestLoad, seconds: float) -> dict[str, Any]:
    """Sequential requests on one keep-alive connection: p50/p99 ms and requests/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    errors = 0
    try:
        for body, headers in load.bodies[:3]:  # warm-up
            conn.request("POST", load.path, body=body, headers=headers)
            conn.getresponse().read()
        t0 = time.perf_counter()
        i = 0
        while time.perf_counter() - t0 < seconds and i < MAX_REQUESTS:
            body, headers = load.bodies[i % len(load.bodies)]
            start = time.perf_counter()
            conn.request("POST", load.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter() - start)
            errors += resp.status != 200
            i += 1
        wall = time.perf_counter() - t0
    finally:
        conn.close()
    p50, p99 = _quantiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "rps": len(latencies) / wall, "errors": errors}


def rest_c16_python(port: int, load: RestLoad, seconds: float) -> dict[str, Any]:
    """:data:`CONCURRENCY` threads, one keep-alive connection each (the GIL makes this a
    weaker client than wrk)."""
    done = [0] * CONCURRENCY
    bad = [0] * CONCURRENCY
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = k
        try:
            while time.perf_counter() < stop and sum(done) < MAX_REQUESTS:
                body, headers = load.bodies[i % len(load.bodies)]
                conn.request("POST", load.path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                done[k] += 1
                bad[k] += resp.status != 200
                i += CONCURRENCY
        finally:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return {"rps": sum(done) / (time.perf_counter() - t0), "errors": sum(bad),
            "client": "python"}


def rest_c16_wrk(exe: str, port: int, load: RestLoad, seconds: float, work: Path
                 ) -> dict[str, Any]:
    """wrk, one thread, :data:`CONCURRENCY` connections, cycling through the bodies."""
    folder = work / re.sub(r"\W+", "_", load.name)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (body, _) in enumerate(load.bodies):
        (folder / f"{i}.bin").write_bytes(body)
    lines = ["local bodies = {}", "local headers = {}"]
    for i, (_, headers) in enumerate(load.bodies):
        lines.append(f'do local f = io.open("{folder / f"{i}.bin"}", "rb"); '
                     f"bodies[{i + 1}] = f:read(\"*a\"); f:close() end")
        pairs = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
        lines.append(f"headers[{i + 1}] = {{{pairs}}}")
    lines += [
        "local n = 0",
        "request = function()",
        f"  n = n % {len(load.bodies)} + 1",
        f'  return wrk.format("POST", "{load.path}", headers[n], bodies[n])',
        "end",
    ]
    script = folder / "load.lua"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run(
        [exe, "-t1", f"-c{CONCURRENCY}", f"-d{max(1, round(seconds))}s", "-s", str(script),
         f"http://127.0.0.1:{port}{load.path}"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(rate.group(1)) if rate else float("nan"),
            "errors": int(bad.group(1)) if bad else 0, "client": "wrk",
            **({"socket_errors": errors.group(1)} if errors else {})}


def grpc_load(port: int, model: str, input_name: str, messages: list[str], seconds: float,
              concurrency: int) -> dict[str, Any]:
    """tritonclient.grpc.aio: ``concurrency`` tasks, each sending one message at a time."""
    import tritonclient.grpc.aio as agrpc

    inputs = []
    for m in messages:
        inp = agrpc.InferInput(input_name, [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[m.encode()]], dtype=object))
        inputs.append(inp)

    async def main() -> dict[str, Any]:
        client = agrpc.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            for inp in inputs[:3]:
                await client.infer(model, [inp])
            latencies: list[float] = []
            errors = 0
            stop = time.perf_counter() + seconds

            async def worker(k: int) -> None:
                nonlocal errors
                i = k
                while time.perf_counter() < stop and len(latencies) < MAX_REQUESTS:
                    start = time.perf_counter()
                    try:
                        await client.infer(model, [inputs[i % len(inputs)]])
                    except Exception:
                        errors += 1
                    latencies.append(time.perf_counter() - start)
                    i += concurrency

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            wall = time.perf_counter() - t0
        finally:
            await client.close()
        p50, p99 = _quantiles(latencies)
        return {"p50_ms": p50, "p99_ms": p99, "rps": len(latencies) / wall, "errors": errors,
                "client": "tritonclient.grpc.aio"}

    return asyncio.run(main())


# -- the run -----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from shipyard.transforms import build_steps

    rows = _sms(args.sms)
    if args.repo is None:
        repo, model = default_repository(work, rows)
    else:
        repo, model = args.repo, args.model
    config, version = load_config(repo, model)
    steps = build_steps(config.get("preprocess") or [], base_dir=version)
    messages, tokens = pick_messages(rows, steps)
    say(f"model {model} from {repo}; {len(messages)} messages of about {tokens:.0f} tokens")
    ceiling = Ceiling(config, version)
    res: dict[str, Any] = {"model": model, "repo": str(repo), "tokens": tokens,
                           "messages": len(messages), "config": config,
                           "description": str(config.get("description") or "").strip()}
    say("in-process ceiling at batch 1 and 16 ...")
    res["in_process"] = {1: ceiling.rate(messages, 1, args.seconds),
                         16: ceiling.rate(messages, 16, args.seconds)}
    with served(repo, work / "server.log") as (http_port, grpc_port, _proc):
        input_name = _input_name(http_port, model)
        loads = rest_loads(model, input_name, messages)
        wrk = shutil.which("wrk")
        res["wrk"] = wrk is not None
        served_rows: dict[str, dict[str, Any]] = {}
        batches: list[tuple[int, int]] = []
        for load in loads:
            say(f"served: {load.name}, concurrency 1 ...")
            row: dict[str, Any] = {"c1": rest_c1(http_port, load, args.seconds)}
            say(f"served: {load.name}, concurrency {CONCURRENCY} ...")
            before = stats(http_port, model)
            use_wrk = wrk is not None and (args.wrk_all or load.name.startswith("REST JSON"))
            row["c16"] = (rest_c16_wrk(wrk, http_port, load, args.seconds, work)
                          if wrk is not None and use_wrk
                          else rest_c16_python(http_port, load, args.seconds))
            after = stats(http_port, model)
            row["batch"] = _mean_batch(before, after)
            batches.append((after[0] - before[0], after[1] - before[1]))
            served_rows[load.name] = row
        say("served: gRPC, concurrency 1 and 16 ...")
        row = {"c1": grpc_load(grpc_port, model, input_name, messages, args.seconds, 1)}
        before = stats(http_port, model)
        row["c16"] = grpc_load(grpc_port, model, input_name, messages, args.seconds,
                               CONCURRENCY)
        after = stats(http_port, model)
        row["batch"] = _mean_batch(before, after)
        batches.append((after[0] - before[0], after[1] - before[1]))
        served_rows["gRPC (tritonclient)"] = row
        res["served"] = served_rows
        res["server_log_tail"] = (work / "server.log").read_text(errors="replace")[-1500:]
    rows_total = sum(b[0] for b in batches)
    execs_total = sum(b[1] for b in batches)
    formed = max(1, round(rows_total / execs_total)) if execs_total else 16
    res["formed_batch"] = formed
    for row in res["served"].values():
        b = row["batch"]
        key = max(1, round(b)) if b == b else formed  # b is NaN when nothing ran
        if key not in res["in_process"]:
            say(f"in-process ceiling at batch {key} (what the server formed) ...")
            res["in_process"][key] = ceiling.rate(messages, key, args.seconds)
        row["ceiling_batch"] = key
        row["ratio"] = row["c16"]["rps"] / res["in_process"][key]
    say("in-process ceiling at batch 16 again (the machine's drift) ...")
    res["in_process_after_16"] = ceiling.rate(messages, 16, args.seconds / 2)
    return res


def _sms(path: Path) -> list[str]:
    if not path.is_file():
        raise SystemExit(f"--sms: {str(path)!r} not found (label<TAB>text lines)")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        _, _, text = line.partition("\t")
        if text.strip():
            out.append(text)
    return out


def _input_name(port: int, model: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/v2/models/{model}")
        resp = conn.getresponse()
        meta = json.loads(resp.read())
    finally:
        conn.close()
    if resp.status != 200:
        raise SystemExit(f"model {model!r} is not served: {meta}")
    ins = meta["inputs"]
    if len(ins) != 1 or ins[0]["datatype"] != "BYTES":
        raise SystemExit(f"model {model!r} takes {ins}; this benchmark needs one BYTES input")
    return str(ins[0]["name"])


def _mean_batch(before: tuple[int, int], after: tuple[int, int]) -> float:
    rows, execs = after[0] - before[0], after[1] - before[1]
    return rows / execs if execs else float("nan")


def render(res: dict[str, Any], args: argparse.Namespace, started: datetime.datetime,
           wall: float) -> str:
    ip = res["in_process"]
    table = [f"| load | c1 p50 ms | c1 p99 ms | c{CONCURRENCY} msg/s | client | server batch | "
             "/ in-process at that batch | goal |",
             "|---|---:|---:|---:|---|---:|---:|---|"]
    for name, row in res["served"].items():
        c1, c16 = row["c1"], row["c16"]
        verdict = "PASS" if row["ratio"] >= GOAL else "MISS"
        errors = int(c1.get("errors", 0)) + int(c16.get("errors", 0))
        flag = f" ({errors} errors!)" if errors else ""
        table.append(
            f"| {name}{flag} | {c1['p50_ms']:.2f} | {c1['p99_ms']:.2f} | {c16['rps']:,.0f} | "
            f"{c16.get('client', '')} | {row['batch']:.1f} | {row['ratio']:.2f} "
            f"(batch {row['ceiling_batch']}) | >= {GOAL} {verdict} |")
    default = args.repo is None
    what = ("the tests' token-id classifier (tests/onnx_models.py text_classifier_model: "
            "embedding, masked mean, linear; WordPiece tokenizer trained on the SMS messages) "
            "behind text_normalize + tokenize (max_length 64) and softmax + top_k + labels"
            if default else f"model `{res['model']}` of `{res['repo']}`"
            + (f" (its config.yaml: \"{res['description']}\")" if res.get("description")
               else ""))
    ceilings = ", ".join(f"batch {b}: {r:,.0f}" for b, r in sorted(ip.items()))
    return "\n".join([
        f"Written by `python benchmarks/text_bench.py{' --quick' if args.quick else ''}` on "
        f"{started:%Y-%m-%d %H:%M} UTC ({wall:.0f} s, one run, {os.cpu_count()} CPUs, "
        f"{args.seconds:g} s per measurement). The model: {what}. One real SMS message of "
        f"about {res['tokens']:.0f} tokens per request ({res['messages']} messages in turn); "
        "the ceiling runs the same preprocess steps (shipyard.transforms, built from the "
        "model's config.yaml) and ONNX Runtime with the server's session settings in one "
        "thread in process (tokenizers' parallelism off).",
        "",
        f"- in-process ceiling, messages/s: {ceilings}; batch 16 again after the server ran: "
        f"{res['in_process_after_16']:,.0f} (the drift of the machine during the run)",
        f"- server batch: inferences / executions in the server's statistics during each "
        f"concurrency-{CONCURRENCY} load",
        "",
        *table,
        "",
        f"c1: one request at a time from a Python client (http.client keep-alive; "
        f"tritonclient.grpc.aio for gRPC), its own time included. c{CONCURRENCY}: "
        + ("wrk (one thread) for REST JSON" if res["wrk"] else "Python threads for REST")
        + (" and the other REST rows" if res["wrk"] and args.wrk_all else
           ", Python threads (one keep-alive connection each) for the other REST rows")
        + f", {CONCURRENCY} asyncio tasks on one tritonclient.grpc.aio channel for gRPC. "
        "Client and server share the machine's CPUs.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repo", type=Path, default=None,
                        help="a model repository (default: build the test model in a temp one)")
    parser.add_argument("--model", default=None, help="the text model in --repo")
    parser.add_argument("--seconds", type=float, default=None,
                        help="per measurement (default 10; 1.5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--wrk-all", action="store_true",
                        help="wrk for every REST row at c16, not only REST JSON")
    parser.add_argument("--sms", type=Path, default=SMS, help="label<TAB>text messages")
    parser.add_argument("--output", type=Path, default=DOC, help="the report to update")
    parser.add_argument("--no-write", action="store_true", help="print only, write no report")
    args = parser.parse_args(argv)
    if (args.repo is None) != (args.model is None):
        parser.error("--repo and --model go together (or neither: the built-in test model)")
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 10.0
    if not 0 < args.seconds <= 120:
        parser.error("--seconds must be in (0, 120]")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the in-process ceiling is one thread
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(tempfile.mkdtemp(prefix="text-bench-"))
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    try:
        with signals_as_exit():
            res = measure(args, work, lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = render(res, args, started, time.monotonic() - t0)
    print(body)
    if not args.no_write:
        write_section(args.output, "text", "## Text serving (SMS messages)\n\n" + body)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
