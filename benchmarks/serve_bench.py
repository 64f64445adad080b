"""Shipyard serving benchmark: the real server against its ceilings, measured in one run.

    python benchmarks/serve_bench.py [--quick] [--duration S] [--profile auto|always|never]
                                     [--src DIR] [--output FILE | --no-write] [--keep-logs]

Ceilings, measured in the same run as the server:

* in-process: the demo ONNX files run directly with onnxruntime (one intra-op and one inter-op
  thread, as the server configures them) at batch sizes 1, 2, 4, ... max_batch_size;
* a bare ASGI app on uvicorn with the server's settings (``benchmarks/bare_asgi.py``) and a bare
  grpc.aio server with the server's options (``benchmarks/bare_grpc.py``), both answering with
  replies copied from the real server at the start of the run.

The real server (``python -m shipyard serve`` on the demo repository) and the bare servers are
loaded with Triton's ``perf_analyzer`` at concurrency 1 and 16; the results, the target ratios
(PASS/MISS) and, when a target is missed and py-spy is installed, a profile of the server under
load are printed and written to ``docs/benchmarks.md``. Every process this command starts is
stopped when it ends, on error and on Ctrl-C too; all traffic goes to 127.0.0.1 on ephemeral
ports. A full run takes under 5 minutes, ``--quick`` under 90 seconds.

``--src DIR`` serves the ``shipyard`` package found in DIR instead of this checkout's ``src/``
(e.g. ``git archive HEAD src | tar -x -C /tmp/head`` while ``src/`` is mid-edit); the report
names the code that ran. Logs, CSVs and raw profiles go to a temporary folder, removed at the
end unless ``--keep-logs`` (kept, and named, when the run fails).

Hand-written text between ``<!-- analysis:begin -->`` and ``<!-- analysis:end -->`` in
docs/benchmarks.md is kept when the file is rewritten.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import csv
import dataclasses
import datetime
import http.client
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
DOC = ROOT / "docs" / "benchmarks.md"
HOST = "127.0.0.1"
ANALYSIS_BEGIN = "<!-- analysis:begin -->"
ANALYSIS_END = "<!-- analysis:end -->"

#: (name, comparison, threshold) of each target; filled in by ``evaluate_targets``
TARGETS_DOC = [
    ("risk REST c16 throughput / bare-ASGI c16 throughput", ">=", 0.60),
    ("risk gRPC c16 throughput / bare grpc.aio c16 throughput", ">=", 0.70),
    ("risk REST c1 p50 / bare-ASGI c1 p50", "<=", 3.0),
    ("cnn REST (binary) c16 b64 images/s / in-process best images/s", ">=", 0.70),
    ("cnn gRPC c16 b64 images/s / in-process best images/s", ">=", 0.70),
]
#: images per request of the cnn target rows: the model's max_batch_size (the in-process
#: ceiling is flat from batch 16 up). One image per request cannot reach the target: 70 % of
#: the ceiling would be ~100k requests/s, several times what a bare server answers here.
CNN_TARGET_BATCH = 64


@dataclass
class Mode:
    name: str
    window_s: float  # perf_analyzer --measurement-interval
    max_trials: int  # perf_analyzer -r
    stability: int  # perf_analyzer -s (percent)
    inproc_s: float  # seconds per batch size, in-process
    budget_s: float  # the whole run
    extras: bool  # diagnostic rows (+ hop, the bare app on Shipyard's HTTP server)
    profile_s: float  # py-spy recording length per scenario


FULL = Mode("full", 2.0, 4, 15, 0.4, 285.0, True, 6.0)
QUICK = Mode("quick", 1.0, 3, 25, 0.1, 85.0, False, 4.0)


# -- processes --------------------------------------------------------------------------------


class Processes:
    """Every child process this run starts; ``stop_all`` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 8.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc, grace_s=3.0)


def wait_for_lines(proc: subprocess.Popen[bytes], log: Path, patterns: dict[str, str],
                   timeout_s: float) -> dict[str, str]:
    """Wait until every regex in ``patterns`` matched a line of ``log``; return the groups."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for key, pattern in patterns.items():
            m = re.search(pattern, text, re.MULTILINE)
            if m:
                found[key] = m.group(1) if m.groups() else m.group(0)
        if len(found) == len(patterns):
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{log.name}: did not print {sorted(set(patterns) - set(found))} "
                       f"(exit code {proc.poll()}); log tail:\n{tail}")


#: the directory holding the ``shipyard`` package that is benchmarked (``--src``)
SRC = ROOT / "src"


def child_env() -> dict[str, str]:
    """The environment for the servers: ``--src`` first on the path, no SHIPYARD_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def source_info() -> str:
    """Which server code ran: the ``--src`` directory, the git commit, local changes."""
    def git(*argv: str) -> str:
        try:  # read-only git commands
            return subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    if SRC.resolve() == (ROOT / "src").resolve():
        dirty = git("status", "--porcelain", "--", "src")
        state = "with uncommitted changes in src/" if dirty else "no local changes in src/"
        return f"`src/` of the working tree at commit {commit} ({state})"
    return f"`{SRC}` (given with --src; the repository is at commit {commit})"


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer needs libcudart.so.12, shipped by the nvidia-cuda-runtime-cu12 wheel."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("nvidia")
    # a CUDA machine may hold another cuda_runtime (libcudart.so.13) first on the path
    for base in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(base) / "cuda_runtime" / "lib"
        if (lib / "libcudart.so.12").is_file():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [str(lib), *filter(None, [env.get("LD_LIBRARY_PATH")])])
            break
    return env


def find_tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


# -- CPU accounting -----------------------------------------------------------------------------


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """TID -> (comm, CPU seconds) for every thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            comm = raw[raw.index("(") + 1: raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2:].split()
            out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return out


def python_thread_names(pyspy: str | None, pid: int) -> dict[int, str]:
    """Native TID -> Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    if pyspy is None:
        return {}
    try:
        res = subprocess.run([pyspy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                             timeout=20)
    except (subprocess.TimeoutExpired, OSError):
        return {}
    return {int(m.group(1), 0): m.group(2)
            for m in re.finditer(r'^Thread (\S+) \([^)]*\): "([^"]*)"', res.stdout, re.M)}


# -- perf_analyzer -----------------------------------------------------------------------------


@dataclass
class Row:
    target: str  # "shipyard", "bare ASGI", "bare grpc.aio"
    model: str
    protocol: str  # "REST", "gRPC" or "gRPC stream" (ModelStreamInfer)
    concurrency: int
    batch: int = 1
    throughput: float | None = None  # infer/s (perf_analyzer counts images for batch > 1)
    p50_us: float | None = None
    p99_us: float | None = None
    server_queue_us: float | None = None
    server_compute_us: float | None = None
    server_cpu: float | None = None  # cores, averaged over the perf_analyzer run
    client_cpu: float | None = None
    threads: dict[int, float] = field(default_factory=dict)  # TID -> cores
    thread_names: dict[int, str] = field(default_factory=dict)  # TID -> Python thread name
    pid: int = 0
    note: str = ""
    error: str = ""

    @property
    def label(self) -> str:
        b = f" b{self.batch}" if self.batch != 1 else ""
        return f"{self.target} {self.model} {self.protocol} c{self.concurrency}{b}"


class PerfAnalyzer:
    def __init__(self, exe: str, mode: Mode, workdir: Path, procs: Processes,
                 deadline: float) -> None:
        self.exe = exe
        self.mode = mode
        self.workdir = workdir
        self.procs = procs
        self.deadline = deadline
        self.env = perf_analyzer_env()
        self.count = 0
        self.errors: list[str] = []

    def args(self, row: Row, url: str, stability: int, trials: int, csv_path: Path,
             window_s: float | None = None) -> list[str]:
        window_ms = int((window_s or self.mode.window_s) * 1000)
        protocol = "http" if row.protocol == "REST" else "grpc"
        streaming = ["--streaming"] if row.protocol == "gRPC stream" else []
        return [
            self.exe, "-m", row.model, "-u", url, "-i", protocol, *streaming,
            "--concurrency-range", str(row.concurrency), "-b", str(row.batch),
            "--measurement-interval", str(window_ms), "--percentile=50",
            "-s", str(stability), "-r", str(trials), "--input-data", "random",
            "-f", str(csv_path),
        ]

    def _invoke(self, row: Row, cmd: list[str], csv_path: Path, server_pid: int | None,
                timeout_s: float) -> tuple[bool, str]:
        self.count += 1
        log = self.workdir / f"pa_{self.count:02d}.log"
        before = thread_cpu(server_pid) if server_pid else {}
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = self.procs.start(cmd, log, env=self.env)
        try:
            rc = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.procs.stop(proc, grace_s=1.0)
            return False, f"perf_analyzer timed out after {timeout_s:.0f} s"
        finally:
            if proc in self.procs.procs:
                self.procs.procs.remove(proc)
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        text = log.read_text(errors="replace")
        if rc != 0 or not csv_path.exists():
            return False, text.strip().splitlines()[-1] if text.strip() else f"exit code {rc}"
        after = thread_cpu(server_pid) if server_pid else {}
        if server_pid:
            row.threads = {tid: (cpu - before.get(tid, ("", 0.0))[1]) / wall
                           for tid, (_, cpu) in after.items()}
            row.server_cpu = sum(row.threads.values())
        row.client_cpu = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / wall
        with open(csv_path) as f:
            rec = next(csv.DictReader(f))
        row.throughput = float(rec["Inferences/Second"])
        row.p50_us = float(rec["p50 latency"])
        row.p99_us = float(rec["p99 latency"])
        if row.target == "shipyard":
            row.server_queue_us = float(rec["Server Queue"])
            row.server_compute_us = sum(float(rec[k]) for k in (
                "Server Compute Input", "Server Compute Infer", "Server Compute Output"))
        for line in text.splitlines():  # perf_analyzer's own warnings and errors, kept
            low = line.lower()
            if ("error" in low or "warning" in low or "failed" in low) and line not in self.errors:
                self.errors.append(f"{row.label}: {line.strip()}")
        return True, ""

    def run(self, row: Row, url: str, server_pid: int | None) -> Row:
        m = self.mode
        remaining = self.deadline - time.monotonic()
        need = m.window_s * 3 + 3
        if remaining < need:
            row.error = "skipped: time budget of the run used up"
            return row
        csv_path = self.workdir / f"pa_{self.count + 1:02d}.csv"
        cmd = self.args(row, url, m.stability, m.max_trials, csv_path)
        timeout = min(m.window_s * (m.max_trials + 2) + 20, remaining)
        ok, why = self._invoke(row, cmd, csv_path, server_pid, timeout)
        if ok:
            return row
        if "stable" in why and self.deadline - time.monotonic() > need:
            # A shared machine may never settle within the trials: accept 3 windows as they come
            csv_path = self.workdir / f"pa_{self.count + 1:02d}.csv"
            cmd = self.args(row, url, 1000, 3, csv_path)
            timeout = min(m.window_s * 5 + 20, self.deadline - time.monotonic())
            ok, why2 = self._invoke(row, cmd, csv_path, server_pid, timeout)
            if ok:
                row.note = f"unstable (>{m.stability}% over {m.max_trials} windows)"
                return row
            why = why2
        row.error = why
        self.errors.append(f"{row.label}: {why}")
        return row


# -- canned replies ----------------------------------------------------------------------------

RISK_INPUT = np.random.default_rng(0).random((1, 30), dtype=np.float32)


def _http(port: int, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def _canned(status: int, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
    return {"status": status, "headers": [list(h) for h in headers],
            "body_b64": base64.b64encode(body).decode()}


def fetch_canned(http_port: int, grpc_port: int) -> dict[str, Any]:
    """The real server's replies, for the bare servers to send back."""
    canned: dict[str, Any] = {"http": {}, "grpc": {}}
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/risk",
                 "/v2/models/risk/ready", "/v2/models/risk/config", "/v2/models/risk/stats",
                 "/v2/models/risk/versions/1", "/v2/models/risk/versions/1/config",
                 "/v2/models/risk/versions/1/stats", "/v2/models/risk/versions/1/ready",
                 "/v2/models/stats"):
        canned["http"][f"GET {path}"] = _canned(*_http(http_port, "GET", path))
    # the request perf_analyzer sends: binary input, binary output
    header = json.dumps({
        "inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32",
                    "parameters": {"binary_data_size": RISK_INPUT.nbytes}}],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
    }).encode()
    status, headers, body = _http(
        http_port, "POST", "/v2/models/risk/infer", header + RISK_INPUT.tobytes(),
        {"Inference-Header-Content-Length": str(len(header)),
         "Content-Type": "application/octet-stream"})
    if status != 200:
        raise RuntimeError(f"binary infer on the real server answered {status}: {body[:300]!r}")
    binary = _canned(status, headers, body)
    doc = json.dumps({"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32",
                                  "data": RISK_INPUT.ravel().tolist()}]}).encode()
    status, headers, body = _http(http_port, "POST", "/v2/models/risk/infer", doc,
                                  {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"JSON infer on the real server answered {status}: {body[:300]!r}")
    canned["http_infer"] = {"path": "/v2/models/risk/infer", "binary": binary,
                            "json": _canned(status, headers, body)}

    import grpc

    from shipyard.protocol.grpc import kserve_pb2 as pb

    infer = pb.ModelInferRequest(model_name="risk")
    infer.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    infer.outputs.add(name="score")
    infer.raw_input_contents.append(RISK_INPUT.tobytes())
    requests: dict[str, Any] = {
        "ServerLive": pb.ServerLiveRequest(), "ServerReady": pb.ServerReadyRequest(),
        "ServerMetadata": pb.ServerMetadataRequest(),
        "ModelReady": pb.ModelReadyRequest(name="risk"),
        "ModelMetadata": pb.ModelMetadataRequest(name="risk"),
        "ModelConfig": pb.ModelConfigRequest(name="risk"),
        "ModelStatistics": pb.ModelStatisticsRequest(name="risk"),
        "ModelInfer": infer,
    }
    with grpc.insecure_channel(f"{HOST}:{grpc_port}") as channel:
        for method, request in requests.items():
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}",
                                       request_serializer=type(request).SerializeToString,
                                       response_deserializer=None)
            canned["grpc"][method] = base64.b64encode(call(request, timeout=10)).decode()
    return canned


# -- in-process ceiling ------------------------------------------------------------------------


@dataclass
class InProcess:
    model: str
    rates: dict[int, float]  # batch size -> rows/s

    @property
    def best(self) -> tuple[int, float]:
        b = max(self.rates, key=lambda k: self.rates[k])
        return b, self.rates[b]


def model_inputs(repo: Path, model: str) -> tuple[Path, int]:
    import yaml

    cfg = yaml.safe_load((repo / model / "config.yaml").read_text())
    return repo / model / "1" / "model.onnx", int(cfg["max_batch_size"])


def in_process(repo: Path, model: str, seconds: float,
               tick: Callable[[str], None]) -> InProcess:
    import onnxruntime as ort

    path, max_batch = model_inputs(repo, model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    out_names = [o.name for o in sess.get_outputs()]
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape[1:]]
    rng = np.random.default_rng(0)
    sizes = []
    b = 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    sizes.append(max_batch)
    rates = {}
    for b in sizes:
        tick(f"in-process {model} batch {b}")
        x = rng.random((b, *dims), dtype=np.float32)
        feed = {inp.name: x}
        for _ in range(3):
            sess.run(out_names, feed)
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while True:
            sess.run(out_names, feed)
            n += 1
            now = time.perf_counter()
            if now >= end:
                break
        rates[b] = n * b / (now - t0)
    return InProcess(model, rates)


# -- profiling ---------------------------------------------------------------------------------

_IDLE_FRAMES = ("epoll_wait", "epoll_pwait", "poll (", "select (", "accept", "nanosleep",
                "sem_wait", "sem_timedwait", "sem_clockwait", "pthread_cond_wait",
                "PyThread_acquire_lock_timed", "futex")


@dataclass
class Profile:
    scenario: str
    samples: int = 0
    threads: dict[str, list[int]] = field(default_factory=dict)  # name -> [busy, gil, idle]
    self_top: list[tuple[str, int]] = field(default_factory=list)
    total_top: list[tuple[str, int]] = field(default_factory=list)
    py_top: list[tuple[str, int]] = field(default_factory=list)
    busy: int = 0
    error: str = ""


def _frame_name(frame: str) -> str:
    m = re.match(r"0x[0-9a-f]+ \((.*)\)$", frame)
    if m:  # an unsymbolised native frame: name its library
        return f"[native {Path(m.group(1)).name.split('.')[0]}]"
    return re.sub(r":\d+\)$", ")", frame)  # by function: line numbers merged


def classify(stack: list[str]) -> str:
    """``busy``, ``gil`` (waiting to take the GIL back) or ``idle`` (parked: epoll, a lock).

    CPython 3.11 waits for the GIL in ``take_gil`` (inlined) with ``pthread_cond_timedwait``;
    lock and queue waits go through ``PyThread_acquire_lock_timed`` (semaphores) instead.
    """
    named = [f for f in stack if not f.startswith("0x")]
    if not named:
        return "idle"
    leaf = named[-1]
    if leaf.startswith("pthread_cond_timedwait"):
        parent = named[-2] if len(named) > 1 else ""
        return "idle" if "PyThread_acquire_lock_timed" in parent else "gil"
    if any(w in leaf for w in _IDLE_FRAMES):
        return "idle"
    if len(named) > 1 and "PyThread_acquire_lock_timed" in named[-2] and stack[-1].startswith(
            "0x"):
        return "idle"
    return "busy"


def summarise_raw(scenario: str, raw: Path, top: int = 15) -> Profile:
    """Busy samples per thread and the top frames by self and total time (py-spy raw format)."""
    prof = Profile(scenario)
    threads: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    self_c: collections.Counter[str] = collections.Counter()
    total_c: collections.Counter[str] = collections.Counter()
    py_c: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack_s, _, count_s = line.rpartition(" ")
        if not stack_s or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack_s.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        thread = re.sub(r"_\d+$", "_N", thread)
        stack = frames[1:]
        prof.samples += count
        state = classify(stack) if stack else "idle"
        if state != "busy":
            threads[thread][1 if state == "gil" else 2] += count
            continue
        threads[thread][0] += count
        prof.busy += count
        names = [_frame_name(f) for f in stack]
        self_c[f"{names[-1]}  [{thread}]"] += count
        for name in set(names):
            total_c[name] += count
        py_frames = [f for f in names if f.endswith(".py)")]
        if py_frames:  # the innermost Python function and everything native it called
            inner = py_frames[-1]
            if inner.startswith("Runner.run (asyncio/runners.py"):
                inner = "[event loop]"
            py_c[f"{inner}  [{thread}]"] += count
    prof.threads = dict(threads)
    prof.self_top = self_c.most_common(top)
    # drop the frames every busy sample passes through (thread bootstrap, cli, event loop run)
    boring = ("Thread.", "thread_run", "<module>", "Typer", "Command", "TyperGroup", "_main ",
              "Context.invoke", "get_callback", "serve (shipyard/cli", "run (shipyard/serving/se",
              "run (uvloop/__init__", "Runner.run", "run_until_complete", "run_forever",
              "Loop__run", "uv_run", "[native libc]", "main (shipyard/cli", "Py_XDECREF",
              "Py_DECREF", "_worker (concurrent", "_run_code", "_run_module", "uv__run_idle",
              "uv__queue_empty", "Handle__run", "loop_cb_idle", "Loop__on_idle", "task_step",
              "TaskStepMethWrapper", "__Pyx_PyObject", "uv__io_poll", "Loop__Loop__run",
              "ProxyHeadersMiddleware", "<module> (", "__libc_start", "Py_RunMain", "pymain_",
              "_start (", "Py_BytesMain", "main (python")
    prof.total_top = [(k, v) for k, v in total_c.most_common(top * 6)
                      if not any(b in k for b in boring)][:top]
    prof.py_top = py_c.most_common(top)
    return prof


def record_profile(pyspy: str, pid: int, seconds: float, out: Path) -> str:
    cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
           "--rate", "100", "--format", "raw", "--threads", "--native", "-o", str(out)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        return "py-spy timed out"
    if res.returncode != 0 or not out.exists():
        return (res.stderr or res.stdout).strip()[-300:] or f"py-spy exit code {res.returncode}"
    return ""


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Results:
    mode: Mode
    started: datetime.datetime
    rows: list[Row] = field(default_factory=list)
    inproc: dict[str, InProcess] = field(default_factory=dict)
    profiles: list[Profile] = field(default_factory=list)
    server_pid: int = 0
    pa_errors: list[str] = field(default_factory=list)
    server_problems: list[str] = field(default_factory=list)
    server_failures: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    pa_version: str = ""
    workdir: Path | None = None
    source: str = ""

    def find(self, target: str, model: str, protocol: str, conc: int, batch: int = 1
             ) -> Row | None:
        for r in self.rows:
            if (r.target, r.model, r.protocol, r.concurrency, r.batch) == (
                    target, model, protocol, conc, batch) and r.throughput is not None:
                return r
        return None


def evaluate_targets(res: Results) -> list[tuple[str, str, float, float | None, str, str]]:
    """(name, op, threshold, value, verdict, detail) per target."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    out = []
    bare_rest16 = res.find("bare ASGI", "risk", "REST", 16)
    bare_rest1 = res.find("bare ASGI", "risk", "REST", 1)
    bare_grpc16 = res.find("bare grpc.aio", "risk", "gRPC", 16)
    rest16 = res.find("shipyard", "risk", "REST", 16)
    rest1 = res.find("shipyard", "risk", "REST", 1)
    grpc16 = res.find("shipyard", "risk", "gRPC", 16)
    cnn_rest = res.find("shipyard", "cnn", "REST", 16, CNN_TARGET_BATCH)
    cnn_grpc = res.find("shipyard", "cnn", "gRPC", 16, CNN_TARGET_BATCH)
    cnn_best = res.inproc["cnn"].best if "cnn" in res.inproc else None

    def t(r: Row | None) -> float | None:
        return r.throughput if r else None

    def p(r: Row | None) -> float | None:
        return r.p50_us if r else None

    values = [
        (ratio(t(rest16), t(bare_rest16)),
         f"{_num(t(rest16))} / {_num(t(bare_rest16))} infer/s"),
        (ratio(t(grpc16), t(bare_grpc16)),
         f"{_num(t(grpc16))} / {_num(t(bare_grpc16))} infer/s"),
        (ratio(p(rest1), p(bare_rest1)), f"{_num(p(rest1))} / {_num(p(bare_rest1))} us"),
        (ratio(t(cnn_rest), cnn_best[1] if cnn_best else None),
         f"{_num(t(cnn_rest))} / {_num(cnn_best[1] if cnn_best else None)} images/s"
         f" (in-process best at batch {cnn_best[0] if cnn_best else '?'})"),
        (ratio(t(cnn_grpc), cnn_best[1] if cnn_best else None),
         f"{_num(t(cnn_grpc))} / {_num(cnn_best[1] if cnn_best else None)} images/s"),
    ]
    for (name, op, thr), (value, detail) in zip(TARGETS_DOC, values, strict=True):
        if value is None:
            verdict = "n/a"
        elif op == ">=":
            verdict = "PASS" if value >= thr else "MISS"
        else:
            verdict = "PASS" if value <= thr else "MISS"
        out.append((name, op, thr, value, verdict, detail))
    return out


def reference_ratios(res: Results) -> list[str]:
    """Markdown lines on gRPC beside its target: the one-worker-hop diagnostic and the
    stream (ModelStreamInfer), for the rows that ran."""
    def tp(target: str, protocol: str) -> float | None:
        row = res.find(target, "risk", protocol, 16)
        return row.throughput if row and row.throughput else None

    bare, real = tp("bare grpc.aio", "gRPC"), tp("shipyard", "gRPC")
    worker = tp("bare grpc.aio + ONNX worker", "gRPC")
    bare_stream, real_stream = tp("bare grpc.aio", "gRPC stream"), tp("shipyard", "gRPC stream")
    notes = []
    if bare and worker and real:
        notes.append(
            "the bare server with an ONNX worker thread (`bare grpc.aio + ONNX worker`) answers "
            f"{worker / bare:.2f} of bare grpc.aio, and Shipyard answers {real / worker:.2f} of "
            "that diagnostic")
    if bare and bare_stream and real_stream:
        notes.append(
            "over one ModelStreamInfer stream per client (`gRPC stream`, perf_analyzer "
            f"`--streaming`) Shipyard answers {real_stream / bare_stream:.2f} of the bare "
            f"server's stream and {real_stream / bare:.2f} of bare grpc.aio's unary calls")
    if not notes:
        return []
    return ["For reference (not targets), risk at c16: " + "; ".join(notes) + ".", ""]


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(len(os.sched_getaffinity(0)))
    versions = {}
    for mod in ("onnxruntime", "grpc", "uvicorn", "uvloop", "httptools", "numpy"):
        with contextlib.suppress(Exception):
            versions[mod] = __import__(mod).__version__
    return {"nproc": nproc, "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def run(args: argparse.Namespace, progress: Any, tick: Callable[[str], None]) -> Results:
    mode = QUICK if args.quick else FULL
    if args.duration:
        mode = dataclasses.replace(mode, window_s=args.duration)
    started = time.monotonic()
    deadline = started + mode.budget_s
    res = Results(mode, datetime.datetime.now().astimezone())
    res.source = source_info()
    pa_exe = find_tool("perf_analyzer")
    if pa_exe is None:
        raise SystemExit("perf_analyzer not found next to this Python or on PATH")
    with contextlib.suppress(Exception):
        out = subprocess.run([pa_exe, "--version"], capture_output=True, text=True,
                             env=perf_analyzer_env(), timeout=10)
        res.pa_version = (out.stdout.strip() or out.stderr.strip()).splitlines()[0]
    pyspy = find_tool("py-spy")
    repo = SRC / "shipyard" / "demo" / "repository"
    workdir = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    procs = Processes()
    pa = PerfAnalyzer(pa_exe, mode, workdir, procs, deadline)
    res.workdir = workdir
    try:
        # 1. the real server, and its replies for the bare servers
        tick("starting the real server")
        server_log = workdir / "server.log"
        server = procs.start([sys.executable, "-m", "shipyard", "serve", "--model-repository",
                              str(repo), "--host", HOST, "--http-port", "0", "--grpc-port", "0",
                              "--grace-period", "2"], server_log, env=child_env())
        ports = wait_for_lines(server, server_log, {
            "http": r"shipyard\.server: HTTP listening on http://[^:]+:(\d+)",
            "grpc": r"shipyard\.server: gRPC listening on [^\s]+:(\d+)",
            "ready": r"shipyard\.server: ready: serving"}, 60)
        http_port, grpc_port = int(ports["http"]), int(ports["grpc"])
        res.server_pid = server.pid
        canned = fetch_canned(http_port, grpc_port)
        canned_path = workdir / "canned.json"
        canned_path.write_text(json.dumps(canned))

        def bare(script: str, key: str, pattern: str, rows: list[Row],
                 extra: tuple[str, ...] = ()) -> None:
            tick(f"starting {script} {' '.join(extra)}")
            log = workdir / f"{script}{'_'.join(a for a in extra if a.startswith('--'))}.log"
            proc = procs.start([sys.executable, str(BENCH_DIR / script), "--canned",
                                str(canned_path), "--host", HOST, "--port", "0", *extra], log,
                               env=child_env())
            try:
                port = int(wait_for_lines(proc, log, {key: pattern}, 30)[key])
                for row in rows:
                    tick(f"perf_analyzer {row.label}")
                    row.pid = proc.pid
                    res.rows.append(pa.run(row, f"{HOST}:{port}", proc.pid))
                names = python_thread_names(pyspy, proc.pid)
                for row in rows:
                    row.thread_names = names
            finally:
                procs.stop(proc)
            misses = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()
                      and "listening on" not in ln]
            res.pa_errors.extend(f"{script}: {ln}" for ln in misses[:5])

        def real(rows: list[Row]) -> None:
            for row in rows:
                tick(f"perf_analyzer {row.label}")
                port = http_port if row.protocol == "REST" else grpc_port
                row.pid = server.pid
                res.rows.append(pa.run(row, f"{HOST}:{port}", server.pid))

        # 2. pairs measured back to back, so that drift on a shared machine hits both alike
        bare("bare_asgi.py", "http", r"HTTP listening on http://[^:]+:(\d+)",
             [Row("bare ASGI", "risk", "REST", c) for c in (1, 16)])
        real([Row("shipyard", "risk", "REST", c) for c in (1, 16)])
        bare("bare_grpc.py", "grpc", r"gRPC listening on [^\s]+:(\d+)",
             [Row("bare grpc.aio", "risk", "gRPC", c) for c in (1, 16)]
             + [Row("bare grpc.aio", "risk", "gRPC stream", 16)])
        real([Row("shipyard", "risk", "gRPC", c) for c in (1, 16)]
             + [Row("shipyard", "risk", "gRPC stream", 16)])
        if mode.extras:  # diagnostics: what one thread hop per request costs each frontend
            bare("bare_asgi.py", "http", r"HTTP listening on http://[^:]+:(\d+)",
                 [Row("bare ASGI + hop", "risk", "REST", 16)], ("--executor-hop",))
            bare("bare_asgi.py", "http", r"HTTP listening on http://[^:]+:(\d+)",
                 [Row("bare ASGI, shipyard HTTP", "risk", "REST", c) for c in (1, 16)],
                 ("--shipyard-http",))
            bare("bare_grpc.py", "grpc", r"gRPC listening on [^\s]+:(\d+)",
                 [Row("bare grpc.aio + hop", "risk", "gRPC", 16)], ("--executor-hop",))
            bare("bare_grpc.py", "grpc", r"gRPC listening on [^\s]+:(\d+)",
                 [Row("bare grpc.aio + ONNX worker", "risk", "gRPC", 16)],
                 ("--onnx-worker", str(repo / "risk" / "1" / "model.onnx")))
        for model in ("risk", "cnn"):
            res.inproc[model] = in_process(repo, model, mode.inproc_s, tick)
        real([Row("shipyard", "cnn", proto, c) for proto in ("REST", "gRPC") for c in (1, 16)])
        real([Row("shipyard", "cnn", proto, 16, batch=CNN_TARGET_BATCH)
              for proto in ("REST", "gRPC")])

        # 3. profile what missed
        targets = evaluate_targets(res)
        missed = [t for t in targets if t[4] == "MISS"]
        want = args.profile == "always" or (args.profile == "auto" and missed and not args.quick)
        if want and pyspy is None:
            res.pa_errors.append("profiling skipped: py-spy not installed "
                                 "(pip install py-spy)")
        elif want and pyspy is not None:
            scenarios = [Row("shipyard", "risk", "REST", 16), Row("shipyard", "risk", "gRPC", 16)]
            if any(t[0].startswith("cnn") for t in missed):
                scenarios.append(Row("shipyard", "cnn", "gRPC", 16, batch=CNN_TARGET_BATCH))
            for row in scenarios:
                if deadline - time.monotonic() < mode.profile_s + 8:
                    res.pa_errors.append(f"profile of {row.label} skipped: time budget")
                    continue
                tick(f"py-spy profile {row.label}")
                res.profiles.append(profile_under_load(pa, pyspy, row, server.pid,
                                                       http_port, grpc_port, workdir))
        names = python_thread_names(pyspy, server.pid)
        for row in res.rows:
            if row.pid == server.pid:
                row.thread_names = names
        res.server_failures = server_failures(http_port)
    except BaseException:
        print(f"serve_bench: logs of the failed run kept in {workdir}", file=sys.stderr)
        raise
    finally:
        tick("stopping servers")
        procs.stop_all()
    log_text = (workdir / "server.log").read_text(errors="replace") if (
        workdir / "server.log").exists() else ""
    res.server_problems = [ln for ln in log_text.splitlines()
                           if re.search(r"\b(ERROR|CRITICAL|Traceback|WARNING)\b", ln)][:20]
    res.pa_errors = pa.errors + res.pa_errors
    res.wall_s = time.monotonic() - started
    return res


def server_failures(http_port: int) -> dict[str, Any]:
    """Failed-request counters from the real server's statistics, after all the load."""
    out: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        _, _, body = _http(http_port, "GET", "/v2/models/stats")
        for st in json.loads(body)["model_stats"]:
            inf = st["inference_stats"]
            out[st["name"]] = {"success": inf["success"]["count"], "fail": inf["fail"]["count"],
                               "inferences": st["inference_count"],
                               "executions": st["execution_count"]}
    return out


def profile_under_load(pa: PerfAnalyzer, pyspy: str, row: Row, pid: int, http_port: int,
                       grpc_port: int, workdir: Path) -> Profile:
    """py-spy (native stacks, 100 Hz) on the server while perf_analyzer keeps it busy."""
    port = http_port if row.protocol == "REST" else grpc_port
    secs = pa.mode.profile_s
    csv_path = workdir / f"profile_{row.model}_{row.protocol}.csv"
    cmd = pa.args(row, f"{HOST}:{port}", 1000, 3, csv_path, window_s=(secs + 3) / 3)
    log = workdir / f"profile_{row.model}_{row.protocol}.log"
    proc = pa.procs.start(cmd, log, env=pa.env)
    raw = workdir / f"profile_{row.model}_{row.protocol}.raw"
    try:
        time.sleep(1.5)
        err = record_profile(pyspy, pid, secs, raw)
    finally:
        pa.procs.stop(proc, grace_s=1.0)
    if err:
        return Profile(f"{row.label}", error=err)
    return summarise_raw(row.label, raw)


# -- output ------------------------------------------------------------------------------------

COLUMNS = ["target", "model", "protocol", "conc", "batch", "infer/s", "p50 us", "p99 us",
           "srv queue us", "srv compute us", "srv CPU", "client CPU", "note"]


def row_cells(r: Row) -> list[str]:
    if r.throughput is None:
        return [r.target, r.model, r.protocol, str(r.concurrency), str(r.batch),
                "-", "-", "-", "-", "-", "-", "-", r.error[:90]]
    return [r.target, r.model, r.protocol, str(r.concurrency), str(r.batch),
            _num(r.throughput), _num(r.p50_us), _num(r.p99_us), _num(r.server_queue_us),
            _num(r.server_compute_us), _num(r.server_cpu, 2), _num(r.client_cpu, 2), r.note]


def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def thread_table(res: Results) -> list[list[str]]:
    out = []
    for r in res.rows:
        if r.concurrency != 16 or not r.threads:
            continue
        busy = sorted(r.threads.items(), key=lambda kv: -kv[1])
        parts = []
        for tid, cores in busy[:4]:
            if cores < 0.01:
                continue
            name = r.thread_names.get(tid) or ("MainThread" if tid == r.pid
                                               else f"native tid {tid}")
            parts.append(f"{name} {cores:.2f}")
        out.append([r.label, _num(r.server_cpu, 2), "; ".join(parts)])
    return out


def render_markdown(res: Results, info: dict[str, str], old_doc: str | None) -> str:
    m = res.mode
    targets = evaluate_targets(res)
    cmd = "python benchmarks/serve_bench.py" + (" --quick" if m.name == "quick" else "")
    lines = [
        "# Serving benchmarks",
        "",
        f"Written by `{cmd}` (the command that measures the server against its ceilings "
        "in one run; see the docstring of `benchmarks/serve_bench.py`). Every number below "
        "comes from **one run**: the machine is shared, so absolute numbers drift from run to "
        "run; compare the ratios, which are measured back to back in the same run.",
        "",
        f"- Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, Linux {info['kernel']}",
        f"- Date: {res.started:%Y-%m-%d %H:%M %Z}; mode {m.name}; the run took "
        f"{res.wall_s:.0f} s",
        f"- Python {info['python']}; {info['versions']}; {res.pa_version or 'perf_analyzer'}",
        f"- Load: perf_analyzer, synchronous, `--measurement-interval {int(m.window_s * 1000)}"
        f" --percentile=50 -s {m.stability} -r {m.max_trials} --input-data random`; "
        "REST uses the binary tensor extension (perf_analyzer's default), gRPC "
        "`raw_input_contents`. `-b 1` = one row (one image) per request.",
        f"- Server code: {res.source}",
        "- Server: `python -m shipyard serve` on the built-in demo repository (dynamic batching "
        "greedy, 1 instance, ONNX Runtime with 1 intra-op and 1 inter-op thread); the bare "
        "servers answer with replies copied from it at the start of the run.",
        "",
        "## Targets",
        "",
        md_table(["target", "ratio", "goal", "verdict", "numbers"],
                 [[name, "-" if v is None else f"{v:.2f}", f"{op} {thr:g}", verdict, detail]
                  for name, op, thr, v, verdict, detail in targets], "lrrll"),
        "",
        *reference_ratios(res),
        f"The cnn target rows send {CNN_TARGET_BATCH} images per request (`-b "
        f"{CNN_TARGET_BATCH}`, the model's max_batch_size); the `-b 1` rows (one image per "
        "request) show the per-request cost and are for reference: at one image per request "
        "70 % of the in-process ceiling would be about 100k requests/s, several times what even "
        "the bare servers answer here. Rows `+ hop` are diagnostics, not ceilings: the bare "
        "server also awaits a no-op in a one-thread executor per request, the thread hop that "
        "the real server's batcher makes once per batch. The row `bare grpc.aio + ONNX worker` is "
        "the least a server that never runs inference on its loop must do: the bare gRPC server "
        "also runs the risk model on each request's input in a worker thread (no batching, "
        "validation or statistics). The row `bare ASGI, shipyard HTTP` is "
        "the bare app on Shipyard's own HTTP server instead of uvicorn (a reference: the REST "
        "target compares with the bare app on uvicorn, the standard stack).",
        "",
        "## Load results",
        "",
        "infer/s counts rows (images for cnn). p50/p99: client-side latency. srv queue / srv "
        "compute: the server's own statistics as perf_analyzer reports them (real server only). "
        "srv CPU: CPU time of the server process (all threads) over the perf_analyzer run, in "
        "cores; client CPU: the same for perf_analyzer. 2 cores in all, so both compete.",
        "",
        md_table(COLUMNS, [row_cells(r) for r in res.rows], "llllrrrrrrrrl"),
        "",
        "## In-process ceiling (ONNX Runtime alone)",
        "",
        "The same ONNX files called with `InferenceSession.run` in a loop, prebuilt random "
        "input, 1 intra-op and 1 inter-op thread, CPU provider.",
        "",
    ]
    for model, ip in res.inproc.items():
        b, best = ip.best
        unit = "images/s" if model == "cnn" else "rows/s"
        lines.append(f"- **{model}**: best {best:,.0f} {unit} at batch {b}; " + ", ".join(
            f"b{k} {v:,.0f}" for k, v in ip.rates.items()))
    lines += ["", "## Where the server's CPU goes (c16)", "",
              "CPU of each server thread over the perf_analyzer run, in cores (top 4). "
              "MainThread runs the event loop (the HTTP server, grpc.aio, the batcher); "
              "`risk-v1_0` / `cnn-v1_0` run ONNX Runtime; `Thread-1 (_poll_wrapper)` is "
              "grpc.aio's poller; native tids are threads of gRPC core.", ""]
    lines.append(md_table(["load", "server CPU", "per thread"], thread_table(res), "lrl"))
    lines += ["", "## Errors and warnings seen", ""]
    problems = [*res.pa_errors, *(f"server log: {p}" for p in res.server_problems)]
    lines += [f"- {p}" for p in problems] or ["- none (perf_analyzer and the server logged no "
                                              "errors or warnings)"]
    if res.server_failures:
        lines.append("- server statistics after the run: " + "; ".join(
            f"{k}: {v['success']:,} ok, {v['fail']:,} failed, {v['executions']:,} executions"
            for k, v in res.server_failures.items()))
    lines += ["", "## What limits us", ""]
    if res.profiles:
        lines += [
            "py-spy, native stacks, 100 Hz, on the server process while perf_analyzer keeps "
            "the load on. A thread is *idle* when parked in epoll or on a lock or queue, "
            "*waiting for the GIL* when blocked in CPython's take_gil (`pthread_cond_timedwait` "
            "outside a lock acquire); only busy samples are ranked, by function (line numbers "
            "merged). Self = the innermost frame; total = frames anywhere on the stack (thread "
            "start-up and event-loop plumbing left out); Python = the innermost Python function "
            "with the native code it called (`[event loop]` = native code of uvloop or grpc "
            "core with no Python frame above it but the loop's). Native frames of libraries "
            "without symbols are shown as `[native lib]`.",
            "",
        ]
        for prof in res.profiles:
            lines += [f"### {prof.scenario}", ""]
            if prof.error:
                lines += [f"profile failed: {prof.error}", ""]
                continue
            lines.append(f"{prof.samples:,} samples, {prof.busy:,} busy. Per thread, samples "
                         "busy / waiting for the GIL / idle: " + "; ".join(
                             f"{k} {b}/{g}/{i}" for k, (b, g, i) in
                             sorted(prof.threads.items(), key=lambda kv: -kv[1][0])) + ".")
            lines.append("")
            for title, data in (("self", prof.self_top), ("total", prof.total_top),
                                ("innermost Python function", prof.py_top)):
                lines += [f"Top by {title}:", "", md_table(
                    ["frame", "samples", "% of busy"],
                    [[f"`{k}`", str(v), f"{100 * v / max(prof.busy, 1):.1f}"] for k, v in data],
                    "lrr"), ""]
    else:
        lines += ["No profile in this run (all targets met, `--quick`, `--profile never`, or "
                  "py-spy missing).", ""]
    analysis = None
    if old_doc and ANALYSIS_BEGIN in old_doc and ANALYSIS_END in old_doc:
        analysis = old_doc[old_doc.index(ANALYSIS_BEGIN): old_doc.index(ANALYSIS_END)
                           + len(ANALYSIS_END)]
    lines += ["### Reading of the profile", "", analysis or (
        f"{ANALYSIS_BEGIN}\n(no hand-written analysis yet: text between these markers is kept "
        f"when the command rewrites this file)\n{ANALYSIS_END}"), ""]
    if old_doc:  # the sections other benchmark commands own (doc_sections.py) stay
        from doc_sections import owned_sections

        lines += [section.rstrip() + "\n" for section in owned_sections(old_doc)]
    lines += ["## How to reproduce", "", "```", ". .venv/bin/activate",
              "pip install py-spy   # optional: profiles when a target is missed",
              "python benchmarks/serve_bench.py            # full, under 5 minutes",
              "python benchmarks/serve_bench.py --quick    # under 90 s",
              "# serve the last commit's code while src/ is being edited:",
              "mkdir -p /tmp/head && git archive HEAD src | tar -x -C /tmp/head",
              "python benchmarks/serve_bench.py --src /tmp/head/src",
              "```", ""]
    return "\n".join(lines)


def print_summary(res: Results, console: Any) -> None:
    from rich.table import Table

    table = Table(title=f"Load results ({res.mode.name} run)")
    for c in COLUMNS:
        table.add_column(c, justify="right" if c in ("infer/s", "p50 us", "p99 us", "srv CPU",
                                                     "client CPU", "srv queue us",
                                                     "srv compute us") else "left")
    for r in res.rows:
        table.add_row(*row_cells(r))
    console.print(table)
    for model, ip in res.inproc.items():
        b, best = ip.best
        console.print(f"in-process {model}: best {best:,.0f} rows/s at batch {b}")
    tt = Table(title="Targets")
    for c in ("target", "ratio", "goal", "verdict", "numbers"):
        tt.add_column(c)
    for name, op, thr, v, verdict, detail in evaluate_targets(res):
        color = {"PASS": "green", "MISS": "red"}.get(verdict, "yellow")
        tt.add_row(name, "-" if v is None else f"{v:.2f}", f"{op} {thr:g}",
                   f"[{color}]{verdict}[/{color}]", detail)
    console.print(tt)
    for p in res.pa_errors:
        console.print(f"[yellow]{p}[/yellow]")


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """SIGTERM/SIGHUP end the run through ``finally`` blocks, so the children are stopped."""
    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Shipyard serving benchmark: the real server against its ceilings.")
    parser.add_argument("--quick", action="store_true",
                        help="shorter windows, no extra rows, no profile: under 90 s")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="perf_analyzer measurement window in seconds (default 2, quick 1)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="py-spy the server under load: when a target is missed (auto, "
                             "full runs only), always, or never")
    parser.add_argument("--output", type=Path, default=DOC,
                        help=f"markdown report to (over)write (default {DOC.relative_to(ROOT)})")
    parser.add_argument("--no-write", action="store_true", help="print only, write no report")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the temporary folder of logs, CSVs and profiles")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="directory holding the shipyard package to serve (default: src/ of "
                             "this checkout), e.g. a `git archive HEAD src` export")
    args = parser.parse_args(argv)
    if args.duration is not None and not 0.2 <= args.duration <= 10:
        parser.error("--duration must be between 0.2 and 10 seconds")
    global SRC
    SRC = args.src.resolve()
    if not (SRC / "shipyard" / "__main__.py").is_file():
        parser.error(f"--src {args.src}: no shipyard package there")
    sys.path.insert(0, str(SRC))

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=170)
    mode = QUICK if args.quick else FULL
    steps = 22 + (7 if mode.extras else 0) + (3 if args.profile != "never" else 0)
    with signals_as_exit(), Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task("starting", total=steps)

        def tick(what: str) -> None:
            progress.update(task, description=what, advance=1)

        try:
            res = run(args, progress, tick)
        except (KeyboardInterrupt, SystemExit):
            console.print("[yellow]interrupted; every process this run started is stopped")
            raise
        progress.update(task, description="done", completed=steps)
    print_summary(res, console)
    if not args.no_write:
        info = machine()
        old = args.output.read_text() if args.output.exists() else None
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render_markdown(res, info, old))
        console.print(f"wrote {args.output}")
    if args.keep_logs or res.workdir is None:
        console.print(f"logs: {res.workdir}  ({res.wall_s:.0f} s)")
    else:
        shutil.rmtree(res.workdir, ignore_errors=True)
        console.print(f"done in {res.wall_s:.0f} s (--keep-logs keeps the logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
