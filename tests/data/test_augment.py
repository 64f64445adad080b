"""Batch augmentation: off in eval, repeatable per seed, and each operation doing what it says."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from shipyard.data.augment import Augment, AugmentConfig, affine

EVERYTHING = AugmentConfig(hflip=0.5, crop_padding=3, rotation=20, translate=0.1, zoom=0.1,
                           brightness=0.3, contrast=0.3)


def images(n: int = 8, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_default_is_off_and_eval_is_identity() -> None:
    x = images()
    assert not AugmentConfig().enabled
    assert Augment().train()(x) is x
    module = Augment(EVERYTHING).eval()
    assert module(x) is x
    assert not torch.equal(module.train()(x), x)


@pytest.mark.parametrize("config", [
    EVERYTHING,
    AugmentConfig(hflip=1.0),
    AugmentConfig(crop_padding=2, crop_padding_mode="reflect"),
    AugmentConfig(rotation=45, interpolation="nearest", fill="border"),
])
def test_shapes_kept_and_repeatable_per_seed(config: AugmentConfig) -> None:
    x = images(c=1, h=9, w=13)
    a, b = Augment(config, seed=7), Augment(config, seed=7)
    first, second = a(x), b(x)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.equal(first, second)
    assert torch.equal(a(x), b(x))  # the next batches agree too
    a.reseed(7)
    assert torch.equal(a(x), first)
    if config != AugmentConfig(hflip=1.0):  # a sure flip has nothing random
        assert not torch.equal(Augment(config, seed=8)(x), first)


def test_flip_really_flips() -> None:
    x = images()
    assert torch.equal(Augment(AugmentConfig(hflip=1.0))(x), x.flip(-1))
    out = Augment(AugmentConfig(hflip=0.5), seed=1)(images(n=200))
    src = images(n=200)
    flipped = (out == src.flip(-1)).flatten(1).all(1)
    kept = (out == src).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 60 < int(flipped.sum()) < 140


def test_rotation_zero_is_identity_and_ninety_is_rot90() -> None:
    x = images(h=7, w=7)
    same = affine(x, torch.zeros(len(x)))
    assert torch.allclose(same, x, atol=1e-6)
    turned = affine(x, torch.full((len(x),), 90.0))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    # a configured rotation of 0 with nothing else on leaves the batch as it is
    assert torch.equal(Augment(AugmentConfig(rotation=0.0)).train()(x), x)


def test_translation_moves_by_whole_pixels() -> None:
    x = torch.zeros(1, 1, 5, 8)
    x[0, 0, 2, 3] = 1.0
    moved = affine(x, torch.zeros(1), torch.tensor([[1 / 8, 1 / 5]]))
    assert moved[0, 0].nonzero().tolist() == [[3, 4]]  # one right, one down


def test_crop_with_padding_shifts_and_pads_black() -> None:
    x = torch.ones(64, 1, 6, 6)
    out = Augment(AugmentConfig(crop_padding=2), seed=0)(x)
    assert out.shape == x.shape
    blank = (out == 0).flatten(1).sum(1)
    assert int(blank.max()) > 0 and int(blank.min()) == 0  # some crops centred, some shifted
    # every crop is a window of the padded image: rows of ones stay contiguous
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_normalised_input_pads_with_black_and_returns_normalised() -> None:
    mean, std = [0.5], [0.25]
    pixels = torch.ones(16, 1, 8, 8)
    normalised = (pixels - 0.5) / 0.25
    module = Augment(AugmentConfig(translate=0.4), mean=mean, std=std, seed=0)
    out = module(normalised)
    black = (0.0 - 0.5) / 0.25
    assert torch.isclose(out.min(), torch.tensor(black))
    assert torch.isclose(out.max(), torch.tensor(2.0))


def test_brightness_and_contrast() -> None:
    x = torch.full((32, 1, 4, 4), 0.5)
    x[:, :, 0, 0] = 0.2
    bright = Augment(AugmentConfig(brightness=0.5), seed=0)(x)
    ratio = bright[:, 0, 1, 1] / 0.5
    assert bool(((ratio >= 0.5) & (ratio <= 1.5)).all()) and float(ratio.std()) > 0.05
    assert torch.allclose(bright[:, 0, 0, 0] / 0.2, ratio)  # one factor per image
    contrast = Augment(AugmentConfig(contrast=0.5), seed=0)(x)
    assert torch.allclose(contrast.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    assert float(contrast.std()) > 0
    assert float(Augment(AugmentConfig(brightness=1.0), seed=0)(torch.ones(8, 1, 2, 2)).max()) \
        <= 1.0


def test_bad_config_and_input() -> None:
    with pytest.raises(ValidationError) as info:
        AugmentConfig.model_validate({"hflip": 1.5})
    assert info.value.errors()[0]["loc"] == ("hflip",)
    with pytest.raises(ValidationError, match="extra"):
        AugmentConfig.model_validate({"flip": 0.5})
    with pytest.raises(ValueError, match="float images"):
        Augment(AugmentConfig(hflip=1.0))(torch.zeros(2, 3, 4, dtype=torch.float32))
    with pytest.raises(ValueError, match="both mean and std"):
        Augment(mean=[0.5])
