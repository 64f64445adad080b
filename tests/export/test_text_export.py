"""export_text_classifier: a tiny Transformer trained on real SMS messages, tokenized by the
``tokenize`` transform, as model.onnx and model.pt2, checked against eager torch; plus the image
exporter's record after the helpers they share were generalised."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import SHARED
from torch import nn

from shipyard.data.text_tokenizer import train_tokenizer
from shipyard.errors import ExportError
from shipyard.export.torch_export import export_image_classifier, export_text_classifier
from shipyard.models.transformer import TransformerConfig, build_transformer
from shipyard.transforms import Tokenize

SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
LENGTH = 64


@dataclass
class Spam:
    model: nn.Module
    ids_train: np.ndarray
    y_train: np.ndarray
    ids_test: np.ndarray
    y_test: np.ndarray


def _tokenized(tmp: Path, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    rows = [line.split("\t", 1) for line in SMS.read_text(encoding="utf-8").splitlines()[:n]]
    texts = [text.strip() for _, text in rows]
    y = np.array([label == "spam" for label, _ in rows], dtype=np.int64)
    tok = train_tokenizer(texts[:500], vocab_size=2000)
    tok.save(str(tmp / "tokenizer.json"))
    step = Tokenize(path="tokenizer.json", base_dir=tmp, max_length=LENGTH, truncation=True)
    ids = step(np.array([t.encode("utf-8") for t in texts], dtype=object))
    assert isinstance(ids, np.ndarray)
    return ids, y, tok.get_vocab_size()


def tiny(vocab: int, seed: int = 0, **fields: Any) -> nn.Module:
    torch.manual_seed(seed)
    base: dict[str, Any] = {"d_model": 32, "heads": 4, "d_ff": 64, "layers": 2,
                            "max_length": LENGTH}
    return build_transformer(TransformerConfig.model_validate({**base, **fields}), vocab, 2, 0)


@pytest.fixture(scope="module")
def spam(tmp_path_factory: pytest.TempPathFactory) -> Spam:
    """The tiny model after ~150 Adam steps on 600 SMS messages (~95% on the next 200)."""
    ids, y, vocab = _tokenized(tmp_path_factory.mktemp("tok"), 800)
    model = tiny(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(ids[:600]), torch.from_numpy(y[:600])
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):
        for idx in torch.randperm(600, generator=gen).split(32):
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return Spam(model.eval(), ids[:600], y[:600], ids[600:], y[600:])


def _eager(model: nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(ids)).numpy()  # type: ignore[no-any-return]


def test_record_files_and_agreement(tmp_path: Path, spam: Spam) -> None:
    eager = _eager(spam.model, spam.ids_test)
    assert (eager.argmax(1) == spam.y_test).mean() > 0.9  # the model has learnt something
    meta = {"shipyard.task": "classification", "shipyard.class_names": '["ham", "spam"]'}
    record = export_text_classifier(spam.model, spam.ids_test, tmp_path, opset=18,
                                    tolerance=1e-4, max_batch_size=32, metadata=meta)
    assert record["converted"] and "error" not in record, record
    assert record["file"] == "model.onnx" and record["reference"] == "torch"
    assert record["bytes"] == (tmp_path / "model.onnx").stat().st_size
    assert record["opset"] == 18
    assert record["inputs"] == [{"name": "input_ids", "datatype": "INT64",
                                 "shape": [-1, LENGTH]}]
    assert record["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}]
    agreement = record["agreement"]
    assert agreement["passed"] and agreement["labels_identical"]
    assert agreement["rows"] == 200 and agreement["max_abs_diff"] <= 1e-4
    program = record["torch_program"]
    assert program["file"] == "model.pt2" and program["passed"], program
    json.dumps(record)  # it goes into export.json

    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("input_ids", "tensor(int64)", LENGTH)
    assert isinstance(inp.shape[0], str) and out.name == "logits"
    assert {p: session.get_modelmeta().custom_metadata_map[p] for p in meta} == meta
    for rows in (spam.ids_test[:1], spam.ids_test[:32], spam.ids_test[7:8]):
        got = session.run(["logits"], {"input_ids": rows})[0]
        assert got.shape == (len(rows), 2)
        assert np.abs(got - _eager(spam.model, rows)).max() <= 1e-4
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    with torch.inference_mode():
        logits = loaded(torch.from_numpy(spam.ids_test[:5]))["logits"].numpy()
    assert np.abs(logits - eager[:5]).max() <= 1e-4


def test_the_graph_does_not_trim_but_agrees_with_trimming_eager(tmp_path: Path,
                                                                spam: Spam) -> None:
    """Eager trims a batch of short messages to their own length; the ONNX graph always runs
    the full 64 columns; the logits agree, row by row, whatever else is in the batch."""
    lengths = (spam.ids_test != 0).sum(1)
    short = spam.ids_test[lengths <= 12][:8]
    assert len(short) >= 4 and ((short != 0).sum(1).max() <= 12)
    record = export_text_classifier(spam.model, short, tmp_path, opset=18, tolerance=1e-4,
                                    max_batch_size=16, program_file=None)
    assert record["agreement"]["passed"] and "torch_program" not in record
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    mixed = np.concatenate([short[:3], spam.ids_test[lengths == lengths.max()][:1]])
    got = session.run(["logits"], {"input_ids": mixed})[0]
    assert np.abs(got[:3] - _eager(spam.model, short[:3])).max() <= 1e-4


def test_other_architectures_export(tmp_path: Path, spam: Spam) -> None:
    model = tiny(2000, seed=1, positional="learned", pooling="cls", activation="relu",
                 norm_first=False, classifier_hidden=16, heads=1).eval()
    record = export_text_classifier(model, spam.ids_test[:50], tmp_path, opset=18,
                                    tolerance=1e-4, max_batch_size=8)
    assert record["agreement"]["passed"], record
    assert record["torch_program"]["passed"], record["torch_program"]


class DataDependent(nn.Module):
    """Python control flow on a value: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.embed(input_ids).mean(1)
        return out if bool(input_ids.sum() > 3) else -out


def test_failures_are_recorded_not_raised(tmp_path: Path) -> None:
    ids = np.random.default_rng(0).integers(1, 10, (6, 8))
    record = export_text_classifier(DataDependent(), ids, tmp_path, opset=18, tolerance=1e-4,
                                    max_batch_size=8)
    assert not record["converted"] and "torch.onnx.export failed" in record["error"]
    assert record["torch_program"]["file"] is None
    assert "torch.export failed" in record["torch_program"]["error"]
    assert not (tmp_path / "model.onnx").exists()


def test_nothing_asked_nothing_written(tmp_path: Path, spam: Spam) -> None:
    record = export_text_classifier(spam.model, spam.ids_test[:4], tmp_path, opset=18,
                                    tolerance=1e-4, max_batch_size=8, onnx_file=None,
                                    program_file=None)
    assert record == {"converted": False, "file": None, "reference": "torch",
                      "dynamic_length": False}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ExportError, match=r"int64 \[N, L\] token ids, got float32 \[4, 64\]"):
        export_text_classifier(spam.model, spam.ids_test[:4].astype(np.float32), tmp_path,
                               opset=18, tolerance=1e-4, max_batch_size=8)


def test_image_export_record_is_unchanged(tmp_path: Path) -> None:
    """The image exporter through the shared helpers: the same record as before."""
    from export_support import tiny_cnn

    model = tiny_cnn().eval()
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    record = export_image_classifier(model, x, tmp_path, opset=18, tolerance=1e-4,
                                     max_batch_size=16, mean=[0.5], std=[0.25],
                                     metadata={"shipyard.task": "classification"})
    assert list(record) == ["converted", "file", "reference", "bytes", "opset", "inputs",
                            "outputs", "normalize_in_graph", "agreement", "torch_program"]
    assert record["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8],
                                 "format": "FORMAT_NCHW"}]
    assert record["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert record["normalize_in_graph"] is True
    assert record["agreement"]["passed"] and record["agreement"]["rows"] == 20
    assert record["torch_program"]["passed"] and record["torch_program"]["rows_checked"] == 20
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = model(torch.from_numpy((x - 0.5) / 0.25)).detach().numpy()
    assert np.abs(session.run(["logits"], {"image": x})[0] - expected).max() <= 1e-4


def test_dynamic_length_takes_any_length_up_to_the_exported_one(tmp_path: Path,
                                                                 spam: Spam) -> None:
    record = export_text_classifier(spam.model, spam.ids_test[:64], tmp_path, opset=18,
                                    tolerance=1e-4, max_batch_size=16, dynamic_length=True,
                                    program_file="model.pt2")
    assert record["dynamic_length"] and record["inputs"][0]["shape"] == [-1, -1]
    cut = record["agreement"]["cut_to_longest"]
    assert record["agreement"]["passed"] and cut["batch"] == 16 and cut["max_abs_diff"] < 1e-4
    assert record["torch_program"]["passed"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    rows = spam.ids_test[:4]
    width = int((rows != 0).sum(1).max())
    assert width < rows.shape[1]
    short = session.run(None, {"input_ids": rows[:, :width]})[0]
    full = session.run(None, {"input_ids": rows})[0]
    np.testing.assert_allclose(short, full, atol=1e-5)
