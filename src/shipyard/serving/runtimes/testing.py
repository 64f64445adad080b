"""The runtime conformance suite: :func:`check_runtime`, which every runtime passes.

Like scikit-learn's ``check_estimator``: a runtime module's tests build the suite's reference
models in their format and call :func:`check_runtime`; it raises AssertionError naming the
broken rule. The models:

- ``add_sub`` (required): inputs ``INPUT0``, ``INPUT1`` (FP32, shape ``[-1, 16]``), outputs
  ``OUTPUT0 = INPUT0 + INPUT1`` and ``OUTPUT1 = INPUT0 - INPUT1``.
- ``echo_text`` (optional, for runtimes that take text): one BYTES input of shape ``[-1, 1]``
  and one BYTES output returning it.

A field-wise runtime (``ConformanceCase.fieldwise``: one value per row and tensor, as PMML's
fields are) builds the same models over scalar fields: every tensor has shape ``[-1, 1]``
(Triton's ``dims: [1]``), and the runtime class says so (``Runtime.fieldwise``, which lets a
request send such a tensor as ``[n]``).

Each builder writes the model file into the folder it is given (a version folder) and returns
nothing; ``config`` is merged into every model's config (e.g. ``{"trust": True}``), and
``configs[model]`` (``"add_sub"``, ``"echo_text"``) into that model's only, for backends whose
config declares the tensors (``inputs:`` / ``outputs:``). The unreadable-file check uses the
``add_sub`` config.
"""

from __future__ import annotations

import math
import tempfile
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.repository.config import Backend
from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput, ShipyardError
from shipyard.serving.runtimes import RUNTIMES, Runtime, create_runtime, runtime_class

__all__ = ["ConformanceCase", "check_runtime"]

Builder = Callable[[Path], None]


@dataclass
class ConformanceCase:
    """How to build the suite's reference models for one backend."""

    backend: str
    add_sub: Builder
    echo_text: Builder | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the backend's tensors are one value per row (shape ``[-1, 1]``, e.g. PMML fields): the
    #: models are built over scalar fields and checked with ``[rows, 1]`` tensors
    fieldwise: bool = False

    def model_config(self, model: str) -> ModelConfig:
        """The config of one of the suite's models (``add_sub``, ``echo_text``)."""
        return ModelConfig.model_validate({"name": "m", "backend": self.backend, **self.config,
                                           **self.configs.get(model, {})})

    @property
    def row(self) -> tuple[int, ...]:
        """The shape of one row of the add_sub tensors."""
        return (1,) if self.fieldwise else (16,)


def _runtime(case: ConformanceCase, folder: Path, model: str, build: Builder) -> Runtime:
    folder.mkdir(parents=True, exist_ok=True)
    build(folder)
    return create_runtime(folder, case.model_config(model))


def _check_facts(cls: type[Runtime], backend: str, fieldwise: bool) -> None:
    assert backend in RUNTIMES, f"backend {backend!r} is not in the runtime registry"
    assert backend in typing.get_args(Backend), (
        f"backend {backend!r} is not a name config.yaml may give (repository.config.Backend)")
    assert cls.backend == backend, f"{cls.__name__}.backend is {cls.backend!r}, not {backend!r}"
    assert cls.filenames and all(isinstance(n, str) for n in cls.filenames), "no filenames"
    assert isinstance(cls.platform, str) and cls.platform, "no platform string"
    assert isinstance(cls.triton_backend, str) and cls.triton_backend, "no triton_backend"
    assert cls.fieldwise == fieldwise, (
        f"{cls.__name__}.fieldwise is {cls.fieldwise}, the case says {fieldwise}")


def _check_add_sub(rt: Runtime, row: tuple[int, ...]) -> None:
    rt.load()
    assert rt.device_kind in ("KIND_CPU", "KIND_GPU"), f"device_kind {rt.device_kind!r}"
    inputs, outputs = rt.metadata()
    assert [(s.name, s.datatype, s.shape) for s in inputs] == [
        ("INPUT0", "FP32", (-1, *row)), ("INPUT1", "FP32", (-1, *row))], f"inputs {inputs}"
    assert [o.name for o in outputs] == ["OUTPUT0", "OUTPUT1"], f"outputs {outputs}"
    for rows in (1, 2, 5):
        a = np.arange(rows * math.prod(row), dtype=np.float32).reshape(rows, *row)
        b = np.full(a.shape, 0.5, np.float32)
        out0, out1 = rt.run({"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
        for name, out in (("OUTPUT0", out0), ("OUTPUT1", out1)):
            assert isinstance(out, np.ndarray), f"{name} is a {type(out).__name__}, not ndarray"
            assert out.ndim >= 1 and out.shape[0] == rows, (
                f"{name} has shape {out.shape} for a batch of {rows}: the first dimension "
                "of every output must be the batch")
        np.testing.assert_allclose(out0, a + b, rtol=1e-6)
        np.testing.assert_allclose(out1, a - b, rtol=1e-6)
    (only1,) = rt.run({"INPUT0": a, "INPUT1": b}, ["OUTPUT1"])
    np.testing.assert_allclose(only1, a - b, rtol=1e-6)
    wrong: dict[str, Any] = {"INPUT0": np.ones((2, 3, 4), np.float64),
                             "INPUT1": np.ones((2, 16), np.float32)}
    try:
        rt.run(wrong, ["OUTPUT0"])
    except ShipyardError as exc:
        assert isinstance(exc, InvalidInput | InferenceFailed), f"{type(exc).__name__}"
        assert "'m'" in exc.message, f"the message does not name the model: {exc.message}"
    except Exception as exc:  # pragma: no cover - the failure this check exists for
        raise AssertionError(
            f"run() let {type(exc).__name__} escape; translate it (Runtime.error_map)") from exc
    rt.unload()


def _check_text(rt: Runtime) -> None:
    rt.load()
    (spec,), (out_spec,) = rt.metadata()
    assert spec.datatype == "BYTES" and out_spec.datatype == "BYTES", "echo_text not BYTES"
    raw = ["héllo", "", "a\u00a0b"]
    given = [v if rt.text_inputs else v.encode() for v in raw]
    text = np.array(given, dtype=object).reshape(3, 1)
    (out,) = rt.run({spec.name: text}, [out_spec.name])
    got = [v.decode() if isinstance(v, bytes) else v for v in out.reshape(-1)]
    assert got == raw, f"echo_text returned {got}"
    rt.unload()


def check_runtime(case: ConformanceCase, workdir: Path | None = None) -> None:
    """Run every rule of the runtime contract against ``case``'s backend."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        cls = runtime_class(case.backend)
        _check_facts(cls, case.backend, case.fieldwise)
        _check_add_sub(_runtime(case, root / "add_sub", "add_sub", case.add_sub), case.row)
        if case.echo_text is not None:
            _check_text(_runtime(case, root / "echo", "echo_text", case.echo_text))
        broken = root / "broken"
        broken.mkdir(parents=True, exist_ok=True)
        (broken / cls.filenames[0]).write_bytes(b"not a model at all \x00\xff")
        try:
            create_runtime(broken, case.model_config("add_sub")).load()
        except InvalidInput as exc:
            assert "cannot load" in exc.message, f"unclear load error: {exc.message}"
        except Exception as exc:  # pragma: no cover - the failure this check exists for
            raise AssertionError(
                f"load() of an unreadable file raised {type(exc).__name__}, not InvalidInput "
                "('cannot load ...')") from exc
        else:  # pragma: no cover
            raise AssertionError("load() of an unreadable file succeeded")
