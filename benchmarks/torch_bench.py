"""Torch runtime benchmark: a small CNN in-process against Shipyard serving it, in one run.

    python benchmarks/torch_bench.py [--device cpu|cuda] [--duration S] [--output FILE |
                                      --no-write] [--keep-logs] [--rehearse]

The model is the tests' ``SmallCNN`` (``tests/torch_models.py``: three conv layers on 1x28x28
and a linear layer, seeded random weights) saved as ``model.pt2`` (``torch.export``, dynamic
batch dimension) in a temporary repository.

``--device cpu`` (default; about 5 minutes): ``parameters.execution`` eager, script (the
default ``auto`` picks it for this model) and aot (a ``model.pt2`` that carries its
AOTInductor code, compiled when the repository is built) at ``threads``
(``torch.set_num_threads``, the runtime's ``parameters.threads``) 1, script also at 2, and
the same weights as TorchScript (``model.pt``) at 1 thread, and script at 1 thread served by
two processes (``shipyard serve --workers 2``):

* in-process ceiling: what the runtime calls (loaded by the runtime itself with the row's
  ``parameters``: the exported program's ``module()``, its TorchScript trace, the AOTInductor
  model or the TorchScript file) in a loop under ``torch.inference_mode()`` on a prebuilt batch
  of 16;
* Shipyard (``python -m shipyard serve``, ``max_batch_size: 16``, greedy batching, one
  instance) loaded by ``perf_analyzer`` at concurrency 16 with 16 images per request
  (``-b 16``) over REST JSON (``--input-tensor-format=json --output-tensor-format=json``),
  REST binary (the binary tensor extension) and gRPC (``raw_input_contents``). Each request is
  one execution of the same batch size as the in-process loop, so the ratio is the cost of
  serving.

The goal is served rows/s >= 0.8 x in-process rows/s at c16 (same ``threads``). The
``--workers 2`` row is held against the best one process does in process (script at 1 or 2
threads, whichever was faster in this run): a machine's cores against a machine's cores.

``--device cuda`` (a GPU machine; under 100 s with its default ``--duration 1``): the torch
runtime on the GPU (``device: cuda``, ``execution: auto``) for ``dtype`` float32 and bfloat16,
each with and without ``cuda_graphs`` (captured at batch 16): four models, one per setting, in
one server. In-process, what the runtime runs per batch of 16 (its module, or its CUDA graph
captured at 16), the batch copied from host memory each time as the served path copies it;
served, the same three protocols at c16 with ``-b 16``. It stops at once, with a message, when
torch is missing or sees no CUDA device. ``--device cuda --rehearse`` runs that layout (the four
models, one server, the CUDA section's report) on the CPU, with ``device: cpu`` in every
setting, to check the bench on a machine without a GPU; it writes nothing.

Results are printed and written to ``docs/benchmarks.md`` as the section "Torch runtime"
(``--device cuda``: "Torch runtime (CUDA)"), replacing that section only. Processes, the
perf_analyzer wrapper and the environment helpers are ``serve_bench``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_bench as sb
from doc_sections import write_section

ROOT = sb.ROOT
DOC = sb.DOC
BATCH = 16
CONCURRENCY = 16
GOAL = 0.8


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and every process under it (the ``--workers`` children), each
    read by shipyard bench's /proc reader (a process gone counts 0)."""
    import psutil

    from shipyard.bench._load import cpu_seconds

    try:
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    return sum(cpu_seconds(p) or 0.0 for p in pids)


class TorchPerfAnalyzer(sb.PerfAnalyzer):
    """serve_bench's perf_analyzer runner plus the protocol "REST JSON" (JSON tensors), with
    images from a data file: ``--input-data random`` fills FP32 tensors with random bits,
    NaN among them, which perf_analyzer then writes into JSON requests as bare ``NaN`` (not
    JSON; the server rightly refuses them)."""

    data_file: Path

    def args(self, row: sb.Row, url: str, stability: int, trials: int, csv_path: Path,
             window_s: float | None = None) -> list[str]:
        as_json = row.protocol == "REST JSON"
        base = dataclasses.replace(row, protocol="REST") if as_json else row
        cmd = super().args(base, url, stability, trials, csv_path, window_s)
        cmd[cmd.index("random")] = str(self.data_file)
        if as_json:
            cmd += ["--input-tensor-format=json", "--output-tensor-format=json"]
        return cmd

    def run_tree(self, row: sb.Row, url: str, server_pid: int) -> sb.Row:
        """``run`` against a server of several processes: srv CPU sums the parent and its
        workers (``run`` reads the threads of one process)."""
        before, t0 = _tree_cpu(server_pid), time.monotonic()
        self.run(row, url, None)
        if row.throughput:
            row.server_cpu = (_tree_cpu(server_pid) - before) / (time.monotonic() - t0)
        return row


def write_data_file(path: Path) -> Path:
    """perf_analyzer input data: 16 normal-random images (one per batch row)."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = [{"image": {"content": rng.standard_normal(784).astype(np.float32).tolist(),
                         "shape": [1, 28, 28]}} for _ in range(BATCH)]
    path.write_text(json.dumps({"data": images}))
    return path


@dataclasses.dataclass
class Setting:
    """One server configuration (``parameters:`` of the model's config.yaml)."""

    label: str
    parameters: dict[str, Any]
    model: str = "cnn"  # cnn: model.pt2; cnn_ts: the same weights as TorchScript model.pt;
    # cnn_aot: model.pt2 carrying the program and its AOTInductor code; --device cuda:
    # cnn_<dtype>[_graphs], a copy of cnn's model.pt2 per setting
    instances: int = 1  # config.yaml instances; in process, as many threads call the module
    workers: int = 1  # shipyard serve --workers; in process: the best one-process script row
    inproc: float | None = None  # rows/s
    rows: list[sb.Row] = dataclasses.field(default_factory=list)


#: the models of the ``--device cpu`` repository, which every CPU setting's server loads
CPU_MODELS = ("cnn", "cnn_aot", "cnn_ts")


def build_repository(root: Path, settings: list[Setting], device: str) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from torch_models import CNN_TENSORS, cnn_pt, cnn_pt2, cnn_pt2_aot

    if device == "cuda":  # one model.pt2 per setting: one server serves them all
        first = cnn_pt2(root / settings[0].model / "1")
        for s in settings[1:]:
            (root / s.model / "1").mkdir(parents=True)
            shutil.copy(first, root / s.model / "1" / first.name)
        return root
    cnn_pt2(root / "cnn" / "1")
    cnn_pt2_aot(root / "cnn_aot" / "1")  # AOTInductor: compiles for some seconds
    cnn_pt(root / "cnn_ts" / "1")
    (root / "cnn_ts" / "tensors.yaml").write_text(yaml.safe_dump(CNN_TENSORS))
    return root


def write_config(repo: Path, setting: Setting) -> None:
    config = {"max_batch_size": BATCH,
              "dynamic_batching": {"preferred_batch_sizes": [BATCH]},
              "instances": setting.instances,
              "parameters": setting.parameters}
    if setting.model not in CPU_MODELS:  # --device cuda: the setting's own model
        (repo / setting.model / "config.yaml").write_text(yaml.safe_dump(config))
        return
    for model in ("cnn", "cnn_aot"):
        (repo / model / "config.yaml").write_text(yaml.safe_dump(config))
    tensors = yaml.safe_load((repo / "cnn_ts" / "tensors.yaml").read_text())
    script = {k: v for k, v in setting.parameters.items() if k != "execution"}  # runs as is
    (repo / "cnn_ts" / "config.yaml").write_text(yaml.safe_dump(
        {**config, "parameters": script, **tensors}))


def in_process(repo: Path, setting: Setting, seconds: float) -> float:
    """Rows/s of what the runtime calls at batch 16 (its module: the exported program's
    ``module()``, its TorchScript trace, the AOTInductor model or the TorchScript file, as
    ``parameters.execution`` makes it; with ``cuda_graphs``, its CUDA graph captured at 16),
    loaded by the runtime itself. On CUDA each batch is copied from host memory (float32,
    cast on the device) and its output back, as the runtime's ``predict`` does; the copy
    back waits for the GPU, so every timed call includes its kernels."""
    import torch

    from shipyard.serving.config import ModelConfig
    from shipyard.serving.runtimes import create_runtime

    write_config(repo, setting)
    config = yaml.safe_load((repo / setting.model / "config.yaml").read_text())
    rt: Any = create_runtime(repo / setting.model / "1",
                             ModelConfig.model_validate({"name": setting.model, **config}))
    rt.load()
    params = setting.parameters
    device = rt._device
    dtype = getattr(torch, params.get("dtype", "float32"))
    module = rt._module

    def first(out: Any) -> Any:
        return out[0] if isinstance(out, list | tuple) else out

    if device.type == "cuda":
        host = torch.randn(BATCH, 1, 28, 28)  # float32 in host memory, as requests arrive
        if params.get("cuda_graphs"):
            if BATCH not in rt._graphs:
                raise RuntimeError(f"{setting.label}: the runtime captured no CUDA graph at "
                                   f"batch {BATCH} (it has {sorted(rt._graphs)})")
            graph, static, leaves = rt._graphs[BATCH]

            def call() -> Any:
                static[0].copy_(host)
                graph.replay()
                return leaves[0]
        else:
            def call() -> Any:
                return first(module(host.to(device, dtype)))
    else:
        x = torch.randn(BATCH, 1, 28, 28, device=device, dtype=dtype)

        def call() -> Any:
            return first(module(x))

    def loop(counts: list[int]) -> None:
        with torch.inference_mode():
            for _ in range(5):
                call().float().cpu()
            n = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                call().float().cpu()  # the served path copies every output back to the host
                n += 1
            counts.append(n)

    import threading

    counts: list[int] = []  # instances > 1: as many threads call the module at once
    threads = [threading.Thread(target=loop, args=(counts,)) for _ in range(setting.instances)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    rt.unload()
    return sum(counts) * BATCH / elapsed


def serve(repo: Path, settings: list[Setting], pa: TorchPerfAnalyzer, procs: sb.Processes,
          workdir: Path, protocols: list[str]) -> None:
    """One server for ``settings`` (each its own model, or one CPU setting), loaded by
    perf_analyzer for each setting and protocol in turn."""
    for setting in settings:
        write_config(repo, setting)
    label = settings[0].label if len(settings) == 1 else "all settings"
    log = workdir / f"server_{re.sub(r'[^a-z0-9]+', '_', label)}.log"
    workers = settings[0].workers if len(settings) == 1 else 1
    server = procs.start([sys.executable, "-m", "shipyard", "serve", "--model-repository",
                          str(repo), "--host", sb.HOST, "--http-port", "0", "--grpc-port", "0",
                          "--grace-period", "2", "--default-model", settings[0].model,
                          *(["--workers", str(workers)] if workers > 1 else [])], log,
                         env=sb.child_env())
    try:
        ports = sb.wait_for_lines(server, log, {
            # --workers: the parent (shipyard.workers) says where and when all are ready
            "http": r"shipyard\.(?:server|workers): HTTP listening on http://[^:]+:(\d+)",
            "grpc": r"shipyard\.(?:server|workers): gRPC listening on [^\s]+:(\d+)",
            "ready": r"shipyard\.(?:server|workers): ready: serving"}, 90)
        for setting in settings:
            for protocol in protocols:
                row = sb.Row("shipyard", setting.model, protocol, CONCURRENCY, batch=BATCH)
                port = ports["grpc"] if protocol == "gRPC" else ports["http"]
                print(f"  perf_analyzer {setting.label} {protocol} c{CONCURRENCY} b{BATCH}",
                      file=sys.stderr, flush=True)
                setting.rows.append(pa.run(row, f"{sb.HOST}:{port}", server.pid)
                                    if workers == 1 else pa.run_tree(row, f"{sb.HOST}:{port}",
                                                                     server.pid))
    finally:
        procs.stop(server)
    problems = [ln for ln in log.read_text(errors="replace").splitlines()
                if re.search(r"\b(ERROR|CRITICAL|Traceback|WARNING)\b", ln)]
    pa.errors.extend(f"server ({label}): {ln}" for ln in problems[:5])


def settings_for(device: str) -> list[Setting]:
    if device == "cpu":
        def cpu(threads: int, execution: str) -> dict[str, Any]:
            return {"device": "cpu", "threads": threads, "execution": execution}

        return [Setting("threads 1, eager", cpu(1, "eager")),
                *(Setting(f"threads {t}, script (auto)", cpu(t, "auto")) for t in (1, 2)),
                Setting("threads 1, script (auto), instances 2", cpu(1, "auto"), instances=2),
                Setting("threads 1, aot (packaged)", cpu(1, "aot"), "cnn_aot"),
                Setting("threads 1, model.pt", {"device": "cpu", "threads": 1}, "cnn_ts"),
                Setting("threads 1, script (auto), --workers 2", cpu(1, "auto"), workers=2)]
    return [Setting(f"{dtype}{' + CUDA graphs' if graphs else ''}",
                    {"device": "cuda", "dtype": dtype, "cuda_graphs": graphs},
                    f"cnn_{dtype}{'_graphs' if graphs else ''}")
            for dtype in ("float32", "bfloat16") for graphs in (False, True)]


def render(settings: list[Setting], device: str, info: dict[str, str], mode: sb.Mode,
           wall_s: float, pa_version: str, errors: list[str], torch_version: str,
           gpu: str) -> str:
    heading = "## Torch runtime" + (" (CUDA)" if device == "cuda" else "")
    cmd = "python benchmarks/torch_bench.py" + (" --device cuda" if device == "cuda" else "")
    lines = [
        heading, "",
        f"Written by `{cmd}` (see its docstring). One run; ratios are measured back to back.",
        "",
        f"- Machine: {info['nproc']} CPUs, {info['cpu']}{', ' + gpu if gpu else ''}; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; the run took "
        f"{wall_s:.0f} s",
        f"- torch {torch_version}; Python {info['python']}; {pa_version or 'perf_analyzer'}",
        f"- Server code: {sb.source_info()}",
        *(model_lines(mode) if device == "cpu" else cuda_model_lines(mode)),
        f"- Served: perf_analyzer, concurrency {CONCURRENCY}, `-b {BATCH}` ({BATCH} images per "
        f"request), `--measurement-interval {int(mode.window_s * 1000)} -s {mode.stability} "
        f"-r {mode.max_trials} --input-data images.json` (16 normal-random images). rows/s "
        "counts images.",
        "",
        "| setting | protocol | served rows/s | in-process rows/s | ratio | goal | p50 us | "
        "srv queue us | srv compute us | srv CPU | client CPU | note |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in settings:
        for r in s.rows:
            ratio = (r.throughput / s.inproc) if r.throughput and s.inproc else None
            verdict = "-" if ratio is None else ("PASS" if ratio >= GOAL else "MISS")
            note = r.error or r.note
            lines.append(
                f"| {s.label} | {r.protocol} | {sb._num(r.throughput)} | {sb._num(s.inproc)} | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} | >= {GOAL} {verdict} | "
                f"{sb._num(r.p50_us)} | {sb._num(r.server_queue_us)} | "
                f"{sb._num(r.server_compute_us)} | {sb._num(r.server_cpu, 2)} | "
                f"{sb._num(r.client_cpu, 2)} | {note} |")
    lines.append("")
    if device == "cuda":
        lines += ["In-process rows/s: " + ", ".join(
            f"{s.label}: {sb._num(s.inproc)}" for s in settings) + ". Served, best protocol: "
            + ", ".join(f"{s.label}: {sb._num(max((r.throughput or 0) for r in s.rows))}"
                        for s in settings if s.rows) + ".", ""]
    if device == "cpu":
        lines += ["In-process rows/s by threads: " + ", ".join(
            f"{s.label}: {sb._num(s.inproc)}" for s in settings if s.workers == 1)
            + " (the `--workers` row is held against the best one-process script row; two "
            "threads calling the module at once, the `instances 2` row, is the stricter "
            "bound). Served, best protocol: "
            + ", ".join(f"{s.label}: {sb._num(max((r.throughput or 0) for r in s.rows))}"
                        for s in settings if s.rows) + ".", ""]
    if device == "cpu":
        lines += [*why_missed(settings), ""]
    lines += ["Errors and warnings: " + ("; ".join(errors[:10]) if errors else "none") + ".",
              ""]
    return "\n".join(lines)


def model_lines(mode: sb.Mode) -> list[str]:
    """What the ``--device cpu`` rows are."""
    return [
        "- Model: the tests' SmallCNN (3 conv + 1 linear, 1x28x28 -> 10) as `model.pt2` "
        "(rows marked aot: a `model.pt2` carrying the program and its AOTInductor code; "
        "model.pt: the same weights as TorchScript); rows are `parameters.execution` and "
        "`threads`; "
        f"`max_batch_size: {BATCH}`, greedy batching, 1 instance.",
        "- In-process: what the runtime calls, loaded by the runtime with the row's "
        "`parameters` (eager: `ExportedProgram.module()`; script: its `torch.jit.trace`; aot: "
        "the AOTInductor model; model.pt: the `torch.jit.load`ed module) "
        f"on a prebuilt batch of {BATCH} under "
        "`torch.inference_mode()`, output copied to host memory as float32, "
        f"{mode.inproc_s:g} s per setting."]


def cuda_model_lines(mode: sb.Mode) -> list[str]:
    """What the ``--device cuda`` rows are."""
    return [
        "- Model: the tests' SmallCNN (3 conv + 1 linear, 1x28x28 -> 10) as `model.pt2`, "
        "`parameters` `device: cuda`, `execution: auto` (a TorchScript trace of the program); "
        "rows are `dtype` (float32: cuDNN convolutions in TF32, torch's default) and "
        f"`cuda_graphs` (one graph captured at batch {BATCH}); one server holds the four "
        f"models, one per row; `max_batch_size: {BATCH}`, "
        f"`preferred_batch_sizes: [{BATCH}]`, greedy batching, 1 instance.",
        "- In-process: what the runtime runs per batch, loaded by the runtime with the row's "
        "`parameters`: its module, or with CUDA graphs its graph (input copied into the "
        f"static buffer, one replay), on a batch of {BATCH} images copied from host memory "
        "each call (float32, cast to the row's dtype on the GPU) under "
        "`torch.inference_mode()`, output copied back to host memory as float32 (which waits "
        f"for the GPU), {mode.inproc_s:g} s per setting."]


def why_missed(settings: list[Setting]) -> list[str]:
    """What limits the CPU rows: per-batch time in process against the server's compute time
    per batch (REST rows), and what profiling showed (py-spy, torch 2.13, this machine)."""
    parts = []
    for s in settings:
        rest = next((r for r in s.rows if r.protocol == "REST"), None)
        if s.inproc and rest is not None and rest.server_compute_us:
            parts.append(f"{s.label} {BATCH / s.inproc * 1e6:.0f} vs "
                         f"{rest.server_compute_us:.0f} us")
    return [
        "Per batch of 16, in process vs the server's compute time (REST): " + "; ".join(parts)
        + ". With one request per batch the worker thread is the bottleneck (in separate "
        "profiling runs 0.85-0.93 of a core in per-thread CPU, the event loop 0.3-0.4): py-spy "
        "showed eager's worker time in `OpOverload.__call__`, one Python call per ATen op, each"
        " giving up the GIL and waiting to win it back from the loop, which `execution: script`"
        " (one C++ call per batch, like `model.pt`) removes. For script, by hand on 2026-12-02 "
        "(a slow day: 1.4 ms per forward in process against 0.25 ms on 2026-12-01, and the "
        "ratio stayed 0.62-0.69, so the loss grows with the work, no fixed cost per request):"
        " py-spy (500 Hz, 6 s at c16) found the worker 77% of its time in the forward and 23% "
        "in the Python around it (input checks, conversions, the batcher), which costs about "
        "25 us per batch in a quiet process and some 400 us under load, most likely waiting "
        "for the GIL the event loop holds a third of the time. Pinning the worker alone on one"
        " core, the loop and perf_analyzer on the other, changed nothing (9.35k and 8.83k "
        "rows/s against 9.07k and 9.18k unpinned), nor did `sys.setswitchinterval` 0.1-5 ms: "
        "it is the one GIL the two threads share, not the cores. A second process, each with "
        "its own GIL, is what lifts it: the `--workers 2` row. AOTInductor (`aot`) is as fast "
        "in process but holds the GIL for the whole run, so the loop waits and the server uses"
        " one core in all (srv CPU ~1.0); `threads 2` only adds an OpenMP thread competing with"
        " the loop."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Torch runtime: in-process vs served.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="perf_analyzer measurement window in seconds (default 2; 1 "
                        "with --device cuda)")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--rehearse", action="store_true",
                        help="with --device cuda: its settings, server and report run on the "
                        "CPU (device: cpu in every setting; CUDA graphs ignored), to check "
                        "the bench before a GPU run; writes nothing")
    args = parser.parse_args(argv)
    rehearse = args.rehearse and args.device == "cuda"
    if rehearse:
        args.no_write = True

    try:
        import torch
    except ImportError as exc:
        raise SystemExit(f"torch_bench: torch is not installed ({exc}); "
                         "pip install 'shipyard[serve,torch]'") from exc

    gpu = ""
    torch_version = str(torch.__version__)
    if args.device == "cuda" and not rehearse:
        if not torch.cuda.is_available():
            raise SystemExit(
                f"torch_bench --device cuda: torch {torch.__version__} sees no CUDA device "
                f"(CUDA build: {torch.version.cuda}); run it on a GPU machine with a CUDA "
                "build of torch")
        gpu = torch.cuda.get_device_name(0)
        cudnn = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
        torch_version += f" (CUDA {torch.version.cuda}, cuDNN {cudnn})"
    pa_exe = sb.find_tool("perf_analyzer")
    if pa_exe is None:
        raise SystemExit("perf_analyzer not found next to this Python or on PATH")
    pa_version = ""
    with contextlib.suppress(Exception):
        out = subprocess.run([pa_exe, "--version"], capture_output=True, text=True,
                             env=sb.perf_analyzer_env(), timeout=10)
        pa_version = (out.stdout.strip() or out.stderr.strip()).splitlines()[0]
    sys.path.insert(0, str(sb.SRC))

    if args.device == "cpu":
        mode = sb.Mode("torch", args.duration or 2.0, 4, 15, 3.0, 300.0, False, 0.0)
    else:  # 4 settings x 3 protocols in one server: ~4 s a row at 1 s windows, 100 s in all
        mode = sb.Mode("torch-cuda", args.duration or 1.0, 3, 15, 1.5, 85.0, False, 0.0)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="torch_bench_"))
    procs = sb.Processes()
    pa = TorchPerfAnalyzer(pa_exe, mode, workdir, procs, started + mode.budget_s)
    pa.data_file = write_data_file(workdir / "images.json")
    settings = settings_for(args.device)
    if rehearse:
        for s in settings:
            s.parameters["device"] = "cpu"
    protocols = ["REST JSON", "REST", "gRPC"]
    repo = build_repository(workdir / "repo", settings, args.device)
    try:
        for s in settings:  # in-process first, while no server competes for the cores
            if s.workers == 1:
                print(f"in-process {s.label}", file=sys.stderr, flush=True)
                s.inproc = in_process(repo, s, mode.inproc_s)
        for s in settings:  # several processes: against the best one process does
            if s.workers > 1:
                s.inproc = max(o.inproc or 0.0 for o in settings
                               if o.workers == 1 and o.instances == 1 and o.model == "cnn"
                               and o.parameters.get("execution") == "auto")
        if args.device == "cuda":  # one model per setting: one server for them all
            serve(repo, settings, pa, procs, workdir, protocols)
        else:  # threads is one setting per process: one server per setting
            for s in settings:
                serve(repo, [s], pa, procs, workdir, protocols)
    except BaseException:
        print(f"torch_bench: logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    wall = time.monotonic() - started
    section = render(settings, args.device, sb.machine(), mode, wall, pa_version, pa.errors,
                     torch_version, gpu)
    print(section)
    if not args.no_write:
        heading = section.splitlines()[0]
        write_section(args.output, "torch-cuda" if heading.endswith("(CUDA)") else "torch",
                      section)
        print(f"wrote {args.output} ({heading!r})", file=sys.stderr)
    if args.keep_logs:
        print(f"logs: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
