"""The Transformer text family (``kind: text``, ``model.family: torch``): table -> split ->
chain -> subword tokenizer trained on the training texts -> Transformer encoder -> fit ->
evaluate -> ONNX.

Texts become token ids through :class:`shipyard.transforms.Tokenize` loading the run's own
``tokenizer.json``: the very step the published model declares after the chain, so the server
computes the same ids from a raw string. Ids are padded to ``tokenizer.max_length``; the network
drops the columns that are padding in a whole batch (dynamic padding), so short messages cost
little in training. The loop is the image family's (:func:`shipyard.training.torch.fit`: the
same schedules, checkpoints, ``--resume``, progress and autocast on CUDA).

Files of the run (besides :mod:`shipyard.training.run`'s): ``tokenizer.json``,
``model_state.pt``, ``model.onnx`` (``input_ids`` INT64 [N, max_length] -> ``logits``),
``model.pt2``, ``serving.json``, ``history.json``, ``curves.png``, ``checkpoints/``; with
``export.tokenizer_in_graph`` also ``model_text.onnx`` (``text`` BYTES [N] -> ``logits``: the
BPE tokenizer inside the graph, :mod:`shipyard.export.text_graph`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from shipyard.errors import ConfigError
from shipyard.evaluation.report import write_report
from shipyard.evaluation.scoring import Evaluation
from shipyard.models.transformer import TransformerConfig, build_transformer, count_parameters
from shipyard.training._config_errors import format_errors
from shipyard.training.config import AnyExperiment
from shipyard.training.distributed import env_rank, env_world_size
from shipyard.training.progress import Steps
from shipyard.training.run import RUN_FILES, Run, library_versions, write_json, write_run_files
from shipyard.training.text_config import TextExperiment
from shipyard.training.text_run import (
    TEXT_LIBRARIES,
    chain_steps,
    created,
    data_info,
    load_splits,
    run_chain,
    score,
    split_figures,
    text_experiment,
    text_report,
    wrong_examples,
)
from shipyard.training.torch import fit, predict
from shipyard.transforms import Tokenize

__all__ = ["TEXT_GRAPH_FILE", "TOKENIZER_FILE", "Prepared", "evaluate", "prepare",
           "tokenize_step", "train"]

log = logging.getLogger("shipyard.training")

TOKENIZER_FILE = "tokenizer.json"
TEXT_GRAPH_FILE = "model_text.onnx"
"""The model with the tokenizer inside (``export.tokenizer_in_graph``): raw texts in."""


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` checked: the network's config."""

    net: TransformerConfig


def _net(exp: TextExperiment) -> TransformerConfig:
    try:
        cfg = TransformerConfig.model_validate(exp.model.params)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, "experiment", root=TransformerConfig,
                                        prefix=("model", "params"))) from exc
    if exp.tokenizer.max_length > cfg.max_length:
        raise ConfigError(f"experiment: tokenizer.max_length {exp.tokenizer.max_length} is more "
                          f"than the network's model.params.max_length {cfg.max_length}; lower "
                          "the first or raise the second")
    return cfg


def prepare(exp: AnyExperiment) -> Prepared:
    """Check ``model.params`` against :class:`TransformerConfig`, the lengths and the chain;
    a mistake raises ConfigError (dotted path) before anything is written."""
    text = text_experiment(exp)
    chain_steps(text)
    cfg = _net(text)
    build_transformer(cfg, 64, 2, 0)
    return Prepared(cfg)


def tokenize_step(exp: TextExperiment, longest: bool = False) -> dict[str, dict[str, Any]]:
    """The ``tokenize`` step after the chain, as training runs it and ``config.yaml``
    declares it: longer texts are cut to ``max_length``, an empty text is [CLS] [SEP];
    ``longest``: a batch is padded to its longest text only (a model exported with a
    dynamic length), which cuts nothing but padding: the ids are training's, shorter."""
    step: dict[str, Any] = {"path": TOKENIZER_FILE, "max_length": exp.tokenizer.max_length,
                            "truncation": True, "allow_empty": True}
    if longest:
        step["padding"] = "longest"
    return {"tokenize": step}


def _tokenizer(exp: TextExperiment, run_dir: Path) -> Tokenize:
    params = tokenize_step(exp)["tokenize"]
    return Tokenize(**params, base_dir=run_dir).load()


def _shared_tokenizer(exp: TextExperiment, run_dir: Path
                      ) -> tempfile.TemporaryDirectory[str] | None:
    """In a data-parallel run: rank 0's ``tokenizer.json`` on every rank (broadcast, so other
    nodes need no shared folder); other ranks keep their copy in a temporary folder, which is
    returned (None on rank 0, which reads the run's own file)."""
    from shipyard.training._torch_ddp import Group
    from shipyard.training._torch_parts import resolve_device

    group = Group.detect(resolve_device(exp.training.device))
    text = (run_dir / TOKENIZER_FILE).read_text(encoding="utf-8") if group.writer else None
    text = group.share(text)
    if group.writer:
        return None
    folder = tempfile.TemporaryDirectory(prefix="shipyard-tokenizer-")
    (Path(folder.name) / TOKENIZER_FILE).write_text(text, encoding="utf-8")
    return folder


def _ids(step: Tokenize, texts: list[str]) -> np.ndarray:
    items = np.empty(len(texts), dtype=object)
    items[:] = [t.encode("utf-8") for t in texts]
    out = step(items)
    assert isinstance(out, np.ndarray)
    return out


def _logits(model: torch.nn.Module, ids: np.ndarray, exp: TextExperiment,
            device: str | None = None) -> np.ndarray:
    """The model's logits of ``ids`` on ``device`` (default: the training device)."""
    batch = exp.training.eval_batch_size or 2 * exp.training.batch_size
    return predict(model, torch.from_numpy(ids), batch_size=batch,
                   device=device or exp.training.device)


def _proba(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()


def train(exp: AnyExperiment, base_dir: Path, prepared: Any, *, run_dir: Path, steps: Steps,
          config_note: str = "", resume: bool = False) -> Run | None:
    """Load, split, run the chain, train the tokenizer, fit, score, plot, export and write
    ``run_dir``; ``resume`` continues the fit from the newest checkpoint there. In a
    data-parallel run every rank fits with rank 0's tokenizer, and a rank other than 0 stops
    after the fit (None)."""
    from shipyard.data.text_tokenizer import train_tokenizer

    text = text_experiment(exp)
    cfg = prepared.net if isinstance(prepared, Prepared) else _net(text)
    chain = chain_steps(text)
    with steps.step(f"loading {text.data.source}", "load"):
        parts = load_splits(text, base_dir)
    names = parts.class_names
    with steps.step(f"preprocessing {parts.total} texts", "preprocess"):
        train_texts = run_chain(chain, parts.train.texts)
        test_texts = run_chain(chain, parts.test.texts)
        val_texts = None if parts.validation is None else \
            run_chain(chain, parts.validation.texts)
    tok = text.tokenizer
    with steps.step(f"training a {tok.kind} tokenizer ({tok.vocab_size} tokens at most)",
                    "tokenizer"):
        if env_rank() == 0 and not (resume and (run_dir / TOKENIZER_FILE).is_file()):
            tokenizer = train_tokenizer(train_texts, kind=tok.kind, vocab_size=tok.vocab_size,
                                        min_frequency=tok.min_frequency)
            tokenizer.save(str(run_dir / TOKENIZER_FILE))
        if env_world_size() > 1:  # every rank tokenizes with rank 0's tokenizer
            folder = _shared_tokenizer(text, run_dir)
            step = _tokenizer(text, Path(folder.name) if folder is not None else run_dir)
        else:
            step = _tokenizer(text, run_dir)
        vocab = int(step.tokenizer_.get_vocab_size())
        ids_train = _ids(step, train_texts)
        ids_test = _ids(step, test_texts)
        ids_val = None if val_texts is None else _ids(step, val_texts)
    lengths = (ids_train != step.pad_id_).sum(1)
    cut = int((lengths >= tok.max_length).sum())
    torch.manual_seed(text.training.seed)
    model = build_transformer(cfg, vocab, len(names), step.pad_id_)
    val = None if ids_val is None or parts.validation is None else \
        (torch.from_numpy(ids_val), parts.validation.labels)
    sizes = f"{len(parts.train)} train / {0 if val is None else len(val[1])} val texts"
    with steps.step(f"training {count_parameters(model):,}-parameter Transformer on {sizes}",
                    "fit"), steps.paused():
        history = fit(model, (torch.from_numpy(ids_train), parts.train.labels), val,
                      text.training, run_dir, progress=steps.show, resume=resume)
    if env_rank() != 0:  # data-parallel: rank 0 alone scores, exports and writes
        return None
    model.eval()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               run_dir / RUN_FILES["weights"])
    metrics: dict[str, dict[str, float | None]] = {"validation": {}}
    details: dict[str, Any] = {}
    with steps.step(f"evaluating on {len(parts.test)} test texts", "evaluate"):
        if ids_val is not None and parts.validation is not None:
            v = score(_proba(_logits(model, ids_val, text)), parts.validation.labels, names,
                      text.task)
            metrics["validation"], details["validation"] = v.summary, v.details
        test = score(_proba(_logits(model, ids_test, text)), parts.test.labels, names,
                     text.task)
        metrics["test"], details["test"] = test.summary, test.details
        details["test"]["most_confident_wrong"] = wrong_examples(test, parts.test, names)
    metrics["training"] = history.summary("texts_per_s")
    plots: list[tuple[str, str]] = []
    if text.output.plots:
        with steps.step("plotting", "plots"):
            plots += split_figures(test, names, run_dir, "test")
    if (run_dir / RUN_FILES["curves"]).is_file():
        plots.append(("Learning curves", RUN_FILES["curves"]))
    export = _export(text, model, ids_test, run_dir, names, steps, test_texts, step.pad_id_)
    graph = export.get("text_graph") or {}
    nul = (graph.get("texts_with_nul") or {}).get("with_nul")
    if graph.get("error"):
        history.notes.append(f"export.tokenizer_in_graph: no {TEXT_GRAPH_FILE}: "
                             f"{graph['error']}")
    elif nul:
        history.notes.append(f"{nul} checked test texts hold U+0000 (NUL): {graph['differs']}")
    write_json(run_dir / RUN_FILES["serving"], _serving(text, names, export))
    mean_tokens = float(lengths.mean()) if len(lengths) else 0.0
    info: dict[str, Any] = {
            "name": text.name, "kind": "text", "task": text.task, "model": text.model.label,
            "estimator": "shipyard.models.transformer", "parameters": count_parameters(model),
            "created": created(), "data": data_info(text, parts),
            "classes": list(range(len(names))), "class_names": names,
            "tokenizer": {"kind": tok.kind, "vocab_size": vocab, "max_length": tok.max_length,
                          "train_texts_cut": cut,
                          "mean_tokens": mean_tokens},
            "device": history.device, "precision": history.precision,
            "history": {"best_epoch": history.best_epoch,
                        "stopped_early": history.stopped_early, "notes": history.notes},
            "versions": library_versions(*TEXT_LIBRARIES, "torch"),
            "timings_s": steps.timings,
            "warnings": history.notes}
    write_run_files(run_dir, text, "# The experiment as run by shipyard (overrides applied).\n",
                    config_note, metrics=metrics, details=details, export=export, info=info)
    params = ", ".join(f"{k}={v!r}" for k, v in text.model.params.items()) or "defaults"
    tr = text.training
    facts = [
        ("tokenizer", f"{tok.kind}, {vocab:,} tokens, max_length {tok.max_length} "
                      f"({cut} training texts cut; {mean_tokens:.1f} "
                      "tokens on average)"),
        ("model", f"Transformer encoder, {info['parameters']:,} parameters; {params}"),
        ("training", f"{len(history.epoch)} epochs of {tr.batch_size} (optimizer "
                     f"{tr.optimizer.name}, lr {tr.optimizer.lr}, schedule {tr.schedule.name}, "
                     f"{history.device or tr.device}, {history.precision or tr.precision}); "
                     f"best epoch {history.best_epoch}"),
    ]
    notes = history.epoch_table("texts/s")
    notes += [""] if notes else []
    write_report(run_dir / RUN_FILES["report"], text_report(
        text, run_dir, info, metrics, details, plots, export, facts, notes, history.notes))
    log.info("test metrics: %s", metrics["test"])
    return Run.load(run_dir)


def _export(exp: TextExperiment, model: torch.nn.Module, ids_test: np.ndarray, run_dir: Path,
            names: list[str], steps: Steps, test_texts: list[str], pad_id: int
            ) -> dict[str, Any]:
    if not exp.export.onnx and not exp.export.torch_program:
        return {"converted": False, "error": "export.onnx and export.torch_program are false"}
    from shipyard.export.torch_export import export_text_classifier

    rows = ids_test[:2048]
    metadata = {"shipyard.experiment": exp.name, "shipyard.task": exp.task,
                "shipyard.model": exp.model.label, "shipyard.run": run_dir.name,
                "shipyard.class_names": ",".join(names),
                "shipyard.input": f"input_ids INT64 [N, "
                                  f"{'L <= ' if exp.export.dynamic_length else ''}"
                                  f"{exp.tokenizer.max_length}]: {TOKENIZER_FILE}'s ids, "
                                  f"padded with {pad_id}"}
    with steps.step("exporting to ONNX and checking it", "export"):
        record = export_text_classifier(
            model, rows, run_dir, opset=exp.export.opset or 18,
            tolerance=exp.export.tolerance, max_batch_size=exp.export.max_batch_size,
            onnx_file=RUN_FILES["onnx"] if exp.export.onnx else None,
            program_file=RUN_FILES["program"] if exp.export.torch_program else None,
            metadata=metadata, dynamic_length=exp.export.dynamic_length, pad_id=pad_id,
            split="test" if len(rows) == len(ids_test) else f"test (first {len(rows)})")
    record["summary"] = ("the Transformer; input_ids INT64 [N, "
                         + ("up to max_length" if record.get("dynamic_length") else "max_length")
                         + "] in, logits out; the chain and the tokenizer are declared "
                           "preprocess steps (serving.json)")
    if exp.export.tokenizer_in_graph and record.get("converted"):
        with steps.step(f"putting the tokenizer inside the graph ({TEXT_GRAPH_FILE})",
                        "text_graph"):
            record["text_graph"] = _text_graph(exp, model, rows, test_texts[:len(rows)],
                                               run_dir, record.get("agreement", {}))
        graph = record["text_graph"]
        if not (graph.get("agreement") or {}).get("passed"):
            log.warning("%s: %s", TEXT_GRAPH_FILE, graph.get("error") or
                        f"disagrees with the tokenize step and torch: {graph.get('ids')}, "
                        f"{graph.get('agreement')}")
    agreement = record.get("agreement") or {}
    if record.get("converted") and not agreement.get("passed"):
        log.warning("ONNX Runtime and torch disagree on the test split: %s", agreement)
    if "error" in record:
        log.warning("%s", record["error"])
    return record


def _text_graph(exp: TextExperiment, model: torch.nn.Module, rows: np.ndarray,
                texts: list[str], run_dir: Path, agreement: dict[str, Any]) -> dict[str, Any]:
    """``model_text.onnx`` and its check on the rows ``model.onnx`` was checked on."""
    from shipyard.export.text_graph import export_text_graph

    model = model.to("cpu").eval()
    with torch.inference_mode():
        logits = np.concatenate([model(torch.from_numpy(rows[i:i + 512])).float().numpy()
                                 for i in range(0, len(rows), 512)])
    return export_text_graph(
        run_dir / RUN_FILES["onnx"], run_dir / TOKENIZER_FILE, run_dir / TEXT_GRAPH_FILE,
        texts=texts, ids=rows, logits=logits, max_length=exp.tokenizer.max_length,
        tolerance=exp.export.tolerance, split=str(agreement.get("split", "test")),
        texts_with_nul=sum("\x00" in t for t in texts))


def _serving(exp: TextExperiment, names: list[str], export: dict[str, Any]) -> dict[str, Any]:
    program = export.get("torch_program") or {}
    graph = export.get("text_graph") or {}
    return {"model_file": RUN_FILES["onnx"] if export.get("converted") else None,
            "torch_file": program.get("file"), "backend": "onnx",
            "max_batch_size": exp.export.max_batch_size, "files": [TOKENIZER_FILE],
            "preprocess": [*exp.preprocess, tokenize_step(exp, export.get("dynamic_length",
                                                                          False))],
            "postprocess": [{"softmax": {}}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [len(names)]}],
            "labels": {"probabilities": names}, "class_names": names,
            # shipyard publish --tokenizer graph: this file as model.onnx, the chain only
            "text_graph": {"model_file": graph["file"], "preprocess": list(exp.preprocess),
                           "files": []} if graph.get("file") else None}


def evaluate(run: Run, data: Path | None = None, *, show_progress: bool = False) -> Evaluation:
    """Score the run's weights on ``data`` (a table with the experiment's columns, all of it)
    or on its own test split again."""
    from shipyard.training.text_run import evaluate_again

    text = text_experiment(run.experiment)
    step = _tokenizer(text, run.path)
    model = build_transformer(_net(text), int(step.tokenizer_.get_vocab_size()),
                              len(run.class_names), step.pad_id_)
    model.load_state_dict(torch.load(run.path / RUN_FILES["weights"], map_location="cpu",
                                     weights_only=True))
    model.eval()

    def proba(texts: list[str]) -> np.ndarray:
        # auto: a run trained on CUDA is scored again on a machine without a GPU too
        return _proba(_logits(model, _ids(step, texts), text, "auto"))

    return evaluate_again(run, text, data, proba, show_progress=show_progress)
