"""A Triton ``config.pbtxt`` mapped onto config.yaml's schema (shipyard.repository.triton),
and read from a model folder by the repository scan (shipyard.repository.layout)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shipyard.protocol.errors import InvalidInput
from shipyard.repository.layout import scan_model
from shipyard.repository.triton import config_from_json, config_from_pbtxt

ROOT = Path(__file__).resolve().parents[2]
RISK = ROOT / "src" / "shipyard" / "demo" / "repository" / "risk"

#: the shape of Triton's documented examples (model_configuration.md: inputs/outputs, dynamic
#: batching, instance groups, version policy, parameters), for the demo model risk
RISK_PBTXT = '''name: "risk"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "features" data_type: TYPE_FP32 dims: [ 30 ] } ]
output [ { name: "score" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy { max_queue_size: 16 default_timeout_microseconds: 2500 }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
version_policy: { latest: { num_versions: 1 } }
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
'''


def test_supported_fields_map_onto_the_schema() -> None:
    config, warnings = config_from_pbtxt(RISK_PBTXT, "risk", "risk/config.pbtxt")
    assert warnings == []
    assert config.backend == "onnx" and config.max_batch_size == 8
    assert [(t.name, t.datatype, t.shape) for t in config.inputs or []] == \
        [("features", "FP32", [30])]
    assert [(t.name, t.datatype, t.shape) for t in config.outputs or []] == \
        [("score", "FP32", [1])]
    assert config.dynamic_batching.preferred_batch_sizes == [4, 8]
    assert config.dynamic_batching.max_queue_delay_us == 100
    assert config.dynamic_batching.max_queue_size == 16
    assert config.default_timeout_ms == 3  # 2500 us, rounded up
    assert config.instances == 2
    assert config.onnxruntime.providers == ["CPUExecutionProvider"]
    assert config.onnxruntime.intra_op_threads == 2 and config.parameters == {}
    assert config.version_policy.latest == 1


@pytest.mark.parametrize(("platform", "backend"), [
    ('platform: "onnxruntime_onnx"', "onnx"), ('backend: "onnxruntime"', "onnx"),
    ('platform: "pytorch_libtorch"', "torch"), ('backend: "pytorch"', "torch")])
def test_platforms_and_backends(platform: str, backend: str) -> None:
    config, _ = config_from_pbtxt(platform, "m", "c")
    assert config.backend == backend


def test_triton_defaults() -> None:
    # no max_batch_size with declared tensors: Triton's 0 (dims are the whole shape)
    config, _ = config_from_pbtxt('input [ { name: "x" data_type: TYPE_STRING dims: [ 1 ] } ]',
                                  "m", "c")
    assert config.max_batch_size == 0 and config.inputs is not None
    assert config.inputs[0].datatype == "BYTES"
    # nothing declared: left to the model file, as Triton's auto-complete does
    assert config_from_pbtxt('platform: "onnxruntime_onnx"', "m", "c")[0].max_batch_size is None
    config, _ = config_from_pbtxt('version_policy { specific { versions: [1, 3] } }', "m", "c")
    assert config.version_policy.specific == [1, 3]
    assert config_from_pbtxt("version_policy { all {} }", "m", "c")[0].version_policy.all
    config, _ = config_from_pbtxt('input [ { name: "i" data_type: TYPE_FP32 format: FORMAT_NCHW '
                                  'dims: [3, 8, 8] } ] max_batch_size: 4', "m", "c")
    assert config.inputs is not None and config.inputs[0].format == "FORMAT_NCHW"


def test_fields_that_change_only_speed_warn_with_their_line() -> None:
    text = RISK_PBTXT + '''optimization { execution_accelerators {
  cpu_execution_accelerator : [ { name : "openvino" } ] } }
model_warmup [ { name: "w" batch_size: 1 inputs { key: "features" value: {
  data_type: TYPE_FP32 dims: [ 30 ] zero_data: true } } } ]
response_cache { enable: true }
model_transaction_policy { decoupled: false }
'''
    text = text.replace("count: 2 kind: KIND_CPU", "count: 2 kind: KIND_CPU gpus: [ 0 ]")
    text = text.replace("dims: [ 1 ] }", 'dims: [ 1 ] label_filename: "labels.txt" }')
    config, warnings = config_from_pbtxt(text, "risk", "r/config.pbtxt")
    assert config.instances == 2
    assert warnings == [
        "r/config.pbtxt:5: Triton's field 'output.0.label_filename' is ignored: label files "
        "are not read; give the class names in config.yaml's labels: {output: [names]}",
        "r/config.pbtxt:14: Triton's field 'optimization' is ignored: ONNX Runtime and torch "
        "optimise with their own settings here (config.yaml's onnxruntime: "
        "graph_optimization_level, providers)",
        "r/config.pbtxt:16: Triton's field 'model_warmup' is ignored: each version is warmed "
        "up with zeros shaped from its metadata (config.yaml's warmup: inputs gives other "
        "values)",
        "r/config.pbtxt:18: Triton's field 'response_cache' is ignored: this server caches "
        "no responses",
        "r/config.pbtxt:11: Triton's field 'instance_group.0.gpus' is ignored: every instance "
        "runs on the one device kind gives",
    ]  # decoupled: false asks for nothing: no warning


@pytest.mark.parametrize(("text", "message"), [
    ('platform: "tensorrt_plan"', "c:1: platform: this server runs the platforms"),
    ('platform: "python"', "Triton's Python models"),
    ('backend: "python"', "Triton's Python models"),
    ('platform: "ensemble"', "write the ensemble in config.yaml"),
    ('backend: "tensorflow"', "c:1: backend: this server runs Triton's backends onnxruntime "
                              "and pytorch"),
    ('platform: "onnxruntime_onnx"\nsequence_batching { max_sequence_idle_microseconds: 5 }',
     "c:2: sequence_batching: stateful sequence models are not supported"),
    ("model_transaction_policy { decoupled: true }", "decoupled models"),
    ('input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] reshape { shape: [1, 3] } } ]',
     "input.0.reshape: not supported by this server; declare the model's own shape"),
    ('input [ { name: "x" data_type: TYPE_FP99 dims: [ 3 ] } ]', "input.0.data_type: unknown"),
    ("max_batch_sizes: 8", "c:1: max_batch_sizes: not a field of Triton's model configuration"),
    ("trust: true", "trust: not a field of Triton's model configuration"),
    ('name: "other"', "name 'other' differs from the folder name 'm'"),
    ("max_batch_size: -1", "max_batch_size: Input should be greater than or equal to 0"),
    ("instance_group [ { kind: KIND_CPU }, { kind: KIND_GPU } ]", "give one group"),
    ("dynamic_batching { max_queue_delay: 5 }", "not a field of Triton's dynamic_batching"),
    ("dynamic_batching { default_queue_policy { timeout_action: DELAY } }",
     "a timed-out request is always refused here"),
    ("version_policy { newest { } }", "version_policy.newest: expected latest"),
])
def test_refused_fields_say_why(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        config_from_pbtxt(text, "m", "c")
    assert message in str(err.value), str(err.value)


def test_the_json_form_still_refuses_what_the_pbtxt_form_warns_about() -> None:
    with pytest.raises(InvalidInput, match="optimization: Triton's field is not supported"):
        config_from_json('{"optimization": {"priority": "PRIORITY_MAX"}}', "m", "c")
    with pytest.raises(InvalidInput, match=r"instance_group\.0\.gpus: not supported"):
        config_from_json('{"instance_group": [{"count": 1, "gpus": [0]}]}', "m", "c")
    # and config.yaml's own fields pass through it, which a config.pbtxt refuses
    assert config_from_json('{"instances": 3}', "m", "c").instances == 3
    with pytest.raises(InvalidInput, match="instances: not a field of Triton's"):
        config_from_pbtxt("instances: 3", "m", "c")


def _triton_folder(tmp_path: Path, pbtxt: str) -> Path:
    model = tmp_path / "risk"
    (model / "1").mkdir(parents=True)
    shutil.copy(RISK / "1" / "model.onnx", model / "1" / "model.onnx")
    (model / "config.pbtxt").write_text(pbtxt)
    return model


def test_scan_reads_config_pbtxt(tmp_path: Path) -> None:
    model = _triton_folder(tmp_path, RISK_PBTXT + "response_cache { enable: true }\n")
    entry = scan_model(tmp_path, "risk")
    assert entry is not None and entry.error is None and entry.config is not None
    assert entry.config.max_batch_size == 8 and entry.config.instances == 2
    assert sorted(entry.versions) == [1]
    assert len(entry.warnings) == 1 and "'response_cache' is ignored" in entry.warnings[0]
    assert entry.warnings[0].startswith(f"{model / 'config.pbtxt'}:14: ")
    first_hash = entry.config_hash
    (model / "config.pbtxt").write_text(RISK_PBTXT.replace("count: 2", "count: 3"))
    again = scan_model(tmp_path, "risk")
    assert again is not None and again.config_hash != first_hash and again.warnings == []


def test_config_yaml_wins_over_config_pbtxt(tmp_path: Path) -> None:
    model = _triton_folder(tmp_path, RISK_PBTXT)
    (model / "config.yaml").write_text("max_batch_size: 16\n")
    entry = scan_model(tmp_path, "risk")
    assert entry is not None and entry.config is not None
    assert entry.config.max_batch_size == 16 and entry.config.instances == 1
    assert entry.warnings == [f"{model / 'config.pbtxt'}: ignored: config.yaml beside it "
                              "configures model 'risk'; remove one of the two files"]


def test_a_malformed_config_pbtxt_is_the_models_error(tmp_path: Path) -> None:
    model = _triton_folder(tmp_path, RISK_PBTXT.replace("max_batch_size: 8", "max_batch_size 8"))
    entry = scan_model(tmp_path, "risk")
    assert entry is not None and entry.config is None and entry.versions == {}
    assert entry.error is not None
    assert entry.error.startswith(f"{model / 'config.pbtxt'}:3:16: expected ':' or '{{' after "
                                  "field 'max_batch_size'"), entry.error
