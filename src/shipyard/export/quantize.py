"""INT8 quantisation of an ONNX model with ONNX Runtime: static (calibrated, QDQ) or dynamic.

:func:`quantize_onnx` takes a float32 ``model.onnx`` and writes an INT8 copy:

``method="static"`` (the default)
    ORT's ``quant_pre_process`` (symbolic shape inference + graph optimisation, e.g. batch norm
    folded into conv) first, then ``quantize_static`` in the QDQ format: activations ``uint8``
    with ranges calibrated on sample inputs (:class:`ArrayCalibrationReader` feeds them in
    batches), weights ``int8``, per output channel (``per_channel=True``: one scale per conv
    filter / linear row, which keeps small filters from being crushed by one large one).
    Convolutions and matrix products then run as integer kernels (VNNI on recent x86).
``method="dynamic"``
    ``quantize_dynamic``: weights ``int8`` offline, activations quantised at run time from
    each batch's own range; needs no calibration data. By default only ``MatMul``/``Gemm``
    (linear layers, attention projections) are quantised: ORT's ``ConvInteger`` is slower
    than its float convolution on CPU (measured 6-10x slower on the default CNN), so dynamic
    quantisation suits text models and the dense head of an image model. Pass ``op_types``
    to choose.

Static quantisation that fails (an operator the calibrator cannot handle, integer inputs with
nothing to calibrate) falls back to dynamic when ``fallback=True``; the result says so.

Given test data, the result carries an :class:`AccuracyCheck`: accuracy of the float and the
INT8 models (with labels), how often their top-1 classes agree, and the largest output
difference. onnxruntime is imported when a function runs, not when this module is imported.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shipyard.errors import ConfigError, ExportError

__all__ = [
    "AccuracyCheck",
    "ArrayCalibrationReader",
    "QuantizeResult",
    "check_accuracy",
    "onnx_predict",
    "ort_session",
    "quantize_onnx",
]

Method = Literal["static", "dynamic"]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
#: Operators that dynamic quantisation touches by default (see the module docstring).
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_DYNAMIC_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")


# --- sessions ------------------------------------------------------------------------------

def ort_session(model: str | Path | bytes, threads: int | None = 1) -> Any:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads (``None`` = ORT's default,
    one per physical core) and one inter-op thread; warnings silenced."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def _input_name(session: Any, input_name: str | None) -> str:
    names = [i.name for i in session.get_inputs()]
    if input_name is None:
        if len(names) != 1:
            raise ConfigError(f"the model has inputs {names}: pass input_name= to choose one")
        return str(names[0])
    if input_name not in names:
        raise ConfigError(f"input_name {input_name!r} is not an input of the model; "
                          f"its inputs are {names}")
    return input_name


def onnx_predict(model: str | Path | Any, x: np.ndarray, *, batch_size: int = 256,
                 input_name: str | None = None, threads: int | None = None) -> np.ndarray:
    """The model's first output for ``x`` (batched along axis 0), as one array. ``model`` is a
    path or an ``InferenceSession``."""
    session = model if hasattr(model, "run") else ort_session(model, threads)
    name = _input_name(session, input_name)
    outs = [session.run(None, {name: x[i:i + batch_size]})[0]
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,), np.float32)


# --- calibration ---------------------------------------------------------------------------

class ArrayCalibrationReader:
    """ORT's ``CalibrationDataReader`` over sample inputs: ``data`` is one array ``[N, ...]``
    (cut into batches of ``batch_size``), or an iterable of arrays or of ``{input: array}``
    feeds, one batch each. At most ``max_batches`` batches are fed (``None`` = all).

    ORT recognises a reader by its ``get_next`` method (``__subclasshook__``), so this class
    does not need onnxruntime to be imported. ``batches_fed`` / ``samples_fed`` count what
    the calibrator consumed; :meth:`rewind` starts again (array data only)."""

    def __init__(self, data: np.ndarray | Iterable[np.ndarray | Mapping[str, np.ndarray]],
                 input_name: str, *, batch_size: int = 32,
                 max_batches: int | None = None) -> None:
        _check_int("batch_size", batch_size, 1)
        if max_batches is not None:
            _check_int("max_batches", max_batches, 1)
        if isinstance(data, np.ndarray) and data.ndim == 0:
            raise ConfigError("calibration data must be an array [N, ...] or an iterable of "
                              "batches, got a 0-d array")
        self.data = data
        self.input_name = input_name
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.batches_fed = 0
        self.samples_fed = 0
        self._it: Iterator[np.ndarray | Mapping[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[np.ndarray | Mapping[str, np.ndarray]]:
        if isinstance(self.data, np.ndarray):
            for i in range(0, len(self.data), self.batch_size):
                yield self.data[i:i + self.batch_size]
        else:
            yield from self.data

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.max_batches is not None and self.batches_fed >= self.max_batches:
            return None
        batch = next(self._it, None)
        if batch is None:
            return None
        feed = ({k: np.asarray(v) for k, v in batch.items()} if isinstance(batch, Mapping)
                else {self.input_name: np.asarray(batch)})
        for value in feed.values():
            if value.dtype == np.float64:
                raise ConfigError("calibration batches must be float32 like the model's input, "
                                  "got float64; convert with .astype(np.float32)")
        self.batches_fed += 1
        self.samples_fed += len(next(iter(feed.values())))
        return feed

    def rewind(self) -> None:
        self.batches_fed = self.samples_fed = 0
        self._it = self._batches()

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (feed := self.get_next()) is not None:
            yield feed


# --- results -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccuracyCheck:
    """The INT8 (or any candidate) model against the float model on the same test inputs."""

    samples: int
    agreement: float
    """Fraction of inputs whose top-1 class is the same in both models."""
    max_abs_diff: float
    """Largest absolute difference of the first output (logits)."""
    reference_accuracy: float | None = None
    """Top-1 accuracy of the float model (None without labels)."""
    accuracy: float | None = None
    """Top-1 accuracy of the candidate model (None without labels)."""
    max_accuracy_drop: float | None = None
    """The allowed drop in accuracy points (None = not judged)."""

    @property
    def accuracy_drop(self) -> float | None:
        """Float minus candidate accuracy, in percentage points (positive = worse)."""
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return 100.0 * (self.reference_accuracy - self.accuracy)

    @property
    def passed(self) -> bool:
        """Whether the drop is within ``max_accuracy_drop`` (True when not judged)."""
        drop = self.accuracy_drop
        return self.max_accuracy_drop is None or drop is None or drop <= self.max_accuracy_drop

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop": self.accuracy_drop, "passed": self.passed}


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_onnx` wrote."""

    source: Path
    path: Path
    method: Method
    """The method that produced ``path`` (``dynamic`` after a fallback)."""
    source_bytes: int
    bytes: int
    per_channel: bool
    quantized_ops: dict[str, int]
    """Count of each quantisation operator in the output graph (QuantizeLinear, ...)."""
    calibration_batches: int = 0
    calibration_samples: int = 0
    check: AccuracyCheck | None = None
    fallback_reason: str | None = None
    """Why static quantisation was abandoned for dynamic (None = no fallback)."""
    notes: list[str] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        """Output size / input size (0.27 = the INT8 file is 27% of the float one)."""
        return self.bytes / self.source_bytes if self.source_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(source=str(self.source), path=str(self.path), size_ratio=self.size_ratio,
                    check=self.check.to_dict() if self.check else None)
        return data


# --- checks --------------------------------------------------------------------------------

def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _split_test(test: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(test, tuple | list) and len(test) == 2:
        x, y = test
        return np.asarray(x), (None if y is None else np.asarray(y).reshape(-1))
    if isinstance(test, np.ndarray):
        return test, None
    raise ConfigError("test data must be an array of inputs or an (inputs, labels) pair, "
                      f"got {type(test).__name__}")


def check_accuracy(reference: str | Path, candidate: str | Path, test: Any, *,
                   input_name: str | None = None, max_accuracy_drop: float | None = None,
                   batch_size: int = 256, threads: int | None = None) -> AccuracyCheck:
    """Compare ``candidate`` with ``reference`` (ONNX files) on ``test``: inputs, or an
    ``(inputs, labels)`` pair for accuracies. ``max_accuracy_drop`` is in percentage points."""
    x, y = _split_test(test)
    if len(x) == 0:
        raise ConfigError("test data is empty: give at least one input")
    if y is not None and len(y) != len(x):
        raise ConfigError(f"test data has {len(x)} inputs but {len(y)} labels")
    ref = onnx_predict(reference, x, batch_size=batch_size, input_name=input_name,
                       threads=threads)
    got = onnx_predict(candidate, x, batch_size=batch_size, input_name=input_name,
                       threads=threads)
    if ref.shape != got.shape:
        raise ExportError(f"the quantised model's output has shape {list(got.shape)}, the "
                          f"float model's {list(ref.shape)}")
    record: dict[str, Any] = {"samples": len(x),
                              "max_abs_diff": float(np.max(np.abs(ref - got))),
                              "max_accuracy_drop": max_accuracy_drop}
    if ref.ndim == 2 and ref.shape[1] > 1:
        ref_top, got_top = ref.argmax(1), got.argmax(1)
        record["agreement"] = float(np.mean(ref_top == got_top))
        if y is not None:
            record["reference_accuracy"] = float(np.mean(ref_top == y))
            record["accuracy"] = float(np.mean(got_top == y))
    else:
        record["agreement"] = float(np.mean(np.isclose(ref, got, rtol=1e-2, atol=1e-2)))
    return AccuracyCheck(**record)


def _count_ops(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        if node.op_type in _QDQ_OPS + _DYNAMIC_OPS or node.op_type.startswith("QLinear"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


# --- quantisation --------------------------------------------------------------------------

def _calibrate_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod as ORTMethod

    return {"minmax": ORTMethod.MinMax, "entropy": ORTMethod.Entropy,
            "percentile": ORTMethod.Percentile}[name]


def _static(src: Path, dst: Path, reader: ArrayCalibrationReader, *, per_channel: bool,
            op_types: Sequence[str] | None, calibration_method: CalibrationMethod,
            exclude: Sequence[str] | None) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude) if exclude else None,
        calibrate_method=_calibrate_method(calibration_method),
        extra_options={"CalibMovingAverage": calibration_method == "minmax"},
    )


def _dynamic(src: Path, dst: Path, *, per_channel: bool, op_types: Sequence[str] | None,
             exclude: Sequence[str] | None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(op_types or DYNAMIC_OP_TYPES),
                     per_channel=per_channel, weight_type=QuantType.QInt8,
                     nodes_to_exclude=list(exclude) if exclude else None)


def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    *,
    method: Method = "static",
    calibration: np.ndarray | Iterable[np.ndarray | Mapping[str, np.ndarray]] | None = None,
    calibration_batch_size: int = 32,
    calibration_batches: int | None = 16,
    calibration_method: CalibrationMethod = "minmax",
    per_channel: bool = True,
    op_types: Sequence[str] | None = None,
    exclude_nodes: Sequence[str] | None = None,
    preprocess: bool = True,
    fallback: bool = True,
    test: Any = None,
    max_accuracy_drop: float | None = None,
    input_name: str | None = None,
) -> QuantizeResult:
    """Write an INT8 copy of the float ONNX model ``src`` to ``dst``.

    ``calibration`` (static only, required there): sample inputs, float32 ``[N, ...]`` as the
    model takes them (already normalised), cut into ``calibration_batches`` batches of
    ``calibration_batch_size`` (``None`` = all of them); or an iterable of batches / feeds.
    A few hundred training images are plenty for min-max ranges. ``calibration_method``:
    ``minmax`` (with a moving average over batches), ``entropy`` or ``percentile`` (slower,
    clip outliers). ``per_channel``: one weight scale per output channel. ``op_types``:
    operators to quantise (default: all ORT supports for static, ``MatMul``/``Gemm`` for
    dynamic); ``exclude_nodes``: node names to keep in float. ``preprocess``: run ORT's
    ``quant_pre_process`` first (recommended). ``fallback``: when static quantisation raises,
    quantise dynamically instead and say why in ``fallback_reason``.

    ``test``: inputs or ``(inputs, labels)`` to compare the INT8 model with ``src`` on (see
    :func:`check_accuracy`); ``max_accuracy_drop`` (points) sets ``check.passed``.
    """
    src, dst = Path(src), Path(dst)
    if method not in ("static", "dynamic"):
        raise ConfigError(f"method must be 'static' or 'dynamic', got {method!r}")
    if calibration_method not in ("minmax", "entropy", "percentile"):
        raise ConfigError("calibration_method must be 'minmax', 'entropy' or 'percentile', "
                          f"got {calibration_method!r}")
    if not src.is_file():
        raise ConfigError(f"model {str(src)!r} does not exist: give the float ONNX file "
                          "(a run's model.onnx)")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"dst {str(dst)!r} is the source model: write the INT8 model to "
                          "another file (e.g. model.int8.onnx)")
    if max_accuracy_drop is not None and (isinstance(max_accuracy_drop, bool)
                                          or not 0 <= max_accuracy_drop <= 100):
        raise ConfigError("max_accuracy_drop must be a number of points in [0, 100], got "
                          f"{max_accuracy_drop!r}")
    _check_int("calibration_batch_size", calibration_batch_size, 1)
    if calibration_batches is not None:
        _check_int("calibration_batches", calibration_batches, 1)
    session = ort_session(src)
    name = _input_name(session, input_name)
    reader: ArrayCalibrationReader | None = None
    if method == "static":
        if calibration is None:
            raise ConfigError("method='static' needs calibration= sample inputs (e.g. a few "
                              "hundred training images as float32 [N, C, H, W]); or use "
                              "method='dynamic'")
        reader = ArrayCalibrationReader(calibration, name, batch_size=calibration_batch_size,
                                        max_batches=calibration_batches)
    dst.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    used: Method = method
    fallback_reason: str | None = None
    with tempfile.TemporaryDirectory(prefix="shipyard-quant-") as tmp:
        model = src
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            model = Path(tmp) / "preprocessed.onnx"
            try:
                quant_pre_process(str(src), str(model))
            except Exception as exc:  # shape inference can fail on exotic graphs
                notes.append(f"quant_pre_process failed ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); quantised the model as it is")
                model = src
        if method == "static":
            assert reader is not None
            try:
                _static(model, dst, reader, per_channel=per_channel, op_types=op_types,
                        calibration_method=calibration_method, exclude=exclude_nodes)
                if reader.batches_fed == 0:
                    raise ConfigError("the calibration data gave no batches: give at least "
                                      "one sample input")
            except ConfigError:
                raise
            except Exception as exc:
                if not fallback:
                    raise ExportError(f"static quantisation of {str(src)!r} failed: "
                                      f"{type(exc).__name__}: {str(exc)[:300]}; try "
                                      "method='dynamic'") from exc
                fallback_reason = f"static failed: {type(exc).__name__}: {str(exc)[:300]}"
                used = "dynamic"
        if used == "dynamic":
            try:
                _dynamic(model, dst, per_channel=per_channel,
                         op_types=None if method == "static" else op_types,
                         exclude=exclude_nodes)
            except Exception as exc:
                raise ExportError(f"dynamic quantisation of {str(src)!r} failed: "
                                  f"{type(exc).__name__}: {str(exc)[:300]}") from exc
    ops = _count_ops(dst)
    if not ops:
        notes.append("no operator was quantised: the graph has none of the quantisable "
                     f"types ({', '.join(op_types or DYNAMIC_OP_TYPES)} for dynamic)")
    check = None
    if test is not None:
        check = check_accuracy(src, dst, test, input_name=name,
                               max_accuracy_drop=max_accuracy_drop)
    return QuantizeResult(
        source=src, path=dst, method=used, source_bytes=src.stat().st_size,
        bytes=dst.stat().st_size, per_channel=per_channel, quantized_ops=ops,
        calibration_batches=reader.batches_fed if reader and used == "static" else 0,
        calibration_samples=reader.samples_fed if reader and used == "static" else 0,
        check=check, fallback_reason=fallback_reason, notes=notes)
