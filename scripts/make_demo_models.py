#!/usr/bin/env python3
"""Build Shipyard's built-in demo model repository.

Usage::

    python scripts/make_demo_models.py [--out DIR] [--only risk|cnn] [--force]

Writes, under ``--out`` (default ``src/shipyard/demo/repository``)::

    risk/config.yaml   risk/1/model.onnx   logistic regression, breast-cancer data
    cnn/config.yaml    cnn/1/model.onnx    small CNN, 28x28 grayscale digits
    README.md

Both ONNX graphs are written by hand with ``onnx.helper`` (opset 17, IR version 8) from
the fitted parameters, so no exporter package is needed and the files load on older
onnxruntime releases too.

This is a *training* script: it needs scikit-learn, Pillow and (only to retrain the CNN)
PyTorch. Nothing under ``src/shipyard`` imports it. The risk model is refitted on every
run (it takes well under a second and is deterministic). The CNN is only retrained when
``--force`` is given or when no usable ``cnn/1/model.onnx`` is present: otherwise the
existing file is re-verified with onnxruntime on the test images and reused, which keeps
committed bytes stable and makes torch unnecessary for a plain re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
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


OPSET = 17
IR_VERSION = 8
SEED = 0
# Bump when the CNN architecture or training recipe changes: a cached model.onnx built
# by another recipe version is then retrained instead of reused.
CNN_RECIPE = "cnn-v1"
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


def _write_config(
    path: Path, *, max_batch_size: int, description: str, labels: dict[str, list[str]] | None,
    inputs: list[str] | None = None,
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
    if labels:
        lines.append("labels:")
        for output, names in labels.items():
            lines.append(f"  {output}: {json.dumps(names)}")
    text = "\n".join(lines) + "\n"
    _check_config_text(text, max_batch_size, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _check_config_text(text: str, max_batch_size: int, labels: dict[str, list[str]] | None) -> None:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a serve dependency
        return
    cfg = yaml.safe_load(text)
    assert cfg["backend"] == "onnx"
    assert cfg["max_batch_size"] == max_batch_size
    assert cfg["dynamic_batching"]["preferred_batch_sizes"] == []
    assert cfg.get("labels") == labels, cfg.get("labels")


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
# cnn: small convolutional net on the MNIST PNGs
# --------------------------------------------------------------------------------------

CLASSES = [str(d) for d in range(10)]


def load_png_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images [N,1,28,28] float32 in [0,1], labels [N] int64), sorted by path."""
    from PIL import Image

    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, cls in enumerate(CLASSES):
        folder = root / split / cls
        files = sorted(folder.glob("*.png"))
        if not files:
            raise SystemExit(f"no PNG files in {folder}")
        for f in files:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
            if arr.shape != (28, 28):
                raise SystemExit(f"{f}: expected 28x28, got {arr.shape}")
            images.append(arr)
            labels.append(label)
    x = (np.stack(images).astype(np.float32) / 255.0)[:, None, :, :]
    return x, np.asarray(labels, dtype=np.int64)


def _cnn_graph(params: dict[str, np.ndarray], meta: dict[str, str]) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
    pads = [1, 1, 1, 1]
    nodes = [
        helper.make_node(
            "Conv",
            ["image", "conv1.weight", "conv1.bias"],
            ["c1"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=pads,
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Conv",
            ["p1", "conv2.weight", "conv2.bias"],
            ["c2"],
            name="conv2",
            kernel_shape=[3, 3],
            pads=pads,
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node(
            "MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Flatten", ["p2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    doc = (
        "Digit classifier: conv(1->8,3x3)-relu-maxpool-conv(8->16,3x3)-relu-maxpool-"
        "linear(784->10). Input 'image' [N,1,28,28] FP32 grayscale scaled to [0,1] "
        "(white digit on black, MNIST style). Output 'logits' [N,10], class i = digit i."
    )
    return _finish_model(graph, doc, meta)


def _ort_predict(path: Path, x: np.ndarray, batch: int = 500) -> np.ndarray:
    sess = _session(path)
    outs = [sess.run(["logits"], {"image": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def _train_cnn(
    x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, epochs: int
) -> tuple[dict[str, np.ndarray], dict[str, Any], Any]:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-2, total_steps=epochs * ((len(x_tr) + 63) // 64)
    )
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    padded = nn.functional.pad(xt, (2, 2, 2, 2))

    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        # Light augmentation (random shifts of up to 2 px) - the PNG set is small.
        dx, dy = torch.randint(0, 5, (2, len(xt)), generator=gen)
        total = 0.0
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            xb = torch.stack([padded[j, :, dy[j] : dy[j] + 28, dx[j] : dx[j] + 28] for j in idx])
            loss = loss_fn(net(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"  cnn epoch {epoch + 1}/{epochs}: loss {total / len(xt):.4f}", flush=True)
    train_seconds = time.perf_counter() - t0

    net.eval()
    with torch.no_grad():
        train_logits = net(xt).numpy()
        test_logits = net(torch.from_numpy(x_te)).numpy()
    metrics = {
        "train_accuracy": float(np.mean(train_logits.argmax(1) == y_tr)),
        "torch_test_accuracy": float(np.mean(test_logits.argmax(1) == y_te)),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "torch_version": torch.__version__,
    }
    sd = net.state_dict()
    names = {"0": "conv1", "3": "conv2", "7": "fc"}
    params = {
        f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v.numpy().copy() for k, v in sd.items()
    }
    return params, metrics, test_logits


def build_cnn(out: Path, mnist: Path, *, force: bool, epochs: int) -> Result:
    path = out / "cnn" / "1" / "model.onnx"
    have_data = (mnist / "test").is_dir()

    cached: dict[str, str] | None = None
    if path.exists() and not force:
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        if props.get("shipyard.recipe") == CNN_RECIPE:
            cached = props
        else:
            print(
                f"  cnn: {path} was built by recipe {props.get('shipyard.recipe')!r}, "
                f"not {CNN_RECIPE!r}: retraining"
            )

    metrics: dict[str, Any]
    counts: dict[str, int] = {}
    if cached is not None:
        print(f"  cnn: reusing {path} (pass --force to retrain)")
        metrics = {
            "train_accuracy": float(cached["train_accuracy"]),
            "epochs": int(cached["epochs"]),
            "cached": True,
        }
        counts["train"] = int(cached["train_images"])
        counts["test"] = int(cached["test_images"])
        if not have_data:
            print(f"  cnn: no images under {mnist}: using the recorded test accuracy")
            metrics["test_accuracy"] = float(cached["test_accuracy"])
    else:
        if not have_data:
            raise SystemExit(f"cnn: no MNIST PNGs under {mnist} (use --mnist DIR)")
        x_tr, y_tr = load_png_split(mnist, "train")
        x_te, y_te = load_png_split(mnist, "test")
        counts["train"], counts["test"] = len(x_tr), len(x_te)
        print(f"  cnn: {len(x_tr)} train / {len(x_te)} test images; training...", flush=True)
        params, metrics, torch_logits = _train_cnn(x_tr, y_tr, x_te, y_te, epochs)
        meta = {
            "shipyard.recipe": CNN_RECIPE,
            "train_accuracy": f"{metrics['train_accuracy']:.4f}",
            "test_accuracy": f"{metrics['torch_test_accuracy']:.4f}",
            "train_images": str(len(x_tr)),
            "test_images": str(len(x_te)),
            "epochs": str(epochs),
            "seed": str(SEED),
            "labels": json.dumps(CLASSES),
        }
        model = _cnn_graph(params, meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        ort_logits = _ort_predict(path, x_te)
        max_diff = float(np.max(np.abs(ort_logits - torch_logits)))
        metrics["max_abs_diff_vs_torch"] = max_diff
        if max_diff > 1e-4:
            raise SystemExit(f"cnn: onnxruntime vs torch logits differ by {max_diff}")

    if have_data:
        if cached is not None:
            x_te, y_te = load_png_split(mnist, "test")
            counts["test"] = len(x_te)
        ort_logits = _ort_predict(path, x_te)
        assert ort_logits.shape == (len(x_te), 10), ort_logits.shape
        metrics["test_accuracy"] = float(np.mean(ort_logits.argmax(1) == y_te))
    test_acc = metrics["test_accuracy"]
    if test_acc < 0.95:
        print(f"  WARNING: cnn test accuracy {test_acc:.4f} < 0.95", file=sys.stderr)

    description = (
        "Handwritten-digit demo: small CNN (2 conv layers + linear). Input 'image' "
        "[N,1,28,28] FP32 grayscale in [0,1] (white digit on black); output 'logits' "
        f"[N,10] FP32, class i = digit i. Trained {metrics['epochs']} epochs on "
        f"{counts['train']} MNIST PNGs: train accuracy {metrics['train_accuracy']:.4f}, "
        f"test accuracy {test_acc:.4f} on {counts['test']} held-out images."
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

    risk, cnn = props("risk"), props("cnn")
    if "cnn" in results:
        cnn["test_accuracy"] = f"{results['cnn'].metrics['test_accuracy']:.4f}"
    v = {
        "opset": OPSET,
        "ir": IR_VERSION,
        "seed": SEED,
        "risk_size": size("risk"),
        "cnn_size": size("cnn"),
        "r_tr": risk.get("train_accuracy", "?"),
        "r_te": risk.get("test_accuracy", "?"),
        "c_tr": cnn.get("train_accuracy", "?"),
        "c_te": cnn.get("test_accuracy", "?"),
        "c_ep": cnn.get("epochs", "?"),
        "c_ntr": cnn.get("train_images", "?"),
        "c_nte": cnn.get("test_images", "?"),
    }
    (out / "README.md").write_text(README_TEMPLATE.format(**v), encoding="utf-8")


README_TEMPLATE = """\
# Shipyard demo model repository

Two small ONNX models that `shipyard` can serve out of the box, and `digits`, the `cnn`
served from PNG/JPEG bytes through server-side steps. Both graphs were
written by hand with `onnx.helper` (opset {opset}, IR version {ir}) from the fitted
parameters; each has a symbolic leading batch dimension `batch`.

| model | input | output | max_batch_size | size |
| --- | --- | --- | --- | --- |
| `risk` | `features` FP32 `[N, 30]` | `score` FP32 `[N, 1]` | 256 | {risk_size} |
| `cnn` | `image` FP32 `[N, 1, 28, 28]` | `logits` FP32 `[N, 10]` | 64 | {cnn_size} |
| `digits` | `image` BYTES `[N, 1]` (PNG) | `indices`, `scores`, `labels` `[N, 3]` | 64 | cnn's |

## risk

Logistic regression (scikit-learn `StandardScaler` + `LogisticRegression`, seed {seed})
on scikit-learn's bundled Wisconsin diagnostic breast-cancer data
(`sklearn.datasets.load_breast_cancer`, 569 samples), stratified 80/20 split.
The scaler is folded into the weights, so the input is the 30 **raw** features in
`load_breast_cancer().feature_names` order (also stored in the model's
`feature_names` metadata). `score = sigmoid(x @ w + b)` is the probability that the
tumour is **malignant** (sklearn's target 0). It matches sklearn's
`predict_proba(x)[:, 0]` to within 1e-5.

Accuracy (threshold 0.5): train {r_tr}, test {r_te}.

## cnn

Digit classifier: `conv 1->8 3x3 (pad 1) - relu - maxpool 2 - conv 8->16 3x3 (pad 1) -
relu - maxpool 2 - flatten - linear 784->10` (9.1k parameters), trained with PyTorch
(seed {seed}, Adam + one-cycle schedule, {c_ep} epochs, random shifts of up to 2 px) on
the {c_ntr} training PNGs of the MNIST subset in `shared/data/mnist_png` (MIT licence).

Input: grayscale pixels scaled to `[0, 1]` (value / 255, white digit on black
background, no further normalisation). Output: raw logits (no softmax); class `i` is
digit `i`, and `config.yaml` maps the `logits` output to the labels `"0"`..`"9"`.

Accuracy: train {c_tr}, test {c_te} on the {c_nte} held-out test PNGs (onnxruntime).

## digits

`cnn`'s `model.onnx` (a copy, refreshed by this script) behind `preprocess` (decode as grey,
resize to 28x28, scale to [0, 1], NCHW) and `postprocess` (softmax, top 3, digit names) steps
in `config.yaml`: send the image files themselves (tritonclient, or the binary tensor
extension; PNG bytes do not fit a JSON body).

## Regenerating

```sh
pip install scikit-learn pillow torch==2.13.0   # training-only (a CPU torch is enough)
python scripts/make_demo_models.py              # refit risk, reuse cnn/1/model.onnx if present
python scripts/make_demo_models.py --force      # also retrain the cnn (a few seconds on CPU)
```

Both runs are deterministic (same bytes each time). The script checks the ONNX outputs
against scikit-learn (within 1e-5) and PyTorch (within 1e-4) with onnxruntime. Serving
needs none of these training packages. `--out DIR` writes the repository elsewhere,
`--mnist DIR` points at another `{{train,test}}/<digit>/*.png` tree.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="repository directory")
    ap.add_argument(
        "--mnist", type=Path, default=None, help="MNIST PNG root with {train,test}/<digit>/*.png"
    )
    ap.add_argument("--only", choices=["risk", "cnn"], help="build just one model")
    ap.add_argument("--force", action="store_true", help="retrain the cnn even if cached")
    ap.add_argument("--epochs", type=int, default=20, help="cnn training epochs")
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
    write_readme(out, results)

    for r in results.values():
        print(f"\n{r.name}: {r.model_path} ({r.model_path.stat().st_size} bytes)")
        print(f"  {r.io}")
        for k, v in r.metrics.items():
            print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
