"""Image pipeline benchmark: PNG bytes in, logits out, served vs in-process, in one run.

    python benchmarks/pipeline_bench.py [--seconds S] [--batch N] [--no-write]

The model is the demo CNN behind the server-side steps ``image_decode (L) -> resize 28x28 ->
to_dtype (1/255) -> layout NCHW``, fed real MNIST test PNGs, ``--batch`` images per request.

* in-process ceiling: the same steps (``shipyard.transforms``, the code the server runs) and
  ONNX Runtime with the server's session settings, in one thread, at the same batch;
* served: ``python -m shipyard serve`` on a temporary repository, loaded at concurrency 16 by
  perf_analyzer (REST with the binary tensor extension, and gRPC) and by wrk (REST binary; a C
  client that costs the 2 cores less than perf_analyzer).

JSON bodies are not measured: PNG bytes are not UTF-8, and V2 JSON carries BYTES elements as
strings, so images travel in the binary extension (REST) or raw contents (gRPC).

The section "Image pipeline (PNG bytes)" of docs/benchmarks.md is replaced (see
doc_sections.py). Every process started here is stopped at the end; traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from doc_sections import write_section  # noqa: E402
from serve_bench import find_tool, perf_analyzer_env  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
CNN = ROOT / "src" / "shipyard" / "demo" / "repository" / "cnn" / "1" / "model.onnx"
MNIST = ROOT.parent / "shared" / "data" / "mnist_png" / "test"
STEPS = [
    {"image_decode": {"mode": "L"}},
    {"resize": {"size": [28, 28]}},
    {"to_dtype": {"dtype": "float32", "scale": 1 / 255}},
    {"layout": {"to": "NCHW"}},
]
GOAL = 0.7


def pngs(n: int) -> list[bytes]:
    files = sorted(MNIST.glob("*/*.png"))
    if not files:
        raise SystemExit(f"no MNIST PNGs under {MNIST}")
    return [f.read_bytes() for f in files[:: max(1, len(files) // n)][:n]]


def in_process(images: list[bytes], seconds: float) -> float:
    """Images/s of the steps + ONNX Runtime in one thread, batch = len(images)."""
    import onnxruntime as ort

    from shipyard.transforms import apply_steps, build_steps

    steps = build_steps(STEPS)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(CNN), opts, providers=["CPUExecutionProvider"])
    batch = np.array(images, dtype=object)
    for _ in range(5):
        sess.run(["logits"], {"image": apply_steps(steps, batch)})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sess.run(["logits"], {"image": apply_steps(steps, batch)})
        n += 1
    return n * len(images) / (time.perf_counter() - t0)


def start_server(repo: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    fh = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "serve", "--model-repository", str(repo),
         "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0"],
        stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        http = re.search(r"HTTP listening on http://[^:]+:(\d+)", text)
        grpc = re.search(r"gRPC listening on [^:]+:(\d+)", text)
        if http and grpc and "ready: serving" in text:
            return proc, int(http.group(1)), int(grpc.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')[-2000:]}")


def perf_analyzer(url: str, protocol: str, batch: int, data: Path, window_ms: int) -> float:
    exe = find_tool("perf_analyzer")
    if exe is None:
        return float("nan")
    cmd = [exe, "-m", "digits", "-u", url, "-i", protocol, "-b", str(batch),
           "--concurrency-range", "16", "--input-data", str(data),
           "--measurement-interval", str(window_ms), "-s", "20", "-r", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=perf_analyzer_env(),
                         timeout=120).stdout
    m = re.search(r"Throughput: ([\d.]+) infer/sec", out)
    return float(m.group(1)) if m else float("nan")


def binary_body(images: list[bytes]) -> tuple[bytes, int]:
    raw = b"".join(struct.pack("<I", len(b)) + b for b in images)
    header = json.dumps({"inputs": [{
        "name": "image", "datatype": "BYTES", "shape": [len(images), 1],
        "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return header + raw, len(header)


def wrk(port: int, images: list[bytes], workdir: Path, seconds: float) -> tuple[float, int]:
    exe = shutil.which("wrk")
    if exe is None:
        return float("nan"), 0
    body, header_len = binary_body(images)
    (workdir / "body.bin").write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'local f = io.open("{workdir / "body.bin"}", "rb")\n'
        "wrk.body = f:read(\"*a\")\nf:close()\n"
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        f'wrk.headers["Inference-Header-Content-Length"] = "{header_len}"\n')
    out = subprocess.run(
        [exe, "-t1", "-c16", f"-d{int(seconds)}s", "-s", str(script),
         f"http://127.0.0.1:{port}/v2/models/digits/infer"],
        capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(rate.group(1)) * len(images) if rate else float("nan"),
            int(bad.group(1)) if bad else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--batch", type=int, default=16, help="images per request")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    images = pngs(args.batch)
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    repo = work / "repo"
    (repo / "digits" / "1").mkdir(parents=True)
    shutil.copy(CNN, repo / "digits" / "1" / "model.onnx")
    import yaml

    (repo / "digits" / "config.yaml").write_text(yaml.safe_dump(
        {"max_batch_size": 64, "preprocess": STEPS}), encoding="utf-8")
    data = work / "input.json"
    one = struct.pack("<I", len(images[0])) + images[0]
    data.write_text(json.dumps({"data": [{"image": {"b64": base64.b64encode(one).decode()}}]}))
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    print("in-process ceiling ...", file=sys.stderr)
    ceiling = in_process(images, args.seconds)
    proc, http_port, grpc_port = start_server(repo, work / "server.log")
    try:
        print("served: perf_analyzer REST, gRPC; wrk REST ...", file=sys.stderr)
        window = int(args.seconds * 1000 / 2)
        rows = {
            "REST binary, perf_analyzer": perf_analyzer(f"127.0.0.1:{http_port}", "http",
                                                        args.batch, data, window),
            "gRPC, perf_analyzer": perf_analyzer(f"127.0.0.1:{grpc_port}", "grpc",
                                                 args.batch, data, window),
        }
        rate, bad = wrk(http_port, images, work, args.seconds)
        rows["REST binary, wrk" + (f" ({bad} non-2xx!)" if bad else "")] = rate
    finally:
        proc.terminate()
        proc.wait(30)
    after = in_process(images, args.seconds / 2)  # the ceiling again: machine drift
    wall = time.monotonic() - t0
    table = ["| load | images/s | / in-process | goal |", "|---|---:|---:|---|"]
    for name, value in rows.items():
        ratio = value / ceiling
        verdict = "PASS" if ratio >= GOAL else "MISS"
        table.append(f"| {name} | {value:,.0f} | {ratio:.2f} | >= {GOAL} {verdict} |")
    body = "\n".join([
        f"Written by `python benchmarks/pipeline_bench.py` on {started:%Y-%m-%d %H:%M} UTC "
        f"({wall:.0f} s, one run, {os.cpu_count()} CPUs). The demo CNN behind the "
        "server-side steps image_decode (L) -> resize 28x28 -> to_dtype 1/255 -> layout NCHW, "
        f"{args.batch} real MNIST PNGs per request, concurrency 16; the ceiling runs the same "
        "steps (shipyard.transforms) and ONNX Runtime in one thread in process, at the same "
        "batch.",
        "",
        f"- in-process ceiling: {ceiling:,.0f} images/s before the server runs, {after:,.0f} "
        "after (the drift of the machine during the run)",
        "",
        *table,
        "",
        "JSON bodies are not a row: PNG bytes are not UTF-8 and V2 JSON carries BYTES as "
        "strings, so images go in the binary extension (REST) or raw contents (gRPC).",
    ])
    print(body)
    if not args.no_write:
        write_section(DOC, "pipeline", "## Image pipeline (PNG bytes)\n\n" + body)
        print(f"wrote {DOC}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
