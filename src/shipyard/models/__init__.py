"""torch modules for the training half: :mod:`shipyard.models.cnn` (images) and
:mod:`shipyard.models.transformer` (text).

Names are imported lazily, so ``import shipyard.models`` does not import torch until one is used.
"""

from __future__ import annotations

from shipyard._lazy import lazy_dir, lazy_exports

__all__ = ["CNNConfig", "ConvBlockConfig", "HeadConfig", "TransformerClassifier",
           "TransformerConfig", "build_cnn", "build_transformer", "count_parameters"]

_WHERE = {name: "cnn" for name in ("CNNConfig", "ConvBlockConfig", "HeadConfig", "build_cnn",
                                   "count_parameters")}
_WHERE.update({name: "transformer" for name in ("TransformerClassifier", "TransformerConfig",
                                                "build_transformer")})

__getattr__ = lazy_exports(__name__, _WHERE)
__dir__ = lazy_dir(globals(), __all__)
