"""Does the exported graph compute what the scikit-learn pipeline computes?

Runs ONNX Runtime on a prepared feature frame (the test split) and compares every output with
scikit-learn's: labels must be identical, probabilities and scores within ``tolerance``
(absolute), regression predictions within ``tolerance * max(1, |value|)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from shipyard.data.features import ColumnPlan
from shipyard.export.onnx import OnnxInterface, onnx_feeds

__all__ = ["check_agreement", "onnx_session"]


def onnx_session(model_bytes: bytes) -> Any:
    """A single-threaded CPU ONNX Runtime session."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def check_agreement(
    model_bytes: bytes,
    pipeline: Any,
    X: pd.DataFrame,
    plans: Sequence[ColumnPlan],
    interface: OnnxInterface,
    *,
    classify: bool,
    tolerance: float,
    split: str = "test",
) -> dict[str, Any]:
    """A JSON-able record of the comparison; ``passed`` says whether it is within tolerance."""
    session = onnx_session(model_bytes)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, onnx_feeds(X, plans, interface)), strict=True))
    record: dict[str, Any] = {"split": split, "rows": len(X), "tolerance": tolerance,
                              "outputs": names}
    passed = True
    if classify:
        proba = pipeline.predict_proba(X)
        if "label" in got:
            expected = pipeline.predict(X)
            same = np.asarray(got["label"]).reshape(-1).astype(str) == expected.astype(str)
            record["labels_identical"] = bool(same.all())
            record["label_mismatches"] = int((~same).sum())
            passed &= record["labels_identical"]
        diffs = []
        if "probabilities" in got:
            diffs.append(np.abs(got["probabilities"] - proba).max(initial=0.0))
        if "score" in got:
            score = proba[:, interface.score_index]
            diffs.append(np.abs(got["score"].reshape(-1) - score).max(initial=0.0))
            if "label" not in got:  # the score still decides the class: compare decisions
                same = (got["score"].reshape(-1) >= 0.5) == (score >= 0.5)
                record["decisions_identical"] = bool(same.all())
                passed &= record["decisions_identical"]
        record["max_abs_diff"] = float(max(diffs)) if diffs else None
        passed &= all(d <= tolerance for d in diffs)
    else:
        expected = pipeline.predict(X).astype(np.float64).reshape(-1)
        pred = got["prediction"].astype(np.float64).reshape(-1)
        abs_diff = np.abs(pred - expected)
        record["max_abs_diff"] = float(abs_diff.max(initial=0.0))
        rel = abs_diff / np.maximum(1.0, np.abs(expected))
        record["max_rel_diff"] = float(rel.max(initial=0.0))
        passed &= record["max_rel_diff"] <= tolerance
    record["passed"] = bool(passed)
    return record
