"""The training half on CUDA: ``fit`` at fp32 / bf16 / fp16, channels_last, ``torch.compile``,
``--resume`` from a CUDA checkpoint, pinned DataLoader batches, augmentation of CUDA batches,
the text Transformer under bf16 autocast (padding masks honoured), data-parallel training with
NCCL at world size 1 through the launcher (and the refusal of more processes than GPUs), and
one ``shipyard train`` on CUDA whose ONNX export scores the test split like the torch model.

Every test takes the ``cuda`` fixture (``tests/gpu/conftest.py``: skips without a CUDA
device). Data are scikit-learn's bundled 8x8 digits and a synthetic two-class corpus, made
here: nothing outside the checkout is read. Each test compares against a CPU reference, the
checkpoint's own numbers or an accuracy far above chance (digits: 10 classes, chance 0.1).

Expected time on one H200 (estimated, not yet measured there: benchmarks/device/run.sh prints
``--durations``): the fits, the loader, the augmentation and the Transformer a few seconds each
(~20 s in all, CUDA and cuDNN start-up included); the ``slow`` compile test 25-45 s (inductor
and Triton on a cold cache, its compile workers starting); the two tests that start processes
15-25 s each (the launcher's spawned worker, and ``shipyard train`` itself: Python, torch, CUDA
and NCCL start-up in each). About 80-110 s for the file.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from shipyard.data.augment import Augment, AugmentConfig  # noqa: E402
from shipyard.data.image import ImageSet, to_tensor  # noqa: E402
from shipyard.data.image_loader import make_image_loader  # noqa: E402
from shipyard.models.cnn import CNNConfig, build_cnn  # noqa: E402
from shipyard.training.config import ImageExperiment  # noqa: E402
from shipyard.training.torch import TorchTraining, fit, predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY_CNN: dict[str, Any] = {"blocks": [{"channels": 16}],
                            "head": {"hidden": [64], "dropout": 0.1}}
"""One conv block of 16 channels (conv, batch norm, relu, max pool), a hidden layer of 64 with
dropout (so the CUDA generator matters), 10 logits: about 0.85 validation accuracy after two
epochs on the CPU."""
TRAIN, VAL, TEST = slice(0, 640), slice(640, 840), slice(840, 1040)
"""640 training digits (40 batches of 16, no short batch), 200 validation, 200 test."""
STEPS = 40
"""Optimizer steps per epoch."""
CONV_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 ``[N, 1, 8, 8]`` pixels in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return np.ascontiguousarray(x), data.target.astype(np.int64)


def _rgb(x: np.ndarray) -> np.ndarray:
    """Grey ``[N, 1, H, W]`` as three equal channels (channels_last is a no-op on one)."""
    return np.ascontiguousarray(np.repeat(x, 3, axis=1))


def _cnn(seed: int = 0, channels: int = 1, dropout: float | None = None) -> nn.Module:
    """:data:`TINY_CNN` from ``seed`` (``dropout`` replaces the head's)."""
    params = copy.deepcopy(TINY_CNN)
    if dropout is not None:
        params["head"]["dropout"] = dropout
    torch.manual_seed(seed)
    return build_cnn(CNNConfig.model_validate(params), channels, 8, 8, 10)


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def _kind(cuda: str) -> str:
    """The ``training.device`` of the fixture's device (``cuda``)."""
    return torch.device(cuda).type


def _cfg(cuda: str, **changes: Any) -> TorchTraining:
    base: dict[str, Any] = {"epochs": 2, "batch_size": 16, "device": _kind(cuda), "plot": False,
                            "optimizer": {"name": "adam", "lr": 0.003}}
    return TorchTraining.parse({**base, **changes})


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a checkpoint (nested dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _tensors(v)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].detach().cpu().double() - b[k].detach().cpu().double()).abs().max())
               if a[k].numel() else 0.0 for k in a)


def _image_experiment(**training: Any) -> dict[str, Any]:
    """A tiny digits experiment (600 images) for ``shipyard train``."""
    return {
        "name": "digits-cuda",
        "data": {"source": "sklearn:digits", "size": 8, "limit": 600},
        "model": {"family": "torch", "architecture": "cnn", "params": TINY_CNN},
        "training": {"epochs": 3, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.003},
                     "plot": False, **training},
        "export": {"torch_program": False},
        "output": {"plots": False},
    }


# --- fit at each precision -----------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_fit_on_cuda_at_each_precision(cuda: str, tmp_path: Path, precision: str) -> None:
    """The parameters are on CUDA while training, the first conv computes in the autocast
    dtype, the loss stays finite, the digits are learnt (validation accuracy far above the
    0.1 of chance), GradScaler runs for fp16 only, and the checkpoint, saved from the CPU,
    gives a CPU model the CUDA model's predictions."""
    x, y = _digits()
    model = _cnn()
    conv = _first_conv(model)
    seen: dict[str, set[str]] = {"weight": set(), "input": set(), "output": set()}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen["weight"].add(conv.weight.device.type)
        seen["input"].add(f"{args[0].device.type} {args[0].dtype}")
        seen["output"].add(str(out.dtype))

    handle = conv.register_forward_hook(record)
    history = fit(model, (x[TRAIN], y[TRAIN]), (x[VAL], y[VAL]), _cfg(cuda, precision=precision),
                  tmp_path, progress=False)
    handle.remove()
    kind = _kind(cuda)
    assert seen["weight"] == {kind}
    assert seen["input"] == {f"{kind} torch.float32"}  # autocast casts inside the conv
    assert seen["output"] == {str(CONV_DTYPE[precision])}
    assert history.device.startswith(kind) and history.precision == precision
    assert all(math.isfinite(v) for v in history.train_loss), history.train_loss
    assert all(v is not None and math.isfinite(v) for v in history.val_loss), history.val_loss
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] > 0.7, \
        history.val_accuracy
    assert all(r > 0 for r in history.samples_per_s)
    assert next(model.parameters()).device.type == kind  # left on the training device

    checkpoint = torch.load(tmp_path / "checkpoints" / "epoch-0002.pt", weights_only=True)
    devices = {t.device.type for t in _tensors(checkpoint)}
    assert devices == {"cpu"}, devices  # device-independent: no map_location needed
    assert bool(checkpoint["scaler"]) == (precision == "fp16")  # GradScaler: fp16 only
    steps = float(checkpoint["optimizer"]["state"][0]["step"])
    if precision == "fp16":  # the scaler skips the steps whose gradients overflowed
        assert 2 * STEPS - 10 <= steps <= 2 * STEPS, steps
        assert math.isfinite(checkpoint["scaler"]["scale"])
    else:
        assert steps == 2 * STEPS

    cpu_model = _cnn(seed=99)
    cpu_model.load_state_dict(checkpoint["model"])
    on_cpu = predict(cpu_model, x[TEST], device="cpu")
    on_device = predict(model, x[TEST], device=kind)
    assert next(model.parameters()).device.type == kind
    # fp32 on CUDA: cudnn's convolutions use TF32 by default (about 1e-3 relative)
    np.testing.assert_allclose(on_device, on_cpu, atol=5e-2, rtol=2e-2)
    assert (on_device.argmax(1) == on_cpu.argmax(1)).mean() >= 0.98


def test_channels_last_on_cuda(cuda: str, tmp_path: Path) -> None:
    """``channels_last: true`` on CUDA: the conv weights and every training batch (also after
    the crop augmentation's gather, which returns NCHW) are NHWC in memory; no 'ignored' note;
    the checkpoint loads into a plain (NCHW) CPU model with the same predictions."""
    x, y = _digits()
    x3 = _rgb(x)  # three channels: on one, NCHW and NHWC are the same layout
    model = _cnn(channels=3)
    conv = _first_conv(model)
    layouts: list[tuple[bool, bool, bool]] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        layouts.append((module.training, args[0].is_contiguous(memory_format=torch.channels_last),
                        conv.weight.is_contiguous(memory_format=torch.channels_last)))

    handle = conv.register_forward_pre_hook(record)
    history = fit(model, (x3[TRAIN], y[TRAIN]), (x3[VAL], y[VAL]),
                  _cfg(cuda, channels_last=True, precision="bf16"), tmp_path,
                  augment=Augment(AugmentConfig(crop_padding=1), seed=0), progress=False)
    handle.remove()
    assert not any("channels_last" in note for note in history.notes), history.notes
    assert layouts and all(inp and weight for _, inp, weight in layouts), layouts[:3]
    assert any(training for training, _, _ in layouts)  # the augmented batches too
    assert not conv.weight.is_contiguous()  # really NHWC, not a size-1 coincidence
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] > 0.7

    checkpoint = torch.load(tmp_path / "checkpoints" / "epoch-0002.pt", weights_only=True)
    cpu_model = _cnn(seed=99, channels=3)
    cpu_model.load_state_dict(checkpoint["model"])
    np.testing.assert_allclose(predict(model, x3[TEST], device=_kind(cuda)),
                               predict(cpu_model, x3[TEST], device="cpu"), atol=5e-2, rtol=2e-2)


@pytest.mark.slow
def test_torch_compile_on_cuda(cuda: str, tmp_path: Path) -> None:
    """``compile: true`` on CUDA (inductor; SLOW: the first batches compile the forward and
    backward for about 10-30 s on a cold cache): dynamo compiles the model, the loss is that
    of the eager loop from the same seed (no dropout: inductor draws its own random numbers),
    the state dict keeps the model's own names and the predictions agree with the eager
    model's."""
    from torch._dynamo.utils import counters

    x, y = _digits()
    eager_model = _cnn(dropout=0.0)
    eager = fit(eager_model, (x[TRAIN], y[TRAIN]), None, _cfg(cuda, epochs=1), tmp_path / "eager",
                progress=False)
    torch._dynamo.reset()
    counters.clear()
    model = _cnn(dropout=0.0)
    started = time.perf_counter()
    compiled = fit(model, (x[TRAIN], y[TRAIN]), None, _cfg(cuda, epochs=1, compile=True),
                   tmp_path / "compiled", progress=False)
    print(f"\ncompiled fit: {time.perf_counter() - started:.1f} s (compiling included)")
    assert counters["stats"]["unique_graphs"] > 0  # dynamo really compiled the model
    assert math.isfinite(compiled.train_loss[0])
    assert compiled.train_loss[0] == pytest.approx(eager.train_loss[0], rel=0.05)
    assert not any("_orig_mod" in k for k in model.state_dict())
    kind = _kind(cuda)
    agree = (predict(model, x[TEST], device=kind).argmax(1)
             == predict(eager_model, x[TEST], device=kind).argmax(1)).mean()
    assert agree >= 0.9, agree


# --- resume --------------------------------------------------------------------------------


def test_resume_from_a_cuda_checkpoint(cuda: str, tmp_path: Path) -> None:
    """One epoch, then ``resume=True`` to two on a fresh model with other weights and a
    disturbed CUDA generator: the run goes on from the checkpoint (history kept, the
    optimizer's step count continued from the saved state, the dropout stream restored) and
    ends where an uninterrupted two-epoch run ends."""
    x, y = _digits()
    data, val = (x[TRAIN], y[TRAIN]), (x[VAL], y[VAL])
    straight = _cnn()
    full = fit(straight, data, val, _cfg(cuda, epochs=2), tmp_path / "straight", progress=False)

    first = fit(_cnn(), data, val, _cfg(cuda, epochs=1), tmp_path / "resumed", progress=False)
    saved = torch.load(tmp_path / "resumed" / "checkpoints" / "epoch-0001.pt",
                       weights_only=True)
    torch.manual_seed(123)  # whatever the process did in between (CUDA generators too)
    fresh = _cnn(seed=7)
    again = fit(fresh, data, val, _cfg(cuda, epochs=2), tmp_path / "resumed", progress=False,
                resume=True)
    assert again.epoch == [1, 2]
    assert again.train_loss[0] == first.train_loss[0]  # epoch 1 is the checkpoint's
    assert any("resumed from epoch-0001.pt (epoch 1)" in n for n in again.notes), again.notes
    assert again.device.startswith(_kind(cuda))
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "epoch-0002.pt", weights_only=True)
    assert float(saved["optimizer"]["state"][0]["step"]) == STEPS
    assert float(last["optimizer"]["state"][0]["step"]) == 2 * STEPS  # continued
    diff = _max_diff(fresh.state_dict(), straight.state_dict())
    print(f"\nresumed vs uninterrupted: max weight difference {diff:.2e}")
    assert diff <= 1e-3, diff  # a fresh optimizer or another dropout stream moves ~1e-2
    assert again.val_loss[-1] == pytest.approx(full.val_loss[-1], abs=1e-3)


# --- data on CUDA --------------------------------------------------------------------------


class _Digits(Dataset[tuple[torch.Tensor, int]]):
    """Map-style digits (not a TensorDataset), so fit batches them with a DataLoader."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.x[i]), int(self.y[i])


def test_image_loader_pins_batches_for_non_blocking_copies(cuda: str, tmp_path: Path) -> None:
    """make_image_loader pins its batches by default where CUDA is available (two workers
    here); their non_blocking copies to the GPU hold the exact pixels. fit's own DataLoader
    path (a map-style Dataset) pins and copies non_blocking on CUDA, batches arrive on the
    device in order, and it learns the digits."""
    from shipyard.training import _torch_parts as parts

    x, y = _digits()
    pixels = np.ascontiguousarray((x[:200, 0, :, :, None] * 255).round().astype(np.uint8))
    images = ImageSet(pixels, y[:200], tuple(str(i) for i in range(10)), None, "digits", "all")
    batches = list(make_image_loader(images, batch_size=64, workers=2, seed=0))
    assert len(batches) == 4
    assert all(bx.is_pinned() and by.is_pinned() for bx, by in batches)
    copied = [(bx.to(cuda, non_blocking=True), by.to(cuda, non_blocking=True))
              for bx, by in batches]
    torch.cuda.synchronize()
    assert all(gx.device == torch.device(cuda) for gx, _ in copied)
    expected = torch.from_numpy(to_tensor(pixels))
    assert torch.equal(torch.cat([gx.cpu() for gx, _ in copied]), expected)
    assert torch.equal(torch.cat([gy.cpu() for _, gy in copied]), torch.from_numpy(y[:200]))

    device = torch.device(cuda)
    source = parts.batches(_Digits(x[:100], y[:100]), 32, shuffle=False, device=device,
                           num_workers=2, pin_memory=True)
    assert isinstance(source, parts.LoaderBatches) and source.non_blocking
    got = list(source.epoch(0))
    assert all(bx.device.type == device.type and by.device.type == device.type
               for bx, by in got)
    assert torch.equal(torch.cat([bx.cpu() for bx, _ in got]), torch.from_numpy(x[:100]))
    assert torch.equal(torch.cat([by.cpu() for _, by in got]), torch.from_numpy(y[:100]))

    history = fit(_cnn(), _Digits(x[TRAIN], y[TRAIN]), _Digits(x[VAL], y[VAL]),
                  _cfg(cuda, num_workers=2), tmp_path, progress=False)
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] > 0.7


def test_augment_on_cuda_batches_matches_the_cpu(cuda: str) -> None:
    """Every augmentation on a normalised CUDA batch (channels_last too): the result stays on
    the batch's device, finite, and equals the CPU result of the same seed (the random numbers
    come from the module's own CPU generator and are moved to the batch's device)."""
    x, _ = _digits()
    mean, std = [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]
    batch = (torch.from_numpy(_rgb(x[:64])) - 0.3) / 0.3
    config = AugmentConfig(hflip=0.5, crop_padding=2, rotation=20, translate=0.1, zoom=0.1,
                           brightness=0.2, contrast=0.2)
    on_cpu = Augment(config, mean=mean, std=std, seed=5).train()(batch)
    assert float((on_cpu - batch).abs().max()) > 0.5  # it changed the images
    for layout in (torch.contiguous_format, torch.channels_last):
        gpu_batch = batch.to(cuda).contiguous(memory_format=layout)
        on_device = Augment(config, mean=mean, std=std, seed=5).train()(gpu_batch)
        assert on_device.device == gpu_batch.device and on_device.dtype == torch.float32
        assert bool(torch.isfinite(on_device).all())
        torch.testing.assert_close(on_device.cpu(), on_cpu, atol=1e-4, rtol=1e-4)
    identity = Augment(config, mean=mean, std=std, seed=5).eval()(batch.to(cuda))
    assert torch.equal(identity.cpu(), batch)  # eval mode: untouched


# --- the text Transformer ------------------------------------------------------------------

_HAM = ["see", "you", "at", "the", "meeting", "tomorrow", "lunch", "home", "later", "thanks",
        "call", "mum", "dinner"]
_SPAM = ["win", "free", "prize", "cash", "claim", "now", "urgent", "reply", "offer", "winner",
         "txt", "bonus"]
_COMMON = ["the", "a", "to", "you", "and", "is", "for"]


def _corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` short messages, alternately ham (0) and spam (1): 2-13 words of their class's
    words mixed with words both classes use."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = _SPAM if label else _HAM
        k = int(rng.integers(2, 14))
        texts.append(" ".join(rng.choice(words + _COMMON, size=k)))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def test_text_transformer_on_cuda_with_bf16_autocast(cuda: str, tmp_path: Path) -> None:
    """The Transformer encoder trains a few steps under bf16 autocast on CUDA (finite loss,
    the head computing in bfloat16, batches cut to their longest text: dynamic padding) and
    learns the corpus; then, in eval mode, a padded batch gives the logits of each text run
    alone, unpadded, in fp32 and under bf16 autocast (the padding masks are honoured), while
    the same model with its masks off does not (the check can fail). The CUDA fp32 logits are
    those of a CPU copy."""
    from text_corpus import AWKWARD

    from shipyard.data.text_tokenizer import train_tokenizer
    from shipyard.models.transformer import TransformerConfig, build_transformer
    from shipyard.transforms import Tokenize

    texts, labels = _corpus(384, seed=0)
    train_tokenizer(texts[:256], vocab_size=200, min_frequency=1).save(
        str(tmp_path / "tokenizer.json"))
    step = Tokenize(path="tokenizer.json", max_length=32, truncation=True, allow_empty=True,
                    base_dir=tmp_path).load()

    def ids(items: list[str]) -> np.ndarray:
        array = np.empty(len(items), dtype=object)
        array[:] = [t.encode("utf-8") for t in items]
        out = step(array)
        assert isinstance(out, np.ndarray)
        return out

    pad = int(step.pad_id_)
    vocab = int(step.tokenizer_.get_vocab_size())
    torch.manual_seed(0)
    model = build_transformer(TransformerConfig(d_model=32, heads=2, d_ff=64, layers=2,
                                                max_length=32), vocab, 2, pad)
    head_dtypes: set[str] = set()
    lengths: list[int] = []
    hooks = [model.head.register_forward_hook(
                 lambda m, a, out: head_dtypes.add(str(out.dtype))),
             model.encoder.register_forward_pre_hook(
                 lambda m, a: lengths.append(int(a[0].shape[1])))]
    train_ids, val_ids = ids(texts[:256]), ids(texts[256:])
    history = fit(model, (torch.from_numpy(train_ids), labels[:256]),
                  (torch.from_numpy(val_ids), labels[256:]),
                  _cfg(cuda, epochs=3, precision="bf16",
                       optimizer={"name": "adamw", "lr": 3e-3}), tmp_path / "run",
                  progress=False)
    for hook in hooks:
        hook.remove()
    kind = _kind(cuda)
    assert history.device.startswith(kind)
    assert all(math.isfinite(v) for v in history.train_loss), history.train_loss
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] >= 0.9, \
        history.val_accuracy
    assert head_dtypes == {"torch.bfloat16"}
    assert max(lengths) < 32 and min(lengths) < max(lengths), sorted(set(lengths))

    rows = ids(list(AWKWARD.values()) + texts[256:272])
    assert (rows == pad).any(1).sum() >= 20  # padded rows (the longest are cut to 32)
    device = torch.device(cuda)
    model.eval()
    model.trim_padding = False  # the masks alone must make the padding harmless

    def logits(batch: np.ndarray, dtype: torch.dtype | None) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
        """(the padded batch's logits, each row's alone at its own length), float32, CPU."""
        autocast = (torch.autocast(kind, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            padded = model(torch.from_numpy(batch).to(device)).float().cpu()
            alone = torch.cat([
                model(torch.from_numpy(r[:max(1, int((r != pad).sum()))][None]).to(device))
                .float().cpu() for r in batch])
        return padded, alone

    for dtype, tol in ((None, 1e-4), (torch.bfloat16, 5e-2)):
        padded, alone = logits(rows, dtype)
        assert bool(torch.isfinite(padded).all())
        torch.testing.assert_close(padded, alone, atol=tol, rtol=tol, msg=str(dtype))
    model.pad_id = -1  # no token is padding: the masks are off
    unmasked, alone = logits(rows, None)
    model.pad_id = pad
    assert float((unmasked - alone).abs().max()) > 1e-2  # padding would show

    cpu_model = copy.deepcopy(model).cpu()
    np.testing.assert_allclose(predict(model, torch.from_numpy(rows), device=kind),
                               predict(cpu_model, torch.from_numpy(rows), device="cpu"),
                               atol=1e-3, rtol=1e-3)


# --- data-parallel -------------------------------------------------------------------------


def test_ddp_with_nccl_at_world_size_1_through_the_launcher(
        cuda: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--nproc-per-node 1`` (the launcher: one elastic worker process) on CUDA: the worker
    joins a real process group of one over NCCL on cuda:0, trains through DDP (the note says
    so), and the run's weights are the worker's."""
    from shipyard.training import torch_experiment
    from shipyard.training._torch_ddp import state_digest
    from shipyard.training.distributed import ENV_DIGESTS, Launch, launch
    from shipyard.training.run import Run

    digests = tmp_path / "digests"
    digests.mkdir()
    monkeypatch.setenv(ENV_DIGESTS, str(digests))
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path / "cache"))
    raw = _image_experiment(epochs=2)
    raw["export"] = {"onnx": False, "torch_program": False}
    sigint = signal.getsignal(signal.SIGINT)
    run_dir = launch(Launch(nproc_per_node=1), raw, overrides=[f"training.device={_kind(cuda)}"],
                     output=tmp_path / "run")
    assert run_dir is not None
    # the launcher's own SIGINT handler is gone again: run.sh stops a late pytest with SIGINT
    # (KeyboardInterrupt: the JUnit file and the summary are still written)
    assert signal.getsignal(signal.SIGINT) is sigint
    rank = json.loads((digests / "rank-0.json").read_text())
    expected_backend = "nccl" if _kind(cuda) == "cuda" else "gloo"
    assert (rank["world"], rank["backend"]) == (1, expected_backend), rank
    assert rank["device"] == str(torch.device(cuda)), rank
    history = json.loads((run_dir / "history.json").read_text())
    assert history["device"] == str(torch.device(cuda))
    assert any(n.startswith("data-parallel: 1 process, 16 examples") for n in history["notes"]), \
        history["notes"]
    run = Run.load(run_dir)
    accuracy = run.metrics["test"]["accuracy"]
    assert accuracy is not None and accuracy > 0.7, accuracy
    exp = run.experiment
    assert isinstance(exp, ImageExperiment)
    model = torch_experiment._build(torch_experiment._cnn(exp), exp, len(run.class_names))
    model.load_state_dict(torch.load(run.path / "model_state.pt", weights_only=True))
    assert state_digest(model) == rank["digest"]


def test_more_processes_than_gpus_are_refused_before_any_starts(cuda: str,
                                                                 tmp_path: Path) -> None:
    """NCCL cannot run two ranks on one GPU: ``--nproc-per-node`` above the GPU count with
    ``training.device=cuda`` is one ``error:`` line naming both numbers and the fixes (exit 2,
    no run directory, no process started); a worker whose LOCAL_RANK has no GPU is refused
    the same way."""
    from typer.testing import CliRunner

    from shipyard.cli import app
    from shipyard.errors import ConfigError
    from shipyard.training._torch_ddp import cuda_device

    gpus = torch.cuda.device_count()
    n = gpus + 1
    raw = _image_experiment(batch_size=8 * n)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "-o", str(tmp_path / "run"),
                                      "--nproc-per-node", str(n), "--set",
                                      "training.device=cuda"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert f"--nproc-per-node {n}" in lines[0] and "needs one GPU per process" in lines[0]
    assert f"this node has {gpus}" in lines[0] and "training.device=cpu" in lines[0]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=f"this node has {gpus} CUDA device"):
        cuda_device(gpus)
    assert cuda_device(0) == torch.device("cuda", 0)


# --- shipyard train ------------------------------------------------------------------------


def test_shipyard_train_on_cuda_in_bf16_exports_onnx_that_scores_like_torch(
        cuda: str, tmp_path: Path) -> None:
    """``shipyard train EXP --set training.device=cuda --set training.precision=bf16`` (and
    channels_last, on three-channel digits) in a process of its own: the run trained on CUDA
    in bf16, its model.onnx (exported from the CUDA, NHWC model) agrees with torch, and ONNX
    Runtime scores the run's test split as the run's metrics say torch did."""
    import onnxruntime as ort

    from shipyard.data.image import load_image_source
    from shipyard.training import torch_experiment
    from shipyard.training.image_splits import split_images
    from shipyard.training.run import Run

    raw = _image_experiment()
    raw["data"]["channels"] = 3
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    run_dir = tmp_path / "run"
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths),
           "SHIPYARD_CACHE_DIR": str(tmp_path / "cache")}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shipyard", "train", str(config), "-o", str(run_dir), "-q",
         "--set", f"training.device={_kind(cuda)}", "--set", "training.precision=bf16",
         "--set", "training.channels_last=true"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    print(f"\nshipyard train: {time.perf_counter() - started:.1f} s")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    history = json.loads((run_dir / "history.json").read_text())
    assert history["device"].startswith(_kind(cuda)) and history["precision"] == "bf16"
    assert not any("ignored" in n for n in history["notes"]), history["notes"]
    assert all(math.isfinite(v) for v in history["train_loss"])

    run = Run.load(run_dir)
    export = run.export
    assert export.get("converted"), export
    assert export["agreement"]["passed"], export["agreement"]
    exp = run.experiment
    assert isinstance(exp, ImageExperiment)
    sets = load_image_source(exp.data.source, size=exp.data.size, channels=exp.data.channels,
                             cache=False)
    test = split_images(sets, exp.data, exp.seed).test
    assert export["agreement"]["rows"] == len(test)
    x = to_tensor(test.images)  # no normalize: pixels / 255
    session = ort.InferenceSession(str(run.onnx_path), providers=["CPUExecutionProvider"])
    onnx_logits = np.concatenate([session.run(["logits"], {"image": x[i:i + 64]})[0]
                                  for i in range(0, len(x), 64)])
    torch_accuracy = run.metrics["test"]["accuracy"]  # torch on CUDA, in the run
    onnx_accuracy = float((onnx_logits.argmax(1) == test.labels).mean())
    assert torch_accuracy is not None and torch_accuracy > 0.7, torch_accuracy
    assert abs(onnx_accuracy - torch_accuracy) <= 1.0 / len(test) + 1e-9, \
        (onnx_accuracy, torch_accuracy)  # at most one image on the edge between CUDA and CPU
    model = torch_experiment._build(torch_experiment._cnn(exp), exp, len(run.class_names))
    model.load_state_dict(torch.load(run.path / "model_state.pt", weights_only=True))
    np.testing.assert_allclose(onnx_logits, predict(model, x, device="cpu"), atol=1e-4,
                               rtol=1e-4)
