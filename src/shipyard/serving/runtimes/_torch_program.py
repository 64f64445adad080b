"""What the torch runtime does with a ``torch.export`` program (``model.pt2``): its V2
metadata, whether a trace of it is faithful, the trace (``execution: script``) and the
AOTInductor form (``execution: aot``). Imported by :mod:`shipyard.serving.runtimes.torch`
once torch is; every function takes the ``torch`` module so that nothing here imports it.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from pathlib import Path
from typing import Any

from shipyard.serving.config import TensorConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.types import TensorSpec

__all__ = [
    "TORCH_TO_V2",
    "V2_TO_TORCH",
    "AotiRunner",
    "aot",
    "example_inputs",
    "program_metadata",
    "trace",
    "untraceable",
]

log = logging.getLogger("shipyard.runtime.torch")

#: torch dtype name (``str(torch.float32)`` without "torch.") -> V2 datatype
TORCH_TO_V2 = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
V2_TO_TORCH = {v: k for k, v in TORCH_TO_V2.items()}


class AotiRunner:
    """An AOTInductor model called with the flat list of input tensors, answering the flat
    list of outputs (the runtime's output order): ``AOTICompiledModel.__call__`` parses its
    pytree specs from JSON on every call.

    On CPU the compiled kernels are OpenMP loops (``#pragma omp parallel``) that take their
    thread count from the calling thread's OpenMP setting, which a new thread (the batcher's
    worker) inherits not from ``torch.set_num_threads`` at load but from the process default
    (all cores): measured on 2 cores, a worker that never set it ran each batch 5x slower, a
    second OpenMP thread spinning beside it. So each calling thread sets ``threads`` once."""

    def __init__(self, compiled: Any, torch: Any, threads: int | None) -> None:
        self._run = compiled.loader.run
        self._torch = torch
        self._threads = threads
        self._set = threading.local()

    def __call__(self, *tensors: Any) -> list[Any]:
        if self._threads is not None and not getattr(self._set, "done", False):
            self._torch.set_num_threads(self._threads)
            self._set.done = True
        out: list[Any] = self._run(list(tensors))
        return out


def untraceable(torch: Any, program: Any) -> str:
    """Why ``torch.jit.trace`` of the program's module would not be the same program
    (empty when it would). A trace records the tensor ops it sees and bakes every Python
    value into the graph, so it is faithful only for a straight-line graph of ATen ops on
    tensors: no size computed from an input (a SymInt node, e.g. ``view(x, [x.size(0),
    -1])`` would keep the traced batch size) and no higher-order op (``torch.cond``:
    the trace would keep one branch)."""
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if isinstance(node.meta.get("val"), torch.SymInt | torch.SymFloat | torch.SymBool):
            return f"node {node.name!r} ({target}) computes a size from the inputs"
        if not (isinstance(target, torch._ops.OpOverload)
                and target.namespace in ("aten", "prims")) and target.__name__ != "getitem":
            return f"node {node.name!r} calls {target}, which is not an ATen op"
    return ""


def example_inputs(torch: Any, inputs: list[TensorSpec], ranges: list[Any], dtypes: list[Any],
                   device: Any) -> list[Any]:
    """Zeros in each input's exported shape, dynamic dimensions at their smallest size
    above 1 (within the exported range)."""
    tensors = []
    for spec, dims, dtype in zip(inputs, ranges, dtypes, strict=True):
        shape = list(spec.shape)
        for i, low, high, _ in dims:
            shape[i] = max(low, 2) if high is None else min(max(low, 2), high)
        tensors.append(torch.zeros(shape, dtype=dtype, device=device))
    return tensors


def trace(torch: Any, module: Any, examples: list[Any], model: str) -> Any:
    """The module as a TorchScript graph (``torch.jit.trace``): one call into C++ per
    batch, which holds the GIL only to enter and leave."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13: torch.jit.*
        # a trace that had to turn a traced value into a Python one may not generalise:
        # refuse it, except in torch._check (the module's own input-guard checks, which
        # the runtime makes before each call anyway)
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning,
                                module="torch$")
        try:
            with torch.inference_mode():
                traced = torch.jit.trace(module, tuple(examples),
                                         check_trace=False, strict=False)
        except Exception as exc:
            raise InvalidInput(
                f"model {model!r}: parameters.execution: script could not "
                f"trace the program: {type(exc).__name__}: {exc}; use execution: eager"
            ) from exc
    return traced.eval()


def aot(torch: Any, program: Any, path: Path, device: Any, dtype: Any, threads: int | None,
        model: str) -> Any:
    """The AOTInductor-compiled model: from the file when it carries one (a PT2 archive
    written with ``torch.export.pt2_archive._package.package_pt2(exported_programs=...,
    aoti_files=...)``), else compiled now (seconds to minutes; needs a C++ compiler)."""
    name = model
    if dtype != torch.float32:
        raise InvalidInput(
            f"model {name!r}: parameters.execution: aot runs the program as exported "
            f"(float32 here); remove dtype: {str(dtype).removeprefix('torch.')}")
    device_index = device.index if device.index is not None else -1
    with zipfile.ZipFile(path) as archive:
        packaged = any("/data/aotinductor/" in n for n in archive.namelist())
    try:
        if packaged:
            compiled = torch._inductor.aoti_load_package(str(path), device_index=device_index)
            # code compiled for another device would be handed this device's tensors
            metadata: dict[str, str] = getattr(compiled, "get_metadata", dict)()
            built_for = str(metadata.get("AOTI_DEVICE_KEY", ""))
            if built_for and built_for != device.type:
                raise InvalidInput(
                    f"model {name!r}: execution: aot: the AOTInductor code in "
                    f"{str(path)!r} was compiled for {built_for}, the model runs on {device}; "
                    f"compile it for {device.type} when exporting, or set parameters.device: "
                    f"{built_for}")
            return AotiRunner(compiled, torch, threads)
        log.info("model %s: %s carries no AOTInductor code: compiling it now (package "
                 "it with the program to skip this)", name, path.name)
        if device.type != "cpu":
            raise InvalidInput(
                f"model {name!r}: execution: aot on {device} needs the compiled "
                "code in the file (compile it for that device when exporting)")
        import tempfile
        import warnings

        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own internals
            warnings.simplefilter("ignore", DeprecationWarning)
            target = str(Path(tmp) / "model.pt2")
            torch._inductor.aoti_compile_and_package(program, package_path=target)
            return AotiRunner(torch._inductor.aoti_load_package(target), torch, threads)
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"model {name!r}: execution: aot failed to load or compile "
            f"{str(path)!r}: {type(exc).__name__}: {exc}") from exc


def program_metadata(torch: Any, program: Any, model: str, declared: list[TensorConfig] | None
                     ) -> tuple[list[TensorSpec], list[TensorSpec], list[Any]]:
    """Inputs, outputs and the dynamic-dimension ranges of each input, from the program."""
    name = model
    sig = program.graph_signature
    nodes = {n.name: n for n in program.graph.nodes}
    arg_names = list(program.module_call_graph[0].signature.forward_arg_names or [])
    user_inputs = list(sig.user_inputs)
    if len(user_inputs) != len(arg_names):
        raise InvalidInput(
            f"model {name!r}: the exported forward takes {arg_names} but the program has "
            f"{len(user_inputs)} inputs; each forward argument must be one tensor "
            "(no tuples, dicts or None) to be served")
    inputs, ranges = [], []
    for arg, node_name in zip(arg_names, user_inputs, strict=True):
        spec, dims = _spec(torch, model, arg, nodes[node_name].meta.get("val"), program)
        inputs.append(spec)
        ranges.append(dims)
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    values = [a.meta.get("val") if hasattr(a, "meta") else a for a in output_node.args[0]]
    values = values[: len(sig.user_outputs)]
    if declared is not None:
        if len(declared) != len(values):
            raise InvalidInput(
                f"model {name!r}: config.yaml declares {len(declared)} outputs "
                f"{[d.name for d in declared]} but the exported program returns "
                f"{len(values)}; declare one output per returned tensor, in order")
        names = [d.name for d in declared]
    else:
        spec_out = program.call_spec.out_spec
        if (spec_out is not None and spec_out.type is dict
                and all(c.is_leaf() for c in spec_out.children())):
            names = [str(k) for k in spec_out.context]
        else:
            names = [f"OUTPUT{i}" for i in range(len(values))]
    outputs = [_spec(torch, model, n, v, program)[0] for n, v in zip(names, values, strict=True)]
    return inputs, outputs, ranges

def _spec(torch: Any, model: str, tensor_name: str, value: Any, program: Any
          ) -> tuple[TensorSpec, list[tuple[int, int, int | None, Any]]]:
    """The TensorSpec of a graph value, and (dim, low, high, symbol) per dynamic dim."""
    if not isinstance(value, torch.Tensor):
        raise InvalidInput(
            f"model {model!r}: {tensor_name!r} of the exported program is a "
            f"{type(value).__name__}, not a tensor; only tensors can be served")
    datatype = TORCH_TO_V2.get(str(value.dtype).removeprefix("torch."))
    if datatype is None:
        raise InvalidInput(
            f"model {model!r}: tensor {tensor_name!r} has dtype {value.dtype}, "
            f"which the V2 protocol here cannot carry; supported: {sorted(V2_TO_TORCH)} "
            "(export in float32 and set parameters.dtype to compute in bfloat16)")
    shape, dims = [], []
    for i, d in enumerate(value.shape):
        if isinstance(d, int):
            shape.append(d)
            continue
        shape.append(-1)
        expr = d.node.expr
        rng = program.range_constraints.get(expr)
        low = int(rng.lower) if rng is not None else 0
        upper = rng.upper if rng is not None else None
        high = int(upper) if upper is not None and upper.is_finite else None
        dims.append((i, low, high, expr))
    return TensorSpec(tensor_name, datatype, tuple(shape)), dims
