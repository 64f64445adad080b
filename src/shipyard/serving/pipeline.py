"""Declared steps around a runtime: ``preprocess`` before the model, ``postprocess`` after.

The steps come from :mod:`shipyard.transforms` (the catalogue the training half uses too) and
run in the batcher's worker threads, never on the event loop. Preprocessing runs per request
(:meth:`Pipeline.prepare`), so one request's bad item fails that request alone (400 naming the
item) and never the batch it shares; postprocessing runs once on the merged batch.

What the client sees: with ``preprocess``, the model takes one input, named by ``config.yaml``'s
``inputs`` (one entry) or after the first step (``image`` for ``image_decode``, ``text`` for
the text steps), of shape ``[-1, 1]`` where the steps take one item (one image, one text) per
row (Triton's convention for BYTES items: ``dims: [1]``). Steps that end in one text per row
(``text_normalize``) may feed a graph that takes its strings as a column, ``[N, 1]`` (a
scikit-learn text pipeline exported with skl2onnx); with ``postprocess``, the outputs
are the steps' (a dict of outputs keeps its names; a single one is named by ``outputs`` or
keeps the model's output name).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.protocol.items import ITEM_INPUTS
from shipyard.repository.config import ModelConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput
from shipyard.serving.types import Array, TensorSpec
from shipyard.transforms import (
    Spec,
    Specs,
    Step,
    StepConfigError,
    TransformError,
    apply_steps,
    build_steps,
    steps_input_spec,
    steps_output_spec,
)

__all__ = ["ITEM_INPUTS", "Pipeline"]



def _spec(name: str, spec: Spec) -> TensorSpec:
    return TensorSpec(name, spec[0], tuple(spec[1]))


class Pipeline:
    """The preprocess and postprocess steps of one model version."""

    def __init__(
        self, config: ModelConfig, version_dir: Path,
        inner_inputs: Sequence[TensorSpec], inner_outputs: Sequence[TensorSpec],
    ) -> None:
        self.model = config.name
        try:
            self.pre: list[Step] = build_steps(config.preprocess, base_dir=version_dir,
                                               where="preprocess")
            self.post: list[Step] = build_steps(config.postprocess, base_dir=version_dir,
                                                where="postprocess")
        except StepConfigError as exc:
            raise InvalidInput(f"model {self.model!r}: {exc}") from exc
        self.inner_inputs = list(inner_inputs)
        self.inner_outputs = list(inner_outputs)
        #: the preprocess steps make one BYTES item per row ([N]) for a model input [N, 1]
        self._column = False
        self.inputs = self._outside_inputs(config) if self.pre else self.inner_inputs
        self.outputs = self._outside_outputs(config) if self.post else self.inner_outputs

    # -- what the client sees -------------------------------------------------------------------

    def _outside_inputs(self, config: ModelConfig) -> list[TensorSpec]:
        takes = steps_input_spec(self.pre) or self._declared_spec(config) or self._inner_spec()
        try:
            makes = steps_output_spec(self.pre, takes, where="preprocess")
        except StepConfigError as exc:
            raise InvalidInput(f"model {self.model!r}: {exc}") from exc
        self._check_feeds(makes)
        name = ITEM_INPUTS.get(self.pre[0].name, self.inner_inputs[0].name)
        if config.inputs is not None:
            if len(config.inputs) != 1:
                raise InvalidInput(
                    f"model {self.model!r}: with preprocess steps the model takes one input; "
                    f"config.yaml declares {[t.name for t in config.inputs]}"
                )
            declared = config.inputs[0]
            if declared.datatype != takes[0]:
                raise InvalidInput(
                    f"model {self.model!r}: input {declared.name!r} is declared "
                    f"{declared.datatype} but the first preprocess step "
                    f"({self.pre[0].name}) takes {takes[0]}"
                )
            name = declared.name
        if takes == ("BYTES", (-1,)):  # one item per row: Triton's dims [1] (perf_analyzer's)
            return [TensorSpec(name, "BYTES", (-1, 1))]
        return [_spec(name, takes)]

    @staticmethod
    def _declared_spec(config: ModelConfig) -> Spec | None:
        """The one input ``config.yaml`` declares (batch dimension added where the model
        batches), for steps that take whatever comes (e.g. UINT8 pixels into ``to_dtype``)."""
        if config.inputs is None or len(config.inputs) != 1:
            return None
        declared = config.inputs[0]
        shape = tuple(declared.shape)
        batched = config.max_batch_size is None or config.max_batch_size > 0
        return (declared.datatype, (-1, *shape) if batched else shape)

    def _inner_spec(self) -> Spec:
        if len(self.inner_inputs) != 1:
            raise InvalidInput(
                f"model {self.model!r}: preprocess steps feed one input, but the model has "
                f"{[s.name for s in self.inner_inputs]}"
            )
        s = self.inner_inputs[0]
        return (s.datatype, s.shape)

    def _check_feeds(self, makes: Specs) -> None:
        """The preprocess output must be what the model takes (names, datatypes)."""
        want = {s.name: s for s in self.inner_inputs}
        if isinstance(makes, dict):
            if set(want) != set(makes):
                raise InvalidInput(
                    f"model {self.model!r}: preprocess makes {sorted(makes)} but the model takes "
                    f"{sorted(want)}"
                )
            pairs = [(want[k], makes[k]) for k in want]
        else:
            self._inner_spec()  # exactly one input
            inner = self.inner_inputs[0]
            if makes[0] == "BYTES" == inner.datatype and len(makes[1]) == 1 and \
                    len(inner.shape) == 2 and inner.shape[1] in (1, -1):
                # one text per row into a model that takes them as a column ([N, 1]: e.g. a
                # scikit-learn TF-IDF pipeline exported with skl2onnx)
                self._column = True
                makes = (makes[0], (makes[1][0], 1))
            pairs = [(inner, makes)]
        for spec, (datatype, shape) in pairs:
            if datatype != spec.datatype:
                raise InvalidInput(
                    f"model {self.model!r}: preprocess makes {datatype} for input "
                    f"{spec.name!r}, which takes {spec.datatype}; add or change a to_dtype step"
                )
            if len(shape) != len(spec.shape) or any(
                a != b and -1 not in (a, b) for a, b in zip(shape, spec.shape, strict=True)
            ):
                raise InvalidInput(
                    f"model {self.model!r}: preprocess makes shape {list(shape)} for input "
                    f"{spec.name!r}, which takes {list(spec.shape)}; fix resize/layout steps"
                )

    def _outside_outputs(self, config: ModelConfig) -> list[TensorSpec]:
        if len(self.inner_outputs) != 1:
            raise InvalidInput(
                f"model {self.model!r}: postprocess steps take one output, but the model has "
                f"{[s.name for s in self.inner_outputs]}"
            )
        inner = self.inner_outputs[0]
        try:
            makes = steps_output_spec(self.post, (inner.datatype, inner.shape),
                                      where="postprocess")
        except StepConfigError as exc:
            raise InvalidInput(f"model {self.model!r}: {exc}") from exc
        if isinstance(makes, dict):
            return [_spec(k, v) for k, v in makes.items()]
        name = config.outputs[0].name if config.outputs else inner.name
        return [_spec(name, makes)]

    # -- running (worker threads) ---------------------------------------------------------------

    def prepare(self, inputs: dict[str, Array]) -> dict[str, Array]:
        """One request's inputs through the preprocess steps (its own error on a bad item)."""
        if not self.pre:
            return inputs
        (name, batch), = inputs.items()
        if self.inputs[0].shape == (-1, 1):
            batch = batch.reshape(-1)
        try:
            made: Any = apply_steps(self.pre, batch)
        except TransformError as exc:
            raise InvalidInput(f"input {name!r} of model {self.model!r}: {exc}") from exc
        if isinstance(made, dict):
            return {k: np.asarray(v) for k, v in made.items()}
        array = np.asarray(made)
        return {self.inner_inputs[0].name: array.reshape(-1, 1) if self._column else array}

    def finish(self, outputs: dict[str, Array]) -> dict[str, Array]:
        """The model's outputs through the postprocess steps (the whole batch at once)."""
        if not self.post:
            return outputs
        (batch,) = outputs.values()
        try:
            made: Any = apply_steps(self.post, batch)
        except (TransformError, ValueError) as exc:
            raise InferenceFailed(f"model {self.model!r}: postprocess failed: {exc}") from exc
        if isinstance(made, dict):
            return {k: np.asarray(v) for k, v in made.items()}
        return {self.outputs[0].name: np.asarray(made)}
