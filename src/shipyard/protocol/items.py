"""The rules of a model's own vocabulary that the server's ``/predict`` and the client's
``predict`` both follow: what kind of item a model with preprocess steps takes, told by its first
step (a model's metadata lists its steps in ``properties["preprocess"]``); which columns a row of
raw columns lacks or has too many of; and class scores read as probabilities."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from shipyard.protocol.types import Array

__all__ = ["ITEM_INPUTS", "as_probabilities", "column_problem"]

#: the first preprocess step -> the client-facing input name when config.yaml gives none, which
#: is also the kind of item such a model takes: an ``image`` (encoded file) or a ``text`` per row
ITEM_INPUTS: dict[str, str] = {"image_decode": "image", "text_normalize": "text",
                               "tokenize": "text"}


def column_problem(given: Iterable[str], names: Sequence[str]) -> str | None:
    """What is wrong with the columns ``given`` for a model of columns ``names`` (those missing,
    those unknown, and the ones it takes), or None when they match."""
    given = list(given)
    missing = [c for c in names if c not in given]
    unknown = [c for c in given if c not in names]
    if not (missing or unknown):
        return None
    return ((f"missing column(s) {missing}; " if missing else "")
            + (f"unknown column(s) {unknown}; " if unknown else "")
            + f"the model's columns are {list(names)}")


def as_probabilities(scores: Array) -> Array:
    """Rows of class scores as float64 probabilities: as they are when every row already is one
    (a scikit-learn classifier's ``probabilities``), else their softmax (a network's logits)."""
    values: Array = np.array(scores, dtype=np.float64)
    if (values >= 0).all() and (values <= 1).all() and np.allclose(values.sum(axis=1), 1,
                                                                   atol=1e-3):
        return values
    if values.shape[-1] == 0:
        return values
    values -= values.max(axis=-1, keepdims=True)
    np.exp(values, out=values)
    values /= values.sum(axis=-1, keepdims=True)
    return values
