"""Train / validation / test parts of an image source, by its own splits or by fractions.

A source's ``test`` split is the test part, else ``data.test_size`` of its images (stratified,
seeded) are; its ``val`` split is the validation part, else ``data.validation_size`` of the
training images are. ``data.limit`` first samples at most that many images of each split the
source gives. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from shipyard.data.image import ImageSet
from shipyard.errors import DataError
from shipyard.training.config import ImageDataConfig

__all__ = ["ImageSplits", "split_images"]


@dataclass
class ImageSplits:
    """The parts a run trains, validates and tests on."""

    train: ImageSet
    test: ImageSet
    validation: ImageSet | None = None
    origin: dict[str, str] = field(default_factory=dict)
    """How each part was made: ``source split 'test'``, ``20% of 'all' (stratified)``..."""


def _stratify(images: ImageSet, wanted: bool) -> np.ndarray | None:
    if not wanted:
        return None
    _, counts = np.unique(images.labels, return_counts=True)
    return images.labels if counts.min() >= 2 else None


def _divide(images: ImageSet, fraction: float | int, seed: int, stratify: bool,
            names: tuple[str, str]) -> tuple[ImageSet, ImageSet, bool]:
    """``images`` cut in two: (the rest, ``fraction`` of them), and whether stratified."""
    rows = np.arange(len(images))
    by = _stratify(images, stratify)
    try:
        rest, part = train_test_split(rows, test_size=fraction, random_state=seed, stratify=by)
    except ValueError as exc:
        raise DataError(f"data: cannot take {fraction} of the {len(images)} {images.split!r} "
                        f"images as the {names[1]} part: {exc}; change data.test_size / "
                        "data.validation_size or use more images") from exc
    if len(rest) == 0 or len(part) == 0:
        raise DataError(f"data: splitting {len(images)} {images.split!r} images leaves the "
                        f"{names[0] if len(rest) == 0 else names[1]} part empty; use more "
                        "images or other sizes")
    return (images.subset(np.sort(rest), names[0]), images.subset(np.sort(part), names[1]),
            by is not None)


def _limited(images: ImageSet, limit: int | None, seed: int, stratify: bool) -> ImageSet:
    if limit is None or len(images) <= limit:
        return images
    _, sample, _ = _divide(images, limit, seed, stratify, (images.split, images.split))
    return sample


def split_images(sets: dict[str, ImageSet], cfg: ImageDataConfig, seed: int) -> ImageSplits:
    """The train, validation and test parts of a loaded source (:func:`load_image_source`)."""
    sets = {k: _limited(v, cfg.limit, seed, cfg.stratify) for k, v in sets.items()}
    origin: dict[str, str] = {}

    def how(fraction: float, of: str, stratified: bool) -> str:
        return f"{fraction:.0%} of {of!r}" + (" (stratified)" if stratified else "")

    pool = sets.get("train", sets.get("all"))
    if pool is None:
        raise DataError(f"data.source: {next(iter(sets.values())).source} has no train images "
                        f"(splits: {sorted(sets)}); add a train/ folder")
    pool_name = pool.split
    if "test" in sets:
        test = sets["test"]
        origin["test"] = "source split 'test'"
    else:
        pool, test, stratified = _divide(pool, cfg.test_size, seed, cfg.stratify,
                                         ("train", "test"))
        origin["test"] = how(cfg.test_size, pool_name, stratified)
    validation: ImageSet | None = None
    if "val" in sets:
        validation = sets["val"]
        origin["validation"] = "source split 'val'"
    elif cfg.validation_size > 0:
        pool, validation, stratified = _divide(pool, cfg.validation_size, seed + 1,
                                               cfg.stratify, ("train", "val"))
        origin["validation"] = how(cfg.validation_size, "train", stratified)
    whole = "test" in sets and ("val" in sets or validation is None)
    origin["train"] = f"source split {pool_name!r}" if whole else f"the rest of {pool_name!r}"
    return ImageSplits(pool.subset(np.arange(len(pool)), "train"), test, validation, origin)
