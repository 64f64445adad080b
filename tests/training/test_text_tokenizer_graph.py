"""The BPE tokenizer inside the ONNX graph (``export.tokenizer_in_graph``, onnxruntime-extensions).

A tiny BPE Transformer run writes ``model_text.onnx`` (``text`` BYTES [N] -> ``logits``); its
tokenizer part must give exactly the ``tokenize`` step's ids on all 5,574 SMS messages and the
awkward corpus after the run's chain (the one documented exception, U+0000, exactly as
documented), and its logits must equal ``model.onnx`` after the step. Then the run is
published both ways (``--tokenizer steps`` / ``graph``) into one repository, served, and both
models are asked the same raw strings over V2 REST: the answers must be equal.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import yaml
from conftest import ServerProcess, start_server
from text_corpus import AWKWARD
from training_support import SMS_SPAM
from typer.testing import CliRunner

from shipyard._ort_extensions import extensions_library
from shipyard.cli import app
from shipyard.data.text import load_text_table
from shipyard.data.text_tokenizer import train_tokenizer
from shipyard.errors import ConfigError, ExportError
from shipyard.export.text_graph import (
    CONTRIB_DOMAIN,
    custom_ops_session,
    read_bpe_tokenizer,
    tokenizer_graph,
)
from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.runtimes import create_runtime
from shipyard.serving.runtimes.onnx import opset_domains
from shipyard.training.config import load_experiment
from shipyard.training.run import Run
from shipyard.training.text_config import TextExperiment
from shipyard.training.text_run import chain_steps, run_chain
from shipyard.training.text_torch import TEXT_GRAPH_FILE, TOKENIZER_FILE
from shipyard.training.trainer import train_experiment
from shipyard.transforms import Tokenize

# not importorskip: importing the package changes os.environ for later processes (see
# shipyard._ort_extensions); ONNX Runtime needs only its library
if extensions_library() is None:
    pytest.skip("onnxruntime-extensions is not installed", allow_module_level=True)

CHAIN = [{"text_normalize": {"lowercase": True, "html_unescape": True, "urls": "mask",
                             "collapse_whitespace": True}}]
MAX_LENGTH = 48
QUERIES = [
    "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 now",
    "Ok lar... Joking wif u oni...",
    "FREE entry into our weekly competition, text WIN to 80086 &amp; claim your prize",
    *(text for name, text in AWKWARD.items() if name != "nul"),
]
#: texts that would trip onnxruntime-extensions 0.15 without the graph's sentinel (a text that
#: ends inside a partial special token loses its end) or that hold special tokens as written
BRACKETS = ["[b", "x[y", "ab[c", "[UN", "[CLS", "[SE", "a [SEP] b", "[CLS]x", "[PAD]", "[[",
            "[ab", "[bc", "the [UNK] end [", "[1", "[,"]


def _experiment(**extra: object) -> TextExperiment:
    raw = {
        "kind": "text", "name": "sms", "task": "binary",
        "data": {"source": str(SMS_SPAM), "text_column": 1, "label_column": 0, "limit": 600},
        "preprocess": CHAIN, "output": {"plots": False},
        "model": {"family": "torch", "params": {"d_model": 16, "heads": 2, "d_ff": 32,
                                                "layers": 1, "max_length": MAX_LENGTH}},
        "tokenizer": {"kind": "bpe", "vocab_size": 600, "max_length": MAX_LENGTH},
        "training": {"epochs": 1, "batch_size": 32},
        "export": {"max_batch_size": 32, "tokenizer_in_graph": True, "torch_program": False},
        **extra}
    exp, _ = load_experiment(raw, [])
    assert isinstance(exp, TextExperiment)
    return exp


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train_experiment(_experiment(), Path.cwd(),
                            output=tmp_path_factory.mktemp("graph-run") / "bpe")


def _items(texts: list[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def _step_ids(run: Run, texts: list[str]) -> np.ndarray:
    step = Tokenize(path=TOKENIZER_FILE, max_length=MAX_LENGTH, truncation=True,
                    allow_empty=True, base_dir=run.path).load()
    out = step(_items([t.encode("utf-8") for t in texts]))
    assert isinstance(out, np.ndarray)
    return out


def _graph_ids(run: Run, texts: list[str]) -> np.ndarray:
    session = custom_ops_session(tokenizer_graph(run.path / TOKENIZER_FILE,
                                                 max_length=MAX_LENGTH).SerializeToString())
    return np.concatenate([session.run(None, {"text": _items(texts[i:i + 1000])})[0]
                           for i in range(0, len(texts), 1000)])


def _chain(run: Run, texts: list[str]) -> list[str]:
    exp = run.experiment
    assert isinstance(exp, TextExperiment)
    return run_chain(chain_steps(exp), texts)


def test_graph_ids_equal_the_tokenize_step_on_every_sms_message(run: Run) -> None:
    table = load_text_table(SMS_SPAM, text_column=1, label_column=0)
    texts = _chain(run, list(table.texts))
    assert len(texts) == 5574
    want = _step_ids(run, texts)
    got = _graph_ids(run, texts)
    assert got.shape == want.shape == (5574, MAX_LENGTH)
    wrong = np.flatnonzero((got != want).any(axis=1))
    assert wrong.size == 0, [texts[i] for i in wrong[:5]]
    cut = (want[:, -1] != 0).sum()  # the rows the cut reached: [SEP] last, kept
    assert cut > 10 and (want[want[:, -1] != 0, -1] == 3).all()


def test_graph_ids_equal_the_tokenize_step_on_awkward_and_bracket_texts(run: Run) -> None:
    names = [n for n in AWKWARD if n != "nul"]
    texts = _chain(run, [AWKWARD[n] for n in names]) + BRACKETS  # brackets: not lower-cased
    want, got = _step_ids(run, texts), _graph_ids(run, texts)
    for name, text, w, g in zip([*names, *BRACKETS], texts, want, got, strict=True):
        assert g.tolist() == w.tolist(), (name, text)
    special = want[len(names) + BRACKETS.index("a [SEP] b")]
    assert (special == 3).sum() == 2  # [SEP] as written is the special token, then the last


def test_a_nul_character_cuts_the_text_inside_the_graph_as_documented(run: Run) -> None:
    (text,) = _chain(run, [AWKWARD["nul"]])
    assert "\x00" in text
    got = _graph_ids(run, [text])
    assert not np.array_equal(got, _step_ids(run, [text]))
    np.testing.assert_array_equal(got, _step_ids(run, [text.split("\x00")[0]]))


def test_the_run_records_and_checks_model_text_onnx(run: Run) -> None:
    graph = run.export["text_graph"]
    assert graph["file"] == TEXT_GRAPH_FILE and (run.path / TEXT_GRAPH_FILE).is_file()
    assert graph["ids"]["identical"] and graph["ids"]["rows"] == 120
    assert graph["agreement"]["passed"], graph
    assert graph["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    serving = json.loads((run.path / "serving.json").read_text())
    assert serving["text_graph"] == {"model_file": TEXT_GRAPH_FILE, "preprocess": CHAIN,
                                     "files": []}
    model = onnx.load(str(run.path / TEXT_GRAPH_FILE))
    assert [i.name for i in model.graph.input] == ["text"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert {p.key for p in model.metadata_props} >= {"shipyard.experiment",
                                                      "shipyard.class_names"}


def test_graph_logits_equal_model_onnx_after_the_step(run: Run) -> None:
    table = load_text_table(SMS_SPAM, text_column=1, label_column=0)
    texts = _chain(run, list(table.texts)[:300] + QUERIES)
    plain = ort.InferenceSession(str(run.path / "model.onnx"),
                                 providers=["CPUExecutionProvider"])
    want = plain.run(["logits"], {"input_ids": _step_ids(run, texts)})[0]
    got = custom_ops_session(run.path / TEXT_GRAPH_FILE).run(["logits"],
                                                             {"text": _items(texts)})[0]
    assert got.shape == (len(texts), 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.ptp(want[:, 1] - want[:, 0]) > 1e-3  # the texts are told apart


@pytest.fixture(scope="module")
def server(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("graph-repo")
    for name, how in (("steps", "steps"), ("graph", "graph")):
        result = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(repo),
                                          "--model", name, "--tokenizer", how])
        assert result.exit_code == 0, result.output
    proc = start_server(repo)
    yield proc
    proc.stop()


def test_both_published_models_take_raw_text(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        for name in ("steps", "graph"):
            meta = client.get_model_metadata(name)
            assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == \
                [("text", "BYTES", [-1, 1])]
            assert [o["name"] for o in meta["outputs"]] == ["probabilities"]
    finally:
        client.close()


def test_graph_published_files_and_config(run: Run, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(tmp_path),
                                      "--model", "g", "--tokenizer", "graph"])
    assert result.exit_code == 0, result.output
    version = tmp_path / "g" / "1"
    assert (version / "model.onnx").read_bytes() == (run.path / TEXT_GRAPH_FILE).read_bytes()
    assert not (version / TOKENIZER_FILE).exists()
    config = yaml.safe_load((tmp_path / "g" / "config.yaml").read_text())
    assert config["preprocess"] == CHAIN
    assert config["postprocess"] == [{"softmax": {}}]
    assert CONTRIB_DOMAIN in (opset_domains(version / "model.onnx") or set())
    assert opset_domains(run.path / "model.onnx") == {""}


def test_both_published_models_answer_the_same(server: ServerProcess) -> None:
    data = np.array([[t.encode("utf-8")] for t in QUERIES], dtype=np.object_)
    client = httpclient.InferenceServerClient(server.http_url)
    answers = {}
    try:
        for name in ("steps", "graph"):
            inp = httpclient.InferInput("text", list(data.shape), "BYTES")
            inp.set_data_from_numpy(data)
            answers[name] = client.infer(name, [inp]).as_numpy("probabilities")
            single = httpclient.InferInput("text", [1, 1], "BYTES")
            single.set_data_from_numpy(data[:1])
            np.testing.assert_allclose(client.infer(name, [single]).as_numpy("probabilities"),
                                       answers[name][:1], atol=1e-6)
    finally:
        client.close()
    assert answers["steps"].shape == (len(QUERIES), 2)
    np.testing.assert_allclose(answers["graph"], answers["steps"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(answers["graph"].sum(1), 1, atol=1e-5)


def test_the_runtime_names_the_extra_when_the_package_is_missing(
        run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    shutil.copy(run.path / TEXT_GRAPH_FILE, version / "model.onnx")
    monkeypatch.setattr("shipyard._ort_extensions.PACKAGE", "onnxruntime_extensions_gone")
    runtime = create_runtime(version, ModelConfig.model_validate({"name": "m"}))
    with pytest.raises(InvalidInput, match=r"model 'm'.*ai\.onnx\.contrib.*shipyard\[text-graph\]"):
        runtime.load()
    plain = tmp_path / "p" / "1"
    plain.mkdir(parents=True)
    shutil.copy(run.path / "model.onnx", plain / "model.onnx")
    other = create_runtime(plain, ModelConfig.model_validate({"name": "p"}))
    other.load()  # a graph without the domain never needs the package
    assert [s.name for s in other.metadata()[0]] == ["input_ids"]


def test_opset_domains_of_files_that_are_no_model(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xff\xff\x07")
    assert opset_domains(tmp_path / "empty.onnx") is None
    assert opset_domains(tmp_path / "junk.onnx") is None
    assert opset_domains(tmp_path / "missing.onnx") is None


def test_wordpiece_is_refused_by_config_and_by_the_converter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"export\.tokenizer_in_graph.*tokenizer\.kind"):
        _experiment(tokenizer={"kind": "wordpiece", "vocab_size": 600})
    with pytest.raises(ConfigError, match=r"export\.tokenizer_in_graph.*export\.onnx"):
        _experiment(export={"onnx": False, "tokenizer_in_graph": True})
    wordpiece = train_tokenizer(["hello world", "free prize now", "call me later"] * 5,
                                kind="wordpiece", vocab_size=200, min_frequency=1)
    wordpiece.save(str(tmp_path / "wp.json"))
    with pytest.raises(ExportError, match=r"model\.type is 'WordPiece'.*tokenizer_in_graph"):
        read_bpe_tokenizer(tmp_path / "wp.json")


def test_publish_graph_from_a_run_without_it_is_one_line(run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy)
    (copy / TEXT_GRAPH_FILE).unlink()
    serving = json.loads((copy / "serving.json").read_text())
    (copy / "serving.json").write_text(json.dumps({**serving, "text_graph": None}))
    result = CliRunner().invoke(app, ["publish", str(copy), "--repo", str(tmp_path / "r"),
                                      "--tokenizer", "graph"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "model_text.onnx" in line
    assert "export.tokenizer_in_graph=true" in line
    bad = CliRunner().invoke(app, ["publish", str(run.path), "--repo", str(tmp_path / "r"),
                                   "--tokenizer", "inside"])
    assert bad.exit_code == 2 and "--tokenizer" in bad.output


def test_using_the_extensions_leaves_protobuf_alone(run: Run) -> None:
    """``import onnxruntime_extensions`` sets PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python for
    every process started later; loading a graph with its operators must not import it."""
    import os
    import subprocess

    code = ("import os, sys; from shipyard.export.text_graph import custom_ops_session; "
            f"custom_ops_session({str(run.path / TEXT_GRAPH_FILE)!r}); "
            "assert 'onnxruntime_extensions' not in sys.modules, 'imported'; "
            "print(os.environ.get('PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION'))")
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    assert out == "None"
