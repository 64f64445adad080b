"""Random augmentation of image batches (``float`` ``[N, C, H, W]``), whole-batch torch ops.

:class:`Augment` is a :class:`torch.nn.Module` that changes its input only in training mode
(``.train()``; ``.eval()`` makes it the identity) and draws every random number from its own
:class:`torch.Generator` (on the CPU: a CUDA batch gets the same numbers, copied to its device
without blocking), so one seed gives the same batches on every run and every device. Apply it
to training batches before the model; it is not part of the model (an exported model holds no
augmentation).

Input is either pixels in ``[0, 1]`` (what :func:`~shipyard.data.image.to_tensor` makes without
``normalize``) or, with ``mean`` and ``std`` given, normalised tensors: then they are turned back
into pixels, augmented, clamped to ``[0, 1]`` and normalised again, so padding is black and
brightness means what it says. Order: flip, padded crop, affine (rotation, translation, zoom with
``affine_grid`` / ``grid_sample``), brightness, contrast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shipyard.data.augment_config import AugmentConfig

__all__ = ["Augment", "AugmentConfig", "affine"]


def _moved(value: torch.Tensor, device: torch.device,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` (drawn on the CPU) as ``dtype`` on ``device``. A CPU tensor goes to a CUDA
    device through pinned memory, without blocking: a copy from pageable memory would make
    the host wait for all the GPU's queued work, once per random tensor of every batch."""
    if dtype is not None:
        value = value.to(dtype)
    if device.type == "cuda" and value.device.type == "cpu":
        return value.pin_memory().to(device, non_blocking=True)
    return value.to(device)


def affine(images: torch.Tensor, angles_deg: torch.Tensor, shifts: torch.Tensor | None = None,
           scales: torch.Tensor | None = None, *, interpolation: str = "bilinear",
           fill: str = "zeros") -> torch.Tensor:
    """Rotate each image by ``angles_deg[i]`` (counter-clockwise as displayed, about the
    centre), zoom by ``scales[i]`` and shift by ``shifts[i] = (dx, dy)`` (fractions of the width
    and height; +dx moves right, +dy down), in one ``grid_sample``.

    Rotation is in pixel space, so non-square images are not sheared. ``images`` is
    ``[N, C, H, W]`` float; the result has its shape.
    """
    n, _, height, width = images.shape
    dtype, device = images.dtype, images.device
    angle = _moved(angles_deg, device, dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    scale = (torch.ones(n, dtype=dtype, device=device) if scales is None
             else _moved(scales, device, dtype))
    # The output pixel at normalised (x, y) samples the input at M @ (x, y) + t, where
    # M = diag(2/W, 2/H) @ R^-1 @ diag(W/2, H/2) / scale. With y pointing down the screen, a
    # counter-clockwise turn is R = [[cos, sin], [-sin, cos]], so R^-1 = [[cos, -sin], [sin, cos]];
    # the diagonals keep the turn in pixels on non-square images. t = -M @ shift.
    aspect = height / width
    m00, m01 = cos / scale, -sin * aspect / scale
    m10, m11 = sin / aspect / scale, cos / scale
    if shifts is None:
        tx = ty = torch.zeros(n, dtype=dtype, device=device)
    else:
        shift = _moved(shifts, device, dtype) * 2.0  # fractions -> normalised units
        tx = -(m00 * shift[:, 0] + m01 * shift[:, 1])
        ty = -(m10 * shift[:, 0] + m11 * shift[:, 1])
    theta = torch.stack([torch.stack([m00, m01, tx], 1), torch.stack([m10, m11, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=interpolation, padding_mode=fill,
                         align_corners=False)


class Augment(nn.Module):
    """Apply :class:`AugmentConfig` to batches in training mode; the identity in eval mode.

    Args:
        config: what to do (default: nothing).
        mean, std: the ``normalize`` step's numbers when batches are normalised; ``None`` when
            they are pixels in ``[0, 1]``.
        seed: seeds the module's generator; :meth:`reseed` starts it again.
    """

    def __init__(self, config: AugmentConfig | None = None, *,
                 mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, seed: int = 0) -> None:
        super().__init__()
        self.config = config or AugmentConfig()
        if (mean is None) != (std is None):
            raise ValueError("Augment needs both mean and std, or neither")
        self.mean = None if mean is None else _channels(mean)
        self.std = None if std is None else _channels(std)
        self.generator = torch.Generator(device="cpu")
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Start the random numbers again from ``seed``."""
        self.generator.manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.config.enabled:
            return x
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"Augment takes float images [N, C, H, W], got {x.dtype} "
                             f"{list(x.shape)}")
        cfg, n = self.config, x.shape[0]
        mean = std = None
        if self.mean is not None and self.std is not None:
            mean = _moved(self.mean, x.device, x.dtype).reshape(1, -1, 1, 1)
            std = _moved(self.std, x.device, x.dtype).reshape(1, -1, 1, 1)
            x = x * std + mean
        if cfg.hflip:
            flip = _moved(torch.rand(n, generator=self.generator) < cfg.hflip, x.device)
            x = torch.where(flip.reshape(n, 1, 1, 1), x.flip(-1), x)
        if cfg.crop_padding:
            x = self._crop(x, cfg.crop_padding, cfg.crop_padding_mode)
        if cfg.rotation or cfg.translate or cfg.zoom:
            angles = self._uniform(n, -cfg.rotation, cfg.rotation)
            shifts = self._uniform(2 * n, -cfg.translate, cfg.translate).reshape(n, 2)
            scales = self._uniform(n, 1.0 - cfg.zoom, 1.0 + cfg.zoom)
            x = affine(x, angles, shifts, scales, interpolation=cfg.interpolation,
                       fill=cfg.fill)
        if cfg.brightness:
            factor = self._uniform(n, 1.0 - cfg.brightness, 1.0 + cfg.brightness)
            x = x * _moved(factor, x.device, x.dtype).reshape(n, 1, 1, 1)
        if cfg.contrast:
            factor = self._uniform(n, 1.0 - cfg.contrast, 1.0 + cfg.contrast)
            centre = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - centre) * _moved(factor, x.device, x.dtype).reshape(n, 1, 1, 1) + centre
        x = x.clamp(0.0, 1.0)
        if mean is not None and std is not None:
            x = (x - mean) / std
        return x

    def _crop(self, x: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
        """Pad by ``pad`` and cut a random ``H x W`` window per image (one gather)."""
        n, c, height, width = x.shape
        if mode == "zeros":
            padded = F.pad(x, (pad, pad, pad, pad))
        else:
            padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
        top = _moved(torch.randint(0, 2 * pad + 1, (n,), generator=self.generator), x.device)
        left = _moved(torch.randint(0, 2 * pad + 1, (n,), generator=self.generator), x.device)
        rows = (top[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, chans, rows, cols]

    def extra_repr(self) -> str:
        on = {k: v for k, v in self.config.model_dump().items()
              if v and k not in ("interpolation", "fill", "crop_padding_mode")}
        return ", ".join(f"{k}={v}" for k, v in on.items()) or "off"


def _channels(value: Sequence[float] | float) -> torch.Tensor:
    values = [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
    if not values or any(not math.isfinite(v) for v in values):
        raise ValueError(f"mean and std must be finite numbers, got {value!r}")
    return torch.tensor(values, dtype=torch.float32)
