"""The one table of step names, and the declarative form: ``[{name: {param: value}}, ...]``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.transforms.base import Batch, Spec, Specs, Step
from shipyard.transforms.errors import StepConfigError
from shipyard.transforms.geometry import CenterCrop, Resize
from shipyard.transforms.image import ImageDecode
from shipyard.transforms.post import Labels, Softmax, TopK
from shipyard.transforms.tensor import Layout, Normalize, ToDtype
from shipyard.transforms.text import TextNormalize, Tokenize
from shipyard.transforms.words import Words

__all__ = [
    "STEPS",
    "apply_steps",
    "build_step",
    "build_steps",
    "steps_input_spec",
    "steps_output_spec",
    "steps_to_config",
]

#: Step name (the key of the declarative form) -> step class. The only list of steps.
STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (ImageDecode, Resize, CenterCrop, ToDtype, Normalize, Layout,
                TextNormalize, Tokenize, Words, Softmax, TopK, Labels)
}


def build_step(declared: Any, *, base_dir: str | Path | None = None, where: str = "step",
               load: bool = True) -> Step:
    """One step from ``{name: {param: value}}`` (``{name: null}`` or ``"name"`` for defaults).

    ``base_dir`` (the model's version folder) goes to steps that read files; with ``load`` they
    read them now, so a missing file fails here. Errors are :class:`StepConfigError` whose path
    starts with ``where``: ``preprocess[2].resize.size``.
    """
    if isinstance(declared, str):
        declared = {declared: None}
    if not isinstance(declared, Mapping) or len(declared) != 1:
        raise StepConfigError(
            f"must be one mapping {{step: {{parameters}}}} with one key; got {declared!r}", where
        )
    ((name, params),) = declared.items()
    cls = STEPS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise StepConfigError(f"unknown step {name!r}; the steps are {', '.join(STEPS)}", where)
    where = f"{where}.{name}"
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise StepConfigError(f"must be a mapping of parameters (or empty); got {params!r}",
                              where)
    accepted = [p for p in cls.param_names() if p not in cls.build_only]
    for key in params:
        if key not in accepted:
            takes = ", ".join(accepted) if accepted else "no parameters"
            raise StepConfigError(f"unknown parameter; {name} takes {takes}", f"{where}.{key}")
    signature = inspect.signature(cls.__init__)
    for param, spec in signature.parameters.items():
        if param in accepted and spec.default is inspect.Parameter.empty and param not in params:
            raise StepConfigError(f"is required by {name}", f"{where}.{param}")
    extra = {"base_dir": base_dir} if "base_dir" in cls.build_only else {}
    root = where.rsplit(".", 1)[0]
    try:
        step = cls(**dict(params), **extra)
        return step.load() if load else step
    except StepConfigError as exc:
        raise StepConfigError(exc.reason, f"{root}.{exc.path}" if exc.path else where) from None


def build_steps(declared: Sequence[Any] | None, *, base_dir: str | Path | None = None,
                where: str = "preprocess", load: bool = True) -> list[Step]:
    """The steps of a declared list (``None`` is no steps); see :func:`build_step`."""
    if declared is None:
        return []
    if isinstance(declared, str | bytes | Mapping) or not isinstance(declared, Sequence):
        raise StepConfigError(f"must be a list of steps; got {declared!r}", where)
    return [build_step(item, base_dir=base_dir, where=f"{where}[{i}]", load=load)
            for i, item in enumerate(declared)]


def apply_steps(steps: Sequence[Step], batch: Batch) -> Batch:
    """Run ``steps`` in order on ``batch``; a bad item raises :class:`TransformError`."""
    for step in steps:
        batch = step(batch)
    return batch


def steps_output_spec(steps: Sequence[Step], input_spec: Specs | None = None, *,
                      where: str = "preprocess") -> Specs:
    """The spec after ``steps`` from ``input_spec`` (default: what the first step takes).

    A step that cannot take what the one before it makes is a :class:`StepConfigError` naming
    ``where[i].name``.
    """
    spec = input_spec if input_spec is not None else steps_input_spec(steps)
    if spec is None:
        raise StepConfigError("the first step does not say what it takes; give input_spec",
                              where)
    for i, step in enumerate(steps):
        try:
            spec = step.output_spec(spec)
        except StepConfigError as exc:
            raise StepConfigError(exc.reason, f"{where}[{i}].{exc.path or step.name}") from None
    return spec


def steps_input_spec(steps: Sequence[Step]) -> Spec | None:
    """What the pipeline takes: the first step's :meth:`Step.input_spec` (``None`` if no steps
    or the first step takes whatever comes)."""
    return steps[0].input_spec() if steps else None


def steps_to_config(steps: Sequence[Step]) -> list[dict[str, dict[str, Any]]]:
    """The declarative form of ``steps``; :func:`build_steps` turns it back into equal steps."""
    return [step.to_config() for step in steps]
