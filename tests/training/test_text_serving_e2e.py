"""Text runs end to end: train a tiny TF-IDF model and a tiny Transformer on the SMS file,
publish both with ``shipyard publish``, serve them, send raw strings over V2 REST (JSON and
binary), gRPC and ``/predict``, and compare every answer with the run's own model called in this
process. A third served model runs the Transformer run's preprocess steps in front of an
identity graph, so the server's token ids for awkward strings can be compared with the ids the
trainer computed for the same strings.

Only client libraries talk to the server; this process never imports ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from conftest import ServerProcess, start_server
from text_corpus import AWKWARD
from training_support import SMS_SPAM, check_publish_on_serving_host
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.training.config import load_experiment
from shipyard.training.run import Run
from shipyard.training.text_config import TextExperiment
from shipyard.training.text_run import chain_steps, run_chain
from shipyard.training.trainer import train_experiment

CHAIN = [{"text_normalize": {"lowercase": True, "html_unescape": True, "urls": "mask",
                             "collapse_whitespace": True}}]
QUERIES = [
    "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 now",
    "Ok lar... Joking wif u oni...",
    "Are we still meeting for lunch tomorrow? Let me know",
    "FREE entry into our weekly competition, text WIN to 80086 &amp; claim your prize",
    AWKWARD["emoji"], AWKWARD["mixed_scripts"], AWKWARD["html"],
]


def _experiment(model: dict[str, Any], **extra: Any) -> TextExperiment:
    raw: dict[str, Any] = {
        "kind": "text", "name": "sms", "task": "binary",
        "data": {"source": str(SMS_SPAM), "text_column": 1, "label_column": 0, "limit": 900},
        "preprocess": CHAIN, "model": model, "output": {"plots": False}, **extra}
    exp, _ = load_experiment(raw, [])
    assert isinstance(exp, TextExperiment)
    return exp


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("text-runs")
    tfidf = _experiment({"family": "sklearn", "type": "logistic_regression",
                         "params": {"C": 30}})
    transformer = _experiment(
        {"family": "torch", "params": {"d_model": 16, "heads": 2, "d_ff": 32, "layers": 1,
                                       "max_length": 48}},
        tokenizer={"vocab_size": 600, "max_length": 48},
        training={"epochs": 2, "batch_size": 32}, export={"max_batch_size": 32})
    return {"tfidf": train_experiment(tfidf, Path.cwd(), output=root / "tfidf"),
            "transformer": train_experiment(transformer, Path.cwd(), output=root / "tr")}


def _identity_model(run: Run, repo: Path) -> None:
    """Model ``ids``: the Transformer run's preprocess steps before an identity graph."""
    serving = json.loads((run.path / "serving.json").read_text())
    assert serving["preprocess"][-1]["tokenize"]["padding"] == "longest"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input_ids"], ["ids"])], "ids",
        [onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT64,
                                            [None, None])],
        [onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [None, None])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    version = repo / "ids" / "1"
    version.mkdir(parents=True)
    onnx.save(model, version / "model.onnx")
    shutil.copy(run.path / "tokenizer.json", version / "tokenizer.json")
    (repo / "ids" / "config.yaml").write_text(yaml.safe_dump(
        {"backend": "onnx", "max_batch_size": 64, "preprocess": serving["preprocess"]}))


@pytest.fixture(scope="module")
def server(runs: dict[str, Run], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("text-repo")
    for name, (run, options) in {"tfidf": (runs["tfidf"], []),
                                 "transformer": (runs["transformer"], []),
                                 "transformer_torch": (runs["transformer"],
                                                       ["--backend", "torch"])}.items():
        result = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(repo),
                                          "--model", name, *options])
        assert result.exit_code == 0, result.output
    _identity_model(runs["transformer"], repo)
    proc = start_server(repo)
    yield proc
    proc.stop()


def in_process(run: Run, texts: list[str]) -> np.ndarray:
    """Class probabilities of the run's own model (scikit-learn pipeline or torch weights)."""
    exp = run.experiment
    assert isinstance(exp, TextExperiment)
    chained = run_chain(chain_steps(exp), texts)
    if exp.model.family == "sklearn":
        return np.asarray(run.pipeline().predict_proba(pd.DataFrame({"text": chained})))
    import torch

    from shipyard.training import text_torch

    step = text_torch._tokenizer(exp, run.path)
    net = text_torch.build_transformer(text_torch._net(exp), step.tokenizer_.get_vocab_size(),
                                       2, step.pad_id_)
    net.load_state_dict(torch.load(run.path / "model_state.pt", weights_only=True))
    net.eval()
    with torch.inference_mode():
        logits = net(torch.from_numpy(text_torch._ids(step, chained)))
    return torch.softmax(logits.double(), 1).numpy()


def _texts(texts: list[str]) -> np.ndarray:
    return np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)


@pytest.mark.parametrize("model", ["tfidf", "transformer", "transformer_torch"])
@pytest.mark.parametrize("protocol", ["rest-json", "rest-binary", "grpc"])
def test_raw_text_answers_equal_the_run(runs: dict[str, Run], server: ServerProcess,
                                        model: str, protocol: str) -> None:
    module: Any = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc_url if protocol == "grpc"
                                          else server.http_url)
    data = _texts(QUERIES)
    inp = module.InferInput("text", list(data.shape), "BYTES")
    if protocol == "rest-json":
        inp.set_data_from_numpy(data, binary_data=False)
    else:
        inp.set_data_from_numpy(data)
    try:
        result = client.infer(model, [inp])
    finally:
        client.close()
    want = in_process(runs[model.removesuffix("_torch")], QUERIES)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-4)


@pytest.mark.parametrize("model", ["tfidf", "transformer"])
def test_predict_with_text(runs: dict[str, Run], server: ServerProcess, model: str) -> None:
    resp = httpx.post(f"http://{server.http_url}/v2/models/{model}/predict",
                      json={"text": QUERIES, "top_k": 2}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    want = in_process(runs[model], QUERIES)
    names = np.array(["ham", "spam"])
    assert body["labels"] == list(names[want.argmax(1)])
    for row, probs in zip(body["predictions"], want, strict=True):
        assert [p["label"] for p in row] == list(names[np.argsort(-probs, kind="stable")])
        assert row[0]["probability"] == pytest.approx(probs.max(), abs=1e-4)


def test_classification_extension(server: ServerProcess) -> None:
    resp = httpx.post(f"http://{server.http_url}/v2/models/transformer/infer", json={
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1],
                    "data": [QUERIES[0]]}],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]},
        timeout=30)
    assert resp.status_code == 200, resp.text
    (row,) = [resp.json()["outputs"][0]["data"]]
    assert {item.split(":")[-1] for item in row} == {"ham", "spam"}


def test_server_token_ids_equal_training_ids_on_awkward_strings(
        runs: dict[str, Run], server: ServerProcess) -> None:
    from shipyard.training import text_torch

    run = runs["transformer"]
    exp = run.experiment
    assert isinstance(exp, TextExperiment)
    texts = list(AWKWARD.values())
    want = text_torch._ids(text_torch._tokenizer(exp, run.path),
                           run_chain(chain_steps(exp), texts))
    short = [AWKWARD[k] for k in ("empty", "latin", "cjk", "emoji", "zero_width")]
    want_short = text_torch._ids(text_torch._tokenizer(exp, run.path),
                                 run_chain(chain_steps(exp), short))
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        answers = []
        for batch in (texts, short):
            inp = httpclient.InferInput("text", [len(batch), 1], "BYTES")
            inp.set_data_from_numpy(_texts(batch))
            answers.append(client.infer("ids", [inp]).as_numpy("ids"))
    finally:
        client.close()
    # the server pads a batch to its longest text (padding: longest); training to 48
    for got, expected in zip(answers, (want, want_short), strict=True):
        assert got.shape[1] == (expected != 0).sum(1).max()
        np.testing.assert_array_equal(got, expected[:, :got.shape[1]])
        assert (expected[:, got.shape[1]:] == 0).all()
    assert answers[1].shape[1] < want_short.shape[1]
    assert (want[:, 0] == want[0, 0]).all()  # every row starts with [CLS]
    assert len({tuple(r) for r in want}) > len(texts) // 2  # the texts are told apart


def test_published_configs_declare_the_chain(runs: dict[str, Run], server: ServerProcess
                                             ) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        for name in ("tfidf", "transformer"):
            meta = client.get_model_metadata(name)
            assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == \
                [("text", "BYTES", [-1, 1])]
            assert "probabilities" in [o["name"] for o in meta["outputs"]]
    finally:
        client.close()


def test_transformer_run_evaluates_again_to_its_test_metrics(runs: dict[str, Run]) -> None:
    from shipyard.training.trainer import evaluate_run

    run = runs["transformer"]
    again = evaluate_run(run)
    assert again.metrics["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert (run.path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    history = json.loads((run.path / "history.json").read_text())
    assert len(history["epoch"]) == 2


def test_publish_on_a_serving_host(runs: dict[str, Run], tmp_path: Path) -> None:
    """A finished run publishes where the training stack is not installed, to the same files."""
    check_publish_on_serving_host(
        {"tfidf": (runs["tfidf"].path, []), "transformer": (runs["transformer"].path, []),
         "transformer_torch": (runs["transformer"].path, ["--backend", "torch"])}, tmp_path)
