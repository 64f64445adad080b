"""A model folder from a Triton repository (``config.pbtxt`` + ``1/model.onnx``) is served:
its fields are read, the ones ignored are warned about (log and repository index), a platform
this server cannot run and a malformed file are refused, each with its reason at the
version's ``/ready`` (503). tritonclient infers over both protocols, with the same answers as
the demo's ``config.yaml`` model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import DEMO_REPOSITORY, http_call, start_server
from sklearn.datasets import load_breast_cancer

#: Triton's documented config shapes (model_configuration.md), for the demo's risk ONNX file
TRITON_RISK = '''# a model folder copied from a Triton repository
name: "triton_risk"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "features"
    data_type: TYPE_FP32
    dims: [ 30 ]
  }
]
output [
  {
    name: "score"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
}
instance_group [ { count: 2, kind: KIND_CPU } ]
version_policy: { latest: { num_versions: 1 } }
optimization { execution_accelerators {
  cpu_execution_accelerator : [ { name : "openvino" } ]
} }
model_warmup [ { name: "zeros" batch_size: 1 inputs { key: "features" value: {
  data_type: TYPE_FP32 dims: [ 30 ] zero_data: true } } } ]
'''


def _model(repo: Path, name: str, pbtxt: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    shutil.copy(DEMO_REPOSITORY / "risk" / "1" / "model.onnx", repo / name / "1")
    (repo / name / "config.pbtxt").write_text(pbtxt)


def test_a_triton_model_folder_is_served(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(DEMO_REPOSITORY / "risk", repo / "risk")  # the config.yaml original
    _model(repo, "triton_risk", TRITON_RISK)
    _model(repo, "tensorrt", TRITON_RISK.replace('"triton_risk"', '"tensorrt"').replace(
        "onnxruntime_onnx", "tensorrt_plan"))
    _model(repo, "malformed", TRITON_RISK.replace('"triton_risk"', '"malformed"').replace(
        "max_batch_size: 8", "max_batch_size = 8"))
    server = start_server(repo)
    try:
        x = load_breast_cancer().data[:8].astype(np.float32)
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        config = http.get_model_config("triton_risk")
        assert config["max_batch_size"] == 8
        assert config["instance_group"][0]["count"] == 2
        assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
        assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == \
            [("features", "TYPE_FP32", [30])]

        answers = []
        for client, module in ((http, httpclient), (grpc, grpcclient)):
            for model in ("triton_risk", "risk"):
                inp = module.InferInput("features", list(x.shape), "FP32")
                inp.set_data_from_numpy(x)
                answers.append(client.infer(model, [inp]).as_numpy("score"))
        assert answers[0].shape == (8, 1)
        for other in answers[1:]:
            np.testing.assert_array_equal(answers[0], other)
        assert float(answers[0].min()) > 0 and float(answers[0].max()) <= 1

        # the ignored fields: one warning each, in the log and in the repository index
        pbtxt = repo / "triton_risk" / "config.pbtxt"
        warned = [line for line in server.log if "is ignored" in line]
        assert len(warned) == 2, warned
        assert f"{pbtxt}:25: Triton's field 'optimization' is ignored" in warned[0]
        assert f"{pbtxt}:28: Triton's field 'model_warmup' is ignored" in warned[1]
        index = {(r["name"], r.get("version", "")): r
                 for r in http.get_model_repository_index()}
        row = index[("triton_risk", "1")]
        assert row["state"] == "READY"
        assert row["reason"].startswith("served with warnings: ")
        assert "'optimization'" in row["reason"] and "'model_warmup'" in row["reason"]
        assert index[("risk", "1")]["reason"] == ""

        # a platform this server cannot run, and a malformed file: refused with the reason
        for model, reason in (
                ("tensorrt", "platform: this server runs the platforms"),
                ("malformed", f"{repo / 'malformed' / 'config.pbtxt'}:4:16: unexpected "
                              "character '=' (text format: 'name: value'")):
            status, _, body = http_call(server, "GET", f"/v2/models/{model}/versions/1/ready")
            assert status == 503, body
            assert reason in json.loads(body)["reason"], body
            assert not http.is_model_ready(model)
        assert http.is_server_ready()
    finally:
        server.stop()
