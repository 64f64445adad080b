"""torch access to an :class:`~shipyard.data.image.ImageSet`: a Dataset and a DataLoader.

The arrays stay ``uint8`` ``NHWC``; each batch is made into the model's ``float32`` ``NCHW``
input by :func:`~shipyard.data.image.to_tensor`, the ``to_dtype`` / ``normalize`` / ``layout``
steps the server runs, on the whole batch at once (numpy, no per-pixel Python). Importing this
module imports torch; :mod:`shipyard.data.image` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shipyard.data.image import ImageSet, to_tensor

__all__ = ["ImageTensorDataset", "make_image_loader"]

Batch = tuple[torch.Tensor, torch.Tensor]


class ImageTensorDataset(Dataset[Batch]):
    """``(image float32 [C, H, W], label int64 [])`` per item; whole batches through
    ``__getitems__`` (which :class:`~torch.utils.data.DataLoader` calls with a batch's indices)
    as ``(float32 [B, C, H, W], int64 [B])``.

    Args:
        images: the split to serve.
        mean, std: the ``normalize`` step's numbers (one per channel, or one for all); both
            ``None`` leaves pixels in ``[0, 1]``.
    """

    collates_itself: ClassVar[bool] = True
    """``__getitems__`` returns a finished batch: a DataLoader over this dataset passes it
    through (``collate_fn``) instead of stacking it again (``fit`` looks for this flag)."""

    def __init__(self, images: ImageSet, *, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None) -> None:
        self.images = images
        self.mean = mean
        self.std = std
        to_tensor(images.images[:1], mean, std)  # a bad mean/std fails here, not in a worker

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = np.asarray(indices, dtype=np.int64)
        pixels = to_tensor(self.images.images[index], self.mean, self.std)
        return torch.from_numpy(pixels), torch.from_numpy(self.images.labels[index])


def _as_batch(batch: Any) -> Any:
    """The collate function: ``__getitems__`` already made the batch."""
    return batch


def make_image_loader(
    images: ImageSet,
    *,
    batch_size: int = 128,
    shuffle: bool = False,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader[Batch]:
    """A :class:`~torch.utils.data.DataLoader` of ``(x float32 [B, C, H, W], y int64 [B])``.

    Args:
        batch_size: images per batch.
        shuffle: a new order every epoch (from ``seed`` when given, so runs repeat).
        mean, std: see :class:`ImageTensorDataset`.
        workers: worker processes (0 = in this process); workers stay alive across epochs.
        seed: seeds the shuffling generator.
        drop_last: leave out the last, smaller batch.
        pin_memory: page-locked batches for fast copies to a GPU; default: when CUDA is
            available.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": 2} if workers else {}
    return DataLoader(
        ImageTensorDataset(images, mean=mean, std=std),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=_as_batch,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        generator=generator,
        **extra,
    )
