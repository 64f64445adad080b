"""softmax, top_k and labels against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.transforms import (
    Labels,
    Softmax,
    StepConfigError,
    TopK,
    TransformError,
    apply_steps,
    build_steps,
)

RNG = np.random.default_rng(3)
NAMES = ["cat", "dog", "bird", "fish", "émeu"]


def _softmax_reference(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.astype(np.float64).max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_softmax_matches_numpy_and_is_stable_for_large_scores() -> None:
    scores = RNG.normal(size=(6, 5)).astype(np.float32) * 4
    out = Softmax()(scores)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _softmax_reference(scores), rtol=1e-6, atol=1e-7)
    big = np.array([[1000.0, 999.0, -1000.0], [-1e30, -1e30, -1e30]], np.float32)
    out_big = Softmax()(big)
    assert np.isfinite(out_big).all()
    np.testing.assert_allclose(out_big[0], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1)), 0],
                               rtol=1e-6)
    np.testing.assert_allclose(out_big[1], [1 / 3] * 3, rtol=1e-6)
    assert Softmax()(scores.astype(np.float64)).dtype == np.float64
    assert scores.dtype == np.float32 and not np.shares_memory(out, scores)


def test_softmax_refuses_what_are_not_scores() -> None:
    with pytest.raises(TransformError, match=r"takes scores \[N, classes\], got float32 \[4\]"):
        Softmax()(np.zeros(4, np.float32))
    with pytest.raises(StepConfigError, match=r"^softmax: takes scores"):
        Softmax().output_spec(("BYTES", (-1,)))


def test_top_k_matches_argsort_and_breaks_ties_to_the_lower_index() -> None:
    scores = RNG.random((7, 5)).astype(np.float32)
    out = TopK(k=3)(scores)
    assert isinstance(out, dict) and set(out) == {"indices", "scores"}
    expected = np.argsort(-scores, axis=1)[:, :3]
    np.testing.assert_array_equal(out["indices"], expected)
    np.testing.assert_array_equal(out["scores"], np.take_along_axis(scores, expected, 1))
    assert out["indices"].dtype == np.int64 and out["scores"].dtype == np.float32
    ties = TopK(k=3)(np.array([[0.2, 0.5, 0.2, 0.5, np.nan]], np.float32))
    assert ties["indices"].tolist() == [[1, 3, 0]]
    ints = TopK(k=2)(np.array([[3, 9, 1]], np.uint8))
    assert ints["indices"].tolist() == [[1, 0]] and ints["scores"].tolist() == [[9, 3]]


def test_top_k_refuses_more_classes_than_there_are() -> None:
    with pytest.raises(TransformError, match=r"top_k\.k=6 is more than the 5 classes"):
        TopK(k=6)(np.zeros((2, 5), np.float32))
    with pytest.raises(StepConfigError, match=r"^top_k: k=6 is more than the 5 classes"):
        TopK(k=6).output_spec(("FP32", (-1, 5)))
    with pytest.raises(StepConfigError, match=r"^top_k\.k: must be an integer >= 1; got 0"):
        TopK(k=0)


def test_labels_name_the_best_class_of_each_row() -> None:
    scores = RNG.random((8, 5)).astype(np.float32)
    out = Labels(labels=NAMES)(scores)
    assert out.dtype == object and out.shape == (8,)
    assert out.tolist() == [NAMES[i].encode("utf-8") for i in scores.argmax(axis=1)]


def test_labels_map_class_numbers_of_any_shape() -> None:
    indices = np.array([[4, 0], [2, 2]], np.int64)
    out = Labels(labels=NAMES)(indices)
    assert out.shape == (2, 2)
    assert out.tolist() == [[b"\xc3\xa9meu", b"cat"], [b"bird", b"bird"]]


def test_labels_after_top_k_add_names_beside_indices_and_scores() -> None:
    steps = build_steps([{"softmax": None}, {"top_k": {"k": 2}}, {"labels": {"labels": NAMES}}],
                        where="postprocess")
    scores = RNG.normal(size=(4, 5)).astype(np.float32)
    out = apply_steps(steps, scores)
    assert isinstance(out, dict) and set(out) == {"indices", "scores", "labels"}
    order = np.argsort(-scores, axis=1)[:, :2]
    assert out["labels"].tolist() == [[NAMES[i].encode() for i in row] for row in order]
    np.testing.assert_allclose(out["scores"],
                               np.take_along_axis(_softmax_reference(scores), order, 1),
                               rtol=1e-6)


def test_labels_refuse_a_class_number_outside_the_list_by_item() -> None:
    with pytest.raises(TransformError) as caught:
        Labels(labels=NAMES)(np.array([[0, 1], [2, 3], [4, 5]]))
    assert caught.value.index == 2
    assert str(caught.value) == "item 2: class number 5 is not in labels (0..4)"
    with pytest.raises(TransformError) as caught:
        Labels(labels=NAMES)(np.array([1, -1]))
    assert caught.value.index == 1
    with pytest.raises(StepConfigError, match=r"^labels\.labels: must be a non-empty list"):
        Labels(labels=[])
    with pytest.raises(StepConfigError, match=r"^labels\.labels: must be a non-empty list"):
        Labels(labels=["a", 2])  # type: ignore[list-item]


def test_post_specs() -> None:
    assert Softmax().output_spec(("FP32", (-1, 10))) == ("FP32", (-1, 10))
    assert Labels(labels=NAMES).output_spec(("FP32", (-1, 5))) == ("BYTES", (-1,))
    assert Labels(labels=NAMES).output_spec(("INT64", (-1, 3))) == ("BYTES", (-1, 3))
    assert TopK(k=2).output_spec(("FP16", (-1, 5))) == {"indices": ("INT64", (-1, 2)),
                                                       "scores": ("FP16", (-1, 2))}
