"""PMML models scored by the JPMML reference evaluator (``jpmml_evaluator`` on the JVM, through
JPype).

A PMML model is field-wise: every active field of its MiningSchema is one V2 input of shape
``[-1, 1]`` (one value per row: Triton's ``dims: [1]``, so the model batches and perf_analyzer's
``-b N`` shapes it), its datatype taken from the DataDictionary; the outputs are the target
field(s) and the declared OutputFields under their own names, also ``[-1, 1]``. A request may
send a field as ``[n]`` too (:attr:`Runtime.fieldwise`; the shape this runtime first had), and
``predict`` takes both. Missing values: NaN in a
floating-point input and None in a BYTES input (a JSON ``null`` over REST) reach the evaluator
as missing.

The JVM starts once per process, at the first PMML model load, and is shared by every PMML
model; ``jpype`` and ``jpmml_evaluator`` are imported only then. JPype attaches the server's
worker threads to the JVM on their first call (as daemon threads) and releases the GIL while
Java runs.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shipyard.serving.errors import InferenceFailed, InvalidInput, ShipyardError
from shipyard.serving.runtimes.base import Runtime
from shipyard.serving.types import Array, TensorSpec

__all__ = ["PmmlOptions", "PmmlRuntime"]


#: PMML dataType -> V2 datatype (dates and times travel as strings, which JPMML parses)
_PMML_TO_V2 = {
    "double": "FP64",
    "float": "FP32",
    "integer": "INT64",
    "string": "BYTES",
    "boolean": "BOOL",
}
_V2_DTYPE = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "BOOL": np.bool_}

_JAVA_HINT = "install a Java runtime, e.g. apt-get install default-jre-headless"
_EXTRA_HINT = "pip install 'shipyard[pmml]'"
_UTIL = "org.jpmml.evaluator.python.PythonEvaluatorUtil"


class PmmlOptions(BaseModel):
    """``parameters`` of a ``backend: pmml`` model."""

    model_config = ConfigDict(extra="forbid")

    parallelism: int = Field(1, ge=-1)
    """Java threads scoring the rows of one batch: 1 = the calling thread (best under
    concurrent load, where the server already runs batches side by side), -1 = the JVM's
    common pool, N = a pool of N threads per batch."""
    lax: bool = False
    """Skip JPMML's schema sanity checks when loading (for files from sloppy producers)."""


class _Jvm:
    """The process's one JVM and the Java classes the runtime calls; started once, lazily."""

    lock = threading.Lock()
    started: _Jvm | None = None

    def __init__(self) -> None:
        import jpype
        from jpmml_evaluator.jpype import JPypeBackend

        self.jpype = jpype
        self.backend = JPypeBackend()  # starts the JVM with the evaluator's class path
        self.util = jpype.JClass(_UTIL)
        self.value_errors: tuple[type[BaseException], ...] = (
            jpype.JClass("org.jpmml.evaluator.ValueCheckException"),
            jpype.JClass("org.jpmml.evaluator.TypeCheckException"),
        )

    @classmethod
    def get(cls, model: str) -> _Jvm:
        with cls.lock:
            if cls.started is None:
                cls.started = cls._start(model)
            return cls.started

    @classmethod
    def _start(cls, model: str) -> _Jvm:
        try:
            import jpmml_evaluator  # noqa: F401 - its absence is the error to report
            import jpype
        except ImportError as exc:
            raise InvalidInput(
                f"model {model!r}: the pmml backend needs the jpmml_evaluator package "
                f"({exc.name or exc} is not installed); {_EXTRA_HINT}"
            ) from exc
        try:
            return cls()
        except (jpype.JVMNotFoundException, jpype.JVMNotSupportedException) as exc:
            raise InvalidInput(
                f"model {model!r}: the pmml backend runs on Java and found no usable Java "
                f"runtime ({exc}); {_JAVA_HINT}"
            ) from exc


def _v2(data_type: str) -> str:
    return _PMML_TO_V2.get(data_type, "BYTES")


class PmmlRuntime(Runtime):
    """One JPMML ``Evaluator`` over a PMML 4.x document."""

    backend = "pmml"
    filenames = ("model.pmml",)
    platform = "pmml"
    triton_backend = "pmml"
    extra = "pmml"
    missing_values = True
    fieldwise = True
    #: filled in when the JVM starts (its exception classes exist only then): bad input values
    #: (ValueCheckException, TypeCheckException; their message names the field) are InvalidInput
    error_map: ClassVar[Sequence[tuple[type[BaseException], type[ShipyardError]]]] = ()

    _jvm: _Jvm | None = None
    _evaluator: Any = None

    def load(self) -> None:
        opts: PmmlOptions = self.options(PmmlOptions)
        self._parallelism = opts.parallelism
        jvm = _Jvm.get(self.config.name)
        if not PmmlRuntime.error_map:
            PmmlRuntime.error_map = tuple((cls, InvalidInput) for cls in jvm.value_errors)
        from jpmml_evaluator import make_evaluator

        try:
            evaluator = make_evaluator(str(self.path), backend=jvm.backend, lax=opts.lax)
            evaluator.verify()
            java = evaluator.javaEvaluator
            inputs = [(str(f.getName()), str(f.getDataType().value()))
                      for f in java.getInputFields()]
            results = [(f.getName(), str(f.getDataType().value()))
                       for f in (*java.getTargetFields(), *java.getOutputFields())]
        except Exception as exc:  # JPMML's markup errors, XML errors, I/O errors
            raise InvalidInput(
                f"model {self.config.name!r}: cannot load {str(self.path)!r} as PMML: {exc}"
            ) from exc
        # a model without a named target (e.g. only OutputFields) has a synthetic one: skip it
        outputs = [(str(name), dt) for name, dt in results if name is not None]
        if not inputs or not outputs:
            raise InvalidInput(
                f"model {self.config.name!r}: {str(self.path)!r} has "
                f"{'no active input fields' if not inputs else 'no target or output fields'}; "
                "Shipyard serves PMML models with both"
            )
        self._jvm, self._evaluator = jvm, java
        self._inputs = [TensorSpec(name, _v2(dt), (-1, 1)) for name, dt in inputs]
        self._outputs = [TensorSpec(name, _v2(dt), (-1, 1)) for name, dt in outputs]

    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        jvm, java = self._jvm, self._evaluator
        assert jvm is not None and java is not None, "predict() before load()"
        rows = -1
        columns, data = [], []
        for spec in self._inputs:
            array = inputs[spec.name]
            if (array.ndim not in (1, 2) or array.shape[1:] not in ((), (1,))
                    or (rows >= 0 and array.shape[0] != rows)):
                raise InvalidInput(
                    f"model {self.config.name!r}: input {spec.name!r} has shape "
                    f"{list(array.shape)}; every input of a PMML model is one value per row, "
                    f"shape [rows, 1] (or [rows]) with the same rows for all "
                    f"({rows if rows >= 0 else 'n'})"
                )
            rows = array.shape[0]
            columns.append(spec.name)
            data.append(_column(array.reshape(-1)))
        blob = pickle.dumps({"columns": columns, "data": data}, protocol=2)
        got = pickle.loads(bytes(jvm.util.evaluateAll(java, blob, None, self._parallelism)))
        if got["errors"] is not None:
            self._raise_first_error(got["errors"], columns, data)
        by_name = dict(zip(got["columns"], got["data"], strict=True))
        specs = {s.name: s for s in self._outputs}
        return [_array(by_name[name], specs[name].datatype).reshape(-1, 1) for name in outputs]

    def _raise_first_error(self, errors: list[Any], columns: list[str],
                           data: list[list[Any]]) -> None:
        """Score the first failing row alone, so that its Java exception is raised as its own
        class (the batch call reports errors as text only) and translated by class."""
        assert self._jvm is not None
        row = next(i for i, e in enumerate(errors) if e is not None)
        arguments = {c: d[row] for c, d in zip(columns, data, strict=True)}
        try:
            self._jvm.util.evaluate(self._evaluator, pickle.dumps(arguments, protocol=2), None)
        except Exception as exc:
            error = self.translate(exc)
            error.message = f"{error.message} (row {row})"
            raise error from exc
        raise InferenceFailed(  # pragma: no cover - the row fails alone as in the batch
            f"model {self.config.name!r}: pmml runtime: row {row} failed in the batch "
            f"({errors[row]}) but not alone")

    def translate(self, exc: BaseException) -> ShipyardError:
        """As :meth:`Runtime.translate`; a Java exception's text already names its class."""
        error = super().translate(exc)
        if (self._jvm is not None and isinstance(exc, self._jvm.jpype.JException)
                and isinstance(error, InferenceFailed)):
            return InferenceFailed(f"model {self.config.name!r}: pmml runtime failed: {exc}")
        return error

    def unload(self) -> None:
        self._evaluator = None


def _column(array: Array) -> list[Any]:
    """A column as Python values; NaN and None are missing (None for the evaluator)."""
    values: list[Any] = array.tolist()
    if array.dtype.kind == "f":
        if np.isnan(array).any():
            values = [None if v != v else v for v in values]
    elif array.dtype.kind == "O":
        values = [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
    return values


def _array(values: list[Any], datatype: str) -> Array:
    """A result column as the output's V2 datatype: a missing result is NaN in floating-point
    outputs and "" in BYTES ones."""
    if datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        out[:] = ["" if v is None else v if isinstance(v, str) else str(v) for v in values]
        return out
    if None in values and datatype in ("FP64", "FP32"):
        values = [np.nan if v is None else v for v in values]
    return np.asarray(values, dtype=_V2_DTYPE[datatype])
