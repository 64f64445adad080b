"""Unstructured magnitude pruning and structured channel pruning of build_cnn models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import Digits, tiny_cnn
from torch import nn

from shipyard.errors import ConfigError
from shipyard.export._torch_onnx import export_image_classifier
from shipyard.export.prune import channel_groups, prune_channels, prune_unstructured, sparsity
from shipyard.export.quantize import onnx_predict
from shipyard.models.cnn import count_parameters


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.7])
def test_unstructured_zeroes_the_fraction_and_leaves_no_hooks(amount: float) -> None:
    model = tiny_cnn()
    total = sum(w.numel() for w in weights(model))
    out = prune_unstructured(model, amount)
    assert out is model
    zeros = sum(int((w == 0).sum()) for w in weights(model))
    assert zeros == round(amount * total)
    assert sparsity(model) == pytest.approx(zeros / total)
    for m in model.modules():
        assert not m._forward_pre_hooks
        assert not any(n.endswith(("_orig", "_mask")) for n, _ in m.named_parameters())
        assert not any(n.endswith("_mask") for n, _ in m.named_buffers())
    assert all(isinstance(w, nn.Parameter) for w in weights(model))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_unstructured_ranks_globally() -> None:
    model = tiny_cnn()
    before = torch.cat([w.detach().abs().flatten() for w in weights(model)])
    threshold = before.sort().values[round(0.5 * len(before)) - 1]
    prune_unstructured(model, 0.5)
    after = torch.cat([w.detach().flatten() for w in weights(model)])
    assert torch.all(after[before <= threshold] == 0)
    assert torch.all(after[before > threshold] != 0)
    # global, not per layer: the layers end with different sparsities
    per_layer = [float((w == 0).float().mean()) for w in weights(model)]
    assert max(per_layer) - min(per_layer) > 0.05


def test_unstructured_fine_tune_keeps_the_zeros() -> None:
    model = tiny_cnn()
    seen: list[bool] = []

    def fine_tune(m: nn.Module) -> None:
        seen.append(all(hasattr(mod, "weight_mask") for mod in m.modules()
                        if isinstance(mod, nn.Conv2d | nn.Linear)))
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for _ in range(3):
            loss = m(torch.randn(16, 1, 8, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    total = sum(w.numel() for w in weights(model))
    prune_unstructured(model, 0.4, fine_tune=fine_tune)
    assert seen == [True]
    assert sum(int((w == 0).sum()) for w in weights(model)) == round(0.4 * total)


def test_channel_pruning_shrinks_and_keeps_the_output_shape(digits: Digits,
                                                            tmp_path: Path) -> None:
    before = copy.deepcopy(digits.model.state_dict())
    example = torch.from_numpy(digits.x_test[:4])
    pruned = prune_channels(digits.model, 0.5, example, multiple_of=1)
    assert pruned is not digits.model
    for k, v in digits.model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    assert [g.conv.out_channels for g in channel_groups(pruned)] == [4, 8, 8]
    assert count_parameters(pruned) < 0.6 * count_parameters(digits.model)
    assert not pruned.training
    with torch.no_grad():
        out = pruned(example)
    assert out.shape == (4, 10)
    # the pruned model exports and ONNX Runtime agrees with torch
    path = export_image_classifier(pruned, example, tmp_path / "pruned.onnx")
    x = digits.x_test[:50]
    with torch.no_grad():
        expected = pruned(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_predict(path, x), expected, atol=1e-4, rtol=1e-4)
    assert path.stat().st_size < digits.onnx.stat().st_size


def test_amount_zero_is_an_exact_copy(digits: Digits) -> None:
    example = torch.from_numpy(digits.x_test[:8])
    same = prune_channels(digits.model, 0.0, example)
    assert count_parameters(same) == count_parameters(digits.model)
    with torch.no_grad():
        assert torch.equal(same(example), digits.model(example))


def test_channel_pruning_keeps_the_largest_filters() -> None:
    model = tiny_cnn().eval()
    first = model.features[0].body[0]
    with torch.no_grad():
        for i in range(8):  # the odd filters are large, the even ones small: keep the odd
            first.weight[i] = torch.full_like(first.weight[i], 1.0 if i % 2 else 0.01)
    bn = model.features[0].body[1]
    bn.running_mean.copy_(torch.arange(8.0))
    pruned = prune_channels(model, 0.5, torch.zeros(1, 1, 8, 8), multiple_of=1,
                            skip=["features[1].body[0]", "features[1].body[3]"])
    kept = [1, 3, 5, 7]
    p_first, p_bn = pruned.features[0].body[0], pruned.features[0].body[1]
    assert torch.equal(p_first.weight, first.weight[kept])
    assert torch.equal(p_bn.running_mean, torch.tensor([1.0, 3.0, 5.0, 7.0]))
    assert p_bn.num_features == 4
    assert torch.equal(pruned.features[1].body[0].weight,
                       model.features[1].body[0].weight[:, kept])
    # with the dropped filters' contribution made irrelevant, the outputs agree
    with torch.no_grad():
        for i in range(0, 8, 2):
            model.features[1].body[0].weight[:, i] = 0
        x = torch.randn(3, 1, 8, 8)
        torch.testing.assert_close(pruned(x), model(x))


def test_flattened_head_columns_follow_the_channels() -> None:
    model = tiny_cnn().eval()
    pruned = prune_channels(model, 0.25, torch.zeros(1, 1, 8, 8), min_channels=1,
                            multiple_of=1)
    last = channel_groups(pruned)[-1]
    head = pruned.head[0]
    assert last.linear_in is head
    assert head.in_features == last.conv.out_channels * 2 * 2  # 8x8 pooled twice: 2x2


@pytest.mark.parametrize(("fields", "shape"), [
    ({"blocks": [{"channels": 8, "residual": True, "convs": 2},
                 {"channels": 16, "residual": True, "stride": 2, "convs": 2},
                 {"channels": 16, "residual": True, "convs": 2, "pool": "none"}],
      "global_pool": "avg"}, (3, 17, 23)),
    ({"blocks": [{"channels": 8, "batch_norm": False}, {"channels": 12, "pool": "avg"}],
      "global_pool": "max", "head": {"hidden": []}}, (1, 12, 12)),
])
def test_other_cnn_shapes(fields: dict[str, Any], shape: tuple[int, int, int]) -> None:
    model = tiny_cnn(in_channels=shape[0], **fields).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        model(x)  # shapes are fine before
    pruned = prune_channels(model, 0.5, x, multiple_of=1)
    assert count_parameters(pruned) < count_parameters(model)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
    for group in channel_groups(pruned):
        if group.tied is not None:  # residual outputs, projections and identity inputs
            original = dict(model.named_modules())
            name = group.name.replace("[", ".").replace("]", "")
            assert group.conv.out_channels == original[name].out_channels


def test_residual_blocks_prune_only_their_inner_convs() -> None:
    model = tiny_cnn(blocks=[{"channels": 8, "residual": True, "convs": 2},
                             {"channels": 8, "residual": True, "convs": 2}]).eval()
    groups = {g.name: g for g in channel_groups(model)}
    assert groups["features[0].body[0]"].tied is None
    assert "residual" in str(groups["features[0].body[3]"].tied)
    pruned = prune_channels(model, 0.5, torch.zeros(1, 1, 8, 8), multiple_of=1)
    assert [g.conv.out_channels for g in channel_groups(pruned)] == [4, 8, 8, 4, 8]


def test_kept_channels_round_up_to_a_multiple() -> None:
    model = tiny_cnn(blocks=[{"channels": 32}, {"channels": 20}]).eval()
    x = torch.zeros(1, 1, 8, 8)
    counts = [g.conv.out_channels for g in channel_groups(prune_channels(model, 0.4, x))]
    assert counts == [24, 16]  # 19 -> 24, 12 -> 16
    exact = prune_channels(model, 0.4, x, multiple_of=1)
    assert [g.conv.out_channels for g in channel_groups(exact)] == [19, 12]
    assert [g.conv.out_channels for g in channel_groups(prune_channels(model, 0.9, x))] == [8, 8]
    with pytest.raises(ConfigError, match="multiple_of must be an integer >= 1, got 0"):
        prune_channels(model, 0.4, x, multiple_of=0)


def test_fine_tune_is_called_with_the_pruned_model() -> None:
    model = tiny_cnn()
    got: list[nn.Module] = []
    pruned = prune_channels(model, 0.3, torch.zeros(1, 1, 8, 8), fine_tune=got.append)
    assert got == [pruned]


def test_skip_leaves_a_conv_whole() -> None:
    model = tiny_cnn()
    pruned = prune_channels(model, 0.5, torch.zeros(1, 1, 8, 8), multiple_of=1,
                            skip=["features[0].body[0]"])
    assert [g.conv.out_channels for g in channel_groups(pruned)] == [8, 8, 8]


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5, "0.3", True, float("nan")])
def test_bad_amounts_name_the_range(amount: Any) -> None:
    with pytest.raises(ConfigError, match=r"prune_channels amount must be a fraction in \[0, 1\)"):
        prune_channels(tiny_cnn(), amount, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ConfigError,
                       match=r"prune_unstructured amount must be a fraction in \[0, 1\)"):
        prune_unstructured(tiny_cnn(), amount)


def test_other_bad_arguments() -> None:
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ConfigError, match=r"supports the CNNs .*build_cnn builds, got Sequential"):
        prune_channels(nn.Sequential(nn.Conv2d(1, 4, 3)), 0.5, x)
    with pytest.raises(ConfigError, match="min_channels must be an integer >= 1, got 0"):
        prune_channels(tiny_cnn(), 0.5, x, min_channels=0)
    with pytest.raises(ConfigError, match=r"example_input must be a torch\.Tensor"):
        prune_channels(tiny_cnn(), 0.5, np.zeros((1, 1, 8, 8)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"skip names \['conv9'\] are not convs"):
        prune_channels(tiny_cnn(), 0.5, x, skip=["conv9"])
    with pytest.raises(ConfigError, match="does not run on example_input"):
        prune_channels(tiny_cnn(), 0.5, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="has no Conv2d or Linear"):
        prune_unstructured(nn.Sequential(nn.ReLU()), 0.5)
