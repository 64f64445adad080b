"""PyTorch models: ``torch.export`` programs (``model.pt2``) and TorchScript (``model.pt``).

**File formats.** Both load in a fresh process that never imported the model's Python class (a
test proves it: ``test_both_formats_load_without_the_training_code``), so both serve without
the training code. ``model.pt2`` is preferred (first in :attr:`TorchRuntime.filenames`) because:

- it describes itself: an ``ExportedProgram`` keeps the forward's argument names, every
  tensor's dtype and shape, which dimensions are dynamic (``torch.export.Dim``) and their
  ranges, so the server derives the V2 metadata from the file and checks inputs against the
  exported ranges. A TorchScript file has no reliable tensor names or dtypes: ``config.yaml``
  must declare ``inputs:`` and ``outputs:``;
- TorchScript is deprecated: torch 2.13 warns on ``torch.jit.trace``, ``save`` and ``load``
  ("Please switch to torch.export").

Measured here (torch 2.13 CPU, 2 cores, one thread, the 3-conv 1x28x28 CNN of the tests): a
fresh process imports torch in ~0.8 s, then loads ``model.pt2`` in ~1.0 s (torch.export's
deserialiser) and ``model.pt`` in ~6 ms.

**Execution** (``parameters.execution``; ``.pt2`` only, a ``.pt`` runs as loaded). Served, the
model runs in the batcher's worker thread while the event loop holds the GIL for the requests'
Python, and the cost of a form is how often it gives the GIL up and must win it back (up to the
server's switch interval each time, ``switch_interval_s``, while the loop is busy):

- ``eager``: the exported program's ``module()``, an FX graph run op by op from Python: every
  ATen op releases and retakes the GIL, plus its input-guard hook and pytree flattening.
  ~340 us per batch of 16 in process; with a Python thread spinning beside it ~5 ms.
- ``script`` (what ``auto`` picks when it can): that module traced at load
  (``torch.jit.trace``, ~0.1 s) into a TorchScript graph that runs in C++, releasing the GIL
  once per batch. Same ATen ops, same numbers; ~260 us per batch in process. A trace bakes
  Python values into the graph, so it is made only of a straight-line graph of ATen ops that
  computes no size from its inputs (no SymInt node such as ``x.shape[0]`` in a ``reshape``, no
  ``torch.cond``) and whose trace raised no TracerWarning; ``auto`` runs any other program
  ``eager`` (and with ``compile: true``, which wraps the eager module), ``script`` refuses it.
- ``aot``: AOTInductor-compiled code: from the file when the ``.pt2`` carries it beside the
  program (``torch.export.pt2_archive._package.package_pt2(f, exported_programs=program,
  aoti_files=torch._inductor.aot_compile(program.module(), args,
  options={"aot_inductor.package": True}))``, see ``tests/torch_models.py``; loads in ~0.9 s),
  else compiled at load (7-20 s for the CNN, needs a C++ compiler; CPU only). ~255 us per batch
  in process, but it holds the GIL for the whole run (torch 2.13's ``AOTIModelPackageLoader``
  does not release it), so the event loop waits meanwhile; float32 only.

In one benchmark run (docs/benchmarks.md, "Torch runtime", c16, 16 images per request)
``script`` served ~1.5x the rows/s of ``eager``, about what TorchScript ``model.pt`` serves,
and a little more than ``aot``, which used one core in all (srv CPU 1.0 against 1.3).

**Metadata.** ``.pt2``: inputs are the forward's arguments (each must be one tensor), shapes
with dynamic dimensions as -1; outputs are the flattened outputs in order, named after the
keys of a returned dict, else ``OUTPUT0``, ``OUTPUT1``, ...; ``config.yaml``'s ``outputs:``
renames them in order. ``.pt``: ``inputs:`` and ``outputs:`` of ``config.yaml``. Inputs go to
``forward`` positionally in that order; a returned tensor, tuple or list maps to the outputs in
order, a dict by output name.

**Options** (``config.yaml`` ``parameters:``, :class:`TorchOptions`): ``device``, ``dtype``,
``cuda_graphs``, ``compile``, ``threads``, ``execution``.

**CUDA** (``device: cuda``, or ``auto`` where torch sees a GPU; the model config's
``instance_group`` then says ``KIND_GPU``). A ``.pt2`` program is moved with
``torch.export.passes.move_to_device_pass`` before its module is made, which moves its lifted
tensor constants and the devices baked into factory ops (``torch.ones(n, device=cpu)``) as
well as its weights; a ``.pt`` loads with ``map_location`` (devices a trace baked in stay as
they were). Inputs are copied from host memory per batch and outputs copied back (a
synchronous copy, which waits for the GPU), cast to the declared output datatype. float32
convolutions run as torch leaves them: cuDNN in TF32 (``torch.backends.cudnn.allow_tf32``),
about 1e-3 relative off a CPU answer. ``cuda_graphs`` captures each preferred batch size
after three warm-up runs on the capture stream, in ``thread_local`` capture mode (other
models' threads may use CUDA meanwhile); the graphs share one memory pool and are replayed one
at a time. ``compile`` on CUDA compiles with Inductor (Triton) during the warm-up.

**Errors** (:attr:`TorchRuntime.error_map`, by class): ``TypeError``, ``ValueError`` and
``IndexError`` are the caller's (an input the model's Python cannot take) -> InvalidInput.
``RuntimeError`` -> InferenceFailed: by the time a request reaches the model the server has
checked its names, dtypes and shapes against the metadata (and, for ``.pt2``, the exported
dimension ranges), so what torch still raises as RuntimeError (a kernel failure, CUDA
out of memory, a model bug, a TorchScript interpreter error) is more often the model's or the
machine's fault than the caller's, and torch's RuntimeError says nothing more by its class.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shipyard.serving.errors import InferenceFailed, InvalidInput
from shipyard.serving.runtimes._torch_program import (
    V2_TO_TORCH,
    aot,
    example_inputs,
    program_metadata,
    trace,
    untraceable,
)
from shipyard.serving.runtimes.base import DeviceKind, Runtime
from shipyard.serving.types import Array, TensorSpec

__all__ = ["TorchOptions", "TorchRuntime"]

log = logging.getLogger("shipyard.runtime.torch")



INSTALL = "pip install 'shipyard[torch]'"


class TorchOptions(BaseModel):
    """``parameters:`` of a torch model's ``config.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """Where the model runs: auto (cuda when torch sees a GPU, else cpu), cpu, cuda, cuda:N."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Compute dtype: the model's floating parameters and floating inputs are cast to it;
    outputs are cast back to the declared output datatype."""
    cuda_graphs: bool = False
    """CUDA only: capture one CUDA graph per ``dynamic_batching.preferred_batch_sizes`` entry
    (within ``max_batch_size`` and the exported batch range) at load and replay it, a batch
    padded with zero rows up to the next captured size (larger batches run eagerly). The
    inputs' other dimensions must be fixed. Ignored, with a log line, on CPU."""
    compile: bool = False
    """Wrap the model in ``torch.compile`` (``.pt2`` only; compiles during the warm-up)."""
    threads: int = Field(1, ge=1)
    """``torch.set_num_threads`` on CPU (one setting per process: the last torch model loaded
    sets it). 1 measured best on 2 cores when served (docs/benchmarks.md, Torch runtime)."""
    execution: Literal["auto", "eager", "script", "aot"] = "auto"
    """How a ``.pt2`` runs (see the module docstring, "Execution"): ``eager``, the exported
    program's ``module()`` op by op from Python; ``script``, that module traced at load into a
    TorchScript graph that runs in C++; ``aot``, AOTInductor-compiled code (from the file when
    it carries it, else compiled at load); ``auto``, ``script`` when the graph can be traced
    faithfully and ``compile`` is off, else ``eager``. ``.pt`` files are TorchScript already:
    ``auto``, ``eager`` and ``script`` run them as loaded, ``aot`` is refused."""


def _import_torch(model: str) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise InvalidInput(f"model {model!r} needs the torch runtime: {INSTALL}") from exc
    return torch


class TorchRuntime(Runtime):
    """One torch module (an exported program's ``.module()`` or a TorchScript module)."""

    backend = "torch"
    filenames = ("model.pt2", "model.pt")
    platform = "torch_export"
    triton_backend = "pytorch"
    extra = "torch"
    error_map = (
        (TypeError, InvalidInput),
        (ValueError, InvalidInput),
        (IndexError, InvalidInput),
        (RuntimeError, InferenceFailed),
    )

    _module: Any = None

    @classmethod
    def platform_for(cls, filename: str) -> str:
        # Triton's platform string for TorchScript; .pt2 has none in Triton, so say what it is
        return "pytorch_libtorch" if filename.endswith(".pt") else cls.platform

    @property
    def device_kind(self) -> DeviceKind:
        device = getattr(self, "_device", None)
        return "KIND_GPU" if device is not None and device.type == "cuda" else "KIND_CPU"

    def warmup_batch_sizes(self) -> list[int]:
        return list(self.config.dynamic_batching.preferred_batch_sizes)

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        name = self.config.name
        opts: TorchOptions = self.options(TorchOptions)
        exported = self.path.suffix == ".pt2"
        if not exported:
            self._declared_metadata()  # fail on a missing inputs:/outputs: before reading
            for option, wanted in (("compile", opts.compile),
                                   ("execution: aot", opts.execution == "aot")):
                if wanted:
                    raise InvalidInput(
                        f"model {name!r}: parameters.{option} needs a torch.export program "
                        "(model.pt2); a TorchScript file (model.pt) runs as TorchScript. "
                        f"Remove {option.split(':')[0]} or export the model with torch.export")
        if opts.compile and opts.execution in ("script", "aot"):
            raise InvalidInput(
                f"model {name!r}: parameters.compile and execution: {opts.execution} exclude "
                "each other (torch.compile wraps the eager module); pick one")
        torch = _import_torch(name)
        self._torch = torch
        self._device = self._resolve_device(torch, opts.device)
        self._dtype = getattr(torch, opts.dtype)
        if self._device.type == "cpu":
            torch.set_num_threads(opts.threads)
        if not zipfile.is_zipfile(self.path):  # both formats are zip archives
            raise InvalidInput(
                f"model {name!r}: cannot load {str(self.path)!r}: not a torch archive (zip); "
                f"save it with {'torch.export.save' if exported else 'torch.jit.save'}")
        try:
            if exported:
                program = torch.export.load(str(self.path))
                if self._device.type == "cuda":
                    # the program itself, not only its module: besides the parameters and
                    # buffers (what Module.to moves) it moves the lifted tensor constants and
                    # the devices baked into the graph's nodes (torch.zeros(..., device=cpu));
                    # import torch does not import torch.export.passes
                    from torch.export.passes import move_to_device_pass

                    program = move_to_device_pass(program, self._device)
                module = program.module()
            else:
                module = torch.jit.load(str(self.path), map_location=self._device).eval()
        except Exception as exc:  # torch raises several unrelated types for a bad file
            raise InvalidInput(
                f"model {name!r}: cannot load {str(self.path)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if exported:
            # with postprocess steps, config.yaml's outputs name the pipeline's, not the file's
            named = None if self.config.postprocess else self.config.outputs
            self._inputs, self._outputs, self._ranges = program_metadata(
                torch, program, name, named)
        else:
            self._inputs, self._outputs = self._declared_metadata()
            self._ranges = []
        module = module.to(self._device)
        if self._dtype != torch.float32:
            module = module.to(self._dtype)
        self.execution = "script" if not exported else opts.execution
        if exported and opts.execution == "auto":
            why_not = "compile is on" if opts.compile else untraceable(torch, program)
            self.execution = "eager" if why_not else "script"
        if exported and self.execution == "script":
            why_not = untraceable(torch, program)
            if why_not:
                raise InvalidInput(
                    f"model {name!r}: parameters.execution: script cannot run this program: "
                    f"{why_not}; use execution: eager (or aot)")
            try:
                module = trace(torch, module, example_inputs(
                    torch, self._inputs, self._ranges,
                    [self._compute_dtype(s) for s in self._inputs], self._device), name)
            except InvalidInput as exc:
                if opts.execution != "auto":
                    raise
                log.info("model %s: running eagerly: %s", name, exc.message)
                self.execution = "eager"
        elif self.execution == "aot":
            module = aot(torch, program, self.path, self._device, self._dtype,
                         opts.threads if self._device.type == "cpu" else None, name)
        if opts.compile:
            module = torch.compile(module)
        log.info("model %s: %s runs as %s", name, self.path.name, self.execution)
        self._module = module
        self._out_index = {s.name: i for i, s in enumerate(self._outputs)}
        self._out_dtypes = [getattr(torch, V2_TO_TORCH[s.datatype]) for s in self._outputs]
        self._in_dtypes = [self._compute_dtype(s) for s in self._inputs]
        self._graphs: dict[int, tuple[Any, list[Any], list[Any]]] = {}
        self._graph_lock = threading.Lock()
        if opts.cuda_graphs:
            self._capture_graphs()

    def _resolve_device(self, torch: Any, wanted: str) -> Any:
        """The torch.device to run on; a CUDA one always with its index (``cuda`` and
        ``auto`` mean the current device), so that streams, graphs and AOTInductor get one."""
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(wanted)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InvalidInput(
                    f"model {self.config.name!r}: parameters.device is {wanted!r} but torch "
                    f"sees no CUDA device (torch {torch.__version__}); use device: cpu or auto")
            index = torch.cuda.current_device() if device.index is None else device.index
            if index >= torch.cuda.device_count():
                raise InvalidInput(
                    f"model {self.config.name!r}: parameters.device is {wanted!r} but torch "
                    f"sees {torch.cuda.device_count()} CUDA device(s); use cuda:0 .. "
                    f"cuda:{torch.cuda.device_count() - 1}")
            device = torch.device("cuda", index)
        return device

    def _declared_metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        cfg = self.config
        missing = [k for k, v in (("inputs", cfg.inputs), ("outputs", cfg.outputs)) if not v]
        if missing:
            raise InvalidInput(
                f"model {cfg.name!r}: a TorchScript file ({self.path.name}) does not say its "
                f"tensor names and dtypes; add {' and '.join(missing)} to config.yaml, e.g. "
                "inputs: [{name: image, datatype: FP32, shape: [1, 28, 28]}] (shape without "
                "the batch dimension), or export the model with torch.export as model.pt2")
        batch: tuple[int, ...] = () if cfg.max_batch_size == 0 else (-1,)
        specs = []
        for t in (*(cfg.inputs or []), *(cfg.outputs or [])):
            if t.datatype not in V2_TO_TORCH:
                raise InvalidInput(
                    f"model {cfg.name!r}: tensor {t.name!r} is declared {t.datatype}, which "
                    f"the torch runtime cannot serve; supported: {sorted(V2_TO_TORCH)}")
            specs.append(TensorSpec(t.name, t.datatype, (*batch, *t.shape)))
        n = len(cfg.inputs or [])
        return specs[:n], specs[n:]

    def _capture_sizes(self) -> list[int]:
        """The preferred batch sizes a CUDA graph can be captured at: within
        ``max_batch_size`` and the exported program's range of each input's batch dimension."""
        limit = self.config.max_batch_size
        sizes = []
        for size in sorted(set(self.warmup_batch_sizes())):
            if size < 1 or (limit is not None and size > limit):
                continue
            if any(i == 0 and (size < low or (high is not None and size > high))
                   for dims in self._ranges for i, low, high, _ in dims):
                continue
            sizes.append(size)
        return sizes

    def _capture_graphs(self) -> None:
        """One CUDA graph per preferred batch size: static input buffers, warm-up runs on a
        side stream (cuDNN / cuBLAS / TorchScript's profiling runs happen there, not in the
        capture), then the capture on that stream; the outputs it wrote stay the graph's
        static outputs. Largest first, so that the smaller graphs share its memory pool
        (safe: :meth:`predict` replays one graph at a time, under ``_graph_lock``)."""
        name = self.config.name
        if self._device.type != "cuda":
            log.info("model %s: parameters.cuda_graphs ignored: the model runs on %s", name,
                     self._device)
            return
        sizes = self._capture_sizes()
        if self.config.max_batch_size == 0 or not sizes:
            log.info("model %s: parameters.cuda_graphs ignored: no batch sizes to capture "
                     "(set dynamic_batching.preferred_batch_sizes, each within "
                     "max_batch_size and the exported batch range)", name)
            return
        if any(d < 0 for s in self._inputs for d in s.shape[1:]):
            log.info("model %s: parameters.cuda_graphs ignored: inputs have dynamic "
                     "dimensions besides the batch", name)
            return
        torch = self._torch
        pool = None
        with torch.cuda.device(self._device), torch.inference_mode():
            stream = torch.cuda.Stream()
            for size in reversed(sizes):  # largest first
                static = [torch.zeros((size, *s.shape[1:]), device=self._device,
                                      dtype=self._compute_dtype(s)) for s in self._inputs]
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        self._module(*static)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                # thread_local: another model's thread may use CUDA meanwhile (the server
                # loads and serves models in several threads); "global" would fail its calls
                with torch.cuda.graph(graph, pool=pool, stream=stream,
                                      capture_error_mode="thread_local"):
                    out = self._leaves(self._module(*static))
                pool = graph.pool()
                self._graphs[size] = (graph, static, out)
            torch.cuda.synchronize()
        log.info("model %s: captured CUDA graphs for batch sizes %s", name, sizes)

    def metadata(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return self._inputs, self._outputs

    # -- inference ----------------------------------------------------------------------------

    def _compute_dtype(self, spec: TensorSpec) -> Any:
        dtype = getattr(self._torch, V2_TO_TORCH[spec.datatype])
        return self._dtype if dtype.is_floating_point else dtype

    def _check(self, inputs: dict[str, Array]) -> list[Array]:
        """The inputs in forward's order, checked against the exported shapes and ranges."""
        name = self.config.name
        arrays = []
        sizes: dict[Any, tuple[str, int]] = {}
        for spec, dims in zip(self._inputs, self._ranges or [[]] * len(self._inputs),
                              strict=True):
            array = inputs.get(spec.name)
            if array is None:
                raise InvalidInput(f"model {name!r}: input {spec.name!r} is missing")
            shape = array.shape
            if len(shape) != len(spec.shape) or any(
                    w not in (-1, g) for w, g in zip(spec.shape, shape, strict=True)):
                raise InvalidInput(
                    f"input {spec.name!r} of model {name!r} expects shape "
                    f"{list(spec.shape)}, got {list(shape)}")
            for i, low, high, symbol in dims:
                got = shape[i]
                if got < low or (high is not None and got > high):
                    raise InvalidInput(
                        f"input {spec.name!r} of model {name!r}: dimension {i} is {got}, the "
                        f"exported program takes {low}..{'' if high is None else high}")
                seen = sizes.setdefault(symbol, (spec.name, got))
                if seen[1] != got:
                    raise InvalidInput(
                        f"input {spec.name!r} of model {name!r}: dimension {i} is {got} but "
                        f"input {seen[0]!r} has {seen[1]} for the same exported dimension")
            if not array.flags.writeable or not array.flags.c_contiguous:
                array = np.ascontiguousarray(array).copy()  # torch wants owned, writable memory
            arrays.append(array)
        return arrays

    def _leaves(self, result: Any) -> list[Any]:
        """The model's return value as one tensor per output, in output order."""
        torch = self._torch
        if isinstance(result, torch.Tensor):
            leaves = [result]
        elif isinstance(result, dict):
            missing = [s.name for s in self._outputs if s.name not in result]
            if missing:
                raise InferenceFailed(
                    f"model {self.config.name!r}: the model returned a dict with keys "
                    f"{sorted(map(str, result))}, without the declared output(s) {missing}")
            leaves = [result[s.name] for s in self._outputs]
        elif isinstance(result, list | tuple):
            leaves = list(result)
        else:
            raise InferenceFailed(
                f"model {self.config.name!r}: the model returned a {type(result).__name__}; "
                "expected a tensor, a tuple or list of tensors, or a dict of them")
        if len(leaves) != len(self._outputs) or not all(
                isinstance(t, torch.Tensor) for t in leaves):
            raise InferenceFailed(
                f"model {self.config.name!r}: the model returned "
                f"{[type(t).__name__ for t in leaves]}, not one tensor per declared output "
                f"{[s.name for s in self._outputs]}")
        return leaves

    def predict(self, inputs: dict[str, Array], outputs: list[str]) -> list[Array]:
        assert self._module is not None, "predict() before load()"
        torch = self._torch
        arrays = self._check(inputs)
        picked = [self._out_index[n] for n in outputs]
        rows = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
        size = next((s for s in sorted(self._graphs) if s >= rows), None) if rows else None
        with torch.inference_mode():
            if size is not None:
                return self._replay(size, arrays, rows, picked)
            tensors = [self._to_tensor(a, dtype)
                       for a, dtype in zip(arrays, self._in_dtypes, strict=True)]
            leaves = self._leaves(self._module(*tensors))
            return [self._to_numpy(leaves[i], i) for i in picked]

    def _replay(self, size: int, arrays: list[Array], rows: int, picked: list[int]
                ) -> list[Array]:
        """The batch through the CUDA graph captured at ``size`` (>= rows): the inputs
        copied into its static buffers (the rows past the batch zeroed), one replay, the
        first ``rows`` of its static outputs copied to the host before the lock is let go
        (the next replay overwrites them)."""
        torch = self._torch
        for spec, a in zip(self._inputs, arrays, strict=True):
            if a.ndim == 0 or a.shape[0] != rows:
                raise InvalidInput(
                    f"input {spec.name!r} of model {self.config.name!r} has "
                    f"{a.shape[0] if a.ndim else 0} rows, input {self._inputs[0].name!r} "
                    f"{rows}: every input of a batch needs the same first dimension")
        with self._graph_lock:  # one set of static buffers per captured size
            graph, static, leaves = self._graphs[size]
            for buf, a in zip(static, arrays, strict=True):
                buf[:rows].copy_(torch.from_numpy(a))  # host -> device, cast on the way
                if rows < size:
                    buf[rows:].zero_()
            graph.replay()
            # .to("cpu") is a synchronous copy: it waits for the replay
            return [self._to_numpy(leaves[i][:rows], i) for i in picked]

    # Every torch call from Python that does work (``.to``, ``.detach``, even a no-op
    # ``.to``) releases the GIL and must win it back from the event loop, which costs the
    # worker thread up to the switch interval when the loop is busy: the conversions below
    # make those calls only when they change something.

    def _to_tensor(self, array: Array, dtype: Any) -> Any:
        tensor = self._torch.from_numpy(array)
        if tensor.dtype != dtype or self._device.type != "cpu":
            tensor = tensor.to(self._device, dtype)
        return tensor

    def _to_numpy(self, tensor: Any, index: int) -> Array:
        if tensor.requires_grad:
            tensor = tensor.detach()
        dtype = self._out_dtypes[index]
        if tensor.dtype != dtype or tensor.device.type != "cpu":
            tensor = tensor.to("cpu", dtype)
        out: Array = tensor.numpy()
        return out

    def unload(self) -> None:
        self._module = None
        self._graphs = {}
        device = getattr(self, "_device", None)
        if device is not None and device.type == "cuda":
            import gc

            gc.collect()  # the module and graphs may sit in reference cycles (FX modules do)
            self._torch.cuda.empty_cache()  # hand the cached blocks back to the other models

