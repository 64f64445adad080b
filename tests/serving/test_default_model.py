"""Which model ``POST /predict`` (and gRPC ``ModelService.Predict``) serves when none is named:
``--default-model``, else the repository's only model, else ``risk``; the start-up log says
which, and warns when the repository has no such model."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import DEMO_REPOSITORY, ServerProcess, http_call, start_server
from onnx_models import scale_model, write_repository

from shipyard.protocol.grpc import model_service_pb2 as ms_pb2
from shipyard.serving.errors import ModelNotFound
from shipyard.serving.registry import FALLBACK_DEFAULT_MODEL, ModelRegistry, ModelSlot

FEATURES = [1.5, -2.0, 0.25, 4.0]


def _registry(*names: str) -> ModelRegistry:
    registry = ModelRegistry(Path("."))
    for name in names:
        registry.put(ModelSlot(name))
    return registry


def test_the_rule_configured_then_the_only_model_then_risk() -> None:
    assert _registry("only").default_model(None) == "only"
    assert _registry("only").default_model("other") == "other"
    demo = sorted(p.name for p in DEMO_REPOSITORY.iterdir() if p.is_dir())
    assert len(demo) > 1 and "risk" in demo
    assert _registry(*demo).default_model(None) == FALLBACK_DEFAULT_MODEL == "risk"
    assert _registry("a", "b").default_model(None) == "risk"
    assert _registry().default_model(None) == "risk"


def test_a_missing_default_says_it_is_the_default_and_lists_the_models() -> None:
    with pytest.raises(ModelNotFound) as caught:
        _registry("a", "b").get_default(None)
    message = caught.value.message
    assert "'risk'" in message and "['a', 'b']" in message and "--default-model" in message
    with pytest.raises(ModelNotFound, match="'c' \\(--default-model\\)"):
        _registry("a", "b").get_default("c")


def _predict(server: ServerProcess) -> tuple[int, dict[str, object]]:
    status, _, body = http_call(server, "POST", "/predict",
                                json.dumps({"features": FEATURES}).encode(),
                                {"Content-Type": "application/json"})
    return status, json.loads(body)


def _grpc_predict(server: ServerProcess) -> float:
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary(
            "/ModelService/Predict",
            request_serializer=ms_pb2.ModelRequest.SerializeToString,
            response_deserializer=ms_pb2.ModelResponse.FromString)
        response = call(ms_pb2.ModelRequest(features=FEATURES), timeout=30)
    return float(response.score)


@pytest.fixture(scope="module")
def one_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("one")
    return write_repository(root, {"triple": (functools.partial(scale_model, factor=3.0),
                                              None)})


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two")
    return write_repository(root, {
        "double": (functools.partial(scale_model, factor=2.0), None),
        "triple": (functools.partial(scale_model, factor=3.0), None),
    })


def test_with_one_model_predict_serves_it(one_model: Path) -> None:
    server = start_server(one_model)
    try:
        status, doc = _predict(server)
        assert status == 200, doc
        np.testing.assert_allclose(np.asarray(doc["result"], dtype=np.float32).ravel(),
                                   3.0 * np.asarray(FEATURES, dtype=np.float32))
        assert _grpc_predict(server) == pytest.approx(3.0 * FEATURES[0])
        assert any("serve model 'triple' (the only model)" in line for line in server.log)
    finally:
        server.stop()


def test_with_several_models_and_no_risk_the_log_warns_and_the_error_lists_them(
        two_models: Path) -> None:
    server = start_server(two_models)
    try:
        status, doc = _predict(server)
        assert status == 404, doc
        assert "['double', 'triple']" in str(doc["error"])
        assert "--default-model" in str(doc["error"])
        warned = [line for line in server.log if "serve model 'risk'" in line]
        assert warned and "does not have" in warned[0] and "WARNING" in warned[0].upper()
    finally:
        server.stop()


def test_default_model_picks_among_several(two_models: Path) -> None:
    server = start_server(two_models, "--default-model", "double")
    try:
        status, doc = _predict(server)
        assert status == 200, doc
        np.testing.assert_allclose(np.asarray(doc["result"], dtype=np.float32).ravel(),
                                   2.0 * np.asarray(FEATURES, dtype=np.float32))
        assert any("serve model 'double' (--default-model)" in line for line in server.log)
    finally:
        server.stop()
