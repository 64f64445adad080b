"""Ensembles (Triton's ensemble scheduling): a model whose steps are other repository models.

``config.yaml``::

    backend: ensemble
    max_batch_size: 64
    inputs:  [{name: image, datatype: BYTES, shape: [-1]}]
    outputs: [{name: probabilities, datatype: FP32, shape: [10]}]
    ensemble:
      steps:
        - {model: digits_pre, inputs: {png: image}, outputs: {pixels: pixels}}
        - {model: cnn, inputs: {image: pixels}, outputs: {logits: probabilities}}

Each step names a member model, which input reads which ensemble tensor, and which output
writes which. A request runs the steps in order, each through the member's own queue, batcher
and statistics. The members' versions are resolved once, when the request arrives (before
anything runs), so a member's hot reload is picked up atomically: a request runs wholly on the
old version or wholly on the new one. A member's error reaches the caller with the member's
name and keeps its kind (400, 404, 503, ...).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput, ModelNotReady, ShipyardError
from shipyard.serving.model import AUTO_MAX_BATCH_SIZE, ModelVersion
from shipyard.serving.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
)

if TYPE_CHECKING:
    from shipyard.serving.registry import ModelRegistry

__all__ = ["EnsembleVersion", "new_version"]


def new_version(
    name: str, version: int, path: Path, config: ModelConfig, signature: Hashable,
    registry: ModelRegistry,
) -> ModelVersion:
    """The served version object for a repository entry: an ensemble or a model."""
    if config.backend == "ensemble":
        return EnsembleVersion(name, version, path, config, signature, registry=registry)
    return ModelVersion(name, version, path, config, signature)


class EnsembleVersion(ModelVersion):
    """One version of an ensemble: no runtime of its own, steps over the registry."""

    platform = "ensemble"
    triton_backend = ""

    def __init__(
        self, name: str, version: int, path: Path, config: ModelConfig,
        signature: Hashable = None, *, registry: ModelRegistry,
    ) -> None:
        super().__init__(name, version, path, config, signature)
        self.registry = registry
        self._text_inputs = False  # members decode their own inputs

    def load(self) -> None:
        """Check the wiring (tensors read before they are written, outputs never written)."""
        cfg = self.config
        assert cfg.ensemble is not None and cfg.inputs is not None and cfg.outputs is not None
        self.max_batch_size = (AUTO_MAX_BATCH_SIZE if cfg.max_batch_size is None
                               else cfg.max_batch_size)
        prefix = (-1,) if self.max_batch_size > 0 else ()
        self.inputs = [TensorSpec(t.name, t.datatype, (*prefix, *t.shape)) for t in cfg.inputs]
        self.outputs = [TensorSpec(t.name, t.datatype, (*prefix, *t.shape))
                        for t in cfg.outputs]
        self._input_by_name = {s.name: s for s in self.inputs}
        problem = self._wiring_problem()
        if problem:
            self.state, self.reason = "UNAVAILABLE", f"ensemble {self.name!r}: {problem}"
        else:
            self.state, self.reason = "READY", ""

    def _wiring_problem(self) -> str:
        """What is wrong with the steps' tensor maps ("" when nothing is)."""
        assert self.config.ensemble is not None
        known = set(self._input_by_name)
        for i, step in enumerate(self.config.ensemble.steps):
            if step.model == self.name:
                return f"step {i} names the ensemble itself"
            unknown = [t for t in step.inputs.values() if t not in known]
            if unknown:
                return (f"step {i} (model {step.model!r}) reads {unknown}, which no ensemble "
                        f"input or earlier step writes (known: {sorted(known)})")
            known |= set(step.outputs.values())
        never = [s.name for s in self.outputs if s.name not in known]
        if never:
            return (f"no step writes the ensemble output(s) {never}; map a member output to "
                    "them in a step's 'outputs'")
        return ""

    def unload(self) -> None:
        self.state, self.reason = "UNAVAILABLE", "unloaded"

    def _members(self) -> list[ModelVersion]:
        assert self.config.ensemble is not None
        members = []
        for i, step in enumerate(self.config.ensemble.steps):
            try:
                members.append(self.registry.get(step.model, str(step.version or "")))
            except ShipyardError as exc:
                raise type(exc)(f"ensemble {self.name!r}, step {i}: {exc.message}") from exc
        return members

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        start = time.perf_counter_ns()
        try:
            if self.state != "READY":
                raise ModelNotReady(f"ensemble {self.name!r} is not ready: {self.reason}")
            self.validate(request)  # names, datatypes and shapes against the declared inputs
            wanted = self._requested(request)
            members = self._members()  # all resolved before anything runs
            tensors = {t.name: t for t in request.inputs}
            assert self.config.ensemble is not None
            for i, (step, member) in enumerate(zip(self.config.ensemble.steps, members,
                                                   strict=True)):
                feeds = step.inputs or {s.name: s.name for s in member.inputs}
                missing = [t for t in feeds.values() if t not in tensors]
                if missing:
                    raise InvalidInput(
                        f"ensemble {self.name!r}, step {i} (model {step.model!r}): tensor(s) "
                        f"{missing} not available; map the member's inputs in 'inputs'")
                sub = InferenceRequest(
                    step.model, str(member.version), request.id,
                    [Tensor(m, tensors[t].datatype, tensors[t].shape, tensors[t].data)
                     for m, t in feeds.items()],
                    [RequestedOutput(o) for o in step.outputs] or None,
                    deadline_ns=request.deadline_ns,
                )
                try:
                    response = await member.infer(sub)
                except ShipyardError as exc:
                    raise type(exc)(f"ensemble {self.name!r}, step {i} (model "
                                    f"{step.model!r}): {exc.message}") from exc
                for out in response.outputs:
                    target = step.outputs.get(out.name, out.name) if step.outputs else out.name
                    tensors[target] = Tensor(target, out.datatype, out.shape, out.data)
            result = {s.name: tensors[s.name].data for s, _ in wanted}
            outputs = self.answer(wanted, result)
        except ShipyardError as exc:
            self.stats.on_request(False, time.perf_counter_ns() - start, exc.code.value)
            raise
        self.stats.on_request(True, time.perf_counter_ns() - start)
        return InferenceResponse(self.name, str(self.version), outputs, request.id)
