"""The Transformer encoder classifier: shapes, sizes, config errors, the padding mask, dynamic
padding, torch.export, and learning through shipyard.training.torch.fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from shipyard.errors import ConfigError, DataError
from shipyard.models.cnn import count_parameters
from shipyard.models.transformer import (
    TransformerClassifier,
    TransformerConfig,
    build_transformer,
    sinusoidal_positions,
)
from shipyard.training.torch import TorchTraining, evaluate, fit

PAD, CLS, SEP = 0, 2, 3


def tiny(seed: int = 0, vocab: int = 60, classes: int = 3,
         **fields: Any) -> TransformerClassifier:
    torch.manual_seed(seed)
    base: dict[str, Any] = {"d_model": 16, "heads": 2, "d_ff": 32, "layers": 2,
                            "max_length": 32}
    return build_transformer(TransformerConfig.model_validate({**base, **fields}), vocab,
                             classes, PAD)


def batch(lengths: list[int], width: int, vocab: int = 60, seed: int = 0) -> torch.Tensor:
    """Rows shaped like the tokenize step's output: [CLS] tokens [SEP], then PAD to width."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), width), PAD, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, 0] = CLS
        ids[row, 1:n - 1] = torch.randint(4, vocab, (n - 2,), generator=gen)
        ids[row, n - 1] = SEP
    return ids


VARIANTS = [
    {},
    {"positional": "learned", "pooling": "cls", "activation": "relu"},
    {"norm_first": False, "classifier_hidden": 8, "embedding_dropout": 0.0},
    {"heads": 1, "final_norm": False, "scale_embedding": False, "layers": 1},
    {"heads": 4, "pooling": "cls", "norm_first": False, "final_norm": True},
]


@pytest.mark.parametrize("fields", VARIANTS)
def test_output_shape_and_dtype(fields: dict[str, Any]) -> None:
    model = tiny(**fields).eval()
    for n in (1, 5):
        out = model(batch([7] * n, 20))
        assert out.shape == (n, 3) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
    model.train()
    assert model(batch([5, 9], 12)).shape == (2, 3)


def test_default_and_seed_sizes() -> None:
    """The default is small; the original base Transformer's sizes are expressible, and the
    parameter count follows from the sizes."""
    def expected(d: int, ff: int, layers: int, vocab: int, classes: int) -> int:
        attention = 4 * d * d + 4 * d
        feed_forward = 2 * d * ff + ff + d
        norms = 4 * d
        return vocab * d + layers * (attention + feed_forward + norms) + 2 * d + d * classes \
            + classes

    default = TransformerConfig()
    assert (default.d_model, default.heads, default.d_ff, default.layers) == (64, 4, 128, 2)
    small = build_transformer(default, 8000, 2, 0)
    assert count_parameters(small) == expected(64, 128, 2, 8000, 2) == 579_202
    seed = TransformerConfig(d_model=512, heads=8, d_ff=2048, layers=6, max_length=256)
    big = build_transformer(seed, 8000, 2, 0)
    assert count_parameters(big) == expected(512, 2048, 6, 8000, 2)
    layers = [m for m in big.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 6 and layers[0].self_attn.num_heads == 8
    assert layers[0].linear1.out_features == 2048
    # sinusoids are derived, not learnt: not in the state dict; learned ones are
    assert not any("sinusoid" in k for k in small.state_dict())
    learned = build_transformer(TransformerConfig(positional="learned"), 8000, 2, 0)
    assert count_parameters(learned) == count_parameters(small) + 128 * 64
    hidden = build_transformer(TransformerConfig(classifier_hidden=32), 8000, 2, 0)
    assert count_parameters(hidden) == count_parameters(small) - (64 * 2 + 2) \
        + (64 * 32 + 32) + (32 * 2 + 2)


def test_config_errors() -> None:
    with pytest.raises(ValidationError) as info:
        TransformerConfig(d_model=64, heads=3)
    text = str(info.value)
    assert "heads=3" in text and "d_model=64" in text and "[1, 2, 4, 8, 16, 32, 64]" in text
    with pytest.raises(ValidationError, match="extra"):
        TransformerConfig.model_validate({"d_modle": 64})
    for bad in ({"dropout": 1.0}, {"layers": 0}, {"pooling": "max"}, {"positional": "rope"}):
        with pytest.raises(ValidationError):
            TransformerConfig.model_validate(bad)
    with pytest.raises(ConfigError, match="pad_id=9 is not a token"):
        build_transformer(TransformerConfig(), 9, 2, 9)
    with pytest.raises(ConfigError, match="vocab_size must be an integer"):
        build_transformer(TransformerConfig(), 1, 2, 0)


def test_the_experiment_names_the_fields() -> None:
    """Through the experiment's error formatter, the heads check names model.params."""
    from shipyard.training._config_errors import format_errors

    try:
        TransformerConfig.model_validate({"d_model": 30, "heads": 4})
    except ValidationError as exc:
        line = format_errors(exc, "experiment", root=TransformerConfig,
                             prefix=("model", "params"))
    assert line.startswith("experiment: model.params: heads=4 does not divide d_model=30")


def test_too_long_input_is_a_clear_error() -> None:
    model = tiny(max_length=16).eval()
    model(batch([5], 16))
    with pytest.raises(DataError, match="17 positions, more than the model's max_length=16"):
        model(batch([5], 17))
    with pytest.raises(DataError, match=r"must be \[N, L\]"):
        model(torch.zeros(5, dtype=torch.long))


def _embedded_lengths(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    seen: list[int] = []
    hook = model.get_submodule("embed").register_forward_hook(
        lambda _m, args, _out: seen.append(int(args[0].shape[1])))
    try:
        out = model(ids)
    finally:
        hook.remove()
    return out, seen


@pytest.mark.parametrize("fields", VARIANTS)
@pytest.mark.parametrize("mode", ["inference", "grad", "train"])
def test_dynamic_padding_trims_and_changes_nothing(fields: dict[str, Any], mode: str) -> None:
    """Logits with trailing padding to 32 == logits of the trimmed batch == logits with
    trimming off; and the embedding sees only the used columns."""
    model = tiny(**{**fields, "dropout": 0.0, "embedding_dropout": 0.0,
                    "classifier_dropout": 0.0})
    model.train(mode == "train")
    short = batch([6, 11, 4], 11)
    padded = torch.cat([short, torch.full((3, 21), PAD)], 1)
    with torch.inference_mode() if mode == "inference" else torch.enable_grad():
        a, seen = _embedded_lengths(model, padded)
        b = model(short)
        model.trim_padding = False
        c, full = _embedded_lengths(model, padded)
        model.trim_padding = True
    assert seen == [11] and full == [32]
    assert torch.allclose(a, b, atol=1e-5, rtol=0) and torch.allclose(a, c, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_a_row_does_not_depend_on_its_batch(pooling: str) -> None:
    """A short message's logits are the same alone and next to a long one (the padding mask
    hides its padding from attention and pooling), and its padding may hold no tokens."""
    model = tiny(pooling=pooling).eval()
    pair = batch([5, 30], 32)
    with torch.no_grad():
        together = model(pair)
        alone = model(pair[:1, :5])
    assert torch.allclose(together[0], alone[0], atol=1e-5, rtol=0)
    # and the mask matters: padding that is not the pad id changes the result
    unmasked = pair.clone()
    unmasked[0, 5:] = 7
    with torch.no_grad():
        assert not torch.allclose(model(unmasked)[0], together[0], atol=1e-3)


def test_all_padding_row_is_finite() -> None:
    model = tiny().eval()
    ids = torch.zeros(2, 10, dtype=torch.long)
    ids[1] = batch([6], 10)[0]
    with torch.no_grad():
        assert torch.isfinite(model(ids)).all()


def test_sinusoids() -> None:
    table = sinusoidal_positions(50, 16)
    assert table.shape == (50, 16)
    assert torch.allclose(table[0, 0::2], torch.zeros(8)) and torch.allclose(table[0, 1::2],
                                                                            torch.ones(8))
    assert torch.allclose(table[3, 0], torch.tensor(np.sin(3.0), dtype=torch.float32))
    assert sinusoidal_positions(4, 7).shape == (4, 7)  # odd widths work


def test_torch_export_keeps_the_full_length() -> None:
    """torch.export with a dynamic batch: the program takes the full L (no trimming inside)
    and agrees with eager on short and long rows."""
    model = tiny().eval()
    ids = batch([5, 9, 30, 4], 32)
    program = torch.export.export(model, (ids[:2],), dynamic_shapes=(
        {0: torch.export.Dim("batch", min=1, max=16)},))
    assert "nonzero" not in str(program.graph)
    with torch.no_grad():
        assert torch.allclose(program.module()(ids), model(ids), atol=1e-5, rtol=0)
    with pytest.raises(AssertionError, match=r"size\(\)\[1\] == 32"):  # L is fixed
        program.module()(ids[:, :20])


def _toy(n: int, seed: int, vocab: int = 40, width: int = 24) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """Class 1 iff the message holds token 5 somewhere (not at a fixed position); the other
    tokens are drawn from 6..vocab-1, lengths 5..width."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.full((n, width), PAD, dtype=torch.long)
    y = torch.arange(n) % 2
    for row in range(n):
        length = int(torch.randint(5, width + 1, (1,), generator=gen))
        ids[row, 0], ids[row, length - 1] = CLS, SEP
        ids[row, 1:length - 1] = torch.randint(6, vocab, (length - 2,), generator=gen)
        if y[row]:
            ids[row, int(torch.randint(1, length - 1, (1,), generator=gen))] = 5
    return ids, y


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_learns_a_toy_task_with_fit(tmp_path: Path, pooling: str) -> None:
    """~300 steps of the shipyard trainer on (ids, labels): well above chance."""
    x, y = _toy(640, 0)
    xv, yv = _toy(200, 1)
    torch.manual_seed(0)
    model = build_transformer(TransformerConfig(
        d_model=32, heads=4, d_ff=64, layers=1, max_length=24, pooling=pooling,
        dropout=0.0, classifier_dropout=0.0), 40, 2, PAD)
    before = evaluate(model, (xv, yv), device="cpu")
    cfg = TorchTraining.parse({"epochs": 15, "batch_size": 32, "device": "cpu", "plot": False,
                               "optimizer": {"name": "adamw", "lr": 3e-3}})
    history = fit(model, (x, y), (xv, yv), cfg, tmp_path, progress=False)
    assert 0.3 < before["accuracy"] < 0.7
    assert history.val_accuracy[-1] is not None and history.val_accuracy[-1] >= 0.9
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
