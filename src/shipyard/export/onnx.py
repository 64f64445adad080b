"""The whole fitted pipeline (preprocessing + model) as one ONNX graph, with skl2onnx.

Inputs are the raw columns, one ``[N, 1]`` tensor each (FP32 numbers, strings as ONNX string
tensors, served as V2 BYTES), or one FP32 ``[N, n_features]`` matrix. Outputs: ``label`` and
``probabilities`` ``[N, n_classes]`` (no ZipMap) for classifiers, ``prediction`` ``[N, 1]`` for
regressors, and optionally ``score`` ``[N, 1]``, the probability of one class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from shipyard.data.features import ColumnPlan
from shipyard.errors import ExportError
from shipyard.export.interface import OnnxInterface

__all__ = ["OnnxInterface", "default_opset", "onnx_feeds", "pipeline_to_onnx", "tensor_summary"]

ML_OPSET = 3


def _initial_types(plans: Sequence[ColumnPlan]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (p.name, FloatTensorType([None, 1]) if p.type == "numeric" else StringTensorType([None, 1]))
        for p in plans
    ]


def _convert(pipeline: Any, plans: Sequence[ColumnPlan], classify: bool, opset: int) -> Any:
    from skl2onnx import convert_sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer

    options: dict[Any, Any] = {}
    if classify:
        options[id(pipeline)] = {"zipmap": False}
    if any(p.type == "text" for p in plans):
        # ONNX Runtime's StringNormalizer defaults to en_US.UTF-8, missing on many machines.
        options[TfidfVectorizer] = {"locale": "C"}
    model_name = type(pipeline.steps[-1][1]).__name__
    try:
        return convert_sklearn(
            pipeline, initial_types=_initial_types(plans), options=options,
            target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as exc:  # skl2onnx raises RuntimeError, ValueError, NotImplementedError...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise ExportError(
            f"export: skl2onnx cannot convert this pipeline (model {model_name}): "
            f"{type(exc).__name__}: {first}. The fitted scikit-learn pipeline is still saved "
            "(pipeline.joblib); to serve it, choose a convertible model (linear_regression, "
            "ridge, logistic_regression, random_forest, gradient_boosting, mlp) or set "
            "export.onnx: false"
        ) from exc


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.output, *graph.input]:
        if value.name == old:
            value.name = new


def _add_score(graph: onnx.GraphProto, index: int) -> onnx.ValueInfoProto:
    consts = {"score_starts": [index], "score_ends": [index + 1], "score_axes": [1]}
    for name, values in consts.items():
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
    graph.node.append(helper.make_node(
        "Slice", ["probabilities", *consts], ["score"], name="shipyard_score"))
    return helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])


def default_opset(model: onnx.ModelProto) -> int:
    """The opset of the default (ai.onnx) domain the graph was written for."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _matrix_input(model: onnx.ModelProto, plans: Sequence[ColumnPlan], name: str) -> None:
    graph = model.graph
    if any(p.type != "numeric" for p in plans):
        bad = [p.name for p in plans if p.type != "numeric"]
        raise ExportError(f"export.input: 'matrix' needs numeric features only, but {bad} are "
                          "not; use export.input: columns")
    columns = [p.name for p in plans]
    if name in columns:
        raise ExportError(f"export.input_name: {name!r} is also a column name; pick another")
    kept = [i for i in graph.input if i.name not in set(columns)]
    del graph.input[:]
    graph.input.extend([helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                      [None, len(columns)]), *kept])
    if default_opset(model) >= 13:  # split sizes became an input in opset 13
        graph.initializer.append(numpy_helper.from_array(
            np.ones(len(columns), np.int64), "shipyard_split_sizes"))
        split = helper.make_node("Split", [name, "shipyard_split_sizes"], columns, axis=1,
                                 name="shipyard_columns")
    else:
        split = helper.make_node("Split", [name], columns, axis=1, split=[1] * len(columns),
                                 name="shipyard_columns")
    graph.node.insert(0, split)


def pipeline_to_onnx(
    pipeline: Any,
    plans: Sequence[ColumnPlan],
    *,
    classify: bool,
    interface: OnnxInterface,
    opset: int = 17,
    metadata: Mapping[str, str] | None = None,
    doc: str = "",
) -> onnx.ModelProto:
    """Convert and adapt; raise ExportError with the reason when that is impossible."""
    model: onnx.ModelProto = _convert(pipeline, plans, classify, opset)
    graph = model.graph
    produced = {o.name: o for o in graph.output}
    if not classify:
        if len(graph.output) != 1:
            raise ExportError(f"export: expected one regression output, got {list(produced)}")
        _rename(graph, graph.output[0].name, "prediction")
        produced = {"prediction": graph.output[0]}
    wanted: list[onnx.ValueInfoProto] = []
    for name in interface.outputs:
        if name == "score":
            wanted.append(_add_score(graph, interface.score_index))
        elif name in produced:
            wanted.append(produced[name])
        else:
            raise ExportError(f"export.outputs: the converted graph has no output {name!r}; it "
                              f"has {list(produced)}")
    outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type,
                                             [None, *_dims(o)[1:]]) for o in wanted]
    del graph.output[:]
    graph.output.extend(outputs)
    if interface.input == "matrix":
        _matrix_input(model, plans, interface.input_name)
    model.producer_name = "shipyard"
    model.doc_string = doc
    if metadata:
        helper.set_model_props(model, dict(metadata))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"export: the adapted ONNX graph is invalid: {exc}") from exc
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims] or [None]


def tensor_summary(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs as V2 datatypes and shapes (-1 = dynamic)."""
    v2 = {TensorProto.FLOAT: "FP32", TensorProto.DOUBLE: "FP64", TensorProto.INT64: "INT64",
          TensorProto.STRING: "BYTES", TensorProto.INT32: "INT32", TensorProto.BOOL: "BOOL"}

    def describe(values: Any) -> list[dict[str, Any]]:
        return [{"name": v.name, "datatype": v2.get(v.type.tensor_type.elem_type, "?"),
                 "shape": [-1 if d is None else d for d in _dims(v)]} for v in values]

    initializers = {i.name for i in model.graph.initializer}
    return {"inputs": describe([i for i in model.graph.input if i.name not in initializers]),
            "outputs": describe(model.graph.output)}


def onnx_feeds(
    X: pd.DataFrame, plans: Sequence[ColumnPlan], interface: OnnxInterface
) -> dict[str, np.ndarray]:
    """The ONNX Runtime inputs for a prepared feature frame (see ``shipyard.data.schema``)."""
    if interface.input == "matrix":
        return {interface.input_name: X[[p.name for p in plans]].to_numpy(dtype=np.float32)}
    feeds: dict[str, np.ndarray] = {}
    for p in plans:
        column = X[p.name].to_numpy()
        if p.type == "numeric":
            feeds[p.name] = column.astype(np.float32).reshape(-1, 1)
        else:
            feeds[p.name] = column.astype(object).reshape(-1, 1)
    return feeds
