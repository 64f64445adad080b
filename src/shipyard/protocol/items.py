"""What kind of item a model with preprocess steps takes, told by its first step: the rule the
server's ``/predict`` and the client's ``predict`` both follow (a model's metadata lists its
steps in ``properties["preprocess"]``)."""

from __future__ import annotations

__all__ = ["ITEM_INPUTS"]

#: the first preprocess step -> the client-facing input name when config.yaml gives none, which
#: is also the kind of item such a model takes: an ``image`` (encoded file) or a ``text`` per row
ITEM_INPUTS: dict[str, str] = {"image_decode": "image", "text_normalize": "text",
                               "tokenize": "text"}
