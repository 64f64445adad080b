"""One loaded version of one model: load, warm up, validate, infer, statistics, unload."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from shipyard.protocol.wire import decode_json_data
from shipyard.serving.batching import DynamicBatcher
from shipyard.serving.classification import classification_count, classify
from shipyard.serving.config import ModelConfig, TensorConfig
from shipyard.serving.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotReady,
    ShipyardError,
)
from shipyard.serving.pipeline import Pipeline
from shipyard.serving.runtimes import DeviceKind, Runtime, create_runtime
from shipyard.serving.stats import ModelStats
from shipyard.serving.types import (
    Array,
    InferenceRequest,
    InferenceResponse,
    Tensor,
    TensorSpec,
    numpy_dtype,
)

__all__ = ["ModelVersion"]

log = logging.getLogger("shipyard.model")


#: max_batch_size given to models whose config leaves it out but whose graph can batch
AUTO_MAX_BATCH_SIZE = 32


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class ModelVersion:
    """One loaded version of one model, with its batcher and statistics."""

    def __init__(
        self, name: str, version: int, path: Path, config: ModelConfig,
        signature: Hashable = None,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.config = config
        #: what the files looked like when loaded (the lifecycle reloads when it changes)
        self.signature = signature
        self.state = "UNAVAILABLE"
        self.reason = "not loaded"
        self.stats = ModelStats()
        self.max_batch_size = 0
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._input_by_name: dict[str, TensorSpec] = {}
        self._output_names: list[str] = []
        self._runtime: Runtime | None = None
        #: BYTES inputs are decoded to str for the runtime (see Runtime.text_inputs) as they
        #: arrive (_text_inputs) or after the preprocess steps (_runtime_text)
        self._text_inputs = True
        self._runtime_text = True
        #: the declared preprocess / postprocess steps (None when there are none)
        self.pipeline: Pipeline | None = None
        #: JSON nulls reach the runtime as missing values (see Runtime.missing_values)
        self._missing_values = False
        #: inputs of shape [-1, 1] may come as [n], answered as [n] (see Runtime.fieldwise)
        self._fieldwise = False
        #: the runtime class, its model file and device, once known (kept after unloading)
        self.runtime_type: type[Runtime] | None = None
        self.model_file: Path | None = None
        self.device_kind: DeviceKind = "KIND_CPU"
        self.batcher: DynamicBatcher | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model file (blocking: call it off the event loop). Never raises; a failure
        leaves the version UNAVAILABLE with ``reason``."""
        self.state, self.reason = "LOADING", ""
        try:
            if not self.path.is_dir():
                raise InvalidInput(
                    f"model {self.name!r} version {self.version}: folder {str(self.path)!r} "
                    "not found"
                )
            runtime = create_runtime(self.path, self.config)
            self.runtime_type, self.model_file = type(runtime), runtime.path
            self._runtime_text = runtime.text_inputs
            # a pipeline's steps take bytes; its output reaches the runtime as it wants it
            self._text_inputs = runtime.text_inputs and not self.config.preprocess
            self._missing_values = runtime.missing_values and not self.config.preprocess
            self._fieldwise = runtime.fieldwise and not (self.config.preprocess
                                                         or self.config.postprocess)
            runtime.load()
            self.device_kind = runtime.device_kind
            graph_inputs, graph_outputs = runtime.metadata()
            self._resolve(graph_inputs, graph_outputs)
            self._runtime = runtime
            self._warm_up()
        except ShipyardError as exc:
            self.state, self.reason = "UNAVAILABLE", exc.message
            log.error("failed to load %s version %s: %s", self.name, self.version, exc.message)
            return
        except Exception as exc:  # a broken model must never take the server down
            self.state, self.reason = "UNAVAILABLE", f"unexpected load error: {exc!r}"
            log.exception("failed to load %s version %s", self.name, self.version)
            return
        batching = self.config.dynamic_batching
        self.batcher = DynamicBatcher(
            self._run,
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=batching.max_queue_delay_us,
            preferred_batch_sizes=batching.preferred_batch_sizes,
            max_queue_size=batching.max_queue_size,
            instances=self.config.instances,
            observer=self.stats,
            name=self.name,
            prepare=self._prepare if self.pipeline is not None and self.pipeline.pre else None,
        )
        self.state, self.reason = "READY", ""
        log.info(
            "loaded %s version %s (max_batch_size %d, inputs %s)",
            self.name, self.version, self.max_batch_size,
            ", ".join(f"{s.name}:{s.datatype}{_fmt(s.shape)}" for s in self.inputs),
        )

    def _warm_up(self) -> None:
        """Run one request before serving: the config's warm-up inputs, or zeros shaped from
        the metadata (dynamic dimensions = 1); then the same rows repeated up to each of the
        runtime's :meth:`~Runtime.warmup_batch_sizes`. A model that cannot run is not served."""
        warmup = self.config.warmup
        if not warmup.enabled:
            return
        pipeline = self.pipeline
        # a pipeline's own inputs (an image, a text) have no neutral value: without declared
        # warm-up inputs, the model itself is warmed with zeros (and the postprocess steps)
        through_steps = pipeline is not None and bool(pipeline.pre) and bool(warmup.inputs)
        specs = (pipeline.inner_inputs if pipeline is not None and not through_steps
                 else self.inputs)
        text = self._runtime_text and not through_steps  # the steps take the bytes themselves
        inputs: dict[str, Array] = {}
        for spec in specs:
            given = warmup.inputs.get(spec.name)
            if given is not None:
                shape = tuple(given.shape)
                data = decode_json_data(spec.name, spec.datatype, shape, given.data)
            else:
                shape = tuple(1 if d < 0 else d for d in spec.shape)
                # a runtime that takes missing values (PMML) gets them: zero and "" are often
                # no valid value of a field, a missing value is one
                if spec.datatype == "BYTES":
                    data = np.full(shape, None if self._missing_values else b"", dtype=object)
                elif self._missing_values and spec.datatype in ("FP16", "FP32", "FP64"):
                    data = np.full(shape, np.nan, dtype=numpy_dtype(spec.datatype))
                else:
                    data = np.zeros(shape, dtype=numpy_dtype(spec.datatype))
            inputs[spec.name] = (
                _as_text(Tensor(spec.name, spec.datatype, shape, data))
                if spec.datatype == "BYTES" and text else data
            )
        unknown = set(warmup.inputs) - set(inputs)
        if unknown:
            raise InvalidInput(
                f"model {self.name!r}: warmup.inputs names {sorted(unknown)}, which the model "
                f"does not have; its inputs are {list(inputs)}"
            )
        runs = [self._prepare(inputs) if through_steps else inputs]
        if self.max_batch_size > 0 and inputs:
            # the runtime's batch sizes too (those it compiles or captures per shape): the
            # warm-up rows repeated up to each size
            rows = next(iter(runs[0].values())).shape[0]
            assert self._runtime is not None
            for size in sorted(set(self._runtime.warmup_batch_sizes())):
                if size != rows and 1 <= size <= self.max_batch_size:
                    runs.append({k: np.take(v, np.arange(size) % v.shape[0], axis=0)
                                 for k, v in runs[0].items()})
        for run in runs:
            try:
                self._run(run)
            except ShipyardError as exc:
                rows = next(iter(run.values())).shape[0] if run else 0
                raise InvalidInput(f"model {self.name!r}: warm-up request failed (batch of "
                                   f"{rows}): {exc.message}") from exc

    def _resolve(self, graph_in: list[TensorSpec], graph_out: list[TensorSpec]) -> None:
        cfg = self.config
        if cfg.max_batch_size is None:
            can_batch = bool(graph_in) and all(s.shape and s.shape[0] == -1 for s in graph_in)
            self.max_batch_size = AUTO_MAX_BATCH_SIZE if can_batch else 0
        else:
            self.max_batch_size = cfg.max_batch_size
        if self.max_batch_size > 0:
            for spec in graph_in:
                if not spec.shape or spec.shape[0] not in (-1,):
                    raise InvalidInput(
                        f"model {self.name!r}: max_batch_size is {self.max_batch_size} but input "
                        f"{spec.name!r} has shape {_fmt(spec.shape)} with no dynamic first "
                        "(batch) dimension; set max_batch_size: 0 in config.yaml"
                    )
        # with steps, config.yaml's inputs/outputs describe the pipeline's, not the file's
        inner_in = graph_in if cfg.preprocess else self._merge(graph_in, cfg.inputs, "input")
        inner_out = graph_out if cfg.postprocess else self._merge(graph_out, cfg.outputs,
                                                                  "output")
        self.inputs, self.outputs = inner_in, inner_out
        if cfg.preprocess or cfg.postprocess:
            self.pipeline = Pipeline(cfg, self.path, inner_in, inner_out)
            self.inputs, self.outputs = self.pipeline.inputs, self.pipeline.outputs
        self._input_by_name = {s.name: s for s in self.inputs}
        self._output_names = [s.name for s in inner_out]
        names = [s.name for s in self.outputs]
        for out_name in cfg.labels:
            if out_name not in names:
                raise InvalidInput(
                    f"model {self.name!r}: labels given for output {out_name!r}, which the model "
                    f"does not have; its outputs are {names}"
                )

    def _merge(
        self, graph: list[TensorSpec], declared: Sequence[TensorConfig] | None, kind: str
    ) -> list[TensorSpec]:
        if declared is None:
            return graph
        by_name = {s.name: s for s in graph}
        names = {d.name for d in declared}
        if names != set(by_name):
            raise InvalidInput(
                f"model {self.name!r}: config.yaml declares {kind}s {sorted(names)} but the model "
                f"file has {sorted(by_name)}; fix the names or leave {kind}s out of config.yaml"
            )
        merged = []
        for d in declared:
            g = by_name[d.name]
            if d.datatype != g.datatype:
                raise InvalidInput(
                    f"model {self.name!r}: config.yaml declares {kind} {d.name!r} as "
                    f"{d.datatype} but the model file says {g.datatype}"
                )
            shape = tuple(d.shape)
            if self.max_batch_size > 0:
                shape = (-1, *shape)
            merged.append(TensorSpec(d.name, d.datatype, shape))
        return merged

    def unload(self) -> None:
        """Release the runtime and threads (call once the batcher has drained)."""
        if self.batcher is not None:
            self.batcher.stop()
        if self._runtime is not None:
            self._runtime.unload()
        self._runtime = None
        self.state, self.reason = "UNAVAILABLE", "unloaded"

    @property
    def platform(self) -> str:
        """Triton's platform string of the runtime ("" until known)."""
        if self.runtime_type is None:
            return ""
        if self.model_file is None:
            return self.runtime_type.platform
        return self.runtime_type.platform_for(self.model_file.name)

    @property
    def triton_backend(self) -> str:
        """Triton's backend string of the runtime ("" until known)."""
        return self.runtime_type.triton_backend if self.runtime_type is not None else ""

    @property
    def runtime(self) -> Runtime | None:
        """The loaded runtime (None until loaded and after unloading)."""
        return self._runtime

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    # -- inference ----------------------------------------------------------------------------

    def _prepare(self, inputs: dict[str, Array]) -> dict[str, Array]:
        """One request through the preprocess steps (in a worker thread)."""
        assert self.pipeline is not None
        made = self.pipeline.prepare(inputs)
        if self._runtime_text:
            made = {k: _as_text(Tensor(k, "BYTES", v.shape, v)) if v.dtype == object else v
                    for k, v in made.items()}
        return made

    def _run(self, inputs: dict[str, Array]) -> dict[str, Array]:
        assert self._runtime is not None
        arrays = self._runtime.run(inputs, self._output_names)
        if len(arrays) != len(self._output_names):
            raise InferenceFailed(
                f"model {self.name!r}: the runtime returned {len(arrays)} outputs for the "
                f"{len(self._output_names)} asked for ({self._output_names})"
            )
        if self.max_batch_size > 0:  # the batcher slices outputs by row: they must be batched
            rows = next(iter(inputs.values())).shape[0] if inputs else 0
            for name, array in zip(self._output_names, arrays, strict=True):
                if array.ndim == 0 or array.shape[0] != rows:
                    raise InferenceFailed(
                        f"model {self.name!r}: output {name!r} has shape "
                        f"{_fmt(array.shape)} for a batch of {rows} rows; its first dimension "
                        "must be the batch. Set max_batch_size: 0 in config.yaml for a model "
                        "whose outputs are not batched"
                    )
        outputs = dict(zip(self._output_names, arrays, strict=True))
        return self.pipeline.finish(outputs) if self.pipeline is not None else outputs

    def validate(self, request: InferenceRequest) -> tuple[dict[str, Array], int, Hashable]:
        """Check inputs against the model; return (arrays by name, batch rows, batch key)."""
        model = self.name
        given: dict[str, Array] = {}
        rows = 1
        key: list[tuple[str, tuple[int, ...]]] = []
        for tensor in request.inputs:
            if tensor.null_refusal is not None and not self._missing_values:
                raise InvalidInput(tensor.null_refusal)
            spec = self._input_by_name.get(tensor.name)
            if spec is None:
                raise InvalidInput(
                    f"model {model!r} has no input {tensor.name!r}; its inputs are "
                    f"{list(self._input_by_name)}"
                )
            if tensor.name in given:
                raise InvalidInput(f"input {tensor.name!r} of model {model!r} is given twice")
            if tensor.datatype != spec.datatype:
                raise InvalidInput(
                    f"input {tensor.name!r} of model {model!r} expects datatype {spec.datatype}, "
                    f"got {tensor.datatype}"
                )
            shape = tensor.shape
            # a field's values as [n], for an input of shape [-1, 1] (see Runtime.fieldwise)
            column = self._fieldwise and len(shape) == 1 and spec.shape == (-1, 1)
            if column:
                shape = (shape[0], 1)
            if len(shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
            ):
                raise InvalidInput(
                    f"input {tensor.name!r} of model {model!r} expects shape "
                    f"{_fmt(spec.shape)}, got {_fmt(shape)}"
                )
            if self.max_batch_size > 0:
                n = shape[0]
                if n < 1 or n > self.max_batch_size:
                    raise InvalidInput(
                        f"input {tensor.name!r} of model {model!r}: batch size {n} is outside "
                        f"1..{self.max_batch_size} (max_batch_size); split the request"
                    )
                if given and n != rows:
                    raise InvalidInput(
                        f"input {tensor.name!r} of model {model!r} has batch size {n} but the "
                        f"other inputs have {rows}; all inputs need the same first dimension"
                    )
                rows = n
                key.append((tensor.name, shape[1:]))
            data = (
                _as_text(tensor) if tensor.datatype == "BYTES" and self._text_inputs
                else tensor.data
            )
            given[tensor.name] = data.reshape(shape) if column else data
        if len(given) != len(self._input_by_name):
            missing = [n for n in self._input_by_name if n not in given]
            raise InvalidInput(
                f"model {model!r} is missing input(s) {missing}; expected inputs "
                f"{list(self._input_by_name)}"
            )
        return given, rows, tuple(key)

    def _requested(self, request: InferenceRequest) -> list[tuple[TensorSpec, int | None]]:
        """The outputs to answer with, each with its classification count (None: plain)."""
        if request.outputs is None or not request.outputs:
            return [(spec, None) for spec in self.outputs]
        by_name = {s.name: s for s in self.outputs}
        picked = []
        for out in request.outputs:
            spec = by_name.get(out.name)
            if spec is None:
                raise InvalidInput(
                    f"model {self.name!r} has no output {out.name!r}; its outputs are "
                    f"{list(by_name)}"
                )
            k = classification_count(self.name, out.name, out.parameters) \
                if out.parameters else None
            picked.append((spec, k))
        return picked

    def answer(self, wanted: list[tuple[TensorSpec, int | None]], result: dict[str, Array]
               ) -> list[Tensor]:
        """The response tensors: the wanted outputs, classified where asked."""
        tensors = []
        for spec, k in wanted:
            data = result[spec.name]
            if k is None:
                tensors.append(Tensor(spec.name, spec.datatype, tuple(data.shape), data))
                continue
            data = classify(self.name, spec.name, data, k, self.config.labels.get(spec.name),
                            batched=self.max_batch_size > 0)
            tensors.append(Tensor(spec.name, "BYTES", tuple(data.shape), data))
        return tensors

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        """Validate, queue, run and answer one request."""
        start = time.perf_counter_ns()
        try:
            if self.batcher is None or self.state != "READY":
                raise ModelNotReady(
                    f"model {self.name!r} version {self.version} is not ready ({self.state}"
                    f"{': ' + self.reason if self.reason else ''})"
                )
            inputs, rows, key = self.validate(request)
            wanted = self._requested(request)
            deadline = request.deadline_ns
            if deadline is None and self.config.default_timeout_ms is not None:
                deadline = time.monotonic_ns() + self.config.default_timeout_ms * 1_000_000
            result = await self.batcher.submit(inputs, rows, key, deadline)
            outputs = self.answer(wanted, result)
            if self._fieldwise and all(len(t.shape) == 1 for t in request.inputs):
                outputs = [_column_as_vector(t) for t in outputs]
        except ShipyardError as exc:
            self.stats.on_request(False, time.perf_counter_ns() - start, exc.code.value)
            raise
        self.stats.on_request(True, time.perf_counter_ns() - start)
        return InferenceResponse(self.name, str(self.version), outputs, request.id)


def _column_as_vector(tensor: Tensor) -> Tensor:
    """An output of shape [n, 1] as [n], for a request that sent its fields as [n]."""
    if len(tensor.shape) != 2 or tensor.shape[1] != 1:
        return tensor
    return Tensor(tensor.name, tensor.datatype, tensor.shape[:1], tensor.data.reshape(-1),
                  tensor.parameters)


def _as_text(tensor: Tensor) -> Array:
    """BYTES elements as str (what ONNX Runtime's string tensors take), checked per request
    so that one bad request never fails the others of its batch."""
    flat = tensor.data.reshape(-1)
    out = np.empty(flat.shape[0], dtype=object)
    for i, value in enumerate(flat):
        if isinstance(value, bytes):
            try:
                out[i] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"input {tensor.name!r}: element {i} is not valid UTF-8 ({exc.reason} at "
                    f"byte {exc.start}); this model takes text"
                ) from exc
        else:
            out[i] = value
    return out.reshape(tensor.data.shape)
