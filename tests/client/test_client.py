"""``shipyard.client`` against a real server (a subprocess), sync and async, REST and gRPC: the
demo models in their own vocabulary (risk: rows of numbers, digits: PNG files, sms: texts), V2
tensors, typed errors carrying the server's message, one connection per client.

``tritonclient.grpc`` is imported here on purpose: it registers the protobuf package
``inference`` in the default pool, and the client must work beside it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc  # noqa: F401  (see the module docstring)
from conftest import DEMO_REPOSITORY, SHARED, ServerProcess, start_server
from sklearn.datasets import load_breast_cancer

from shipyard.client import (
    AsyncClient,
    Client,
    ClientError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Prediction,
)

MNIST_TEST = SHARED / "data" / "mnist_png" / "test"
LABELS = [str(d) for d in range(10)]
TEXTS = ["WINNER!! You have won a 1000 pound prize. Call 09061701461 to claim now",
         "Are we still on for lunch tomorrow? I'll bring the notes",
         "URGENT! Your mobile number has been awarded a free holiday, text YES to 87121",
         "ok see you later"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """risk, digits, sms and 'digits_logits' (digits without postprocess: the client ranks
    its labelled logits itself, from the classification extension)."""
    root = tmp_path_factory.mktemp("client")
    for name in ("risk", "digits", "sms", "cnn"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    shutil.copytree(DEMO_REPOSITORY / "digits", root / "digits_logits")
    head = (root / "digits" / "config.yaml").read_text().split("postprocess:")[0]
    (root / "digits_logits" / "config.yaml").write_text(
        head + "labels:\n  logits: " + json.dumps(LABELS) + "\n")
    proc = start_server(root)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def pngs() -> list[Path]:
    if not MNIST_TEST.is_dir():
        pytest.skip(f"MNIST PNGs not found at {MNIST_TEST}")
    return [sorted((MNIST_TEST / str(d)).glob("*.png"))[2] for d in range(10)]


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return load_breast_cancer().data[:16].astype(np.float32)


def urls(server: ServerProcess) -> dict[str, str]:
    return {"rest": f"http://{server.http_url}", "grpc": f"grpc://{server.grpc_url}"}


def _predict_route(server: ServerProcess, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The server's own /v2/models/{m}/predict answer (the reference for the client)."""
    r = httpx.post(f"http://{server.http_url}/v2/models/{model}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _same_as_route(ours: list[Prediction], route: dict[str, Any]) -> None:
    assert [p.label for p in ours] == route["labels"]
    for p, theirs in zip(ours, route["predictions"], strict=True):
        assert [lab.label for lab in p.labels] == [t["label"] for t in theirs]
        np.testing.assert_allclose([lab.probability for lab in p.labels],
                                   [t["probability"] for t in theirs], atol=2e-5)


def _as_dicts(predictions: list[Prediction]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in predictions]


def test_text_model_speaks_strings(server: ServerProcess) -> None:
    answers = {}
    for protocol, url in urls(server).items():
        with Client(url) as client:
            assert client.protocol == protocol
            answers[protocol] = client.predict("sms", TEXTS)
    assert _as_dicts(answers["rest"]) == _as_dicts(answers["grpc"])
    _same_as_route(answers["rest"], _predict_route(server, "sms", {"text": TEXTS}))
    assert [p.label for p in answers["rest"]] == ["spam", "ham", "spam", "ham"]
    assert all(abs(sum(lab.probability or 0 for lab in p.labels) - 1) < 1e-4
               for p in answers["rest"])
    assert set(answers["rest"][0].outputs) == {"label", "probabilities"}
    assert answers["rest"][0].outputs["label"].tolist() == [1]


def test_image_model_takes_paths_and_bytes(server: ServerProcess, pngs: list[Path]) -> None:
    route = _predict_route(server, "digits", {
        "images": [base64.b64encode(p.read_bytes()).decode() for p in pngs]})
    answers = {}
    for protocol, url in urls(server).items():
        with Client(url) as client:
            by_path = client.predict("digits", pngs)
            by_bytes = client.predict("digits", [p.read_bytes() for p in pngs])
            assert _as_dicts(by_path) == _as_dicts(by_bytes)
            answers[protocol] = by_path
    assert _as_dicts(answers["rest"]) == _as_dicts(answers["grpc"])
    _same_as_route(answers["rest"], route)
    assert sum(p.label == str(d) for d, p in enumerate(answers["rest"])) >= 9
    assert all(len(p.labels) == 3 for p in answers["rest"])  # the model's own top_k step


def test_labelled_logits_are_ranked_with_softmax(server: ServerProcess,
                                                 pngs: list[Path]) -> None:
    route = _predict_route(server, "digits_logits", {
        "images": [base64.b64encode(p.read_bytes()).decode() for p in pngs], "top_k": 4})
    answers = {}
    for protocol, url in urls(server).items():
        with Client(url) as client:
            answers[protocol] = client.predict("digits_logits", pngs, top_k=4)
    assert _as_dicts(answers["rest"]) == _as_dicts(answers["grpc"])
    _same_as_route(answers["rest"], route)
    assert all(len(p.labels) == 4 for p in answers["rest"])
    assert answers["rest"][0].outputs["logits"].shape == (10,)


def test_rows_of_numbers_and_v2_tensors(server: ServerProcess, rows: np.ndarray) -> None:
    route = _predict_route(server, "risk", {"features": rows.tolist()})
    for url in urls(server).values():
        with Client(url) as client:
            got = client.predict("risk", rows.tolist())
            assert [p.labels for p in got] == [()] * len(rows)  # risk names no classes
            np.testing.assert_allclose([p.value for p in got], route["result"], rtol=1e-6)
            out = client.infer("risk", {"features": rows})
            assert set(out) == {"score"} and out["score"].shape == (len(rows), 1)
            assert out["score"].dtype == np.float32
            np.testing.assert_allclose(out["score"][:, 0], route["result"], rtol=1e-6)
            info = client.model("risk")
            assert [(t.name, t.datatype, t.shape) for t in info.inputs] == [
                ("features", "FP32", (-1, 30))]
            assert info.kind == "rows"
            text = client.infer("sms", {"text": np.array([[TEXTS[0]], [TEXTS[1]]])},
                                outputs=["probabilities"])
            assert list(text) == ["probabilities"] and text["probabilities"].shape == (2, 2)


def test_async_clients_answer_as_the_sync_ones(server: ServerProcess, rows: np.ndarray,
                                               pngs: list[Path]) -> None:
    expected = {}
    for protocol, url in urls(server).items():
        with Client(url) as client:
            expected[protocol] = (_as_dicts(client.predict("sms", TEXTS)),
                                  _as_dicts(client.predict("digits", pngs[:3])),
                                  client.infer("risk", {"features": rows})["score"])

    async def run(url: str) -> tuple[Any, ...]:
        async with AsyncClient(url) as client:
            assert await client.live() and await client.ready()
            assert await client.model_ready("sms")
            sms, digits, risk = await asyncio.gather(
                client.predict("sms", TEXTS), client.predict("digits", pngs[:3]),
                client.infer("risk", {"features": rows}))
            with pytest.raises(NotFound, match="unknown model 'nope'"):
                await client.infer("nope", {"x": rows})
            return _as_dicts(sms), _as_dicts(digits), risk["score"]

    for protocol, url in urls(server).items():
        sms, digits, risk = asyncio.run(run(url))
        assert sms == expected[protocol][0] and digits == expected[protocol][1]
        np.testing.assert_array_equal(risk, expected[protocol][2])


def test_errors_are_typed_and_carry_the_servers_message(server: ServerProcess,
                                                        rows: np.ndarray) -> None:
    for protocol, url in urls(server).items():
        with Client(url) as client:
            with pytest.raises(NotFound, match="unknown model 'nope'") as missing:
                client.predict("nope", ["x"])
            assert missing.value.status == (404 if protocol == "rest" else "NOT_FOUND")
            with pytest.raises(InvalidArgument, match=r"features.*\[-1, 30\]") as bad:
                client.infer("risk", {"features": rows[:, :29]})
            assert bad.value.attempts == 1  # not retried
            with pytest.raises(InvalidArgument, match=r"expects 30 values per row \(input "
                               r"'features' has shape \[-1, 30\]\), got 29"):
                client.predict("risk", rows[:, :29])  # found by the client itself
            with pytest.raises(PermissionDenied, match="--model-control explicit"):
                client.load("risk")
            assert isinstance(missing.value, ClientError)


def _local_ports(port: int) -> set[int]:
    """The local ports of this process's established TCP connections to ``port``."""
    me = psutil.Process()
    listing = getattr(me, "net_connections", None) or me.connections  # psutil < 6: connections
    return {c.laddr.port for c in listing(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def test_one_connection_serves_every_call(server: ServerProcess, rows: np.ndarray) -> None:
    """Every call goes over the same connection: the union of the local ports seen after each
    call is one port (a client that reconnected would show a new port per call)."""
    for port, url in ((server.http_port, urls(server)["rest"]),
                      (server.grpc_port, urls(server)["grpc"])):
        before = _local_ports(port)
        seen: set[int] = set()
        with Client(url) as client:
            for i in range(20):
                client.infer("risk", {"features": rows[i % 8:i % 8 + 2]})
                client.predict("sms", TEXTS[:1])
                seen |= _local_ports(port) - before
            assert len(seen) == 1, (url, seen)
        assert not (_local_ports(port) - before), "close() closes the connection"
