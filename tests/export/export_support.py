"""Helpers of tests/export: a tiny CNN builder and the trained-digits bundle (not tests).

Not a conftest.py: a second ``conftest`` module would shadow tests/conftest.py for the
``from conftest import ...`` of other test folders. Each test module defines its ``digits`` fixture
with :func:`trained_digits`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from shipyard.data.image import load_image_source, to_tensor
from shipyard.export.torch_export import save_onnx
from shipyard.models.cnn import CNNConfig, build_cnn


@dataclass
class Digits:
    model: nn.Module
    onnx: Path
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def tiny_cnn(seed: int = 0, in_channels: int = 1, **fields: object) -> nn.Module:
    torch.manual_seed(seed)
    cfg = CNNConfig.model_validate(fields or {
        "blocks": [{"channels": 8}, {"channels": 16, "convs": 2}],
        "head": {"hidden": [64], "dropout": 0.0}})
    return build_cnn(cfg, in_channels, 8, 8, 10)


_TRAINED: list[Digits] = []


def trained_digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The tiny CNN after 15 epochs on 1500 digits (about 95% on the other 297), trained once
    per session (each test module's ``digits`` fixture calls this)."""
    if _TRAINED:
        return _TRAINED[0]
    images = load_image_source("sklearn:digits", size=8, channels=1,
                               cache_dir=tmp_path_factory.mktemp("cache"))["all"]
    x = to_tensor(images.images, [0.5], [0.5])
    y = images.labels
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1500], order[1500:]
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path = save_onnx(model, torch.from_numpy(x[:2]),
                     tmp_path_factory.mktemp("digits") / "model.onnx")
    _TRAINED.append(Digits(model, path, x[train], x[test], y[test]))
    return _TRAINED[0]
