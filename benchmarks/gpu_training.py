"""Training on a GPU against the CPU of the same machine: the Fashion-MNIST and SMS Transformer
examples through ``shipyard train``, in one run.

    python benchmarks/gpu_training.py [--device cuda] [--precision bf16] [--cpu-epochs 1]
                                      [--fashion DIR] [--sms FILE] [--quick]
                                      [--output FILE | --no-write]

Trains, each as its own ``shipyard train ... --quiet`` process:

* ``examples/fashion_mnist/experiment.yaml`` on ``--device`` with ``--precision`` autocast (all
  its epochs), then on the CPU for ``--cpu-epochs`` epochs (the CPU's images/s in the same run,
  on all the machine's cores: torch's default threads);
* ``examples/sms_spam_transformer/experiment.yaml`` likewise;

and reads each run directory (``metrics.json``, ``run.json``): the device and precision the
trainer reports it used, training images/s (texts/s), seconds per epoch, test accuracy and the
whole command's wall time. ``--device cuda`` stops at once, with a message, when torch sees no
CUDA device. The CPU rows are there for their rate (the epochs' mean), not their accuracy,
which one epoch does not reach. ``--quick`` (a rehearsal): one epoch everywhere. The section
"Training on the GPU machine" of docs/benchmarks.md is replaced unless ``--no-write``. Made for
the device tool's GPU machine (``benchmarks/device/run.sh``, about 100 s there).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from doc_sections import write_section  # noqa: E402

FASHION = ROOT / "examples" / "fashion_mnist" / "experiment.yaml"
TRANSFORMER = ROOT / "examples" / "sms_spam_transformer" / "experiment.yaml"
SMS = ROOT.parent / "shared" / "data" / "sms_spam" / "SMSSpamCollection"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "gpu-training"


@dataclass
class Result:
    """One ``shipyard train`` run."""

    model: str
    asked: str  # the device and precision asked for
    device: str = ""
    precision: str = ""
    epochs: float = 0.0
    rate: float | None = None
    seconds_per_epoch: float | None = None
    accuracy: float | None = None
    wall_s: float = 0.0
    error: str = ""


def _train(label: str, experiment: Path, overrides: dict[str, Any], out: Path,
           rate_key: str) -> Result:
    asked = (f"{overrides.get('training.device', 'auto')} "
             f"{overrides.get('training.precision', 'fp32')}")
    res = Result(label, asked)
    cmd = [sys.executable, "-m", "shipyard", "train", str(experiment), "--quiet",
           "--output", str(out)]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    print(f"{label} ({asked}) ...", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    res.wall_s = time.perf_counter() - started
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        res.error = f"exit code {proc.returncode}: {lines[-1][:300]}"
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return res
    metrics = json.loads((out / "metrics.json").read_text())
    run = json.loads((out / "run.json").read_text())
    history = run.get("history") or {}
    res.device = str(run.get("device") or history.get("device") or "")
    res.precision = str(run.get("precision") or history.get("precision") or "")
    training = metrics.get("training") or {}
    res.epochs = float(training.get("epochs") or 0)
    res.rate = training.get(rate_key)
    res.seconds_per_epoch = training.get("seconds_per_epoch")
    res.accuracy = (metrics.get("test") or {}).get("accuracy")
    return res


def run(args: argparse.Namespace) -> list[Result]:
    """Every training run, in order."""
    work = Path(tempfile.mkdtemp(prefix="gpu_training_"))
    quick = {"training.epochs": 1} if args.quick else {}
    gpu = {"training.device": args.device, "training.precision": args.precision}
    cpu: dict[str, Any] = {"training.device": "cpu", "training.precision": "fp32"}
    fashion = {"data.source": f"idx:{args.fashion}"}
    sms = {"data.source": str(args.sms)}
    results = [
        _train("Fashion-MNIST CNN", FASHION, {**fashion, **gpu, **quick}, work / "fashion_gpu",
               "images_per_s"),
        _train("Fashion-MNIST CNN", FASHION,
               {**fashion, **cpu, "training.epochs": args.cpu_epochs}, work / "fashion_cpu",
               "images_per_s"),
        _train("SMS Transformer", TRANSFORMER, {**sms, **gpu, **quick}, work / "text_gpu",
               "texts_per_s"),
        _train("SMS Transformer", TRANSFORMER, {**sms, **cpu, "training.epochs": args.cpu_epochs},
               work / "text_cpu", "texts_per_s"),
    ]
    print(f"run directories and logs: {work}")
    return results


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        return f"no CUDA device, torch {torch.__version__}"
    except ImportError:
        return "torch not installed"


def render(results: list[Result], args: argparse.Namespace, started: str) -> str:
    """The section of docs/benchmarks.md."""
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        "## Training on the GPU machine", "",
        f"Written by `python benchmarks/gpu_training.py` ({started} UTC, one run) on "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {_gpu_name()}. "
        "Each row is one `shipyard train` of the example, on the device and precision asked "
        "(`--set training.device=... --set training.precision=...`); the CPU rows use all the "
        f"machine's cores (torch's default threads) in fp32, for {args.cpu_epochs} epoch(s): "
        "their rate is the point, not their accuracy. The device and precision columns "
        "are what the trainer reports it used (run.json). Rate = training images (texts) per "
        "second, the epochs' mean; the whole command includes Python start-up, loading, "
        "scoring, plots and the ONNX and torch.export exports."
        + (" Rehearsal (`--quick`): one epoch each." if args.quick else ""), "",
        "| model | asked | device | precision | epochs | rate /s | s per epoch | test accuracy "
        "| whole command s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.model} | {r.asked} | FAILED: {r.error} | | | | | | "
                         f"{r.wall_s:.0f} |")
            continue
        lines.append(f"| {r.model} | {r.asked} | {r.device} | {r.precision} | {r.epochs:.0f} "
                     f"| {num(r.rate, ',.0f')} | {num(r.seconds_per_epoch, '.2f')} "
                     f"| {num(r.accuracy, '.4f')} | {r.wall_s:.0f} |")
    by = {(r.model, r.asked.split()[0]): r for r in results if not r.error and r.rate}
    ratios = []
    for model in dict.fromkeys(r.model for r in results):
        g, c = by.get((model, args.device)), by.get((model, "cpu"))
        if g and c and g.rate and c.rate:
            ratios.append(f"{model} {g.rate / c.rate:.1f}x")
    if ratios and args.device != "cpu":
        lines += ["", f"{args.device} over the CPU, training rate: " + "; ".join(ratios) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Train, print, and write docs/benchmarks.md's section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu", "auto"), default="cuda")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    parser.add_argument("--cpu-epochs", type=int, default=1, metavar="N",
                        help="epochs of each CPU run (default 1)")
    parser.add_argument("--fashion", type=Path, default=FASHION_DIR,
                        help="the Fashion-MNIST idx files' folder")
    parser.add_argument("--sms", type=Path, default=SMS, help="label<TAB>text messages")
    parser.add_argument("--quick", action="store_true", help="one epoch everywhere")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        try:
            import torch
        except ImportError:
            print("gpu_training: --device cuda needs torch", file=sys.stderr)
            return 2
        if not torch.cuda.is_available():
            print(f"gpu_training: --device cuda, but torch {torch.__version__} sees no CUDA "
                  "device (use --device cpu to rehearse)", file=sys.stderr)
            return 2
    for path in (args.fashion, args.sms):
        if not path.exists():
            print(f"gpu_training: {path} not found", file=sys.stderr)
            return 2
    started = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}"
    results = run(args)
    text = render(results, args, started)
    print(text)
    if not args.no_write:
        write_section(args.output, SECTION, text)
        print(f"wrote the '{SECTION}' section of {args.output}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
