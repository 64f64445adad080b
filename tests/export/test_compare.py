"""The comparison table: accuracy, size, latency and throughput of ONNX variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import Digits

from shipyard.errors import ConfigError
from shipyard.export.compare import compare_onnx
from shipyard.export.quantize import onnx_predict, quantize_onnx


def test_compare_measures_every_variant(digits: Digits, tmp_path: Path) -> None:
    int8 = quantize_onnx(digits.onnx, tmp_path / "int8.onnx",
                         calibration=digits.x_train[:128]).path
    table = compare_onnx({"fp32": digits.onnx, "int8": int8}, (digits.x_test, digits.y_test),
                         threads=(1, None), latency_runs=20, rounds=2, iterations=2,
                         notes={"int8": "static"})
    assert [r.name for r in table.rows] == ["fp32", "int8"]
    assert table.threads == ["1", "default"] and table.baseline == "fp32"
    fp32 = table.row("fp32")
    expected = float(np.mean(onnx_predict(digits.onnx, digits.x_test).argmax(1)
                             == digits.y_test))
    assert fp32.accuracy == pytest.approx(expected)
    assert fp32.bytes == digits.onnx.stat().st_size > table.row("int8").bytes
    for row in table.rows:
        assert set(row.latency_ms) == set(row.throughput) == {"1", "default"}
        assert all(v > 0 for v in [*row.latency_ms.values(), *row.throughput.values()])
    assert table.speedup("fp32", "1") == 1.0
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| model | accuracy |") and "b64 img/s (1 thr)" in md[0]
    assert "default thr" in md[0] and md[0].endswith("| note |")
    assert len(md) == 4 and md[3].startswith("| int8 |") and "static" in md[3]
    assert table.to_dict()["rows"][1]["name"] == "int8"


def test_compare_without_labels_and_bad_arguments(digits: Digits) -> None:
    table = compare_onnx({"m": digits.onnx}, digits.x_test[:10], threads=(1,),
                         latency_runs=5, rounds=1, iterations=1)
    assert table.rows[0].accuracy is None and "n/a" in table.to_markdown()
    with pytest.raises(ConfigError, match="baseline 'x' is not one of the models"):
        compare_onnx({"m": digits.onnx}, digits.x_test, baseline="x")
    with pytest.raises(ConfigError, match="threads entries must be integers >= 1 or None"):
        compare_onnx({"m": digits.onnx}, digits.x_test, threads=(0,))
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        compare_onnx({"m": digits.onnx}, digits.x_test, batch_size=0)
    with pytest.raises(ConfigError, match="does not exist"):
        compare_onnx({"m": digits.onnx.with_name("nope.onnx")}, digits.x_test)
