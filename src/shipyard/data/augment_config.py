"""What :class:`~shipyard.data.augment.Augment` does, as a pydantic config (no torch import).

An experiment's ``augment:`` section is this config; it lives apart from the module that applies
it so that reading an experiment never imports torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AugmentConfig"]


class AugmentConfig(BaseModel):
    """Which augmentations run and how strongly; every default is off."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = Field(0.0, ge=0.0, le=1.0)
    """Probability of flipping an image left-right (0.5 suits clothes; leave digits at 0)."""
    crop_padding: int = Field(0, ge=0, le=64)
    """Pad every side by this many pixels, then cut a random crop of the original size (a
    random shift of up to this many whole pixels); 0 = off. 2-4 suit 28x28 images."""
    crop_padding_mode: Literal["zeros", "reflect", "replicate"] = "zeros"
    """What the crop's padding holds: black (``zeros``), the mirrored image, or its edge."""
    rotation: float = Field(0.0, ge=0.0, le=180.0)
    """Largest rotation in degrees; each image turns by a uniform angle in
    ``[-rotation, rotation]`` about its centre; 0 = off."""
    translate: float = Field(0.0, ge=0.0, le=0.5)
    """Largest shift as a fraction of the width (horizontally) and height (vertically), uniform
    in ``[-translate, translate]``, sub-pixel; 0 = off."""
    zoom: float = Field(0.0, ge=0.0, lt=1.0)
    """Largest zoom: each image is scaled by a uniform factor in ``[1 - zoom, 1 + zoom]``;
    0 = off."""
    interpolation: Literal["bilinear", "nearest"] = "bilinear"
    """How rotated, shifted and zoomed images are resampled."""
    fill: Literal["zeros", "border", "reflection"] = "zeros"
    """What appears where an affine transform uncovers the image: black, the edge pixels, or
    the mirrored image (``grid_sample``'s padding modes)."""
    brightness: float = Field(0.0, ge=0.0, le=1.0)
    """Multiply each image by a uniform factor in ``[1 - brightness, 1 + brightness]``;
    0 = off."""
    contrast: float = Field(0.0, ge=0.0, le=1.0)
    """Scale each image's distance from its mean by a uniform factor in
    ``[1 - contrast, 1 + contrast]``; 0 = off."""

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return any((self.hflip, self.crop_padding, self.rotation, self.translate, self.zoom,
                    self.brightness, self.contrast))
