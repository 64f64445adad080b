"""Live model versions: load, validate, infer, statistics, unload."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shipyard.serving.batching import DynamicBatcher
from shipyard.serving.config import ModelConfig, TensorConfig
from shipyard.serving.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ShipyardError,
)
from shipyard.serving.repository import ModelEntry, scan_repository
from shipyard.serving.runtimes import Runtime, create_runtime
from shipyard.serving.stats import ModelStats
from shipyard.serving.types import (
    InferenceRequest,
    InferenceResponse,
    Tensor,
    TensorSpec,
)

__all__ = ["ModelRegistry", "ModelVersion"]

log = logging.getLogger("shipyard.registry")

Array = npt.NDArray[Any]

#: max_batch_size given to models whose config leaves it out but whose graph can batch
AUTO_MAX_BATCH_SIZE = 32


def _fmt(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class ModelVersion:
    """One loaded version of one model, with its batcher and statistics."""

    def __init__(self, name: str, version: int, path: Path, config: ModelConfig) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.config = config
        self.state = "UNAVAILABLE"
        self.reason = "not loaded"
        self.stats = ModelStats()
        self.max_batch_size = 0
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._input_by_name: dict[str, TensorSpec] = {}
        self._output_names: list[str] = []
        self._runtime: Runtime | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batcher: DynamicBatcher | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model file (blocking: call it off the event loop). Never raises; a failure
        leaves the version UNAVAILABLE with ``reason``."""
        self.state, self.reason = "LOADING", ""
        try:
            if not self.path.is_file():
                raise InvalidInput(
                    f"model {self.name!r} version {self.version}: file {str(self.path)!r} "
                    "not found; put the model file there or set default_model_filename"
                )
            runtime = create_runtime(self.path, self.config)
            runtime.load()
            graph_inputs, graph_outputs = runtime.metadata()
            self._resolve(graph_inputs, graph_outputs)
            self._runtime = runtime
        except ShipyardError as exc:
            self.state, self.reason = "UNAVAILABLE", exc.message
            log.error("failed to load %s version %s: %s", self.name, self.version, exc.message)
            return
        except Exception as exc:  # a broken model must never take the server down
            self.state, self.reason = "UNAVAILABLE", f"unexpected load error: {exc!r}"
            log.exception("failed to load %s version %s", self.name, self.version)
            return
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.instances, thread_name_prefix=f"{self.name}-v{self.version}"
        )
        batching = self.config.dynamic_batching
        self.batcher = DynamicBatcher(
            self._run,
            executor=self._executor,
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=batching.max_queue_delay_us,
            preferred_batch_sizes=batching.preferred_batch_sizes,
            max_queue_size=batching.max_queue_size,
            instances=self.config.instances,
            observer=self.stats,
            name=self.name,
        )
        self.state, self.reason = "READY", ""
        log.info(
            "loaded %s version %s (max_batch_size %d, inputs %s)",
            self.name, self.version, self.max_batch_size,
            ", ".join(f"{s.name}:{s.datatype}{_fmt(s.shape)}" for s in self.inputs),
        )

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
        self.inputs = self._merge(graph_in, cfg.inputs, "input")
        self.outputs = self._merge(graph_out, cfg.outputs, "output")
        self._input_by_name = {s.name: s for s in self.inputs}
        self._output_names = [s.name for s in self.outputs]
        for out_name in cfg.labels:
            if out_name not in self._output_names:
                raise InvalidInput(
                    f"model {self.name!r}: labels given for output {out_name!r}, which the model "
                    f"does not have; its outputs are {self._output_names}"
                )

    def _merge(
        self, graph: list[TensorSpec], declared: list[TensorConfig] | None, kind: str
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
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._runtime is not None:
            self._runtime.unload()
        self._runtime = None
        self.state, self.reason = "UNAVAILABLE", "unloaded"

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    # -- inference ----------------------------------------------------------------------------

    def _run(self, inputs: dict[str, Array]) -> dict[str, Array]:
        assert self._runtime is not None
        arrays = self._runtime.predict(inputs, self._output_names)
        return dict(zip(self._output_names, arrays, strict=True))

    def validate(self, request: InferenceRequest) -> tuple[dict[str, Array], int, Hashable]:
        """Check inputs against the model; return (arrays by name, batch rows, batch key)."""
        model = self.name
        given: dict[str, Array] = {}
        rows = 1
        key: list[tuple[str, tuple[int, ...]]] = []
        for tensor in request.inputs:
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
            given[tensor.name] = _as_text(tensor) if tensor.datatype == "BYTES" else tensor.data
        if len(given) != len(self._input_by_name):
            missing = [n for n in self._input_by_name if n not in given]
            raise InvalidInput(
                f"model {model!r} is missing input(s) {missing}; expected inputs "
                f"{list(self._input_by_name)}"
            )
        return given, rows, tuple(key)

    def _requested(self, request: InferenceRequest) -> list[TensorSpec]:
        if request.outputs is None or not request.outputs:
            return self.outputs
        by_name = {s.name: s for s in self.outputs}
        picked = []
        for out in request.outputs:
            spec = by_name.get(out.name)
            if spec is None:
                raise InvalidInput(
                    f"model {self.name!r} has no output {out.name!r}; its outputs are "
                    f"{list(by_name)}"
                )
            picked.append(spec)
        return picked

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
        except ShipyardError as exc:
            self.stats.on_request(False, time.perf_counter_ns() - start, exc.code.value)
            raise
        outputs = [
            Tensor(spec.name, spec.datatype, tuple(result[spec.name].shape), result[spec.name])
            for spec in wanted
        ]
        self.stats.on_request(True, time.perf_counter_ns() - start)
        return InferenceResponse(self.name, str(self.version), outputs, request.id)


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


class _ModelSlot:
    """A model name with its versions (newest first) or the reason it cannot serve."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.versions: dict[int, ModelVersion] = {}
        self.error = entry.error


class ModelRegistry:
    """Every model of a repository; the frontends' single entry point to inference."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._slots: dict[str, _ModelSlot] = {}
        self.loaded = False

    def load_all(self) -> None:
        """Scan the repository and load every selected version (blocking)."""
        for entry in scan_repository(self.root):
            slot = _ModelSlot(entry)
            if entry.error:
                log.error("model %s cannot be served: %s", entry.name, entry.error)
            elif entry.config is not None:
                for version, path in entry.versions.items():
                    mv = ModelVersion(entry.name, version, path, entry.config)
                    mv.load()
                    slot.versions[version] = mv
            self._slots[entry.name] = slot
        self.loaded = True

    # -- lookup -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._slots)

    def _slot(self, name: str) -> _ModelSlot:
        slot = self._slots.get(name)
        if slot is None:
            raise ModelNotFound(
                f"unknown model {name!r}; available models: {self.names()}"
            )
        return slot

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version to serve; ``""`` = the newest ready one."""
        slot = self._slot(name)
        if version:
            if not (version.isascii() and version.isdigit()) or int(version) not in slot.versions:
                raise ModelNotFound(
                    f"model {name!r} has no version {version!r}; served versions: "
                    f"{sorted(slot.versions)}"
                )
            return slot.versions[int(version)]
        for v in sorted(slot.versions, reverse=True):
            if slot.versions[v].ready:
                return slot.versions[v]
        reasons = "; ".join(
            f"version {v}: {mv.reason}" for v, mv in sorted(slot.versions.items())
        ) or (slot.error or "no versions")
        raise ModelNotReady(f"model {name!r} has no ready version ({reasons})")

    def versions(self, name: str) -> list[ModelVersion]:
        """Served versions of a model, newest first."""
        slot = self._slot(name)
        return [slot.versions[v] for v in sorted(slot.versions, reverse=True)]

    def all_versions(self) -> list[ModelVersion]:
        return [mv for name in self.names() for mv in self.versions(name)]

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            return self.get(name, version).ready
        except (ModelNotReady, ModelNotFound):
            return False

    def index(self) -> list[dict[str, str]]:
        """Triton's repository index: one row per model version (or per broken model)."""
        rows = []
        for name in self.names():
            slot = self._slots[name]
            if not slot.versions:
                rows.append({"name": name, "version": "", "state": "UNAVAILABLE",
                             "reason": slot.error or "no versions"})
            for v, mv in sorted(slot.versions.items()):
                rows.append({"name": name, "version": str(v), "state": mv.state,
                             "reason": mv.reason})
        return rows

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        return await self.get(request.model_name, request.model_version).infer(request)

    # -- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new requests everywhere (in-flight ones still finish)."""
        for mv in self.all_versions():
            if mv.batcher is not None:
                mv.batcher.close()

    async def drain(self) -> None:
        for mv in self.all_versions():
            if mv.batcher is not None:
                await mv.batcher.drain()

    def unload_all(self) -> None:
        for mv in self.all_versions():
            mv.unload()

