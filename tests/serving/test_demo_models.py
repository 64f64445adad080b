"""The built-in demo repository as shipped, and its text model ``sms`` served by the session's
real demo server (``shipyard serve`` with the default repository).

``sms`` takes raw SMS text: its ``config.yaml`` declares the training chain as preprocess steps
in front of a TF-IDF + linear SVM graph. Every answer is checked against the same work done in
this process (the declared steps, built by ``shipyard.transforms``, around an ONNX Runtime
session), and the model against the real messages of the SMS Spam Collection.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as thttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, ROOT, ServerProcess, http_call
from onnx_models import SMS_SPAM, sms_messages

from shipyard.transforms import apply_steps, build_steps

SMS = DEMO_REPOSITORY / "sms"
LABELS = ["ham", "spam"]
#: written for this test (not in the data set): three that look like spam, three that do not
SPAMMY = [
    "WINNER!! You have won a guaranteed £1000 cash prize. Call 09061790121 now to claim, "
    "T&Cs apply",
    "URGENT! Your mobile No. was awarded a £2,000 bonus prize. Text CLAIM to 83355 now!",
    "Free entry into our weekly competition to win an iPod! Txt WIN to 80086 (£1.50/msg)",
]
NORMAL = [
    "Hey, are we still meeting for dinner at 7 tonight?",
    "I'll be home late, can you pick up some milk on the way?",
    "Thanks for yesterday, it was really nice to see you all :)",
]


def demo_models() -> list[str]:
    """The model folders of the demo repository."""
    return sorted(p.name for p in DEMO_REPOSITORY.iterdir() if (p / "config.yaml").is_file())


def in_process(texts: list[str]) -> dict[str, np.ndarray]:
    """What the server should answer for ``texts``: sms's declared steps, then ONNX Runtime."""
    config = yaml.safe_load((SMS / "config.yaml").read_text(encoding="utf-8"))
    steps = build_steps(config["preprocess"], base_dir=SMS / "1")
    items = np.empty(len(texts), dtype=object)
    items[:] = [t.encode("utf-8") for t in texts]
    done = apply_steps(steps, items)
    assert not isinstance(done, dict)
    rows = np.array([bytes(b).decode("utf-8") for b in done.tolist()],
                    dtype=np.object_).reshape(-1, 1)
    session = ort.InferenceSession(str(SMS / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"text": rows})
    return {"label": np.asarray(label), "probabilities": np.asarray(probabilities)}


def _predict(server: ServerProcess, body: Any, query: str = "") -> tuple[int, dict[str, Any]]:
    status, _, raw = http_call(server, "POST", f"/v2/models/sms/predict{query}",
                               json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, json.loads(raw)


def _text_input(texts: list[str], binary: bool) -> thttp.InferInput:
    inp = thttp.InferInput("text", [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object).reshape(-1, 1),
                            binary_data=binary)
    return inp


# --------------------------------------------------------------------------------------------
# the repository as shipped
# --------------------------------------------------------------------------------------------


def test_the_demo_repository_holds_the_four_models() -> None:
    assert demo_models() == ["cnn", "digits", "risk", "sms"]
    for name in demo_models():
        assert sorted(p.name for p in (DEMO_REPOSITORY / name).iterdir()) == ["1", "config.yaml"]
        assert [p.name for p in (DEMO_REPOSITORY / name / "1").iterdir()] == ["model.onnx"]


def test_the_readmes_describe_every_demo_model() -> None:
    """The demo README has a table row and a section per model; the top-level README names
    each one and shows /predict of the sms model."""
    readme = (DEMO_REPOSITORY / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w-]+)` \|", readme, flags=re.M)
    sections = re.findall(r"^## ([\w-]+)$", readme, flags=re.M)
    assert sorted(rows) == demo_models()
    assert [s for s in sections if s != "Regenerating"] == ["risk", "cnn", "digits", "sms"]
    size = f"{(SMS / '1' / 'model.onnx').stat().st_size / 1024:.1f} KiB"
    assert f"| 64 | {size} |" in readme  # regenerated since the model last changed
    top = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in demo_models():
        assert f"`{name}`" in top
    assert "curl -s localhost:8000/v2/models/sms/predict" in top


def test_sms_config_declares_the_experiments_chain() -> None:
    """The served steps are the training chain of examples/sms_spam_tfidf (a change there
    needs ``scripts/make_demo_models.py --only sms --force``)."""
    config = yaml.safe_load((SMS / "config.yaml").read_text(encoding="utf-8"))
    experiment = yaml.safe_load((ROOT / "examples" / "sms_spam_tfidf" / "experiment.yaml")
                                .read_text(encoding="utf-8"))
    assert config["preprocess"] == experiment["preprocess"]
    assert config["backend"] == "onnx" and config["max_batch_size"] == 64
    assert config["labels"] == {"probabilities": LABELS}
    assert "SMS spam" in config["description"]
    assert (SMS / "1" / "model.onnx").stat().st_size < 500 * 1024


def test_sms_classifies_the_real_messages() -> None:
    """On every message of the SMS Spam Collection (the model trained on 70 % of them), the
    served computation is right at least 98 % of the time and for both classes."""
    if not SMS_SPAM.is_file():
        pytest.skip(f"SMS spam collection not found at {SMS_SPAM}")
    messages = sms_messages()
    probs = in_process([t for _, t in messages])["probabilities"]
    truth = np.array([LABELS.index(label) for label, _ in messages])
    got = probs.argmax(axis=1)
    assert float(np.mean(got == truth)) >= 0.98
    for k in (0, 1):  # recall of each class: not a constant answer
        assert float(np.mean(got[truth == k] == k)) >= 0.9, LABELS[k]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# served by the demo server
# --------------------------------------------------------------------------------------------


def test_demo_server_serves_sms(demo_server: ServerProcess) -> None:
    client = thttp.InferenceServerClient(demo_server.http_url)
    try:
        assert client.is_model_ready("sms")
        meta = client.get_model_metadata("sms")
        index = client.get_model_repository_index()
    finally:
        client.close()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]
    assert sorted((m["name"], m.get("state")) for m in index) == [
        (name, "READY") for name in demo_models()]


def test_predict_text_answers_spam_and_ham(demo_server: ServerProcess) -> None:
    texts = [*SPAMMY, *NORMAL]
    status, body = _predict(demo_server, {"text": texts})
    assert status == 200, body
    assert body["model_name"] == "sms" and body["model_version"] == "1"
    assert body["labels"] == ["spam"] * len(SPAMMY) + ["ham"] * len(NORMAL)
    want = in_process(texts)["probabilities"]
    for row, p, label in zip(body["predictions"], want, body["labels"], strict=True):
        assert [x["label"] for x in row] == [label, "ham" if label == "spam" else "spam"]
        assert row[0]["probability"] > 0.5
        by_label = {x["label"]: x["probability"] for x in row}
        np.testing.assert_allclose([by_label["ham"], by_label["spam"]], p, rtol=1e-4, atol=1e-6)
    # one string (the README's curl line), and top_k
    status, one = _predict(demo_server, {"text": SPAMMY[0]}, "?top_k=1")
    assert status == 200, one
    ((best,),) = one["predictions"]
    assert best["label"] == "spam" and best["probability"] > 0.5


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_infer_bytes_over_tritonclient_http(demo_server: ServerProcess, binary: bool) -> None:
    """Raw strings as a BYTES tensor; the answers equal the in-process steps + ONNX Runtime,
    and 40 real messages (the last of the file) come back with their own labels."""
    if SMS_SPAM.is_file():
        real = sms_messages()[-40:]
    else:
        real = [("spam", t) for t in SPAMMY] + [("ham", t) for t in NORMAL]
    texts = [*SPAMMY, *NORMAL, *(t for _, t in real)]
    client = thttp.InferenceServerClient(demo_server.http_url)
    try:
        outputs = [thttp.InferRequestedOutput(name, binary_data=binary)
                   for name in ("label", "probabilities")]
        result = client.infer("sms", [_text_input(texts, binary)], outputs=outputs)
    finally:
        client.close()
    want = in_process(texts)
    label, probs = result.as_numpy("label"), result.as_numpy("probabilities")
    assert label.shape == (len(texts),) and probs.shape == (len(texts), 2)
    np.testing.assert_array_equal(label, want["label"])
    np.testing.assert_allclose(probs, want["probabilities"], rtol=1e-4, atol=1e-6)
    assert [LABELS[i] for i in label[:6]] == ["spam"] * 3 + ["ham"] * 3
    truth = [LABELS.index(lab) for lab, _ in real]
    assert float(np.mean(label[6:] == truth)) >= 0.9
