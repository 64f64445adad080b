#!/usr/bin/env python3
"""Build Shipyard's built-in demo model repository.

Usage::

    python scripts/make_demo_models.py [--out DIR] [--only risk|cnn|sms] [--force]

Writes, under ``--out`` (default ``src/shipyard/demo/repository``)::

    risk/config.yaml   risk/1/model.onnx   logistic regression, breast-cancer data
    cnn/config.yaml    cnn/1/model.onnx    small CNN, 28x28 grayscale digits
    sms/config.yaml    sms/1/model.onnx    TF-IDF + linear SVM, SMS spam (raw text in)
    README.md

The risk graph is written by hand with ``onnx.helper`` (opset 17, IR version 8) from the
fitted parameters. The CNN is trained by the product: ``shipyard.api.train`` on
``examples/mnist_png/experiment.yaml`` (what ``shipyard train`` runs), whose exported
``model.onnx`` (torch.onnx dynamo export, opset 18) is copied in. The SMS model is trained
by the product too (``shipyard.api.train`` on ``examples/sms_spam_tfidf/experiment.yaml``,
with :data:`SMS_OVERRIDES`) and published by it (``shipyard.api.publish``, model ``sms``,
version 1); the script then keeps only what the demo needs (``model.onnx``, with the figures
in its metadata, and a ``config.yaml`` in the style of the others, the training chain as its
``preprocess`` steps).

This is a *training* script: it needs scikit-learn, Pillow and (only to retrain the CNN)
``shipyard[train]`` with torch. Nothing under ``src/shipyard`` imports it. The risk model is
refitted on every run (it takes well under a second and is deterministic). The CNN is only
retrained when ``--force`` is given or when no ``cnn/1/model.onnx`` is present: otherwise the
existing file is re-verified with onnxruntime on the test images and reused, which keeps
committed bytes stable and makes torch unnecessary for a plain re-run. The same holds for
the SMS model: retrained with ``--force`` or when ``sms/1/model.onnx`` is missing, otherwise
re-verified (its ``config.yaml`` steps + onnxruntime on the SMS test split, which must give
the accuracy stored in the model, and on a fixed list of messages).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "src" / "shipyard" / "demo" / "repository"


def _default_mnist() -> Path:
    """shared/ lies beside the checkout (or inside it); SHIPYARD_MNIST_DIR overrides."""
    env = os.environ.get("SHIPYARD_MNIST_DIR")
    if env:
        return Path(env)
    candidates = [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]
    for shared in candidates:
        if (shared / "data" / "mnist_png" / "test").is_dir():
            return shared / "data" / "mnist_png"
    return candidates[0] / "data" / "mnist_png"


def _default_sms() -> Path:
    """The SMS Spam Collection's folder, found like the MNIST one; SHIPYARD_SMS_DIR overrides."""
    env = os.environ.get("SHIPYARD_SMS_DIR")
    if env:
        return Path(env)
    candidates = [REPO_ROOT.parent / "shared", REPO_ROOT / "shared"]
    for shared in candidates:
        if (shared / "data" / "sms_spam" / SMS_FILE).is_file():
            return shared / "data" / "sms_spam"
    return candidates[0] / "data" / "sms_spam"


SMS_FILE = "SMSSpamCollection"
OPSET = 17
IR_VERSION = 8
SEED = 0
RISK_RECIPE = "risk-v1"
PRODUCER = "shipyard-make-demo-models"


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


def _finish_model(graph: onnx.GraphProto, doc: str, meta: dict[str, str]) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _io_summary(path: Path) -> str:
    sess = _session(path)
    parts = [f"in  {i.name} {i.type} {i.shape}" for i in sess.get_inputs()]
    parts += [f"out {o.name} {o.type} {o.shape}" for o in sess.get_outputs()]
    return "; ".join(parts)


def _flow_step(step: dict[str, Any]) -> str:
    """One declared step as a flow-style YAML line: ``words: {pattern: '...'}``."""
    import yaml

    ((name, params),) = step.items()
    flow = yaml.safe_dump(params or {}, default_flow_style=True, sort_keys=False, width=1 << 30)
    return f"{name}: {flow.strip()}"


def _write_config(
    path: Path, *, max_batch_size: int, description: str, labels: dict[str, list[str]] | None,
    inputs: list[str] | None = None, preprocess: list[dict[str, Any]] | None = None,
) -> None:
    lines = [
        f"description: {json.dumps(description)}",
        "backend: onnx",
        f"max_batch_size: {max_batch_size}",
        "dynamic_batching:",
        "  max_queue_delay_us: 0",
        "  preferred_batch_sizes: []",
        "  max_queue_size: 1024",
        "instances: 1",
        "onnxruntime:",
        "  intra_op_threads: 1",
        "  inter_op_threads: 1",
        "version_policy:",
        "  latest: 1",
    ]
    if inputs:  # flow-style YAML lines, one input each
        lines.append("inputs:")
        lines.extend(f"  - {line}" for line in inputs)
    if preprocess:  # flow-style YAML lines, one step each (like digits/config.yaml)
        lines.append("preprocess:")
        lines.extend(f"  - {_flow_step(step)}" for step in preprocess)
    if labels:
        lines.append("labels:")
        for output, names in labels.items():
            lines.append(f"  {output}: {json.dumps(names)}")
    text = "\n".join(lines) + "\n"
    _check_config_text(text, max_batch_size, labels, preprocess)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _check_config_text(text: str, max_batch_size: int, labels: dict[str, list[str]] | None,
                       preprocess: list[dict[str, Any]] | None = None) -> None:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a serve dependency
        return
    cfg = yaml.safe_load(text)
    assert cfg["backend"] == "onnx"
    assert cfg["max_batch_size"] == max_batch_size
    assert cfg["dynamic_batching"]["preferred_batch_sizes"] == []
    assert cfg.get("labels") == labels, cfg.get("labels")
    assert cfg.get("preprocess") == (preprocess or None), cfg.get("preprocess")


@dataclass
class Result:
    name: str
    model_path: Path
    io: str
    metrics: dict[str, Any]


# --------------------------------------------------------------------------------------
# risk: logistic regression on the breast-cancer data
# --------------------------------------------------------------------------------------


def build_risk(out: Path) -> Result:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x = data.data.astype(np.float64)
    y = data.target  # 0 = malignant, 1 = benign
    malignant = int(np.flatnonzero(data.target_names == "malignant")[0])
    assert malignant == 0, data.target_names
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(random_state=SEED, max_iter=5000))
    pipe.fit(x_tr, y_tr)
    train_acc = float(pipe.score(x_tr, y_tr))
    test_acc = float(pipe.score(x_te, y_te))

    scaler: StandardScaler = pipe[0]
    clf: LogisticRegression = pipe[1]
    # sklearn: logit(P(class 1 = benign)) = ((x - mean) / scale) @ coef + intercept
    # We want P(malignant) = 1 - P(benign) = sigmoid(-logit): negate, then fold the scaler.
    coef = clf.coef_[0].astype(np.float64)
    w = -(coef / scaler.scale_)
    b = -(clf.intercept_[0] - float(np.sum(coef * scaler.mean_ / scaler.scale_)))
    n_features = x.shape[1]

    w_init = numpy_helper.from_array(w.reshape(n_features, 1).astype(np.float32), "weight")
    b_init = numpy_helper.from_array(np.array([b], dtype=np.float32), "bias")
    nodes = [
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logit"], name="linear"),
        helper.make_node("Sigmoid", ["logit"], ["score"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "risk",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=[w_init, b_init],
    )
    doc = (
        "Breast-cancer risk: logistic regression (StandardScaler folded in) on "
        "sklearn.datasets.load_breast_cancer. Input 'features' = the 30 raw features in "
        "load_breast_cancer().feature_names order. Output 'score' = P(malignant)."
    )
    meta = {
        "shipyard.recipe": RISK_RECIPE,
        "train_accuracy": f"{train_acc:.4f}",
        "test_accuracy": f"{test_acc:.4f}",
        "positive_class": "malignant",
        "feature_names": json.dumps([str(n) for n in data.feature_names]),
    }
    model = _finish_model(graph, doc, meta)
    path = out / "risk" / "1" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))

    # Verify: onnxruntime vs sklearn predict_proba for the malignant class.
    sess = _session(path)
    (score,) = sess.run(["score"], {"features": x_te.astype(np.float32)})
    expected = pipe.predict_proba(x_te)[:, malignant]
    max_diff = float(np.max(np.abs(score[:, 0].astype(np.float64) - expected)))
    if score.shape != (len(x_te), 1) or max_diff > 1e-5:
        raise SystemExit(f"risk: ONNX/sklearn mismatch: shape {score.shape}, diff {max_diff}")
    onnx_acc = float(np.mean((score[:, 0] > 0.5) == (y_te == malignant)))
    if test_acc < 0.95:
        raise SystemExit(f"risk: test accuracy {test_acc:.4f} < 0.95")

    description = (
        "Breast-cancer risk demo: logistic regression on scikit-learn's bundled "
        "Wisconsin diagnostic data. Input 'features' [N,30] FP32 (raw features, "
        "load_breast_cancer().feature_names order); output 'score' [N,1] FP32 = "
        f"P(malignant). Accuracy: train {train_acc:.4f} ({len(x_tr)} samples), "
        f"test {test_acc:.4f} ({len(x_te)} samples, stratified 80/20 split, seed {SEED})."
    )
    _write_config(
        out / "risk" / "config.yaml", max_batch_size=256, description=description, labels=None
    )
    return Result(
        "risk",
        path,
        _io_summary(path),
        {
            "train_accuracy": train_acc,
            "test_accuracy": test_acc,
            "onnx_test_accuracy": onnx_acc,
            "max_abs_diff_vs_sklearn": max_diff,
            "n_train": len(x_tr),
            "n_test": len(x_te),
        },
    )


# --------------------------------------------------------------------------------------
# cnn: trained by the product itself, `shipyard train examples/mnist_png/experiment.yaml`
# --------------------------------------------------------------------------------------

CLASSES = [str(d) for d in range(10)]
CNN_EXPERIMENT = REPO_ROOT / "examples" / "mnist_png" / "experiment.yaml"


def load_png_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every PNG under ``root/split/<digit>/`` as float32 [N, 1, 28, 28] in [0, 1]."""
    from PIL import Image

    images, labels = [], []
    for digit in range(10):
        for f in sorted((root / split / str(digit)).glob("*.png")):
            with Image.open(f) as img:
                images.append(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
            labels.append(digit)
    return np.stack(images)[:, None], np.array(labels)


def _ort_predict(path: Path, x: np.ndarray, batch: int = 500) -> np.ndarray:
    sess = _session(path)
    return np.concatenate([sess.run(None, {"image": x[i:i + batch]})[0]
                           for i in range(0, len(x), batch)])


def build_cnn(out: Path, mnist: Path, *, force: bool, epochs: int | None) -> Result:
    """The CNN of ``examples/mnist_png/experiment.yaml``, trained by ``shipyard.api.train``
    (the same run ``shipyard train`` makes) on ``mnist``; its ``model.onnx`` becomes
    ``cnn/1/model.onnx``. An existing file is reused (re-verified) unless ``force``."""
    path = out / "cnn" / "1" / "model.onnx"
    have_data = (mnist / "test").is_dir()
    metrics: dict[str, Any] = {}
    counts: dict[str, int] = {}
    if path.exists() and not force:
        print(f"  cnn: reusing {path} (pass --force to retrain)")
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        metrics["cached"] = True
        metrics["epochs"] = int(props.get("epochs", 0))
        counts["train"] = int(props.get("train_images", 0))
    else:
        if not have_data:
            raise SystemExit(f"cnn: no MNIST PNGs under {mnist} (use --mnist DIR)")
        import tempfile

        from shipyard import api

        overrides: dict[str, Any] = {"data.source": str(mnist), "output.plots": False}
        if epochs is not None:
            overrides["training.epochs"] = epochs
        with tempfile.TemporaryDirectory() as tmp:
            print(f"  cnn: shipyard train {CNN_EXPERIMENT.relative_to(REPO_ROOT)} ...",
                  flush=True)
            run = api.train(CNN_EXPERIMENT, output=Path(tmp) / "run", overrides=overrides)
            agreement = run.export.get("agreement") or {}
            if not agreement.get("passed"):
                raise SystemExit(f"cnn: onnxruntime and torch disagree: {agreement}")
            model = onnx.load(str(run.onnx_path))
            training = run.metrics["training"]
            counts["train"] = int(run.metrics.get("train_images", 0)) or 3000
            meta = {
                "shipyard.recipe": f"shipyard train {CNN_EXPERIMENT.relative_to(REPO_ROOT)}",
                "validation_accuracy": f"{run.metrics['validation']['accuracy']:.4f}",
                "test_accuracy": f"{run.metrics['test']['accuracy']:.4f}",
                "epochs": str(int(training["epochs"])),
                "train_images": str(counts["train"]),
                "labels": json.dumps(CLASSES),
            }
            del model.metadata_props[:]
            for key, value in meta.items():
                model.metadata_props.add(key=key, value=value)
            path.parent.mkdir(parents=True, exist_ok=True)
            onnx.save(model, str(path))
            metrics["epochs"] = int(training["epochs"])
            metrics["max_abs_diff_vs_torch"] = float(agreement.get("max_abs_diff", 0.0))
    if have_data:
        x_te, y_te = load_png_split(mnist, "test")
        counts["test"] = len(x_te)
        logits = _ort_predict(path, x_te)
        assert logits.shape == (len(x_te), 10), logits.shape
        metrics["test_accuracy"] = float(np.mean(logits.argmax(1) == y_te))
    else:
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        metrics["test_accuracy"] = float(props["test_accuracy"])
        counts["test"] = 1000
    test_acc = metrics["test_accuracy"]
    if test_acc < 0.95:
        print(f"  WARNING: cnn test accuracy {test_acc:.4f} < 0.95", file=sys.stderr)
    description = (
        "Handwritten-digit demo: small CNN (2 conv blocks + linear), trained by shipyard "
        "train examples/mnist_png/experiment.yaml. Input 'image' [N,1,28,28] FP32 grayscale "
        "in [0,1] (white digit on black); output 'logits' [N,10] FP32, class i = digit i. "
        f"{metrics['epochs']} epochs on {counts['train'] or 'the'} MNIST PNGs: test accuracy "
        f"{test_acc:.4f} on {counts['test']} held-out images."
    )
    _write_config(
        out / "cnn" / "config.yaml",
        max_batch_size=64,
        description=description,
        labels={"logits": CLASSES},
        # Triton's image_client reads the layout from the model configuration
        inputs=["{name: image, datatype: FP32, shape: [1, 28, 28], format: FORMAT_NCHW}"],
    )
    metrics["n_train"] = counts["train"]
    metrics["n_test"] = counts["test"]
    return Result("cnn", path, _io_summary(path), metrics)


# --------------------------------------------------------------------------------------
# sms: trained and published by the product, `shipyard train examples/sms_spam_tfidf/...`
# --------------------------------------------------------------------------------------

SMS_EXPERIMENT = REPO_ROOT / "examples" / "sms_spam_tfidf" / "experiment.yaml"
#: keeps the graph small (the experiment's 40k-word vocabulary makes 2.1 MB). min_df, not
#: max_features: a word pair is never more frequent than either word, so min_df keeps every
#: word of every kept pair; max_features can keep a pair without one of its words, and ONNX
#: Runtime's TfIdfVectorizer then never counts that pair (the export disagrees with sklearn).
SMS_OVERRIDES: dict[str, Any] = {"model.word.min_df": 5}
SMS_LABELS = ["ham", "spam"]
#: messages written for this script (not in the data set), with the class each must get;
#: their P(spam) is stored in the model and re-checked on every run, with or without the data
SMS_MESSAGES = [
    ("WINNER!! You have been selected to receive a £900 prize reward! To claim call "
     "09061701461. Claim code KL341. Valid 12 hours only.", "spam"),
    ("FREE entry in 2 a wkly comp to win FA Cup final tkts. Text FA to 87121 to receive entry "
     "question(std txt rate)", "spam"),
    ("Urgent! Your mobile number has won a 2000 cash award. Call 09050000301 from a landline "
     "now, T&Cs apply, www.prizeclaim.co.uk", "spam"),
    ("Are we still on for lunch tomorrow? I can be there at 1.", "ham"),
    ("Sorry, I'll call you later, I'm in a meeting.", "ham"),
    ("Ok lar... Joking wif u oni... see you at home tonight", "ham"),
]


def _sms_experiment(data: Path) -> tuple[Any, Path]:
    from shipyard.training.config import load_experiment

    return load_experiment(SMS_EXPERIMENT, {"data.source": str(data), "output.plots": False,
                                            **SMS_OVERRIDES})


def _sms_recipe() -> str:
    sets = " ".join(f"--set {k}={v}" for k, v in SMS_OVERRIDES.items())
    return f"shipyard train {SMS_EXPERIMENT.relative_to(REPO_ROOT)} {sets}"


def _sms_answer(version: Path, preprocess: list[dict[str, Any]], texts: list[str],
                batch: int = 256) -> np.ndarray:
    """P(class) per raw text as the server computes it: the declared steps
    (``shipyard.transforms``), then onnxruntime on ``model.onnx``."""
    from shipyard.transforms import apply_steps, build_steps

    steps = build_steps(preprocess, base_dir=version)
    sess = _session(version / "model.onnx")
    out = []
    for i in range(0, len(texts), batch):
        items = np.empty(len(texts[i:i + batch]), dtype=object)
        items[:] = [t.encode("utf-8") for t in texts[i:i + batch]]
        done = apply_steps(steps, items)
        assert not isinstance(done, dict)
        rows = np.array([bytes(b).decode("utf-8") for b in done.tolist()],
                        dtype=np.object_).reshape(-1, 1)
        out.append(sess.run(["probabilities"], {"text": rows})[0])
    return np.concatenate(out)


def build_sms(out: Path, sms_dir: Path, *, force: bool) -> Result:
    """The TF-IDF + linear SVM of ``examples/sms_spam_tfidf/experiment.yaml`` (with
    :data:`SMS_OVERRIDES`), trained by ``shipyard.api.train`` and published by
    ``shipyard.api.publish`` as ``sms`` version 1. An existing file is reused (re-verified)
    unless ``force``."""
    version = out / "sms" / "1"
    path = version / "model.onnx"
    data = sms_dir / SMS_FILE
    have_data = data.is_file()
    metrics: dict[str, Any] = {}
    if path.exists() and not force:
        print(f"  sms: reusing {path} (pass --force to retrain)")
        metrics["cached"] = True
    else:
        if not have_data:
            raise SystemExit(f"sms: no {SMS_FILE} under {sms_dir} (use --sms DIR)")
        _train_sms(out, data)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    experiment, base_dir = _sms_experiment(data)
    preprocess = [dict(step) for step in experiment.preprocess]
    counts = json.loads(props["messages"])
    test_acc = float(props["test_accuracy"])
    description = (
        "SMS spam demo: TF-IDF of word 1- and 2-grams (min_df "
        f"{SMS_OVERRIDES['model.word.min_df']}, {int(props['vocabulary']):,} terms) + a linear "
        f"SVM with Platt-scaled probabilities, trained by {_sms_recipe()} and published by "
        "shipyard publish. Input 'text' BYTES [N, 1], one raw UTF-8 message per row (the "
        "server runs the training chain: NFKC, HTML entities, URL/e-mail/number masks, lower "
        "case, words). Outputs 'label' INT64 [N] (0 = ham, 1 = spam) and 'probabilities' FP32 "
        f"[N, 2] (ham, spam). Accuracy: validation {float(props['validation_accuracy']):.4f}, "
        f"test {test_acc:.4f} on {counts['test']} held-out messages of the SMS Spam "
        f"Collection ({counts['train']} trained on)."
    )
    _write_config(out / "sms" / "config.yaml", max_batch_size=64, description=description,
                  labels={"probabilities": SMS_LABELS}, preprocess=preprocess)
    from shipyard.repository import load_model_config

    load_model_config(out / "sms" / "config.yaml", "sms")  # the schema the server reads

    # Verify what the server will run: config.yaml's steps + onnxruntime.
    fixed = json.loads(props["check_messages"])
    probs = _sms_answer(version, preprocess, [t for t, _, _ in fixed])
    for (text, label, p_spam), row in zip(fixed, probs, strict=True):
        got = SMS_LABELS[int(row.argmax())]
        if got != label or abs(float(row[1]) - p_spam) > 1e-5:
            raise SystemExit(f"sms: {text[:40]!r}: {got} P(spam) {row[1]:.6f}, stored "
                             f"{label} {p_spam:.6f}")
    metrics["fixed_messages_ok"] = len(fixed)
    if have_data:
        from shipyard.training.text_run import load_splits

        test = load_splits(experiment, base_dir).test
        probs = _sms_answer(version, preprocess, test.texts)
        right = int(np.sum(probs.argmax(1) == test.labels))
        metrics["onnx_test_accuracy"] = right / len(test)
        if right != round(test_acc * len(test)) or len(test) != counts["test"]:
            raise SystemExit(f"sms: onnxruntime gets {right}/{len(test)} test messages right; "
                             f"the model stores test accuracy {test_acc:.4f} of {counts['test']}")
    metrics["test_accuracy"] = test_acc
    metrics["validation_accuracy"] = float(props["validation_accuracy"])
    metrics["vocabulary"] = int(props["vocabulary"])
    metrics["n_train"], metrics["n_test"] = counts["train"], counts["test"]
    if test_acc < 0.98:
        print(f"  WARNING: sms test accuracy {test_acc:.4f} < 0.98", file=sys.stderr)
    return Result("sms", path, _io_summary(path), metrics)


def _train_sms(out: Path, data: Path) -> None:
    """Train with the product, publish ``sms`` version 1 with the product, keep only
    ``model.onnx`` (the figures go into its metadata)."""
    import tempfile

    from shipyard import api

    with tempfile.TemporaryDirectory() as tmp:
        print(f"  sms: {_sms_recipe()} ...", flush=True)
        run = api.train(SMS_EXPERIMENT, output=Path(tmp) / "sms-spam-tfidf",
                        overrides={"data.source": str(data), "output.plots": False,
                                   **SMS_OVERRIDES})
        agreement = run.export.get("agreement") or {}
        if not agreement.get("passed"):
            raise SystemExit(f"sms: onnxruntime and scikit-learn disagree: {agreement}")
        if run.class_names != SMS_LABELS:
            raise SystemExit(f"sms: classes {run.class_names}, expected {SMS_LABELS}")
        test_acc = float(run.metrics["test"]["accuracy"] or 0.0)
        if test_acc < 0.98:
            raise SystemExit(f"sms: test accuracy {test_acc:.4f} < 0.98")
        shutil.rmtree(out / "sms", ignore_errors=True)  # the demo holds version 1 only
        published = api.publish(run, out, model="sms")
        assert published.version == 1, published
        for extra in published.path.iterdir():  # metrics/export/experiment: the demo's
            if extra.name != "model.onnx":      # figures live in the model's metadata
                extra.unlink()
        path = published.path / "model.onnx"
        pipeline = run.pipeline()
        from shipyard.training.text_run import chain_steps, run_chain, text_experiment

        texts = [t for t, _ in SMS_MESSAGES]
        chained = run_chain(chain_steps(text_experiment(run.experiment)), texts)
        import pandas as pd

        p_spam = pipeline.predict_proba(pd.DataFrame({"text": chained}))[:, 1]
        for (text, label), p in zip(SMS_MESSAGES, p_spam, strict=True):
            if (p > 0.5) != (label == "spam"):
                raise SystemExit(f"sms: {text[:40]!r} should be {label}, P(spam) = {p:.4f}")
        info = run.info["data"]
        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        meta.update({
            "shipyard.recipe": _sms_recipe(),
            "validation_accuracy": f"{run.metrics['validation']['accuracy']:.4f}",
            "test_accuracy": f"{test_acc:.4f}",
            "max_abs_diff_vs_sklearn": f"{agreement['max_abs_diff']:.3g}",
            "vocabulary": str(run.info["vocabulary"]["word"]),
            "messages": json.dumps({k: int(info[k]) for k in ("train", "validation", "test")}),
            "labels": json.dumps(SMS_LABELS),
            "check_messages": json.dumps([[t, la, round(float(p), 6)]
                                          for (t, la), p in zip(SMS_MESSAGES, p_spam,
                                                                strict=True)]),
        })
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        # skl2onnx names the graph with a fresh uuid and lists the opsets in set order (it
        # varies with PYTHONHASHSEED): fix both so that a retrain writes the same bytes
        model.graph.name = "sms"
        opsets = sorted((o.domain, o.version) for o in model.opset_import)
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))


# --------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------


def write_readme(out: Path, results: dict[str, Result]) -> None:
    def size(name: str) -> str:
        p = out / name / "1" / "model.onnx"
        return f"{p.stat().st_size / 1024:.1f} KiB" if p.exists() else "?"

    def props(name: str) -> dict[str, str]:
        p = out / name / "1" / "model.onnx"
        if not p.exists():
            return {}
        return {m.key: m.value for m in onnx.load(str(p)).metadata_props}

    risk, cnn, sms = props("risk"), props("cnn"), props("sms")
    if "cnn" in results:
        cnn["test_accuracy"] = f"{results['cnn'].metrics['test_accuracy']:.4f}"
    counts = json.loads(sms.get("messages", "{}"))
    v = {
        "opset": OPSET,
        "ir": IR_VERSION,
        "seed": SEED,
        "risk_size": size("risk"),
        "cnn_size": size("cnn"),
        "r_tr": risk.get("train_accuracy", "?"),
        "r_te": risk.get("test_accuracy", "?"),
        "c_va": cnn.get("validation_accuracy", "?"),
        "c_te": cnn.get("test_accuracy", "?"),
        "c_ep": cnn.get("epochs", "?"),
        "c_ntr": cnn.get("train_images", "?"),
        "sms_size": size("sms"),
        "s_recipe": sms.get("shipyard.recipe", "?"),
        "s_min_df": SMS_OVERRIDES["model.word.min_df"],
        "s_vocab": f"{int(sms['vocabulary']):,}" if "vocabulary" in sms else "?",
        "s_va": sms.get("validation_accuracy", "?"),
        "s_te": sms.get("test_accuracy", "?"),
        "s_diff": sms.get("max_abs_diff_vs_sklearn", "?"),
        "s_ntr": counts.get("train", "?"),
        "s_nva": counts.get("validation", "?"),
        "s_nte": counts.get("test", "?"),
    }
    (out / "README.md").write_text(README_TEMPLATE.format(**v), encoding="utf-8")


README_TEMPLATE = """\
# Shipyard demo model repository

Small ONNX models that `shipyard serve` serves out of the box: `risk` (tabular
features), `cnn` (an image tensor), `digits` (the `cnn` served from PNG/JPEG bytes through
server-side steps) and `sms` (raw text through the training chain as server-side steps).
Every graph has a dynamic leading batch dimension.

| model | input | output | max_batch_size | size |
| --- | --- | --- | --- | --- |
| `risk` | `features` FP32 `[N, 30]` | `score` FP32 `[N, 1]` | 256 | {risk_size} |
| `cnn` | `image` FP32 `[N, 1, 28, 28]` | `logits` FP32 `[N, 10]` | 64 | {cnn_size} |
| `digits` | `image` BYTES `[N, 1]` (PNG) | `indices`, `scores`, `labels` `[N, 3]` | 64 | cnn's |
| `sms` | `text` BYTES `[N, 1]` (text) | `label` `[N]`, `probabilities` `[N, 2]` | 64 | {sms_size} |

## risk

Logistic regression (scikit-learn `StandardScaler` + `LogisticRegression`, seed {seed};
the graph is written by hand with `onnx.helper`, opset {opset}, IR version {ir}, from the
fitted parameters)
on scikit-learn's bundled Wisconsin diagnostic breast-cancer data
(`sklearn.datasets.load_breast_cancer`, 569 samples), stratified 80/20 split.
The scaler is folded into the weights, so the input is the 30 **raw** features in
`load_breast_cancer().feature_names` order (also stored in the model's
`feature_names` metadata). `score = sigmoid(x @ w + b)` is the probability that the
tumour is **malignant** (sklearn's target 0). It matches sklearn's
`predict_proba(x)[:, 0]` to within 1e-5.

Accuracy (threshold 0.5): train {r_tr}, test {r_te}.

## cnn

Digit classifier trained by the product itself: `shipyard train
examples/mnist_png/experiment.yaml` (this script calls `shipyard.api.train` on it and copies
the run's `model.onnx`, a torch.onnx dynamo export, opset 18). Two conv blocks (16 and 32
channels, 3x3, batch norm, relu, max pool 2) and a linear classifier, about 20k parameters;
seed 0, AdamW + one-cycle schedule, {c_ep} epochs, random rotations (10 degrees) and shifts
(10 %), on the {c_ntr} training PNGs of the MNIST subset in `shared/data/mnist_png` (MIT
licence; a tenth of them held out for validation).

Input: grayscale pixels scaled to `[0, 1]` (value / 255, white digit on black
background, no further normalisation). Output: raw logits (no softmax); class `i` is
digit `i`, and `config.yaml` maps the `logits` output to the labels `"0"`..`"9"`.

Accuracy: validation {c_va}, test {c_te} on the 1000 held-out test PNGs (onnxruntime).

## digits

`cnn`'s `model.onnx` (a copy, refreshed by this script) behind `preprocess` (decode as grey,
resize to 28x28, scale to [0, 1], NCHW) and `postprocess` (softmax, top 3, digit names) steps
in `config.yaml`: send the image files themselves (tritonclient, or the binary tensor
extension; PNG bytes do not fit a JSON body).

## sms

SMS spam filter trained and published by the product itself:
`{s_recipe}`, then
`shipyard.api.publish` (model `sms`, version 1). A TF-IDF of word 1- and 2-grams (words
appearing in at least {s_min_df} training messages: {s_vocab} terms, which keeps the graph
small) and a linear SVM (`class_weight: balanced`) with Platt-scaled probabilities, exported
whole with skl2onnx (opset 17; it agrees with scikit-learn within {s_diff} on the test split).
Data: the SMS Spam Collection in `shared/data/sms_spam` (5,574 messages, 747 spam; seeded,
stratified split: {s_ntr} train, {s_nva} validation, {s_nte} test).

Input: one raw UTF-8 message per row. `config.yaml` declares the training chain as
`preprocess` steps, so the server runs exactly what training ran (NFKC, HTML entities,
URLs / e-mail addresses / numbers masked, lower case, words and punctuation split apart)
before the graph. Output: `label` (0 = ham, 1 = spam) and `probabilities` (ham, spam),
which `config.yaml` names; `POST /v2/models/sms/predict {{"text": ["..."]}}` answers both
labels with their probabilities, best first.

Accuracy: validation {s_va}, test {s_te} on the {s_nte} held-out messages (onnxruntime,
after the declared steps).

## Regenerating

```sh
pip install scikit-learn pillow torch==2.13.0   # training-only (a CPU torch is enough)
python scripts/make_demo_models.py              # refit risk, reuse cnn/1/model.onnx if present
python scripts/make_demo_models.py --force      # also retrain the cnn and sms (seconds on CPU)
python scripts/make_demo_models.py --only sms   # re-verify (or train) just the sms model
```

Every run is deterministic (same bytes each time). The script checks the ONNX outputs
against scikit-learn (within 1e-5) and PyTorch (within 1e-4) with onnxruntime; a reused
`sms` model must answer, after its `config.yaml` steps, the test accuracy stored in it and
the stored probabilities of a fixed list of messages. Serving needs none of these training
packages. `--out DIR` writes the repository elsewhere, `--mnist DIR` points at another
`{{train,test}}/<digit>/*.png` tree, `--sms DIR` at another folder holding `SMSSpamCollection`.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="repository directory")
    ap.add_argument(
        "--mnist", type=Path, default=None, help="MNIST PNG root with {train,test}/<digit>/*.png"
    )
    ap.add_argument("--sms", type=Path, default=None,
                    help=f"folder of the SMS Spam Collection ({SMS_FILE})")
    ap.add_argument("--only", choices=["risk", "cnn", "sms"], help="build just one model")
    ap.add_argument("--force", action="store_true",
                    help="retrain the cnn and the sms model even if cached")
    ap.add_argument("--epochs", type=int, default=None,
                    help="cnn training epochs (default: the experiment's)")
    args = ap.parse_args(argv)

    out: Path = args.out
    mnist: Path = args.mnist or _default_mnist()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Result] = {}
    if args.only in (None, "risk"):
        print("building risk ...", flush=True)
        results["risk"] = build_risk(out)
    if args.only in (None, "cnn"):
        print("building cnn ...", flush=True)
        results["cnn"] = build_cnn(out, mnist, force=args.force, epochs=args.epochs)
        digits = out / "digits" / "1" / "model.onnx"  # the same network behind server steps
        if digits.parent.is_dir():
            shutil.copyfile(results["cnn"].model_path, digits)
    if args.only in (None, "sms"):
        print("building sms ...", flush=True)
        results["sms"] = build_sms(out, args.sms or _default_sms(), force=args.force)
    write_readme(out, results)

    for r in results.values():
        print(f"\n{r.name}: {r.model_path} ({r.model_path.stat().st_size} bytes)")
        print(f"  {r.io}")
        for k, v in r.metrics.items():
            print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
