"""INT8 quantisation: static (QDQ, calibrated) and dynamic, the calibration reader, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import Digits

from shipyard.errors import ConfigError, ExportError
from shipyard.export import quantize
from shipyard.export.quantize import (
    ArrayCalibrationReader,
    check_accuracy,
    onnx_predict,
    ort_session,
    quantize_onnx,
)


def op_types(path: Path) -> set[str]:
    onnx.checker.check_model(str(path))
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_static_writes_a_smaller_qdq_model_close_to_fp32(digits: Digits, tmp_path: Path) -> None:
    dst = tmp_path / "model.int8.onnx"
    result = quantize_onnx(digits.onnx, dst, calibration=digits.x_train[:256],
                           test=(digits.x_test, digits.y_test), max_accuracy_drop=3.0)
    ops = op_types(dst)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.method == "static" and result.fallback_reason is None
    assert result.quantized_ops["QuantizeLinear"] >= 3  # at least the convs' inputs
    # 23k parameters: the scales and QDQ nodes are a large share here (0.26 on the 575k CNN)
    assert result.bytes == dst.stat().st_size < 0.7 * digits.onnx.stat().st_size
    assert result.size_ratio < 0.7
    assert result.calibration_batches == 8 and result.calibration_samples == 256
    check = result.check
    assert check is not None and check.samples == len(digits.x_test)
    assert check.reference_accuracy is not None and check.reference_accuracy > 0.85
    assert check.accuracy_drop is not None and abs(check.accuracy_drop) <= 3.0 and check.passed
    assert check.agreement >= 0.95
    out = onnx_predict(dst, digits.x_test)
    ref = onnx_predict(digits.onnx, digits.x_test)
    assert out.shape == ref.shape == (len(digits.x_test), 10)
    scale = np.abs(ref).max()
    assert check.max_abs_diff == pytest.approx(float(np.abs(out - ref).max()), rel=1e-5)
    assert np.abs(out - ref).mean() < 0.05 * scale
    assert result.to_dict()["check"]["passed"] is True


def test_per_channel_weights_have_one_scale_per_filter(digits: Digits, tmp_path: Path) -> None:
    dst = tmp_path / "pc.onnx"
    quantize_onnx(digits.onnx, dst, calibration=digits.x_train[:64])
    graph = onnx.load(str(dst)).graph
    inits = {i.name: i for i in graph.initializer}
    # the first conv's weight DequantizeLinear has 8 scales (8 output channels)
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in inits and len(inits[n.input[0]].dims) == 4]
    assert weight_dq, "no conv weight is quantised"
    sizes = sorted(int(np.prod(inits[n.input[1]].dims)) for n in weight_dq)
    assert sizes == [8, 16, 16]
    quantize_onnx(digits.onnx, tmp_path / "pt.onnx", calibration=digits.x_train[:64],
                  per_channel=False)
    graph = onnx.load(str(tmp_path / "pt.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    assert all(int(np.prod(inits[n.input[1]].dims)) == 1 for n in graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 4)


def test_dynamic_quantises_the_linear_layers(digits: Digits, tmp_path: Path) -> None:
    dst = tmp_path / "model.dyn.onnx"
    result = quantize_onnx(digits.onnx, dst, method="dynamic",
                           test=(digits.x_test, digits.y_test))
    ops = op_types(dst)
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
    assert "QuantizeLinear" not in ops and "ConvInteger" not in ops  # convs stay float
    assert result.method == "dynamic" and result.calibration_batches == 0
    assert result.bytes < digits.onnx.stat().st_size
    assert result.check is not None and result.check.agreement >= 0.97
    ort_session(dst).run(None, {"image": digits.x_test[:3]})
    # convs too, when asked
    quantize_onnx(digits.onnx, tmp_path / "all.onnx", method="dynamic",
                  op_types=["Conv", "MatMul", "Gemm"])
    assert "ConvInteger" in op_types(tmp_path / "all.onnx")


def test_calibration_reader_feeds_every_batch() -> None:
    data = np.zeros((100, 1, 8, 8), np.float32)
    reader = ArrayCalibrationReader(data, "image", batch_size=32)
    sizes = [feed["image"].shape[0] for feed in reader]
    assert sizes == [32, 32, 32, 4]
    assert reader.get_next() is None
    assert (reader.batches_fed, reader.samples_fed) == (4, 100)
    reader.rewind()
    assert len(list(reader)) == 4
    limited = ArrayCalibrationReader(data, "image", batch_size=10, max_batches=3)
    assert [f["image"].shape[0] for f in limited] == [10, 10, 10]
    batches = [np.ones((5, 1, 8, 8), np.float32), {"image": np.ones((7, 1, 8, 8), np.float32)}]
    mixed = ArrayCalibrationReader(iter(batches), "image")
    assert [f["image"].shape[0] for f in mixed] == [5, 7] and mixed.samples_fed == 12


def test_quantize_counts_what_the_calibrator_consumed(digits: Digits, tmp_path: Path) -> None:
    fed: list[int] = []

    def batches() -> Any:
        for i in range(5):
            fed.append(i)
            yield digits.x_train[i * 20:(i + 1) * 20]

    result = quantize_onnx(digits.onnx, tmp_path / "q.onnx", calibration=batches(),
                           calibration_batches=None)
    assert fed == [0, 1, 2, 3, 4]
    assert (result.calibration_batches, result.calibration_samples) == (5, 100)
    capped = quantize_onnx(digits.onnx, tmp_path / "c.onnx", calibration=digits.x_train,
                           calibration_batch_size=50, calibration_batches=3)
    assert (capped.calibration_batches, capped.calibration_samples) == (3, 150)


def test_static_failure_falls_back_to_dynamic(digits: Digits, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("unsupported operator Frobnicate")

    monkeypatch.setattr(quantize, "_static", broken)
    result = quantize_onnx(digits.onnx, tmp_path / "f.onnx", calibration=digits.x_train[:32])
    assert result.method == "dynamic"
    assert result.fallback_reason is not None and "Frobnicate" in result.fallback_reason
    assert "MatMulInteger" in op_types(tmp_path / "f.onnx")
    with pytest.raises(ExportError, match=r"static quantisation .* failed.*Frobnicate"):
        quantize_onnx(digits.onnx, tmp_path / "g.onnx", calibration=digits.x_train[:32],
                      fallback=False)


def test_check_accuracy_without_labels(digits: Digits) -> None:
    same = check_accuracy(digits.onnx, digits.onnx, digits.x_test[:50])
    assert same.agreement == 1.0 and same.max_abs_diff == 0.0
    assert same.accuracy is None and same.accuracy_drop is None and same.passed


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "int4"}, "method must be 'static' or 'dynamic', got 'int4'"),
    ({"calibration": None}, "method='static' needs calibration="),
    ({"calibration_batch_size": 0}, r"calibration_batch_size must be an integer >= 1, got 0"),
    ({"calibration_batches": -2}, r"calibration_batches must be an integer >= 1, got -2"),
    ({"calibration_method": "mse"}, "calibration_method must be 'minmax', 'entropy' or"),
    ({"max_accuracy_drop": 150}, r"max_accuracy_drop must be .* \[0, 100\], got 150"),
    ({"input_name": "pixels"}, "input_name 'pixels' is not an input of the model"),
    ({"calibration": np.zeros((4, 1, 8, 8))}, "float32 .* got float64"),
])
def test_bad_arguments_raise_config_errors(digits: Digits, tmp_path: Path,
                                           kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"calibration": digits.x_train[:32], **kwargs}
    with pytest.raises(ConfigError, match=message):
        quantize_onnx(digits.onnx, tmp_path / "out.onnx", **args)


def test_bad_paths_raise_config_errors(digits: Digits, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        quantize_onnx(tmp_path / "missing.onnx", tmp_path / "o.onnx", method="dynamic")
    with pytest.raises(ConfigError, match="is the source model"):
        quantize_onnx(digits.onnx, digits.onnx, method="dynamic")
