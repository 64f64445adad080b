"""torch modules for the training half: :mod:`shipyard.models.cnn`.

Names are imported lazily, so ``import shipyard.models`` does not import torch until one is used.
"""

from __future__ import annotations

from shipyard._lazy import lazy_exports

__all__ = ["CNNConfig", "ConvBlockConfig", "HeadConfig", "build_cnn", "count_parameters"]

_WHERE = {name: "cnn" for name in __all__}

__getattr__ = lazy_exports(__name__, _WHERE)
