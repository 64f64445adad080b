"""The Transformer text trainer's own checks: refusals before a run, --resume of an
interrupted run (same tokenizer, history continued), and the SMS examples' schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from training_support import EXAMPLES, SMS_SPAM

from shipyard.errors import ConfigError
from shipyard.training.config import load_experiment
from shipyard.training.text_config import TextExperiment
from shipyard.training.trainer import train_experiment


def tiny(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "kind": "text", "name": "sms-tiny-tr", "task": "binary",
        "data": {"source": str(SMS_SPAM), "text_column": 1, "label_column": 0, "limit": 400},
        "model": {"family": "torch", "params": {"d_model": 16, "heads": 2, "d_ff": 32,
                                                "layers": 1, "max_length": 32}},
        "tokenizer": {"vocab_size": 400, "max_length": 32},
        "training": {"epochs": 1, "batch_size": 32},
        "export": {"onnx": False, "torch_program": False}, "output": {"plots": False}}
    raw.update(changes)
    return raw


@pytest.mark.parametrize(("overrides", "needle"), [
    (["tokenizer.max_length=64"], "tokenizer.max_length 64 is more than the network's "
                                  "model.params.max_length 32"),
    (["model.params.heads=3"], "model.params"),
    (["model.params.depth=3"], "model.params.depth"),
    (["tokenizer.kind=sentencepiece"], "tokenizer.kind"),
])
def test_refused_before_the_run(tmp_path: Path, overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        exp, base = load_experiment(tiny(), overrides)
        train_experiment(exp, base, output=tmp_path / "run")
    assert needle in info.value.message
    assert not (tmp_path / "run").exists()


def test_resume_continues_with_the_same_tokenizer(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    exp, base = load_experiment(tiny(), [])
    train_experiment(exp, base, output=run_dir)
    tokenizer = (run_dir / "tokenizer.json").read_bytes()
    longer, base = load_experiment(tiny(training={"epochs": 2, "batch_size": 32}), [])
    run = train_experiment(longer, base, resume=run_dir)
    history = json.loads((run.path / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert any("resum" in note for note in history["notes"])
    assert (run_dir / "tokenizer.json").read_bytes() == tokenizer


def test_sms_examples_load_with_their_paths_resolved() -> None:
    for name, family in (("sms_spam_tfidf", "sklearn"), ("sms_spam_transformer", "torch")):
        exp, _ = load_experiment(EXAMPLES / name / "experiment.yaml")
        assert isinstance(exp, TextExperiment) and exp.model.family == family, name
        assert Path(exp.data.source) == SMS_SPAM.resolve()


def test_the_seeds_sizes_are_expressible() -> None:
    exp, _ = load_experiment(EXAMPLES / "sms_spam_transformer" / "experiment.yaml",
                             ["model.params.d_model=512", "model.params.heads=8",
                              "model.params.d_ff=2048", "model.params.layers=6"])
    from shipyard.training.text_torch import prepare

    assert prepare(exp).net.d_model == 512
