"""The step contract: a batch in, a batch out, and the spec of what comes out.

A batch is one numpy array whose first dimension is the batch (``BYTES`` items are an object array
of ``bytes``), or a ``dict`` of such arrays for steps with several outputs (``tokenize`` with an
attention mask, ``top_k``). A spec is ``(datatype, shape)`` with V2 datatypes and ``-1`` for a
dynamic dimension, the batch dimension first; a dict of specs goes with a dict batch.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt

from shipyard.protocol.types import DATATYPES

__all__ = [
    "DATATYPES",
    "Array",
    "Batch",
    "Spec",
    "Specs",
    "Step",
    "datatype_of",
]

Array: TypeAlias = npt.NDArray[Any]
Batch: TypeAlias = Array | dict[str, Array]
Spec: TypeAlias = tuple[str, tuple[int, ...]]
Specs: TypeAlias = Spec | dict[str, Spec]

_BY_NUMPY = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (str, bytes and object dtypes are ``BYTES``)."""
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return _BY_NUMPY[dtype]
    except KeyError:
        raise TypeError(f"numpy dtype {dtype} has no V2 datatype") from None


class Step:
    """Base class of the catalogue's steps.

    Subclasses set :attr:`name` (the key of the declarative form), store their validated
    parameters in ``__init__`` under the parameters' own names (so :meth:`get_params` finds them),
    and implement :meth:`__call__` and :meth:`output_spec`. State derived from files, such as a
    loaded tokenizer, is made by :meth:`load` and ends in ``_``.
    """

    #: The step's key in the declarative form (``{"resize": {...}}``).
    name: ClassVar[str] = ""
    #: Parameters given when the pipeline is built (not declared in YAML), such as ``base_dir``.
    build_only: ClassVar[tuple[str, ...]] = ()

    def __call__(self, batch: Batch) -> Batch:
        """Transform a whole batch; bad items raise :class:`TransformError` with their index."""
        raise NotImplementedError

    def apply(self, batch: Batch) -> Batch:
        """The same as calling the step."""
        return self(batch)

    def output_spec(self, input_spec: Specs) -> Specs:
        """What the step produces from ``input_spec``; raises :class:`StepConfigError` when the
        step cannot take such input (a datatype or rank it does not handle)."""
        raise NotImplementedError

    def input_spec(self) -> Spec | None:
        """What the step takes when it comes first in a pipeline, or ``None`` if that depends."""
        return None

    def load(self) -> Step:
        """Read the files the step needs (if any) and return the step; safe to call twice."""
        return self

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The parameters of ``__init__``, in order (build-only ones included)."""
        signature = inspect.signature(cls.__init__)
        return tuple(p for p in signature.parameters if p != "self")

    def get_params(self) -> dict[str, Any]:
        """The parameters as stored (scikit-learn's ``get_params`` without nesting)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def to_config(self) -> dict[str, dict[str, Any]]:
        """The declarative form, ``{name: {param: value}}``, plain YAML types, build-only left out;
        :func:`~shipyard.transforms.build_steps` turns it back into an equal step."""
        params = {k: _plain(v) for k, v in self.get_params().items() if k not in self.build_only}
        return {self.name: params}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
