"""A byte-level BPE ``tokenizer.json`` as ONNX operators, in front of a text classifier's graph.

onnxruntime-extensions' ``GPT2Tokenizer`` custom operator (domain ``ai.onnx.contrib``) runs
GPT-2's byte-level BPE from a vocabulary and a merge list. :func:`tokenizer_graph` turns the
``tokenizer.json`` that :func:`shipyard.data.text_tokenizer.train_tokenizer` writes for
``kind="bpe"`` into that operator, followed by standard ONNX operators that do what the
``tokenize`` step (:class:`shipyard.transforms.Tokenize` with ``truncation: true,
allow_empty: true``) does after the ``tokenizers`` library: keep the first ``max_length - 2``
tokens, put ``[CLS]`` before and ``[SEP]`` after them, and pad the row with 0 to
``max_length``. :func:`text_model` merges it before a graph that takes ``input_ids``
(``onnx.compose``), so the file alone takes the chain's texts: ``text`` BYTES ``[N]`` ->
``logits``.

Only what the operator reproduces is converted: a BPE model with GPT-2's byte-level
pre-tokenizer (its regex, no prefix space), no normalizer, no dropout, no continuation prefix or
word suffix, special tokens matched as written, and the post-processor ``[CLS] $A [SEP]``.
Anything else (WordPiece, for one) raises :class:`~shipyard.errors.ExportError` naming what
differs. Measured identical to ``Tokenize`` on the 5,574 SMS messages (raw and after the
example's chain), the awkward corpus of the tests and 20,000 random strings of 15 scripts
(``tests/training/test_text_tokenizer_graph.py``); the trainer checks every run's test split
again (``export.json``'s ``text_graph.ids``). Two faults of onnxruntime-extensions 0.15 found
on the way: a text that ends inside a partial special token (``"[b"``, ``"x[UN"``) loses its
end when special tokens are declared; the graph appends the ``[SEP]`` text to every text (and
cuts its token), which avoids it. And a text with U+0000 is cut at it (:data:`DIFFERS`), which
no graph can avoid; the run's check fails on such texts, so publishing the graph then needs
``--force``.

Not imported by the server: it needs ``onnx``, and ``onnxruntime-extensions`` to check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.errors import ExportError

__all__ = ["CONTRIB_DOMAIN", "DIFFERS", "TEXT_INPUT", "BpeTokenizerSpec", "custom_ops_session",
           "export_text_graph", "read_bpe_tokenizer", "text_model", "tokenizer_graph"]

CONTRIB_DOMAIN = "ai.onnx.contrib"
"""The ONNX domain of onnxruntime-extensions' operators."""
TEXT_INPUT = "text"
"""The input of the tokenizer graph (and of the merged model): one UTF-8 text per row."""
DIFFERS = ("a text with the character U+0000 (NUL) is cut at its first NUL inside the graph "
           "(onnxruntime-extensions reads strings as C strings), while the tokenize step "
           "encodes every character; serve texts that may hold NUL with the tokenizer as a "
           "step (shipyard publish --tokenizer steps)")
"""The one class of texts measured to get other ids inside the graph than from ``tokenize``."""
_IDS = "input_ids"
_P = "shipyard_tokenize/"  # prefix of every name the tokenizer graph makes (no clash on merge)


class BpeTokenizerSpec:
    """What the ``GPT2Tokenizer`` operator needs from a ``tokenizer.json``: the vocabulary,
    the merges, the special tokens and the ids of the first and last template tokens."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 special: dict[str, int], first_id: int, last_id: int, sentinel: str) -> None:
        #: token -> id (the 256 byte symbols and the merged pieces)
        self.vocab = vocab
        #: the merges in rank order
        self.merges = merges
        #: special (added) token -> id; matched in a text as written, as ``tokenizers`` does
        self.special = special
        #: the id put before every text ([CLS])
        self.first_id = first_id
        #: the id put after every (cut) text ([SEP])
        self.last_id = last_id
        #: the special token that ends every text inside the graph (the text of ``last_id``)
        self.sentinel = sentinel


def _fail(file: Path, what: str) -> ExportError:
    return ExportError(
        f"{str(file)!r}: {what}; onnxruntime-extensions' GPT2Tokenizer reproduces only a "
        "byte-level BPE tokenizer as train_tokenizer(kind='bpe') writes it (tokenizer.kind: "
        "bpe); keep the tokenizer as a step (export.tokenizer_in_graph: false)")


def _template(file: Path, post: Any) -> tuple[int, int]:
    """The ids of ``[CLS] $A [SEP]``, the only template the graph adds."""
    if not isinstance(post, dict) or post.get("type") != "TemplateProcessing":
        kind = post.get("type") if isinstance(post, dict) else post
        raise _fail(file, f"post_processor is {kind!r}, not TemplateProcessing "
                          "'[CLS] $A [SEP]'")
    single = post.get("single") or []
    kinds = [next(iter(piece)) for piece in single]
    if kinds != ["SpecialToken", "Sequence", "SpecialToken"] or \
            single[1]["Sequence"].get("id") != "A":
        raise _fail(file, f"post_processor's single template is {single}, not "
                          "'[CLS] $A [SEP]'")
    ids = []
    for piece in (single[0], single[2]):
        name = piece["SpecialToken"]["id"]
        token_ids = (post.get("special_tokens") or {}).get(name, {}).get("ids") or []
        if len(token_ids) != 1:
            raise _fail(file, f"template token {name!r} has ids {token_ids}, not one id")
        ids.append(int(token_ids[0]))
    return ids[0], ids[1]


def read_bpe_tokenizer(file: str | Path) -> BpeTokenizerSpec:
    """The parts of ``file`` (a ``tokenizers`` JSON file) that the ``GPT2Tokenizer`` operator
    takes, after checking that it computes the same ids; anything it would compute
    differently raises :class:`ExportError` naming the field and its value."""
    file = Path(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{str(file)!r}: cannot read the tokenizer file ({exc})") from exc
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise _fail(file, f"model.type is {model.get('type')!r}, not 'BPE'")
    if model.get("dropout") not in (None, 0, 0.0):
        raise _fail(file, f"model.dropout is {model['dropout']!r}, not null")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "byte_fallback",
                "fuse_unk", "ignore_merges"):
        if model.get(key):
            raise _fail(file, f"model.{key} is {model[key]!r}, not null/false")
    if data.get("normalizer") is not None:
        raise _fail(file, f"it has a normalizer ({data['normalizer'].get('type')!r}); the "
                          "chain normalises the texts")
    pre = data.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or \
            not pre.get("use_regex", True):
        raise _fail(file, f"pre_tokenizer is {pre}, not ByteLevel(add_prefix_space=False, "
                          "use_regex=True)")
    special: dict[str, int] = {}
    for token in data.get("added_tokens") or []:
        flags = {k: token.get(k) for k in ("single_word", "lstrip", "rstrip", "normalized")}
        if any(flags.values()) or not token.get("special"):
            raise _fail(file, f"added token {token.get('content')!r} has {flags} "
                              f"(special={token.get('special')}); only special tokens matched "
                              "as written convert")
        special[str(token["content"])] = int(token["id"])
    merges: list[tuple[str, str]] = []
    for merge in model.get("merges") or []:
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if len(pair) != 2:
            raise _fail(file, f"merge {merge!r} is not a pair of tokens")
        merges.append((str(pair[0]), str(pair[1])))
    first, last = _template(file, data.get("post_processor"))
    sentinel = next((k for k, v in special.items() if v == last), None)
    if sentinel is None:
        raise _fail(file, f"the template's last token (id {last}) is not a special token")
    vocab = {str(k): int(v) for k, v in (model.get("vocab") or {}).items()}
    return BpeTokenizerSpec(vocab, merges, special, first, last, sentinel)


def _node(op: str, inputs: list[str], output: str, **attrs: Any) -> Any:
    from onnx import helper

    return helper.make_node(op, inputs, [output], name=output, **attrs)


def _const(name: str, values: Any) -> Any:
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], name=name,
                            value=numpy_helper.from_array(np.asarray(values, dtype=np.int64),
                                                          name))


def tokenizer_graph(file: str | Path, *, max_length: int, opset: int = 18,
                    ir_version: int | None = None, output_name: str = _IDS) -> Any:
    """An ONNX ModelProto: ``text`` STRING ``[N]`` -> ``output_name`` INT64
    ``[N, max_length]``, the ids the ``tokenize`` step (``truncation: true, allow_empty:
    true``) makes from the same texts with ``file``. ``opset``: the default domain's version
    (that of the graph it will be merged with); ``ir_version``: likewise (None: onnx's)."""
    from onnx import TensorProto, helper, numpy_helper

    spec = read_bpe_tokenizer(file)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ExportError(f"tokenizer_graph max_length must be an integer >= 2 (room for "
                          f"[CLS] and [SEP]), got {max_length!r}")
    keep = max_length - 2  # the text's tokens in a row
    attrs: dict[str, Any] = {
        "vocab": json.dumps(spec.vocab, separators=(",", ":"), ensure_ascii=False),
        "merges": "\n".join(f"{a} {b}" for a, b in spec.merges)}
    if spec.special:
        attrs["added_token"] = "\n".join(f"{k}={v}" for k, v in spec.special.items())
    p = _P
    nodes = [
        # every text + the last special token: the operator then never ends a text inside a
        # partial match of a special token, where it drops the text's last characters
        # (onnxruntime-extensions 0.15: "[b" -> "[", "[UN" -> "["); its token is cut below
        helper.make_node("Constant", [], [p + "sentinel"], name=p + "sentinel",
                         value=numpy_helper.from_array(np.array([spec.sentinel],
                                                                dtype=object), p + "sentinel")),
        _node("Shape", [TEXT_INPUT], p + "texts"),
        _node("Expand", [p + "sentinel", p + "texts"], p + "sentinels"),
        helper.make_node("StringConcat", [TEXT_INPUT, p + "sentinels"], [p + "ended"],
                         name=p + "ended", domain=CONTRIB_DOMAIN),
        helper.make_node("GPT2Tokenizer", [p + "ended"], [p + "ids", p + "mask"],
                         name=p + "bpe", domain=CONTRIB_DOMAIN, **attrs),
        # the text's tokens (0 where the operator padded), then keep+1 columns: the last one
        # becomes [SEP] when the text fills all keep
        _node("Mul", [p + "ids", p + "mask"], p + "tokens"),
        _const(p + "pads", [0, 0, 0, keep + 1]),
        _node("Pad", [p + "tokens", p + "pads"], p + "padded"),
        _const(p + "starts", [0]), _const(p + "ends", [keep + 1]), _const(p + "axes", [1]),
        _node("Slice", [p + "padded", p + "starts", p + "ends", p + "axes"], p + "cols"),
        # n = min(tokens of the text, keep): columns < n keep their token, column n is [SEP]
        _const(p + "axis1", [1]),
        _node("ReduceSum", [p + "mask", p + "axis1"], p + "with_sentinel", keepdims=1),
        _const(p + "one_token", [[1]]),
        _node("Sub", [p + "with_sentinel", p + "one_token"], p + "count"),
        _const(p + "keep", [[keep]]),
        _node("Min", [p + "count", p + "keep"], p + "n"),
        _const(p + "positions", [list(range(keep + 1))]),
        _node("Less", [p + "positions", p + "n"], p + "is_token"),
        _node("Cast", [p + "is_token"], p + "token_mask", to=TensorProto.INT64),
        _node("Equal", [p + "positions", p + "n"], p + "is_last"),
        _node("Cast", [p + "is_last"], p + "last_mask", to=TensorProto.INT64),
        _const(p + "last_id", [[spec.last_id]]),
        _node("Mul", [p + "cols", p + "token_mask"], p + "kept"),
        _node("Mul", [p + "last_mask", p + "last_id"], p + "last"),
        _node("Add", [p + "kept", p + "last"], p + "body"),
        # [CLS] in front: a column of first_id, one per row
        _node("Shape", [p + "body"], p + "shape", end=1),
        _const(p + "one", [1]),
        _node("Concat", [p + "shape", p + "one"], p + "column", axis=0),
        _const(p + "first_id", [[spec.first_id]]),
        _node("Expand", [p + "first_id", p + "column"], p + "first"),
        _node("Concat", [p + "first", p + "body"], output_name, axis=1),
    ]
    graph = helper.make_graph(
        nodes, "shipyard_bpe_tokenize",
        [helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info(output_name, TensorProto.INT64, ["N", max_length])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(CONTRIB_DOMAIN, 1)])
    if ir_version is not None:
        model.ir_version = ir_version
    model.producer_name = "shipyard"
    return model


def text_model(model: Any, file: str | Path, *, max_length: int) -> Any:
    """``model`` (a ModelProto whose one input ``input_ids`` is INT64 ``[N, max_length]``)
    with :func:`tokenizer_graph` of ``file`` merged before it: ``text`` STRING ``[N]`` in,
    ``model``'s outputs out; ``model``'s metadata is kept."""
    from onnx import compose, helper

    inputs = [i.name for i in model.graph.input]
    if inputs != [_IDS]:
        raise ExportError(f"text_model: the model takes {inputs}; it must take one input "
                          f"{_IDS!r} (INT64 [N, {max_length}])")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    tok = tokenizer_graph(file, max_length=max_length, opset=opset,
                          ir_version=model.ir_version)
    merged = compose.merge_models(tok, model, io_map=[(_IDS, _IDS)],
                                  doc_string=model.doc_string)
    merged.producer_name = "shipyard"
    del merged.metadata_props[:]
    helper.set_model_props(merged, {p.key: p.value for p in model.metadata_props})
    return merged


def custom_ops_session(model: bytes | str | Path) -> Any:
    """An ``onnxruntime.InferenceSession`` (CPU) of ``model`` (bytes or a path) with
    onnxruntime-extensions' operators registered; ExportError when the package is missing."""
    import onnxruntime as ort

    from shipyard._ort_extensions import extensions_library

    library = extensions_library()
    if library is None:
        raise ExportError("the tokenizer inside the graph needs onnxruntime-extensions; pip "
                          "install 'shipyard[text-graph]'")
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _texts(texts: list[str]) -> np.ndarray:
    items = np.empty(len(texts), dtype=object)
    items[:] = texts
    return items


def export_text_graph(onnx_file: Path, tokenizer_file: Path, out_file: Path, *,
                      texts: list[str], ids: np.ndarray, logits: np.ndarray, max_length: int,
                      tolerance: float, split: str = "test", all_texts: int | None = None,
                      texts_with_nul: int = 0) -> dict[str, Any]:
    """Write ``out_file``: :func:`text_model` of ``onnx_file`` (the run's ``model.onnx``) and
    ``tokenizer_file``, and check it on ``texts`` (the chain's output) against ``ids`` (the
    ``tokenize`` step's ids of the same texts) and ``logits`` (torch's). The record of
    ``export.json``'s ``text_graph``: file, size, tensors, ``ids`` and ``agreement`` (passed
    when every id is identical and the logits are within ``tolerance``), what may differ
    (:data:`DIFFERS`) and how many of the run's texts (``texts_with_nul`` of ``all_texts``)
    are such; a graph that cannot be made is recorded (``error``), not raised."""
    import onnx

    try:
        merged = text_model(onnx.load(str(onnx_file)), tokenizer_file, max_length=max_length)
        data = merged.SerializeToString()
        session = custom_ops_session(data)
        tok = custom_ops_session(tokenizer_graph(tokenizer_file, max_length=max_length)
                                 .SerializeToString())
    except ExportError as exc:
        return {"file": None, "error": exc.message}
    except Exception as exc:  # onnx / onnxruntime raise many kinds; the run keeps model.onnx
        first = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        return {"file": None, "error": f"the tokenizer graph failed: {type(exc).__name__}: "
                                       f"{first}"}
    out_file.write_bytes(data)
    batches = range(0, len(texts), 512)
    got_ids = np.concatenate([tok.run(None, {TEXT_INPUT: _texts(texts[i:i + 512])})[0]
                              for i in batches]) if texts else ids[:0]
    got = np.concatenate([session.run(None, {TEXT_INPUT: _texts(texts[i:i + 512])})[0]
                          for i in batches]) if texts else logits[:0]
    wrong = np.flatnonzero((got_ids != ids).any(axis=1)) if len(texts) else np.array([], int)
    diff = float(np.abs(got - logits).max(initial=0.0))
    same = got.argmax(1) == logits.argmax(1)
    ids_identical = wrong.size == 0
    from importlib.metadata import version

    return {
        "file": out_file.name, "bytes": len(data),
        "tokenizer": f"onnxruntime-extensions {version('onnxruntime-extensions')} "
                     "GPT2Tokenizer (domain ai.onnx.contrib)",
        "inputs": [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": o.name, "datatype": "FP32", "shape": [-1, int(logits.shape[1])]}
                    for o in merged.graph.output],
        "differs": DIFFERS,
        "texts_with_nul": {"texts": all_texts if all_texts is not None else len(texts),
                           "with_nul": texts_with_nul},
        "ids": {"split": split, "rows": len(texts), "identical": bool(ids_identical),
                "mismatches": int(wrong.size), "first_mismatches": [int(i) for i in wrong[:5]]},
        "agreement": {"split": split, "rows": len(texts), "tolerance": tolerance,
                      "outputs": [o.name for o in merged.graph.output], "max_abs_diff": diff,
                      "labels_identical": bool(same.all()),
                      "label_mismatches": int((~same).sum()),
                      "passed": bool(ids_identical and diff <= tolerance and same.all())},
    }
