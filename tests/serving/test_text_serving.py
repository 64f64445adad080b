"""Serving text models, against a real server: real SMS messages in, over V2 REST JSON, REST
binary, gRPC (tritonclient, BYTES inputs) and ``POST /predict {"text": ...}``.

Two kinds of model, each in several configs of the same files:

- a scikit-learn TF-IDF + LogisticRegression exported with skl2onnx: the graph itself takes
  STRING ``text`` ``[N, 1]`` and answers ``label`` and ``probabilities``; ``tfidf_norm`` puts a
  ``text_normalize`` step before it;
- the small token-id classifier of ``onnx_models.text_classifier_model`` behind
  ``text_normalize`` + ``tokenize`` and the ``softmax`` / ``top_k`` / ``labels`` steps.

Every answer is checked against the same work done in this process: the model's own declared
steps (``shipyard.transforms.build_steps`` from its config.yaml) around an ONNX Runtime
session, and for TF-IDF against scikit-learn's ``predict_proba`` as well.

Like test_protocols.py this process imports ``tritonclient.grpc``, so it never imports
``shipyard.serving.grpc``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ServerProcess, http_call, start_server
from onnx_models import (
    SMS_SPAM,
    TEXT_LABELS,
    TEXT_PREPROCESS,
    scale_model,
    sms_messages,
    text_classifier_repository,
    tfidf_text_model,
    write_repository,
)

from shipyard.transforms import apply_steps, build_steps

LABELS = list(TEXT_LABELS)
TRAIN = 4000  # the TF-IDF model learns from the first messages; the tests send later ones
#: the token-id classifier's configs: the same model and tokenizer behind different steps
CLASSIFIERS: dict[str, dict[str, Any]] = {
    "sms": {"backend": "onnx", "max_batch_size": 64, "preprocess": TEXT_PREPROCESS,
            "postprocess": [{"softmax": {}}, {"labels": {"labels": LABELS}}]},
    "sms_top": {"backend": "onnx", "max_batch_size": 64, "preprocess": TEXT_PREPROCESS,
                "postprocess": [{"softmax": {}}, {"top_k": {"k": 2}},
                                {"labels": {"labels": LABELS}}]},
    "sms_probs": {"backend": "onnx", "max_batch_size": 64, "preprocess": TEXT_PREPROCESS,
                  "postprocess": [{"softmax": {}}], "labels": {"logits": LABELS}},
    "sms_logits": {"backend": "onnx", "max_batch_size": 64, "preprocess": TEXT_PREPROCESS,
                   "labels": {"logits": LABELS}},
}
TFIDF: dict[str, dict[str, Any]] = {
    "tfidf": {"backend": "onnx", "max_batch_size": 16,
              "labels": {"probabilities": sorted(LABELS)}},
    "tfidf_norm": {"backend": "onnx", "max_batch_size": 16,
                   "labels": {"probabilities": sorted(LABELS)},
                   "preprocess": [{"text_normalize": {"form": "NFKC", "lowercase": True}}]},
}
MODELS = [*CLASSIFIERS, *TFIDF]


@pytest.fixture(scope="module")
def messages() -> list[tuple[str, str]]:
    if not SMS_SPAM.is_file():
        pytest.skip(f"SMS spam collection not found at {SMS_SPAM}")
    return sms_messages()


@pytest.fixture(scope="module")
def texts(messages: list[tuple[str, str]]) -> list[str]:
    """Eight real messages the models never saw, with awkward ones: full-width letters (NFKC
    folds them), a long one (more than tokenize.max_length tokens: truncated), and both
    classes."""
    unseen = messages[TRAIN:]
    spam = [t for label, t in unseen if label == "spam"][:3]
    ham = [t for label, t in unseen if label == "ham"][:3]
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in spam[0])
    long = " ".join(t for _, t in unseen[:30])
    return [*spam, *ham, wide, long]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, messages: list[tuple[str, str]]) -> Path:
    root = tmp_path_factory.mktemp("text-serving")
    train = messages[:TRAIN]
    text_classifier_repository(root, [t for _, t in train], CLASSIFIERS)
    build = partial(tfidf_text_model, texts=[t for _, t in train], labels=[la for la, _ in train])
    write_repository(root, {name: (build, config) for name, config in TFIDF.items()})
    write_repository(root, {"numbers": (partial(scale_model, factor=2.0),
                                        {"max_batch_size": 8})})
    shutil.copytree(DEMO_REPOSITORY / "digits", root / "digits")
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    proc = start_server(repo)
    yield proc
    proc.stop()


def in_process(repo: Path, model: str, texts: list[str]) -> dict[str, np.ndarray]:
    """What the server should answer, computed here: the model's declared steps
    (config.yaml, built by shipyard.transforms) around an ONNX Runtime session."""
    config = yaml.safe_load((repo / model / "config.yaml").read_text(encoding="utf-8"))
    version = repo / model / "1"
    session = ort.InferenceSession(str(version / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (graph_in,) = session.get_inputs()
    batch: Any = np.array([t.encode() for t in texts], dtype=object)
    if config.get("preprocess"):
        batch = apply_steps(build_steps(config["preprocess"], base_dir=version), batch)
    if graph_in.type == "tensor(string)":
        batch = np.array([b.decode() for b in batch], dtype=object).reshape(-1, 1)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {graph_in.name: batch}), strict=True))
    if not config.get("postprocess"):
        return outputs
    (name,) = names
    made = apply_steps(build_steps(config["postprocess"]), outputs[name])
    return {k: np.asarray(v) for k, v in made.items()} if isinstance(made, dict) \
        else {name: np.asarray(made)}


def _assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, (what, got.shape, want.shape)
    if want.dtype == object:
        decode = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v),
                              otypes=[object])
        assert decode(got).tolist() == decode(want).tolist(), what
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=what)


def _client(server: ServerProcess, protocol: str) -> tuple[Any, Any]:
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    if protocol == "grpc":
        return tgrpc, tgrpc.InferenceServerClient(server.grpc_url)
    return thttp, thttp.InferenceServerClient(server.http_url)


def _text_input(module: Any, texts: list[str], binary: bool) -> Any:
    inp = module.InferInput("text", [len(texts), 1], "BYTES")
    data = np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1)
    if module.__name__.endswith("grpc"):
        inp.set_data_from_numpy(data)
    else:
        inp.set_data_from_numpy(data, binary_data=binary)
    return inp


def _predict(server: ServerProcess, model: str, body: Any, query: str = ""
             ) -> tuple[int, dict[str, Any]]:
    status, _, raw = http_call(server, "POST", f"/v2/models/{model}/predict{query}",
                               json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, json.loads(raw)


@pytest.mark.parametrize("protocol", ["json", "binary", "grpc"])
@pytest.mark.parametrize("model", MODELS)
def test_v2_answers_equal_the_in_process_steps(server: ServerProcess, repo: Path,
                                               texts: list[str], model: str,
                                               protocol: str) -> None:
    module, client = _client(server, "grpc" if protocol == "grpc" else "http")
    want = in_process(repo, model, texts)
    meta = client.get_model_metadata(model)
    inputs = meta["inputs"] if isinstance(meta, dict) else [
        {"name": i.name, "datatype": i.datatype, "shape": list(i.shape)} for i in meta.inputs]
    assert inputs == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    binary = protocol == "binary"
    outputs = None if protocol == "grpc" else [
        module.InferRequestedOutput(name, binary_data=binary) for name in want]
    result = client.infer(model, [_text_input(module, texts, binary)], outputs=outputs)
    for name, expected in want.items():
        _assert_same(result.as_numpy(name), expected, f"{model} {protocol} {name}")
    if model == "sms_top":  # both classes, best first, with probabilities that sum to one
        np.testing.assert_allclose(result.as_numpy("scores").sum(axis=1), 1, rtol=1e-5)


def test_tfidf_answers_what_scikit_learn_answers(server: ServerProcess, texts: list[str],
                                                 messages: list[tuple[str, str]]) -> None:
    """The exported graph and the fitted pipeline agree; the model is not a constant."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train = messages[:TRAIN]
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    pipe.fit([t for _, t in train], [la for la, _ in train])
    module, client = _client(server, "http")
    plain = texts[:6]
    result = client.infer("tfidf", [_text_input(module, plain, True)])
    np.testing.assert_allclose(result.as_numpy("probabilities"), pipe.predict_proba(plain),
                               rtol=1e-4, atol=1e-5)
    assert [v.decode() for v in result.as_numpy("label")] == list(pipe.predict(plain))
    got = [v.decode() for v in result.as_numpy("label")]
    truth = ["spam"] * 3 + ["ham"] * 3  # how the fixture picked them from the data set
    assert sum(g == t for g, t in zip(got, truth, strict=True)) >= 5 and len(set(got)) == 2, got


def test_text_normalize_runs_before_a_string_graph(server: ServerProcess,
                                                   texts: list[str]) -> None:
    """Full-width letters: tfidf_norm folds them (NFKC) before the TF-IDF graph and answers
    as for the plain message; tfidf, without the step, does not know the words."""
    module, client = _client(server, "grpc")
    plain, wide = texts[0], texts[6]

    def probs(model: str, text: str) -> np.ndarray:
        result = client.infer(model, [_text_input(module, [text], True)])
        return np.asarray(result.as_numpy("probabilities"))

    np.testing.assert_allclose(probs("tfidf_norm", wide), probs("tfidf", plain), rtol=1e-6)
    assert not np.allclose(probs("tfidf", wide), probs("tfidf", plain), atol=1e-3)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["sms_probs", "sms_logits", "tfidf"])
def test_classification_extension(server: ServerProcess, repo: Path, texts: list[str],
                                  model: str, protocol: str) -> None:
    """``classification: 2``: both classes per text as "score:index:label", best first."""
    module, client = _client(server, protocol)
    output = "probabilities" if model.startswith("tfidf") else "logits"
    scores = in_process(repo, model, texts)[output]
    names = sorted(LABELS) if model.startswith("tfidf") else LABELS
    result = client.infer(model, [_text_input(module, texts, True)],
                          outputs=[module.InferRequestedOutput(output, class_count=2)])
    classes = result.as_numpy(output)
    assert classes.shape == (len(texts), 2)
    for row, want in zip(classes, scores, strict=True):
        parts = [c.decode().split(":") for c in row]
        order = np.argsort(-want, kind="stable")
        assert [int(p[1]) for p in parts] == list(order)
        assert [p[2] for p in parts] == [names[i] for i in order]
        np.testing.assert_allclose([float(p[0]) for p in parts], want[order], rtol=1e-4,
                                   atol=1e-6)


def _probabilities(repo: Path, model: str, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per text, the class probabilities computed in process, and the class names."""
    if model.startswith("tfidf"):
        return in_process(repo, model, texts)["probabilities"], sorted(LABELS)
    logits = in_process(repo, "sms_logits", texts)["logits"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), LABELS


@pytest.mark.parametrize("model", ["sms_top", "sms_probs", "sms_logits", "tfidf", "tfidf_norm"])
def test_predict_text_ranks_labels(server: ServerProcess, repo: Path, texts: list[str],
                                   model: str) -> None:
    """``{"text": [...]}``: per text, both labels with their probabilities, best first, as
    computed in process, whichever way the model gives its scores (top_k + labels steps,
    softmax output with config labels, raw logits with config labels, a scikit-learn
    classifier's probabilities)."""
    probs, names = _probabilities(repo, model, texts)
    status, body = _predict(server, model, {"text": texts})
    assert status == 200, body
    assert body["model_name"] == model
    assert len(body["predictions"]) == len(texts)
    for row, p in zip(body["predictions"], probs, strict=True):
        order = np.argsort(-p, kind="stable")
        assert [x["label"] for x in row] == [names[i] for i in order]
        np.testing.assert_allclose([x["probability"] for x in row], p[order], rtol=1e-4,
                                   atol=1e-6)
    assert body["labels"] == [row[0]["label"] for row in body["predictions"]]
    # one string, the "texts" alias, and top_k (body or query)
    status, one = _predict(server, model, {"texts": texts[3], "top_k": 1})
    assert status == 200, one
    ((best,),) = one["predictions"]  # a batch of one may differ from a batch of 8 in the ulp
    assert best["label"] == body["labels"][3]
    assert best["probability"] == pytest.approx(body["predictions"][3][0]["probability"],
                                                rel=1e-5)
    status, one = _predict(server, model, {"text": texts[3]}, "?top_k=1")
    assert status == 200 and one["labels"] == [body["labels"][3]], one


def test_predict_text_with_a_labels_step_gives_names(server: ServerProcess, repo: Path,
                                                     texts: list[str]) -> None:
    """softmax + labels steps leave names and no scores: each prediction is the name alone."""
    status, body = _predict(server, "sms", {"text": texts})
    assert status == 200, body
    want = [v.decode() for v in in_process(repo, "sms", texts)["logits"]]
    assert body["labels"] == want
    assert body["predictions"] == [[{"label": label}] for label in want]
    probs, _ = _probabilities(repo, "sms", texts)
    assert want == [LABELS[i] for i in probs.argmax(axis=1)]


@pytest.mark.parametrize(("model", "body", "words"), [
    ("sms", {"text": []}, ["'text'", "non-empty list", "[]"]),
    ("sms", {"texts": [1]}, ["texts[0]", "string", "1"]),
    ("sms", {"text": ["fine", None]}, ["text[1]", "string", "None"]),
    ("sms", {"text": {"a": 1}}, ["'text'", "string"]),
    ("sms", {"text": "x", "texts": "y"}, ["text", "texts"]),
    ("sms", {"text": "x", "top_k": 0}, ["top_k", "positive"]),
    ("sms", {"text": ["hello", "  "]}, ["item 1", "empty text", "allow_empty"]),
    ("sms", {"features": [1.0, 2.0]}, ["BYTES", "'text'", '{"text": "..."}']),
    ("numbers", {"text": "hello"}, ["'numbers'", "FP32", "not texts", '{"features": [...]}']),
    ("digits", {"text": "hello"}, ["'digits'", "image_decode", '{"images"']),
    ("sms", {"image": "aGVsbG8="}, ["'sms'", "texts", "text_normalize", '{"text"']),
])
def test_bad_text_bodies_are_400(server: ServerProcess, model: str, body: dict[str, Any],
                                 words: list[str], texts: list[str]) -> None:
    status, answer = _predict(server, model, body)
    assert status == 400, answer
    for word in words:
        assert word in answer["error"], answer
    status, answer = _predict(server, "sms", {"text": texts[0]})  # still serving
    assert status == 200, answer


def test_grpc_model_service_predict_stays_features_only(server: ServerProcess) -> None:
    """The seed's ModelService.Predict carries floats; a text model refuses them, naming the
    /predict text body."""
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    # build ModelRequest/ModelResponse here (importing shipyard.serving.grpc's stubs would
    # clash with tritonclient.grpc's in this process)
    file = descriptor_pb2.FileDescriptorProto(name="text_model_service_probe.proto",
                                              syntax="proto3")
    req = file.message_type.add(name="ModelRequest")
    req.field.add(name="features", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    resp = file.message_type.add(name="ModelResponse")
    resp.field.add(name="score", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("ModelRequest"))
    response_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("ModelResponse"))
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary("/ModelService/Predict",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=response_cls.FromString)
        with pytest.raises(grpc.RpcError) as info:
            call(request_cls(features=[1.0, 2.0]), metadata=[("model", "sms")], timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "BYTES" in info.value.details() and '{"text"' in info.value.details()
        answer = call(request_cls(features=[1.0, 2.0, 3.0, 4.0]),
                      metadata=[("model", "numbers")], timeout=10)
        assert answer.score == pytest.approx(2.0)
