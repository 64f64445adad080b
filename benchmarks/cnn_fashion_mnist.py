"""Accuracy check of the default CNN on Fashion-MNIST, with the training rate per epoch.

    python benchmarks/cnn_fashion_mnist.py [--epochs 10] [--threads 2] [--cache-dir DIR]
        [--device auto|cpu|cuda] [--precision fp32|bf16|fp16] [--channels-last]
        [--limit N] [--source idx:/usr/share/datasets/fashion-mnist]

Trains ``build_cnn(CNNConfig())`` on the 60000 training images (``idx:`` source from Debian's
``dataset-fashion-mnist``) with AdamW, a one-cycle learning rate up to 3e-3, batches of 128 and
``AugmentConfig(hflip=0.5)``, and prints the test accuracy and the training images/s after
every epoch. Measured on 2 CPU threads (about 40 s an epoch): 0.936 after 10 epochs. This is
the recipe behind the defaults' claim in ``shipyard.models.cnn``; the experiment trainer has
its own loop.

``--device`` (default ``cpu``; ``auto`` = cuda when torch sees a GPU) and ``--precision``
(``bf16``: autocast to bfloat16; ``fp16``: autocast to float16 with gradient scaling, CUDA
only) choose where and how it trains; ``--channels-last`` puts the model and the batches in
the NHWC layout (CUDA). On CUDA the batches are pinned and copied without blocking, and the
clock is read after ``torch.cuda.synchronize()``, so images/s counts finished work. ``--limit``
trains on the first N training images (a quick run).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import torch

from shipyard.data.augment import Augment, AugmentConfig
from shipyard.data.image import load_image_source
from shipyard.data.image_loader import make_image_loader
from shipyard.models.cnn import CNNConfig, build_cnn, count_parameters

MEAN, STD = [0.286], [0.353]  # Fashion-MNIST's training pixels, / 255
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (the clock then measures finished work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=list(DTYPES), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N training images")
    parser.add_argument("--source", default="idx:/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    device = _device(args.device)
    dtype = DTYPES[args.precision]
    if args.precision == "fp16" and device.type != "cuda":
        raise SystemExit("--precision fp16 needs --device cuda (gradient scaling is CUDA "
                         "only); use bf16 or fp32")
    channels_last = args.channels_last and device.type == "cuda"
    if args.channels_last and not channels_last:
        print("--channels-last ignored: it only helps on CUDA")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sets = load_image_source(args.source, size=28, channels=1, cache_dir=args.cache_dir)
    train_set = sets["train"]
    if args.limit is not None:
        train_set = train_set.subset(range(min(args.limit, len(train_set))))
    pin = device.type == "cuda"
    train = make_image_loader(train_set, batch_size=128, shuffle=True, mean=MEAN, std=STD,
                              seed=0, pin_memory=pin)
    test = make_image_loader(sets["test"], batch_size=1000, mean=MEAN, std=STD,
                             pin_memory=pin)
    model = build_cnn(CNNConfig(), 1, 28, 28, 10).to(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    augment = Augment(AugmentConfig(hflip=0.5), mean=MEAN, std=STD, seed=0)
    print(f"parameters: {count_parameters(model)}; device {device}, {args.precision}"
          + (", channels_last" if channels_last else ""))
    fused = True if device.type == "cuda" else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4, fused=fused)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3,
                                                   total_steps=args.epochs * len(train))
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def to_device(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=pin).contiguous(memory_format=layout)

    for epoch in range(args.epochs):
        _sync(device)
        start = time.perf_counter()
        model.train()
        seen = 0
        for x, y in train:
            x, y = to_device(x), y.to(device, non_blocking=pin)
            x = augment(x).contiguous(memory_format=layout)
            with autocast():
                loss = torch.nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimiser)
            scaler.update()
            schedule.step()
            seen += int(y.shape[0])
        _sync(device)
        train_s = time.perf_counter() - start
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad():
            for x, y in test:
                with autocast():
                    logits = model(to_device(x))
                correct += (logits.argmax(1) == y.to(device, non_blocking=pin)).sum()
        accuracy = int(correct) / len(sets["test"])
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f} "
              f"({time.perf_counter() - start:.0f} s; {seen / train_s:,.0f} training images/s)",
              flush=True)


if __name__ == "__main__":
    main()
