"""Tiny ONNX model builders for tests (helpers, not tests).

Every builder writes one ``model.onnx`` with ``onnx.helper`` at opset 17 and IR version 8
(so older onnxruntime releases load it too), with a symbolic leading batch dimension
``batch``, and returns the path it wrote. ``path`` may be a file name or a directory (then
``<dir>/model.onnx`` is written); parent directories are created.

    from onnx_models import add_sub_model, scale_model, write_repository
    write_repository(tmp_path, {
        "simple": (add_sub_model, {"max_batch_size": 8}),
        "scaled": ({1: partial(scale_model, factor=1.0), 2: partial(scale_model, factor=2.0)},
                   None),
    })

Run ``python tests/onnx_models.py`` for a self-check with onnxruntime.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8
BATCH = "batch"

# (KServe/Triton datatype, ONNX element type, numpy dtype) for every tensor type that
# ONNX Runtime's CPU Identity kernel supports. bfloat16 is left out: numpy has no dtype.
DATATYPES: list[tuple[str, int, np.dtype[Any]]] = [
    ("BOOL", TensorProto.BOOL, np.dtype(np.bool_)),
    ("UINT8", TensorProto.UINT8, np.dtype(np.uint8)),
    ("UINT16", TensorProto.UINT16, np.dtype(np.uint16)),
    ("UINT32", TensorProto.UINT32, np.dtype(np.uint32)),
    ("UINT64", TensorProto.UINT64, np.dtype(np.uint64)),
    ("INT8", TensorProto.INT8, np.dtype(np.int8)),
    ("INT16", TensorProto.INT16, np.dtype(np.int16)),
    ("INT32", TensorProto.INT32, np.dtype(np.int32)),
    ("INT64", TensorProto.INT64, np.dtype(np.int64)),
    ("FP16", TensorProto.FLOAT16, np.dtype(np.float16)),
    ("FP32", TensorProto.FLOAT, np.dtype(np.float32)),
    ("FP64", TensorProto.DOUBLE, np.dtype(np.float64)),
    ("BYTES", TensorProto.STRING, np.dtype(np.object_)),
]
KSERVE_TO_ONNX = {k: o for k, o, _ in DATATYPES}
ONNX_TO_KSERVE = {o: k for k, o, _ in DATATYPES}
ONNX_TO_NUMPY = {o: n for _, o, n in DATATYPES}

PathLike = str | os.PathLike[str]
Builder = Callable[[Path], Path]


def onnx_type(datatype: int | str | np.dtype[Any] | type) -> int:
    """Resolve a tensor element type given as a ``TensorProto`` enum value, an ONNX name
    (``"FLOAT"``, ``"float"``, ``"tensor(float)"``), a KServe/Triton name (``"FP32"``,
    ``"TYPE_FP32"``, ``"BYTES"``) or a numpy dtype (``np.float32``, ``"float32"``)."""
    if isinstance(datatype, int) and not isinstance(datatype, bool):
        helper.tensor_dtype_to_np_dtype(datatype)  # raises on unknown values
        return datatype
    if isinstance(datatype, str):
        name = datatype.strip()
        if name.startswith("tensor(") and name.endswith(")"):
            name = name[len("tensor(") : -1]
        upper = name.upper().removeprefix("TYPE_")
        if upper in KSERVE_TO_ONNX:
            return KSERVE_TO_ONNX[upper]
        try:
            return int(TensorProto.DataType.Value(upper))
        except ValueError:
            pass  # maybe a numpy name such as "float32"
    dtype = np.dtype(datatype)  # raises TypeError on nonsense
    if dtype.kind in "OUS":
        return TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(dtype)


def _shape(dims: Sequence[int]) -> list[int | str]:
    return [BATCH, *(int(d) for d in dims)]


def _model_path(path: PathLike) -> Path:
    p = Path(path)
    if p.suffix != ".onnx":
        p = p / "model.onnx"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _save(graph: onnx.GraphProto, path: PathLike, doc: str = "") -> Path:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="shipyard-tests",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    out = _model_path(path)
    onnx.save(model, str(out))
    return out


def identity_model(
    path: PathLike,
    datatype_onnx: int | str | np.dtype[Any] | type,
    name_in: str = "INPUT0",
    name_out: str = "OUTPUT0",
    dims: Sequence[int] = (4,),
) -> Path:
    """``name_out = Identity(name_in)``, both of ``datatype_onnx`` and shape ``[N, *dims]``."""
    elem = onnx_type(datatype_onnx)
    graph = helper.make_graph(
        [helper.make_node("Identity", [name_in], [name_out], name="identity")],
        "identity",
        [helper.make_tensor_value_info(name_in, elem, _shape(dims))],
        [helper.make_tensor_value_info(name_out, elem, _shape(dims))],
    )
    return _save(graph, path, f"identity {TensorProto.DataType.Name(elem)}")


def add_sub_model(path: PathLike, dims: Sequence[int] = (16,)) -> Path:
    """Triton's "simple" model: FP32 INPUT0, INPUT1 [N, *dims] ->
    OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""
    shape = _shape(dims)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
        ],
        "add_sub",
        [
            helper.make_tensor_value_info("INPUT0", f32, shape),
            helper.make_tensor_value_info("INPUT1", f32, shape),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", f32, shape),
            helper.make_tensor_value_info("OUTPUT1", f32, shape),
        ],
    )
    return _save(graph, path, "add_sub")


def string_model(path: PathLike, dims: Sequence[int] = (1,)) -> Path:
    """BYTES/string INPUT0 [N, *dims] -> string OUTPUT0 (Identity).

    Opset 17 has no operator that yields string lengths (the string ops arrive at
    opset 20 and none of them measures length), so this is a plain identity."""
    return identity_model(path, TensorProto.STRING, dims=dims)


def scale_model(path: PathLike, factor: float, dims: Sequence[int] = (4,)) -> Path:
    """FP32 INPUT0 [N, *dims] -> OUTPUT0 = INPUT0 * factor (tells versions apart)."""
    shape = _shape(dims)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["INPUT0", "factor"], ["OUTPUT0"], name="scale")],
        "scale",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, shape)],
        initializer=[helper.make_tensor("factor", TensorProto.FLOAT, [], [float(factor)])],
    )
    return _save(graph, path, f"scale x{factor}")


def write_repository(
    root: PathLike,
    models: Mapping[str, tuple[Builder | Mapping[int, Builder], Mapping[str, Any] | str | None]],
) -> Path:
    """Write a model repository and return its root.

    ``models`` maps a model name to ``(builder, config)``. ``builder`` is a callable taking
    the target path (use ``functools.partial`` for arguments), written to
    ``<root>/<name>/1/model.onnx``, or a ``{version: builder}`` mapping for several
    versions. ``config`` is a dict dumped as ``<root>/<name>/config.yaml``, a string
    written verbatim, or ``None`` for no config file."""
    import yaml

    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    for name, (builder, config) in models.items():
        model_dir = root_path / name
        versions = builder if isinstance(builder, Mapping) else {1: builder}
        for version, build in versions.items():
            build(model_dir / str(int(version)) / "model.onnx")
        model_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, str):
            (model_dir / "config.yaml").write_text(config, encoding="utf-8")
        elif config is not None:
            text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
            (model_dir / "config.yaml").write_text(text, encoding="utf-8")
    return root_path


def slow_model(
    path: PathLike, layers: int, dim: int = 256, rows: int = 1024, factor: float = 1.0
) -> Path:
    """FP32 INPUT0 [N, dim] -> OUTPUT0 = INPUT0 * factor, computed slowly: each input row is
    repeated ``rows`` times ([N, rows, dim]), multiplied ``layers`` times by one shared
    ``dim x dim`` identity matrix (exact in float32), reduced back with ReduceMax over the
    repeats and scaled. Each layer costs ``N * rows * dim * dim`` multiply-adds, so the run
    time grows linearly with ``layers`` and N; calibrate it on the machine (see
    tests/serving/test_reliability.py)."""
    f32 = TensorProto.FLOAT
    nodes = [
        helper.make_node("Unsqueeze", ["INPUT0", "axes"], ["x3"], name="unsqueeze"),
        helper.make_node("Expand", ["x3", "repeat"], ["h0"], name="expand"),
    ]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "W"], [f"h{i + 1}"],
                                      name=f"matmul{i}"))
    nodes += [
        helper.make_node("ReduceMax", [f"h{layers}"], ["r"], name="reduce", axes=[1],
                         keepdims=0),
        helper.make_node("Mul", ["r", "factor"], ["OUTPUT0"], name="scale"),
    ]
    eye = np.eye(dim, dtype=np.float32)
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("INPUT0", f32, [BATCH, dim])],
        [helper.make_tensor_value_info("OUTPUT0", f32, [BATCH, dim])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("repeat", TensorProto.INT64, [3], [1, rows, 1]),
            helper.make_tensor("W", f32, [dim, dim], eye.tobytes(), raw=True),
            helper.make_tensor("factor", f32, [], [float(factor)]),
        ],
    )
    return _save(graph, path, f"slow x{factor} ({layers} layers of {rows}x{dim})")


@functools.cache
def slow_model_layers(target_s: float, dim: int = 256, rows: int = 1024) -> int:
    """How many layers ``slow_model(dim=dim, rows=rows)`` needs for one run of a single row to
    take about ``target_s`` on this machine (ONNX Runtime on one thread, as the server runs it
    by default); measured once per argument set."""
    import tempfile
    import time

    import onnxruntime as ort

    probe = 8
    with tempfile.TemporaryDirectory() as tmp:
        path = slow_model(Path(tmp) / "probe.onnx", probe, dim=dim, rows=rows)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        x = np.ones((1, dim), dtype=np.float32)
        sess.run(None, {"INPUT0": x})
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            sess.run(None, {"INPUT0": x})
            times.append(time.perf_counter() - t0)
    per_layer = sorted(times)[len(times) // 2] / probe
    return max(1, round(target_s / per_layer))


def warmup_fail_model(path: PathLike, dims: Sequence[int] = (4,)) -> Path:
    """FP32 INPUT0 [N, *dims] -> OUTPUT0 = Reshape(INPUT0, [-1, 3]): a valid model file that
    loads fine but fails at run time unless N * prod(dims) is a multiple of 3, so the default
    warm-up (zeros with N = 1, dims (4,)) fails."""
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["INPUT0", "shape"], ["OUTPUT0"], name="reshape")],
        "warmup_fail",
        [helper.make_tensor_value_info("INPUT0", f32, _shape(dims))],
        [helper.make_tensor_value_info("OUTPUT0", f32, [BATCH, 3])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])],
    )
    return _save(graph, path, "reshape to [-1, 3] (fails warm-up)")


# --------------------------------------------------------------------------------------
# text models: a TF-IDF + logistic regression (skl2onnx, BYTES in) and a tiny "Transformer-
# like" classifier (token ids in) with its WordPiece tokenizer
# --------------------------------------------------------------------------------------

#: the classes of the text test models, in class-number order
TEXT_LABELS = ("ham", "spam")
SMS_SPAM = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / \
    "SMSSpamCollection"


def sms_messages(n: int | None = None, path: PathLike = SMS_SPAM) -> list[tuple[str, str]]:
    """The first ``n`` (label, text) pairs of the SMS spam collection (tab-separated
    ``label<TAB>text`` lines); all of them when ``n`` is None."""
    rows: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            label, _, text = line.rstrip("\n").partition("\t")
            if text:
                rows.append((label, text))
            if n is not None and len(rows) >= n:
                break
    return rows


def tfidf_text_model(path: PathLike, texts: Sequence[str], labels: Sequence[str]) -> Path:
    """A scikit-learn ``TfidfVectorizer`` + ``LogisticRegression`` fitted on ``texts``, exported
    with skl2onnx: STRING ``text`` ``[N, 1]`` -> STRING ``label`` ``[N]`` and FP32
    ``probabilities`` ``[N, classes]`` (classes sorted, as ``classes_``; no ZipMap).

    The vectorizer is converted with ``locale: "C"``: without it skl2onnx writes the
    machine's locale into the StringNormalizer node and ONNX Runtime may refuse to load it."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    pipe.fit(list(texts), list(labels))
    model = convert_sklearn(
        pipe, initial_types=[("text", StringTensorType([None, 1]))], target_opset=OPSET,
        options={TfidfVectorizer: {"locale": "C"}, LogisticRegression: {"zipmap": False}})
    out = _model_path(path)
    onnx.save(model, str(out))
    return out


def wordpiece_tokenizer(path: PathLike, texts: Sequence[str], vocab_size: int = 2000) -> Path:
    """Train a BERT-style WordPiece ``tokenizer.json`` on ``texts`` (lower-cased first, as the
    served ``text_normalize {lowercase: true}`` step gives them): specials ``[PAD]`` = 0,
    ``[UNK]``, ``[CLS]``, ``[SEP]``; post-processor ``[CLS] $A [SEP]``. Returns the file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator([t.lower() for t in texts], trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(s, tok.token_to_id(s)) for s in specials[2:]])
    assert tok.token_to_id("[PAD]") == 0
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def text_classifier_model(path: PathLike, vocab_size: int, dim: int = 32,
                          classes: int = len(TEXT_LABELS), pad_id: int = 0,
                          seed: int = 0) -> Path:
    """A small "Transformer-like" text classifier without attention: INT64 ``input_ids``
    ``[N, L]`` -> Gather(embedding ``[vocab_size, dim]``) -> mean over the positions whose id
    is not ``pad_id`` -> MatMul ``[dim, classes]`` + bias -> FP32 ``logits`` ``[N, classes]``.
    Weights are random (``seed``); a row of padding only gives the bias."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (vocab_size, dim)).astype(np.float32)
    w = rng.normal(0, 1, (dim, classes)).astype(np.float32)
    b = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["emb"], name="embed"),
        helper.make_node("Equal", ["input_ids", "pad"], ["is_pad"], name="is_pad"),
        helper.make_node("Not", ["is_pad"], ["is_token"], name="is_token"),
        helper.make_node("Cast", ["is_token"], ["mask"], name="mask", to=f32),
        helper.make_node("Unsqueeze", ["mask", "axis2"], ["mask3"], name="mask3"),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"], name="masked"),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], name="sum", keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], name="count", keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count1"], name="at_least_one"),
        helper.make_node("Div", ["summed", "count1"], ["mean"], name="mean"),
        helper.make_node("MatMul", ["mean", "W"], ["proj"], name="project"),
        helper.make_node("Add", ["proj", "b"], ["logits"], name="bias"),
    ]
    graph = helper.make_graph(
        nodes, "text_classifier",
        [helper.make_tensor_value_info("input_ids", i64, [BATCH, "length"])],
        [helper.make_tensor_value_info("logits", f32, [BATCH, classes])],
        initializer=[
            helper.make_tensor("embedding", f32, emb.shape, emb.tobytes(), raw=True),
            helper.make_tensor("pad", i64, [], [pad_id]),
            helper.make_tensor("axis1", i64, [1], [1]),
            helper.make_tensor("axis2", i64, [1], [2]),
            helper.make_tensor("one", f32, [], [1.0]),
            helper.make_tensor("W", f32, w.shape, w.tobytes(), raw=True),
            helper.make_tensor("b", f32, b.shape, b.tobytes(), raw=True),
        ],
    )
    return _save(graph, path, f"text classifier (vocab {vocab_size}, dim {dim})")


#: the preprocess steps the text classifier is served behind
TEXT_PREPROCESS: list[dict[str, Any]] = [
    {"text_normalize": {"lowercase": True}},
    {"tokenize": {"path": "tokenizer.json", "max_length": 64, "truncation": True}},
]


def text_classifier_repository(
    root: PathLike, texts: Sequence[str], configs: Mapping[str, Mapping[str, Any]],
    vocab_size: int = 2000, dim: int = 32,
) -> Path:
    """Write the text classifier (``text_classifier_model``) and its tokenizer trained on
    ``texts`` once per entry of ``configs`` (model name -> ``config.yaml`` as a dict) under
    ``root``: ``<root>/<name>/1/{model.onnx, tokenizer.json}``. Returns ``root``."""
    import shutil

    import yaml

    root_path = Path(root)
    first: Path | None = None
    for name, config in configs.items():
        version = root_path / name / "1"
        if first is None:
            tok = wordpiece_tokenizer(version / "tokenizer.json", texts, vocab_size)
            from tokenizers import Tokenizer

            size = Tokenizer.from_file(str(tok)).get_vocab_size()
            text_classifier_model(version / "model.onnx", size, dim=dim)
            first = version
        else:
            shutil.copytree(first, version)
        text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
        (root_path / name / "config.yaml").write_text(text, encoding="utf-8")
    return root_path


# --------------------------------------------------------------------------------------
# self-check: python tests/onnx_models.py
# --------------------------------------------------------------------------------------


def sample(datatype: int | str | np.dtype[Any] | type, shape: Sequence[int]) -> np.ndarray:
    """Deterministic sample data of the given element type and shape."""
    elem = onnx_type(datatype)
    n = int(np.prod(shape))
    if elem == TensorProto.STRING:
        return np.array([f"s{i}-ü" for i in range(n)], dtype=object).reshape(shape)
    if elem == TensorProto.BOOL:
        return (np.arange(n) % 3 == 0).reshape(shape)
    dtype = ONNX_TO_NUMPY[elem]
    if dtype.kind == "f":
        return (np.arange(n) * 0.5 - 3).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    vals = [info.min, info.max, 0, 1, *range(2, n)]
    return np.array(vals[:n], dtype=dtype).reshape(shape)


def _self_check() -> None:
    import tempfile
    from functools import partial

    import onnxruntime as ort

    def run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for i in sess.get_inputs():
            assert i.shape[0] == BATCH, i.shape
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds), strict=True))

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for kserve, elem, _ in DATATYPES:
            specs = [elem, kserve, f"TYPE_{kserve}", TensorProto.DataType.Name(elem)]
            specs.append(ONNX_TO_NUMPY[elem] if elem != TensorProto.STRING else "string")
            for spec in specs:
                assert onnx_type(spec) == elem, (spec, elem)
            x = sample(elem, (3, 4))
            (y,) = run(identity_model(d / f"id_{kserve}", elem), {"INPUT0": x}).values()
            assert y.dtype == x.dtype and y.shape == x.shape, (kserve, y.dtype, y.shape)
            assert (y == x).all(), kserve
        print(f"identity ok for {', '.join(k for k, _, _ in DATATYPES)}")

        p = identity_model(d / "named.onnx", "tensor(int32)", "IN", "OUT", dims=(2, 3))
        out = run(p, {"IN": sample(np.int32, (5, 2, 3))})
        assert out["OUT"].shape == (5, 2, 3)

        a, b = sample("FP32", (2, 16)), sample("FP32", (2, 16))[:, ::-1].copy()
        out = run(add_sub_model(d / "simple"), {"INPUT0": a, "INPUT1": b})
        np.testing.assert_array_equal(out["OUTPUT0"], a + b)
        np.testing.assert_array_equal(out["OUTPUT1"], a - b)
        print("add_sub ok")

        s = np.array([["hello"], ["wörld"], [""]], dtype=object)
        out = run(string_model(d / "string"), {"INPUT0": s})
        assert out["OUTPUT0"].tolist() == s.tolist()
        print("string ok")

        x = sample("FP32", (7, 4))
        out = run(scale_model(d / "scale", 2.5), {"INPUT0": x})
        np.testing.assert_array_equal(out["OUTPUT0"], x * np.float32(2.5))
        print("scale ok")

        root = write_repository(
            d / "repo",
            {
                "simple": (add_sub_model, {"backend": "onnx", "max_batch_size": 8}),
                "versioned": (
                    {1: partial(scale_model, factor=1.0), 3: partial(scale_model, factor=3.0)},
                    "backend: onnx\nmax_batch_size: 0\n",
                ),
                "bare": (partial(identity_model, datatype_onnx="BYTES"), None),
            },
        )
        assert (root / "simple" / "1" / "model.onnx").is_file()
        assert "max_batch_size: 8" in (root / "simple" / "config.yaml").read_text()
        out = run(root / "versioned" / "3" / "model.onnx", {"INPUT0": x})
        np.testing.assert_array_equal(out["OUTPUT0"], x * np.float32(3.0))
        assert not (root / "versioned" / "2").exists()
        assert not (root / "bare" / "config.yaml").exists()
        assert (root / "bare" / "1" / "model.onnx").is_file()
        print(f"write_repository ok ({sorted(p.name for p in root.iterdir())})")
    print(f"all ok (onnx {onnx.__version__}, onnxruntime {ort.__version__})")


if __name__ == "__main__":
    _self_check()
