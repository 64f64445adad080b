"""Python models: a class in the version folder's ``model.py`` (Triton's Python backend,
MLServer's custom runtime)::

    import numpy as np

    class Model:
        def load(self):               # optional; no arguments: the version folder is
            ...                       # Path(__file__).parent
        def predict(self, inputs):    # {input name: np.ndarray}, first dimension = batch
            return {"LENGTH": ...}    # {output name: np.ndarray}, same first dimension
        def unload(self):             # optional
            ...

The class name is ``Model`` unless ``parameters: {class: Name}`` says otherwise. The model's
tensors come from ``config.yaml`` (``inputs:`` and ``outputs:`` are required): shapes there
leave out the batch dimension, which the server adds (``-1`` first) unless
``max_batch_size: 0``. BYTES inputs arrive as object arrays of ``bytes``, as in Triton's
Python backend (decode them if the model wants text); numeric inputs have their declared dtype
and may be read-only (copy before writing into one). BYTES outputs may hold ``bytes`` or
``str``; numeric outputs are cast to the declared datatype when the cast keeps their kind
(float64 -> FP32), otherwise refused.

Trust: the file is code, so the runtime registry refuses to create this runtime unless the
model's config says ``trust: true`` (:attr:`Runtime.runs_model_code`), before anything in the
folder is read.

Isolation: each load imports ``model.py`` afresh under its own module name (so two models, two
versions, or a reloaded version never share module state), without bytecode caches. While the
module runs and the objects load, the version folder is at the front of ``sys.path`` (so
``model.py`` can import its neighbours); afterwards the entry is removed again, and the
neighbours it imported leave ``sys.modules`` (the next version imports its own copies).
Each of the config's ``instances`` gets its own object; one object runs one ``predict`` at a
time. Exceptions from ``predict``: ValueError, TypeError and KeyError become InvalidInput
(the request was wrong), anything else InferenceFailed, each naming the model, the exception
and the line of ``model.py`` it came from.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import queue
import re
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shipyard.serving.config import ModelConfig, TensorConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput, ShipyardError
from shipyard.serving.runtimes.base import Runtime
from shipyard.serving.types import Array, TensorSpec, numpy_dtype

__all__ = ["PythonRuntime"]

log = logging.getLogger("shipyard.runtime.python")


#: makes every imported module name unique (a reload of the same version gets a new one)
_SERIAL = itertools.count(1)
#: sys.path and sys.modules are process-wide: one python model imports at a time
_IMPORT_LOCK = threading.Lock()


class PythonOptions(BaseModel):
    """``parameters`` of a python model."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_name: str = Field("Model", alias="class", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the class in ``model.py`` that serves the model."""


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class PythonRuntime(Runtime):
    """Objects of a user class from ``model.py``, one per instance."""

    backend = "python"
    filenames = ("model.py",)
    platform = "python"
    triton_backend = "python"
    text_inputs = False
    runs_model_code = True
    error_map = (
        (ValueError, InvalidInput),
        (TypeError, InvalidInput),
        (KeyError, InvalidInput),
    )

    def __init__(self, path: Path, config: ModelConfig) -> None:
        super().__init__(path, config)
        #: the imported model.py (None until loaded and after unloading)
        self.module: ModuleType | None = None
        #: the user objects not running a predict right now (one per instance)
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._out_by_name: dict[str, TensorSpec] = {}
        self._batched = True

    def load(self) -> None:
        name = self.config.name
        self._inputs = self._declared(self.config.inputs, "inputs")
        self._outputs = self._declared(self.config.outputs, "outputs")
        self._out_by_name = {s.name: s for s in self._outputs}
        self._batched = self.config.max_batch_size != 0
        options: PythonOptions = self.options(PythonOptions)
        folder = self.path.parent
        module_name = (f"shipyard_python_model_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
                       f"_v{folder.name}_{next(_SERIAL)}")
        with _IMPORT_LOCK:
            before = set(sys.modules)
            entry = str(folder)
            sys.path.insert(0, entry)
            try:
                module = self._import(module_name)
                cls = self._user_class(module, options.class_name)
                pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
                for _ in range(self.config.instances):
                    pool.put(self._instantiate(cls))
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
            finally:
                if entry in sys.path:
                    sys.path.remove(entry)
                self._forget_neighbours(set(sys.modules) - before - {module_name}, folder)
        self.module, self._pool = module, pool

    def _declared(self, tensors: Sequence[TensorConfig] | None, kind: str) -> list[TensorSpec]:
        if not tensors:
            config_yaml = self.path.parent.parent / "config.yaml"
            example = ("inputs: [{name: TEXT, datatype: BYTES, shape: [1]}]" if kind == "inputs"
                       else "outputs: [{name: LENGTH, datatype: INT64, shape: [1]}]")
            raise InvalidInput(
                f"model {self.config.name!r}: a python model takes its tensors from "
                f"config.yaml, and {str(config_yaml)!r} declares no {kind}; add {kind}: with "
                f"the name, datatype and shape (without the batch dimension) of each, e.g. "
                f"{example}"
            )
        batch = (-1,) if self.config.max_batch_size != 0 else ()
        return [TensorSpec(t.name, t.datatype, (*batch, *t.shape)) for t in tensors]

    def _import(self, module_name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None:  # pragma: no cover - a .py path always has a spec
            raise InvalidInput(f"model {self.config.name!r}: cannot load {str(self.path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses, pickle, typing look modules up here
        try:
            # compiled from source each time: no stale __pycache__, nothing written to the folder
            code = compile(self.path.read_bytes(), str(self.path), "exec", dont_inherit=True)
            exec(code, module.__dict__)  # running model.py is what this runtime is for
        except BaseException as exc:
            raise InvalidInput(
                f"model {self.config.name!r}: cannot load {str(self.path)!r}: "
                f"{type(exc).__name__}: {exc}{self._line(exc)}"
            ) from exc
        return module

    def _user_class(self, module: ModuleType, class_name: str) -> type[Any]:
        cls = getattr(module, class_name, None)
        where = f"model {self.config.name!r}: cannot load {str(self.path)!r}"
        if not isinstance(cls, type):
            found = sorted(k for k, v in vars(module).items()
                           if isinstance(v, type) and v.__module__ == module.__name__)
            raise InvalidInput(
                f"{where}: it defines no class {class_name!r} (classes there: {found}); define "
                "it, or name the class with parameters: {class: Name} in config.yaml"
            )
        if not callable(getattr(cls, "predict", None)):
            raise InvalidInput(
                f"{where}: class {class_name!r} has no predict(self, inputs) method"
            )
        return cls

    def _instantiate(self, cls: type[Any]) -> Any:
        step = f"{cls.__name__}()"
        try:
            obj = cls()
            if callable(getattr(obj, "load", None)):
                step = f"{cls.__name__}.load()"
                obj.load()
        except BaseException as exc:
            raise InvalidInput(
                f"model {self.config.name!r}: cannot load {str(self.path)!r}: {step} raised "
                f"{type(exc).__name__}: {exc}{self._line(exc)}"
            ) from exc
        return obj

    @staticmethod
    def _forget_neighbours(added: set[str], folder: Path) -> None:
        for key in added:
            file = getattr(sys.modules.get(key), "__file__", None)
            if file is not None and Path(file).resolve().is_relative_to(folder.resolve()):
                del sys.modules[key]

    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        assert self.module is not None, "predict() before load()"
        obj = self._pool.get()
        try:
            result = obj.predict(dict(inputs))
        except SystemExit as exc:  # sys.exit() in a model must not end a worker thread
            raise self.translate(exc) from exc
        finally:
            self._pool.put(obj)
        rows = next(iter(inputs.values())).shape[0] if self._batched and inputs else None
        return self._check(result, outputs, rows)

    def _check(self, result: Any, outputs: list[str], rows: int | None) -> list[Array]:
        where = f"model {self.config.name!r}: predict()"
        if not isinstance(result, Mapping):
            raise InferenceFailed(
                f"{where} returned {type(result).__name__}; it must return a dict of output "
                f"name -> numpy array with the outputs {outputs}"
            )
        arrays = []
        for name in outputs:
            if name not in result:
                raise InferenceFailed(
                    f"{where} returned no output {name!r} (it returned "
                    f"{sorted(str(k) for k in result)}); return every output config.yaml declares"
                )
            value = result[name]
            if not isinstance(value, np.ndarray):
                raise InferenceFailed(
                    f"{where} returned a {type(value).__name__} for output {name!r}; return a "
                    "numpy array (np.asarray(...))"
                )
            arrays.append(self._conform(where, self._out_by_name[name], value, rows))
        return arrays

    def _conform(self, where: str, spec: TensorSpec, value: Array, rows: int | None) -> Array:
        name = spec.name
        if rows is not None and (value.ndim == 0 or value.shape[0] != rows):
            raise InferenceFailed(
                f"{where} returned output {name!r} with shape {_fmt(value.shape)} for a batch "
                f"of {rows} rows; its first dimension must be the batch (set max_batch_size: 0 "
                "in config.yaml for a model that does not batch)"
            )
        if value.ndim != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, value.shape, strict=True)):
            raise InferenceFailed(
                f"{where} returned output {name!r} with shape {_fmt(value.shape)}, but "
                f"config.yaml declares {_fmt(spec.shape)}"
            )
        if spec.datatype == "BYTES":
            if value.dtype.kind in "US":
                return value.astype(object)
            if value.dtype != object:
                raise InferenceFailed(
                    f"{where} returned output {name!r} as {value.dtype} values, but config.yaml "
                    "declares it BYTES; return bytes or str (an array of dtype object)"
                )
            return value
        target = numpy_dtype(spec.datatype)
        if value.dtype == target:
            return value
        if not np.can_cast(value.dtype, target, "same_kind"):
            raise InferenceFailed(
                f"{where} returned output {name!r} as {value.dtype} values, which do not "
                f"convert to its declared datatype {spec.datatype}"
            )
        return value.astype(target)

    def translate(self, exc: BaseException) -> ShipyardError:
        error: type[ShipyardError] = InferenceFailed
        for cls, mapped in self.error_map:
            if isinstance(exc, cls):
                error = mapped
                break
        if error is InferenceFailed:
            log.warning("model %s: predict() failed", self.config.name, exc_info=exc)
        return error(f"model {self.config.name!r}: predict() raised {type(exc).__name__}: "
                     f"{exc}{self._line(exc)}")

    def _line(self, exc: BaseException) -> str:
        """`` (model.py line N)`` for the last frame of the model's file in the traceback."""
        if isinstance(exc, SyntaxError) and exc.filename == str(self.path):
            return ""  # its message already says where
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename == str(self.path)]
        return f" ({self.path.name} line {frames[-1].lineno})" if frames else ""

    def unload(self) -> None:
        pool, self._pool = self._pool, queue.SimpleQueue()
        while not pool.empty():
            obj = pool.get()
            if callable(getattr(obj, "unload", None)):
                try:
                    obj.unload()
                except Exception:  # a model's clean-up error must not stop the unload
                    log.exception("model %s: unload() failed", self.config.name)
        if self.module is not None:
            sys.modules.pop(self.module.__name__, None)
        self.module = None
