"""What ``shipyard.training.torch.fit`` costs over a plain PyTorch loop, in one run.

    python benchmarks/torch_train_overhead.py [--device cpu|cuda] [--images N] [--batch B]
                                              [--repeats R] [--threads T]
                                              [--output FILE | --no-write]

Both train the tests' ``SmallCNN`` (``tests/torch_models.py``: three conv layers on 1x28x28,
a linear layer to 10 classes; the same seeded initial weights each time) for one epoch over
the same ``N`` (default 10,000) random normal 28x28 images with random labels, at batch ``B``
(default 64), with Adam (lr 1e-3). A second pair of rows trains a single linear layer
(784 -> 10) the same way: its batches take microseconds, so what the loop adds per batch
shows there. CPU: ``torch.set_num_threads(T)`` (default 1: on a shared machine one thread
keeps the repeats comparable); CPU seconds (``time.process_time``) are shown beside the wall
seconds, as they move less when other processes take the cores.

* plain: the loop anyone writes by hand: a random permutation, then per batch index the
  tensors, forward, cross-entropy, ``zero_grad``, backward, step; nothing else;
* fit(): ``fit(model, (X, y), None, TorchTraining(epochs=1, ...), run_dir)`` with its defaults
  (progress on, one checkpoint, best.pt, history.json and curves.png), timed around the
  whole call; the row "fit() epoch" is the epoch's training time fit itself reports
  (``History.seconds``: the loop only, without the files written after it).

After a warm-up of both, each of ``R`` repeats (default 3) runs the two back to back, in
alternating order; the ratio is the median of the repeats' wall-second ratios.
The goal is fit() <= 1.15 x plain. The result is printed and written to ``docs/benchmarks.md``
as the section "Torch training loop" (``--device cuda``: "Torch training loop (CUDA)").
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
from doc_sections import write_section  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
GOAL = 1.15


def plain_epoch(model: Any, x: Any, y: Any, batch: int, device: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of one hand-written epoch."""
    import torch
    import torch.nn.functional as F

    model.to(device).train()
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    order = torch.randperm(len(x), device=device)
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0


def fit_epoch(model: Any, x: Any, y: Any, batch: int, device: str, run_dir: Path,
              progress: bool = True) -> tuple[float, float, float]:
    """(wall and CPU seconds around fit(), the epoch's own seconds from its history)."""
    import torch

    from shipyard.training.torch import TorchTraining, fit

    cfg = TorchTraining(epochs=1, batch_size=batch, device=device,  # type: ignore[arg-type]
                        optimizer={"name": "adam", "lr": 1e-3})  # type: ignore[arg-type]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    history = fit(model, (x, y), None, cfg, run_dir, progress=progress)
    sync()
    return time.perf_counter() - t0, time.process_time() - c0, history.seconds[0]


def linear(seed: int = 0) -> Any:
    """784 -> 10 in one layer: microseconds per batch, so the loop's own cost shows."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def measure(make: Any, x: Any, y: Any, args: argparse.Namespace, device: Any,
            work: Path) -> dict[str, float]:
    """Medians of alternating plain and fit() epochs, after one warm-up of each."""
    plain_epoch(make(), x[:512], y[:512], args.batch, device)
    fit_epoch(make(), x[:512], y[:512], args.batch, args.device, work / "warm")
    rows: dict[str, list[float]] = {k: [] for k in ("plain", "plain_cpu", "fit", "fit_cpu",
                                                    "epoch")}
    for r in range(args.repeats):
        for first in ((True, False) if r % 2 == 0 else (False, True)):  # ABBA: drift cancels
            if first:
                wall, cpu = plain_epoch(make(), x, y, args.batch, device)
                rows["plain"].append(wall)
                rows["plain_cpu"].append(cpu)
            else:
                wall, cpu, own = fit_epoch(make(), x, y, args.batch, args.device,
                                           work / f"run{r}")
                rows["fit"].append(wall)
                rows["fit_cpu"].append(cpu)
                rows["epoch"].append(own)
        print(f"  repeat {r + 1}: plain {rows['plain'][-1]:.3f} s, fit() {rows['fit'][-1]:.3f}"
              f" s (epoch {rows['epoch'][-1]:.3f} s)", file=sys.stderr, flush=True)
    out = {k: statistics.median(v) for k, v in rows.items()}
    # each repeat's pair ran back to back, under the same load: the median of their ratios
    # is steadier on a shared machine than the ratio of the medians
    for key, base in (("fit", "plain"), ("fit_cpu", "plain_cpu"), ("epoch", "plain")):
        out[f"{key}_x"] = statistics.median(a / b for a, b in zip(rows[key], rows[base],
                                                                   strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fit() against a plain PyTorch loop.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    import torch
    from torch_models import small_cnn

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"torch_train_overhead --device cuda: torch {torch.__version__} sees "
                         "no CUDA device; run it on a GPU machine with a CUDA build of torch")
    device = torch.device(args.device)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.images,), generator=gen)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="torch_train_overhead_"))
    results = {}
    for name, make in (("SmallCNN", lambda: small_cnn().train()), ("linear", linear)):
        print(f"{name}:", file=sys.stderr, flush=True)
        results[name] = measure(make, x, y, args, device, work / name)
        m = results[name]
        print(f"{name}: fit()/plain {m['fit_x']:.3f} (epoch only {m['epoch_x']:.3f}, CPU "
              f"{m['fit_cpu_x']:.3f}); goal <= {GOAL}")

    heading = "## Torch training loop" + (" (CUDA)" if args.device == "cuda" else "")
    gpu = f", {torch.cuda.get_device_name(0)}" if args.device == "cuda" else ""
    n = args.images
    lines = [
        heading, "",
        f"Written by `python benchmarks/torch_train_overhead.py"
        f"{' --device cuda' if args.device == 'cuda' else ''}` (see its docstring).", "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
        f"{gpu}; {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); the run took "
        f"{time.monotonic() - started:.0f} s",
        f"- One epoch over {n:,} random 1x28x28 images, batch {args.batch}, Adam lr 1e-3, "
        f"{args.device}; {args.repeats} repeats after a warm-up, plain and fit() back to "
        "back in alternating order; seconds are medians, ratios the median of the "
        "repeats' ratios. "
        "Models: the tests' SmallCNN (the measured goal) and one linear layer 784 -> 10 "
        "(microseconds per batch: it shows the loop's own per-batch cost).",
        "- plain: a hand-written loop (permutation, index, forward, loss, zero_grad, "
        "backward, step). fit(): the whole call with its defaults (progress, checkpoint, "
        "best.pt, history.json, curves.png); fit() epoch: the epoch's training time in its "
        "History (the loop alone).",
        "",
        "| model | loop | wall s | CPU s | images/s | x plain (wall) | x plain (CPU) | goal |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, m in results.items():
        ratio = m["fit_x"]
        goal = f"<= {GOAL} {'PASS' if ratio <= GOAL else 'MISS'}" if name == "SmallCNN" \
            else "-"
        lines += [
            f"| {name} | plain | {m['plain']:.3f} | {m['plain_cpu']:.3f} | "
            f"{n / m['plain']:,.0f} | 1.00 | 1.00 | |",
            f"| {name} | fit() | {m['fit']:.3f} | {m['fit_cpu']:.3f} | {n / m['fit']:,.0f} | "
            f"{ratio:.3f} | {m['fit_cpu_x']:.3f} | {goal} |",
            f"| {name} | fit() epoch | {m['epoch']:.3f} | | {n / m['epoch']:,.0f} | "
            f"{m['epoch_x']:.3f} | | |",
        ]
    section = "\n".join([*lines, ""])
    shutil.rmtree(work, ignore_errors=True)
    print(section)
    if not args.no_write:
        write_section(args.output, "torch-train-cuda" if args.device == "cuda"
                      else "torch-train", section)
        print(f"wrote {args.output} ({heading!r})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
