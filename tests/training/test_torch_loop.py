"""shipyard.training.torch: the torch loop on tiny models and synthetic data (CPU, seconds)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from shipyard.data.errors import ConfigError, ExperimentError
from shipyard.training.torch import History, TorchTraining, evaluate, fit, predict

CLASSES = 3


def blobs(n: int = 240, seed: int = 0, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian blobs."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    centres = torch.eye(CLASSES, dim) * 4
    return centres[y] + torch.randn(n, dim, generator=gen) * 0.6, y


def mlp(seed: int = 0, dim: int = 4, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, CLASSES))


class Pairs(Dataset[tuple[torch.Tensor, int]]):
    """A plain map-style Dataset (not a TensorDataset), so fit batches it with a DataLoader."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def cfg(**kw: Any) -> TorchTraining:
    base: dict[str, Any] = {"epochs": 3, "batch_size": 32, "device": "cpu", "plot": False,
                            "optimizer": {"name": "adam", "lr": 0.01}}
    return TorchTraining.parse({**base, **kw})


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if tol == 0 else torch.allclose(a[k], b[k], atol=tol, rtol=0)
        for k in a)


def test_mlp_learns_separable_blobs(tmp_path: Path) -> None:
    x, y = blobs(300)
    model = mlp()
    before = evaluate(model, (x[240:], y[240:]), device="cpu")
    history = fit(model, (x[:240], y[:240]), (x[240:], y[240:]), cfg(epochs=6), tmp_path,
                  progress=False)
    assert before["accuracy"] < 0.8
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] >= 0.95
    assert history.train_loss[-1] < history.train_loss[0]
    after = evaluate(model, (x[240:], y[240:]), device="cpu")  # the same numbers as fit's
    assert after["accuracy"] == history.val_accuracy[-1]
    assert after["loss"] == pytest.approx(history.val_loss[-1], abs=1e-6)
    assert after["samples"] == 60


def test_fit_and_evaluate_take_the_image_dataset_that_batches_itself(tmp_path: Path) -> None:
    """ImageTensorDataset makes whole batches in __getitems__: fit and evaluate must not
    stack them again (the default collate would make [B, B?] nonsense or fail)."""
    from shipyard.data.image import load_image_source
    from shipyard.data.image_loader import ImageTensorDataset

    digits = load_image_source("sklearn:digits", size=8, cache=False)["all"]
    train = ImageTensorDataset(digits.subset(range(600)), mean=[0.3], std=[0.4])
    val = ImageTensorDataset(digits.subset(range(600, 800)), mean=[0.3], std=[0.4])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 64, 10))
    history = fit(model, train, val, cfg(epochs=3, batch_size=50), tmp_path, progress=False)
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] >= 0.85
    scored = evaluate(model, val, device="cpu")
    assert scored["samples"] == 200 and scored["accuracy"] == history.val_accuracy[-1]


def test_small_cnn_on_a_dataset_with_workers(tmp_path: Path) -> None:
    """Images through a DataLoader (2 workers): a bright-left vs bright-right task."""
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(128) % 2
    x = torch.rand(128, 1, 8, 8, generator=gen) * 0.5
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(16, 2))
    history = fit(model, Pairs(x[:96], y[:96]), Pairs(x[96:], y[96:]),
                  cfg(epochs=4, num_workers=2, batch_size=16), tmp_path, progress=False)
    assert history.val_accuracy[-1] == 1.0


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_each_optimizer_trains(tmp_path: Path, name: str) -> None:
    x, y = blobs()
    opt = {"name": name, "lr": 0.1 if name == "sgd" else 0.01, "weight_decay": 1e-4}
    if name == "sgd":
        opt["nesterov"] = True
    history = fit(mlp(), (x, y), None, cfg(optimizer=opt), tmp_path, progress=False)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.monitor == "train_loss" and history.val_loss == [None] * 3


def _lrs(tmp_path: Path, schedule: dict[str, Any], epochs: int = 6) -> list[float]:
    x, y = blobs(160)  # 5 batches per epoch
    return fit(mlp(), (x, y), None, cfg(epochs=epochs, optimizer={"name": "sgd", "lr": 0.1},
                                        schedule=schedule), tmp_path, progress=False).lr


def test_schedules_follow_their_curves(tmp_path: Path) -> None:
    assert _lrs(tmp_path / "none", {"name": "none"}) == pytest.approx([0.1] * 6)
    cosine = _lrs(tmp_path / "cos", {"name": "cosine"})
    assert all(a > b for a, b in itertools.pairwise(cosine))
    assert cosine[-1] < 0.002  # the last batch runs at ~0
    step = _lrs(tmp_path / "step", {"name": "step", "step_size": 2, "gamma": 0.5})
    assert step == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cycle = _lrs(tmp_path / "one", {"name": "one_cycle", "pct_start": 0.4}, epochs=10)
    peak = int(np.argmax(cycle))
    assert 0 < peak < 9 and cycle[peak] == pytest.approx(0.1, rel=0.05)
    assert cycle[0] < 0.5 * cycle[peak] and cycle[-1] < 0.01 * cycle[peak]
    warm = _lrs(tmp_path / "warm", {"name": "cosine", "warmup_epochs": 2})
    assert warm[0] == pytest.approx(0.05) and warm[1] == pytest.approx(0.1)


def test_short_forms_and_static_config_errors() -> None:
    c = TorchTraining.parse({"optimizer": "sgd", "schedule": "cosine"})
    assert c.optimizer.name == "sgd" and c.schedule.name == "cosine"
    with pytest.raises(ConfigError, match=r"optimizer\.nesterov"):
        TorchTraining.parse({"optimizer": {"name": "adam", "nesterov": True}})
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TorchTraining.parse({"schedule": {"name": "one_cycle", "warmup_epochs": 1}})
    with pytest.raises(ConfigError, match=r"^training: precision: .*got .int8."):
        TorchTraining.parse({"precision": "int8"})


def test_label_smoothing_changes_the_training_loss(tmp_path: Path) -> None:
    x, y = blobs()
    plain = fit(mlp(), (x, y), (x, y), cfg(epochs=1), tmp_path / "a", progress=False)
    smooth = fit(mlp(), (x, y), (x, y), cfg(epochs=1, label_smoothing=0.2), tmp_path / "b",
                 progress=False)
    assert smooth.train_loss[0] > plain.train_loss[0] + 0.05


def _grad_norms(tmp_path: Path, clip: float | None) -> list[float]:
    import torch.optim.optimizer as optim

    norms: list[float] = []

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))

    x, y = blobs()
    handle = optim.register_optimizer_step_pre_hook(hook)
    try:
        fit(mlp(), (x * 50, y), None, cfg(epochs=1, grad_clip=clip), tmp_path, progress=False)
    finally:
        handle.remove()
    return norms


def test_grad_clip_bounds_the_norm_each_step_sees(tmp_path: Path) -> None:
    free = _grad_norms(tmp_path / "free", None)
    clipped = _grad_norms(tmp_path / "clip", 0.5)
    assert len(clipped) == 8 and max(free) > 2.0
    assert max(clipped) <= 0.5 + 1e-5


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path: Path) -> None:
    x, y = blobs()
    vx, vy = blobs(60, seed=5)
    vy = (vy + 1) % CLASSES  # validation labels that disagree more with every epoch
    model = mlp()
    history = fit(model, (x, y), (vx, vy),
                  cfg(epochs=30, keep_checkpoints=30,
                      early_stopping={"patience": 2, "monitor": "val_loss"}), tmp_path,
                  progress=False)
    assert history.stopped_early and history.restored_best
    assert len(history.epoch) == history.best_epoch + 2 < 30
    best = torch.load(tmp_path / "checkpoints" / f"epoch-{history.best_epoch:04d}.pt",
                      weights_only=True)
    last = torch.load(tmp_path / "checkpoints" / f"epoch-{history.epoch[-1]:04d}.pt",
                      weights_only=True)
    assert same(weights(model), best["model"]) and not same(weights(model), last["model"])
    assert history.best is not None and history.best["val_loss"] == min(
        v for v in history.val_loss if v is not None)


def test_early_stopping_needs_validation_data(tmp_path: Path) -> None:
    x, y = blobs()
    with pytest.raises(ConfigError, match=r"early_stopping.*no validation data"):
        fit(mlp(), (x, y), None, cfg(early_stopping={"patience": 1}), tmp_path, progress=False)


class Interrupt(Exception):
    pass


def _augment(x: torch.Tensor) -> torch.Tensor:
    return x + 0.1 * torch.randn_like(x)  # draws from torch's generator: resumed with it


@pytest.mark.parametrize("kind", ["tensors", "dataset"])
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, kind: str) -> None:
    x, y = blobs()
    data = (x[:200], y[:200]) if kind == "tensors" else Pairs(x[:200], y[:200])
    val = (x[200:], y[200:])
    c = cfg(epochs=4, optimizer={"name": "adamw", "lr": 0.01}, schedule="cosine",
            label_smoothing=0.1)
    straight = mlp(dropout=0.3)
    full = fit(straight, data, val, c, tmp_path / "straight", augment=_augment,
               progress=False)

    broken = mlp(dropout=0.3)
    calls = {"n": 0}

    def stop_in_epoch_3(module: nn.Module, args: Any) -> None:
        if module.training:
            calls["n"] += 1
            if calls["n"] == 2 * 7 + 3:  # 7 batches per epoch: the 3rd batch of epoch 3
                raise Interrupt

    handle = broken.register_forward_pre_hook(stop_in_epoch_3)
    with pytest.raises(Interrupt):
        fit(broken, data, val, c, tmp_path / "resumed", augment=_augment, progress=False)
    handle.remove()
    folder = tmp_path / "resumed" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "epoch-0002.pt"]

    torch.manual_seed(123)  # whatever the process did in between
    fresh = mlp(seed=7, dropout=0.3)  # other weights: they must come from the checkpoint
    resumed = fit(fresh, data, val, c, tmp_path / "resumed", augment=_augment, progress=False,
                  resume=True)
    assert same(weights(fresh), weights(straight))  # bit for bit
    assert resumed.epoch == [1, 2, 3, 4] and resumed.val_loss == pytest.approx(full.val_loss)
    assert resumed.lr == pytest.approx(full.lr)
    assert any("resumed from epoch-0002.pt" in n for n in resumed.notes)


def test_resume_refuses_a_changed_config_and_fresh_runs_refuse_old_checkpoints(
        tmp_path: Path) -> None:
    x, y = blobs()
    fit(mlp(), (x, y), None, cfg(epochs=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        fit(mlp(), (x, y), None, cfg(epochs=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 0\.01 -> 0\.02"):
        fit(mlp(), (x, y), None, cfg(epochs=2, optimizer={"name": "adam", "lr": 0.02}),
            tmp_path, progress=False, resume=True)
    more = fit(mlp(), (x, y), None, cfg(epochs=2), tmp_path, progress=False, resume=True)
    assert more.epoch == [1, 2]  # epochs may grow when the schedule does not depend on it
    done = mlp(seed=3)
    again = fit(done, (x, y), None, cfg(epochs=2), tmp_path, progress=False, resume=True)
    assert again.epoch == [1, 2] and again.train_loss == more.train_loss  # nothing to run
    last = torch.load(tmp_path / "checkpoints" / "epoch-0002.pt", weights_only=True)
    assert same(weights(done), last["model"])


class NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, CLASSES)
        self.scale = nn.Parameter(torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale


def test_a_diverged_loss_stops_with_a_hint(tmp_path: Path) -> None:
    x, y = blobs()
    with pytest.raises(ExperimentError, match=r"training loss became nan in epoch 1; lower "):
        fit(NaNModel(), (x, y), None, cfg(), tmp_path, progress=False)


def test_seed_decides_the_weights(tmp_path: Path) -> None:
    x, y = blobs()

    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        model = mlp(dropout=0.2)
        fit(model, Pairs(x, y), None, cfg(epochs=2, seed=seed), tmp_path / name,
            progress=False)
        return weights(model)

    assert same(run(1, "a"), run(1, "b"))
    assert not same(run(1, "c"), run(2, "d"), tol=1e-4)


def test_run_files(tmp_path: Path) -> None:
    x, y = blobs()
    history = fit(mlp(), (x, y), (x[:60], y[:60]), cfg(plot=True, keep_checkpoints=2),
                  tmp_path, progress=False)
    data = json.loads((tmp_path / "history.json").read_text())
    assert data["epoch"] == [1, 2, 3] and data["best_epoch"] == history.best_epoch
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                "samples_per_s"):
        assert len(data[key]) == 3 and all(isinstance(v, float) for v in data[key]), key
    assert History.from_dict(data) == history
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch-0002.pt", "epoch-0003.pt"]
    state = torch.load(tmp_path / "checkpoints" / "epoch-0003.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "history", "rng"} <= set(state)


def test_progress_without_a_terminal_is_one_line_per_epoch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs()
    fit(mlp(), (x, y), (x, y), cfg(), tmp_path, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val loss" in ln and "samples/s" in ln for ln in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_and_fp16_on_cpu_are_config_errors(tmp_path: Path) -> None:
    x, y = blobs()
    with pytest.raises(ConfigError, match=r"^device: 'cuda' but torch .* sees no CUDA device"):
        fit(mlp(), (x, y), None, cfg(device="cuda"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"^precision: 'fp16' needs a CUDA device"):
        fit(mlp(), (x, y), None, cfg(precision="fp16"), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="device: 'cuda'"):
        predict(mlp(), x, device="cuda")


def test_bf16_on_cpu_trains_and_channels_last_is_noted(tmp_path: Path) -> None:
    x, y = blobs()
    model = mlp()
    history = fit(model, (x, y), (x, y), cfg(precision="bf16", channels_last=True, epochs=4),
                  tmp_path, progress=False)
    assert history.precision == "bf16" and history.val_accuracy[-1] >= 0.9
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any("channels_last ignored" in n for n in history.notes)


def test_predict_logits_and_probabilities(tmp_path: Path) -> None:
    x, y = blobs()
    model = mlp()
    fit(model, (x, y), None, cfg(), tmp_path, progress=False)
    logits = predict(model, x, batch_size=50, device="cpu")
    assert logits.shape == (240, CLASSES) and logits.dtype == np.float32
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(x).numpy(), rtol=1e-5, atol=1e-6)
    proba = predict(model, Pairs(x, y), batch_size=64, device="cpu", probabilities=True)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert (proba.argmax(1) == logits.argmax(1)).all()
    np.testing.assert_allclose(predict(model, (x.numpy().astype(np.float64), y.numpy()),
                                       device="cpu"), logits, rtol=1e-5, atol=1e-6)
    assert model.training  # predict puts the mode back


def test_importing_the_module_does_not_import_torch() -> None:
    code = ("import sys, shipyard.training, shipyard.training.torch as t; "
            "t.TorchTraining(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_progress_on_a_terminal_draws_a_bar_per_epoch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich takes stderr for a terminal
    monkeypatch.setenv("COLUMNS", "120")
    x, y = blobs()
    fit(mlp(), (x, y), (x, y), cfg(epochs=2), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "━" in err and "epoch 1/2" in err and "epoch 2/2" in err
    assert "8/8" in err and "| val " in err and "/s" in err


@pytest.mark.slow
def test_compile_trains_like_eager(tmp_path: Path) -> None:
    """``compile: true`` (torch.compile with inductor, here on the CPU) learns the same weights
    as the eager loop from the same seed, to float tolerance, and leaves the model's own
    parameter names in its state dict (what checkpoints and the export read)."""
    x, y = blobs()

    def run(compiled: bool, name: str) -> tuple[dict[str, torch.Tensor], History]:
        model = mlp()
        history = fit(model, (x, y), (x, y), cfg(epochs=2, compile=compiled),
                      tmp_path / name, progress=False)
        return weights(model), history

    from torch._dynamo.utils import counters

    eager, eager_history = run(False, "eager")
    counters.clear()
    compiled, compiled_history = run(True, "compiled")
    assert counters["stats"]["unique_graphs"] > 0  # dynamo really compiled the model
    assert eager.keys() == compiled.keys()
    assert not any("_orig_mod" in k for k in compiled)
    assert same(eager, compiled, tol=1e-4)
    assert compiled_history.val_accuracy[-1] == pytest.approx(eager_history.val_accuracy[-1],
                                                              abs=0.02)
    assert compiled_history.val_accuracy[-1] > 0.9
