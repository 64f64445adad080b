"""Unit tests of the protocol-free core: tensor codecs, model config, repository scan, settings.

No server and no model file: these exercise ``shipyard.serving.{codecs,config,repository}``
directly and pin the exact messages a user would read.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from shipyard.protocol.wire import (
    MAX_ELEMENTS,
    check_datatype,
    check_shape,
    decode_json_data,
    decode_raw,
    encode_raw,
    to_json_data,
)
from shipyard.repository.layout import scan_repository
from shipyard.serving.config import (
    ModelConfig,
    ServerSettings,
    VersionPolicy,
    load_model_config,
)
from shipyard.serving.errors import ErrorCode, InvalidInput
from shipyard.serving.types import DATATYPES

# --------------------------------------------------------------------------------------------
# codecs: the V2 binary layout
# --------------------------------------------------------------------------------------------


def _sample(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct values per element, including each integer type's extremes."""
    n = int(np.prod(shape))
    if datatype == "BYTES":
        values = [b"", b"a", "h\u00e9llo w\u00f6rld".encode(), b"\x00\xff\xfe", b"x" * 300,
                  b"last"]
        arr = np.empty(n, dtype=object)
        arr[:] = [values[i % len(values)] for i in range(n)]
        return arr.reshape(shape)
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        return (np.arange(n) % 2 == 0).reshape(shape)
    if dtype.kind == "f":
        return (np.arange(n, dtype=np.float64) * 1.25 - 3.5).astype(dtype).reshape(shape)
    info = np.iinfo(dtype)
    base = [info.min, info.max, 0, 1, info.max - 1, info.min + 1]
    return np.array([base[i % len(base)] for i in range(n)], dtype=dtype).reshape(shape)


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_encode_decode_raw_round_trip_every_datatype(datatype: str) -> None:
    shape = (2, 3)
    original = _sample(datatype, shape)
    blob = encode_raw(original)
    if datatype != "BYTES":
        assert len(blob) == 6 * DATATYPES[datatype].itemsize
        # little-endian, row-major: the first element is the first itemsize bytes
        first = np.frombuffer(blob[: DATATYPES[datatype].itemsize],
                              dtype=DATATYPES[datatype].newbyteorder("<"))
        assert first[0] == original.reshape(-1)[0]
    decoded = decode_raw("x", datatype, shape, blob)
    assert decoded.shape == shape
    assert decoded.dtype == DATATYPES[datatype]
    assert decoded.tolist() == original.tolist()


def test_encode_raw_bytes_layout_is_length_prefixed() -> None:
    arr = np.array([b"ab", b"", "\u00e9"], dtype=object)
    assert encode_raw(arr) == (struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
                               + struct.pack("<I", 2) + "\u00e9".encode())
    # numpy unicode arrays are BYTES too, encoded as UTF-8
    assert encode_raw(np.array(["\u00fc"])) == struct.pack("<I", 2) + b"\xc3\xbc"


def test_encode_raw_non_contiguous_is_row_major() -> None:
    arr = np.arange(6, dtype=np.int32).reshape(2, 3).T  # a transposed view
    blob = encode_raw(arr)
    assert np.frombuffer(blob, dtype="<i4").tolist() == [0, 3, 1, 4, 2, 5]


def test_decode_raw_zero_elements() -> None:
    out = decode_raw("x", "FP32", (0, 4), b"")
    assert out.shape == (0, 4)
    assert out.dtype == np.float32
    out = decode_raw("s", "BYTES", (0,), b"")
    assert out.shape == (0,)


def test_decode_raw_wrong_length_names_input_shape_and_bytes() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_raw("features", "FP32", (1, 30), b"\0" * 116)
    msg = info.value.message
    assert "'features'" in msg
    assert "116 bytes" in msg
    assert "[1, 30]" in msg
    assert "needs 120" in msg
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_decode_raw_bytes_truncated_element() -> None:
    blob = struct.pack("<I", 10) + b"abc"
    with pytest.raises(InvalidInput) as info:
        decode_raw("s", "BYTES", (1,), blob)
    assert info.value.message == (
        "input 's': BYTES element 0 claims 10 bytes at offset 4 but only 3 remain")


def test_decode_raw_bytes_truncated_length_prefix() -> None:
    blob = struct.pack("<I", 1) + b"a" + b"\x01\x00"
    with pytest.raises(InvalidInput) as info:
        decode_raw("s", "BYTES", (2,), blob)
    msg = info.value.message
    assert "truncated" in msg
    assert "offset 5" in msg
    assert "2 byte(s) remain" in msg


def test_decode_raw_bytes_element_count_mismatch() -> None:
    blob = encode_raw(np.array([b"a", b"b", b"c"], dtype=object))
    with pytest.raises(InvalidInput) as info:
        decode_raw("s", "BYTES", (2, 2), blob)
    assert "holds 3 element(s)" in info.value.message
    assert "[2, 2] needs 4" in info.value.message
    with pytest.raises(InvalidInput) as info:
        decode_raw("s", "BYTES", (1,), blob)
    assert "needs 1" in info.value.message


# --------------------------------------------------------------------------------------------
# codecs: datatype and shape checks
# --------------------------------------------------------------------------------------------


def test_check_datatype() -> None:
    assert check_datatype("x", "FP32") == "FP32"
    with pytest.raises(InvalidInput) as info:
        check_datatype("x", "FLOAT")
    assert "unknown datatype 'FLOAT'" in info.value.message
    assert "'FP32'" in info.value.message  # the expected values are listed
    with pytest.raises(InvalidInput) as info:
        check_datatype("x", "BF16")
    assert "BF16 is not supported" in info.value.message
    with pytest.raises(InvalidInput):
        check_datatype("x", None)


def test_check_shape_accepts_and_rejects() -> None:
    assert check_shape("x", [2, 3]) == (2, 3)
    assert check_shape("x", []) == ()
    for bad in ("1x30", [1.0, 30], [True, 30], None, [1, "30"]):
        with pytest.raises(InvalidInput) as info:
            check_shape("x", bad)
        assert "shape must be a list of integers" in info.value.message
        assert repr(bad) in info.value.message
    with pytest.raises(InvalidInput) as info:
        check_shape("x", [-1, 30])
    assert "[-1, 30] has a negative dimension" in info.value.message
    with pytest.raises(InvalidInput) as info:
        check_shape("x", [65536, 65536, 2])
    assert str(MAX_ELEMENTS) in info.value.message
    assert "[65536, 65536, 2]" in info.value.message


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_zero_sized_shape_with_huge_dimensions_is_invalid_input(datatype: str) -> None:
    """A shape whose product is 0 but whose other dimensions are astronomically large must be
    refused as InvalidInput, not crash numpy later with a ValueError (HTTP 500)."""
    shape = [0, 1 << 62, 1 << 62]
    with pytest.raises(InvalidInput):
        checked = check_shape("x", shape)
        decode_raw("x", datatype, checked, b"")
    with pytest.raises(InvalidInput):
        checked = check_shape("x", shape)
        decode_json_data("x", datatype, checked, [])


# --------------------------------------------------------------------------------------------
# codecs: V2 JSON data
# --------------------------------------------------------------------------------------------


def test_decode_json_data_flat_nested_and_scalar() -> None:
    flat = decode_json_data("x", "FP32", (2, 2), [1, 2, 3, 4])
    nested = decode_json_data("x", "FP32", (2, 2), [[1, 2], [3, 4]])
    assert flat.dtype == np.float32
    assert flat.tolist() == nested.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert decode_json_data("x", "INT64", (1,), 7).tolist() == [7]
    assert decode_json_data("b", "BOOL", (2,), [True, False]).tolist() == [True, False]
    s = decode_json_data("s", "BYTES", (1, 2), [["h\u00e9", ""]])
    assert s.dtype == object
    assert s.tolist() == [["h\u00e9".encode(), b""]]
    u = decode_json_data("u", "UINT64", (1,), [2**64 - 1])
    assert u.dtype == np.uint64 and int(u[0]) == 2**64 - 1


def test_decode_json_data_count_mismatch() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("features", "FP32", (1, 30), [0.5] * 29)
    assert info.value.message == (
        "input 'features': data has 29 element(s) but shape [1, 30] needs 30")
    with pytest.raises(InvalidInput) as info:
        decode_json_data("s", "BYTES", (3,), ["a", "b"])
    assert "data has 2 element(s) but shape [3] needs 3" in info.value.message


def test_decode_json_data_strings_in_fp32() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("features", "FP32", (2,), ["a", "b"])
    msg = info.value.message
    assert "'features'" in msg
    assert "FP32 data must be numbers" in msg
    assert "got 'a' (element 0)" in msg


def test_decode_json_data_bool_needs_true_false() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("flag", "BOOL", (2,), [1, 0])
    assert "BOOL data must be true/false" in info.value.message
    assert "got 1 (element 0)" in info.value.message


@pytest.mark.parametrize(
    ("datatype", "value", "bounds"),
    [
        ("UINT8", 256, "[0, 255]"),
        ("UINT8", -1, "[0, 255]"),
        ("INT8", -129, "[-128, 127]"),
        ("INT32", 2**31, "[-2147483648, 2147483647]"),
        ("UINT32", 2**32, "[0, 4294967295]"),
        ("INT64", 2**63, "[-9223372036854775808, 9223372036854775807]"),
        ("UINT64", 2**64, "[0, 18446744073709551615]"),
    ],
)
def test_decode_json_data_out_of_range_int(datatype: str, value: int, bounds: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("n", datatype, (2,), [0, value])
    msg = info.value.message
    assert f"value {value} is out of range for {datatype} {bounds}" in msg


def test_decode_json_data_float_in_int32_says_integers_expected() -> None:
    """1.5 for an INT32 input is refused; the message must say integers are expected and name
    the offending value (today: "INT32 data must be numbers, got floats (first value
    np.float64(1.0))", which contradicts itself and shows the first value, not the bad one)."""
    with pytest.raises(InvalidInput) as info:
        decode_json_data("n", "INT32", (2,), [1, 1.5])
    msg = info.value.message
    assert "'n'" in msg
    assert "INT32" in msg
    assert "integer" in msg
    assert "1.5" in msg
    assert "must be numbers" not in msg


def test_decode_json_data_ragged_numbers() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("features", "FP32", (2, 3), [[1, 2, 3], [4, 5]])
    assert "'features'" in info.value.message
    assert "has 2 element(s)" in info.value.message
    assert "needs 3" in info.value.message


def test_decode_json_data_ragged_bytes_is_refused() -> None:
    """Nested BYTES data whose rows do not follow the shape must be refused like numbers are;
    today it is flattened, so row 0's fifth string silently becomes row 1's first."""
    with pytest.raises(InvalidInput) as info:
        decode_json_data("s", "BYTES", (2, 4), [["a", "b", "c", "d", "e"], ["f", "g", "h"]])
    assert "'s'" in info.value.message


def test_decode_json_data_bytes_need_strings_and_depth_limit() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_json_data("s", "BYTES", (2,), ["a", 5])
    assert info.value.message == "input 's': BYTES data must be strings, got 5"
    deep: list = ["x"]
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidInput) as info:
        decode_json_data("s", "BYTES", (1,), deep)
    assert "nested deeper than shape [1]" in info.value.message


def test_to_json_data() -> None:
    assert to_json_data("o", np.array([[1.5, 2]], dtype=np.float16)) == [1.5, 2.0]
    assert to_json_data("o", np.array([[1, 2], [3, 4]], dtype=np.int32)) == [1, 2, 3, 4]
    arr = np.array(["h\u00e9".encode(), b""], dtype=object)
    assert to_json_data("o", arr) == ["h\u00e9", ""]
    with pytest.raises(InvalidInput) as info:
        to_json_data("o", np.array([b"\xff\xfe"], dtype=object))
    assert "output 'o'" in info.value.message
    assert "binary_data" in info.value.message


# --------------------------------------------------------------------------------------------
# config.yaml
# --------------------------------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_model_config_valid(tmp_path: Path) -> None:
    path = _config(tmp_path, """
max_batch_size: 16
dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4, 8], max_queue_size: 3}
instances: 2
version_policy: {specific: [1, 3]}
inputs: [{name: x, datatype: FP32, shape: [4]}]
default_timeout_ms: 250
""")
    cfg = load_model_config(path, "m")
    assert cfg.name == "m"
    assert cfg.max_batch_size == 16
    assert cfg.dynamic_batching.max_queue_delay_us == 500
    assert cfg.dynamic_batching.preferred_batch_sizes == [4, 8]
    assert cfg.dynamic_batching.max_queue_size == 3
    assert cfg.instances == 2
    assert cfg.version_policy.specific == [1, 3]
    assert cfg.inputs is not None and cfg.inputs[0].shape == [4]
    assert cfg.default_timeout_ms == 250


def test_load_model_config_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_model_config(_config(tmp_path, ""), "m")
    assert cfg == ModelConfig(name="m")
    assert cfg.max_batch_size is None
    assert cfg.dynamic_batching.max_queue_size == 1024
    assert cfg.version_policy.select([1, 2]) == [2]


def test_load_model_config_unknown_key(tmp_path: Path) -> None:
    path = _config(tmp_path, "max_batchsize: 4\n")
    with pytest.raises(InvalidInput) as info:
        load_model_config(path, "m")
    msg = info.value.message
    assert str(path) in msg
    assert "max_batchsize: unknown field (got 4)" in msg


def test_load_model_config_unknown_nested_key(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "dynamic_batching: {max_delay: 5}\n"), "m")
    assert "dynamic_batching.max_delay: unknown field" in info.value.message


def test_load_model_config_bad_datatype(tmp_path: Path) -> None:
    path = _config(tmp_path, "inputs: [{name: x, datatype: FLOAT, shape: [4]}]\n")
    with pytest.raises(InvalidInput) as info:
        load_model_config(path, "m")
    msg = info.value.message
    assert "inputs.0.datatype" in msg
    assert "unknown datatype 'FLOAT'" in msg
    assert "'FP32'" in msg


def test_load_model_config_version_policy_two_forms(tmp_path: Path) -> None:
    path = _config(tmp_path, "version_policy: {latest: 2, all: true}\n")
    with pytest.raises(InvalidInput) as info:
        load_model_config(path, "m")
    msg = info.value.message
    assert "version_policy" in msg
    assert "only one of 'latest', 'specific' or 'all'" in msg


def test_load_model_config_bad_values_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "max_batch_size: -1\n"), "m")
    assert "max_batch_size:" in info.value.message
    assert "(got -1)" in info.value.message
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "backend: tensorflow\n"), "m")
    assert "backend:" in info.value.message
    assert "'tensorflow'" in info.value.message
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "version_policy: {latest: 0}\n"), "m")
    assert "version_policy.latest" in info.value.message


def test_load_model_config_input_format(tmp_path: Path) -> None:
    """Triton's ModelInput.format per input: FORMAT_NONE by default, image layouts need three
    dimensions, other values are refused naming the field and the allowed ones."""
    cfg = load_model_config(_config(tmp_path, """
inputs:
  - {name: image, datatype: FP32, shape: [3, 224, 224], format: FORMAT_NCHW}
  - {name: photo, datatype: UINT8, shape: [-1, -1, 3], format: FORMAT_NHWC}
  - {name: x, datatype: FP32, shape: [4]}
"""), "m")
    assert cfg.inputs is not None
    assert [t.format for t in cfg.inputs] == ["FORMAT_NCHW", "FORMAT_NHWC", "FORMAT_NONE"]
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "inputs: [{name: x, datatype: FP32, shape: [3, 8, "
                                            "8], format: NCHW}]\n"), "m")
    msg = info.value.message
    assert "inputs.0.format" in msg and "'NCHW'" in msg and "'FORMAT_NCHW'" in msg
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "inputs: [{name: x, datatype: FP32, shape: [784], "
                                            "format: FORMAT_NCHW}]\n"), "m")
    assert "needs three dimensions (C, H, W" in info.value.message
    with pytest.raises(InvalidInput) as info:  # an output has no format (Triton's neither)
        load_model_config(_config(tmp_path, "outputs: [{name: y, datatype: FP32, shape: [3, 8, "
                                            "8], format: FORMAT_NCHW}]\n"), "m")
    assert "outputs.0.format: unknown field" in info.value.message


def test_load_model_config_name_mismatch_not_mapping_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "name: other\n"), "m")
    assert "name 'other' differs from the folder name 'm'" in info.value.message
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "- 1\n- 2\n"), "m")
    assert "expected a mapping of fields, got list" in info.value.message
    with pytest.raises(InvalidInput) as info:
        load_model_config(_config(tmp_path, "max_batch_size: [1\n"), "m")
    assert "cannot read YAML" in info.value.message


def test_version_policy_select() -> None:
    on_disk = [1, 3, 2, 10]
    assert VersionPolicy().select(on_disk) == [10]
    assert VersionPolicy(latest=2).select(on_disk) == [10, 3]
    assert VersionPolicy(latest=9).select(on_disk) == [10, 3, 2, 1]
    assert VersionPolicy(specific=[1, 3, 7]).select(on_disk) == [3, 1]
    assert VersionPolicy(specific=[]).select(on_disk) == []
    assert VersionPolicy(all=True).select(on_disk) == [10, 3, 2, 1]
    assert VersionPolicy().select([]) == []
    with pytest.raises(ValidationError):
        VersionPolicy(latest=1, specific=[1])
    with pytest.raises(ValidationError):
        VersionPolicy(latest=0)


# --------------------------------------------------------------------------------------------
# repository scan
# --------------------------------------------------------------------------------------------


def _model(root: Path, name: str, versions: list[str], config: str | None = None) -> Path:
    model_dir = root / name
    model_dir.mkdir(parents=True)
    for v in versions:
        (model_dir / v).mkdir()
    if config is not None:
        (model_dir / "config.yaml").write_text(config, encoding="utf-8")
    return model_dir


def test_scan_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    a = _model(root, "a", ["1", "2", "10", "0", "abc", "-3"])
    (a / "5").write_text("a file, not a version folder")
    b = _model(root, "b", ["1", "2"], "version_policy: {all: true}\n")
    c = _model(root, "c", ["1", "2", "3"], "version_policy: {latest: 2}\n")
    d = _model(root, "d", ["1", "3"], "version_policy: {specific: [3]}\n"
               "default_model_filename: net.onnx\n")
    _model(root, "none", [])
    _model(root, "bad name", ["1"])
    _model(root, "cfg", ["1"], "max_batchsize: 4\n")
    _model(root, "miss", ["1", "3"], "version_policy: {specific: [2]}\n")
    _model(root, ".hidden", ["1"])
    _model(root, "_private", ["1"])
    (root / "README.md").write_text("not a model")

    entries = {e.name: e for e in scan_repository(root)}
    assert [e.name for e in scan_repository(root)] == sorted(entries)
    assert set(entries) == {"a", "b", "c", "d", "none", "bad name", "cfg", "miss"}

    assert entries["a"].error is None
    assert entries["a"].versions == {10: a / "10"}  # version folders: runtimes pick the file
    assert entries["b"].versions == {2: b / "2", 1: b / "1"}
    assert sorted(entries["c"].versions) == [2, 3]
    assert entries["c"].versions[3] == c / "3"
    assert entries["d"].versions == {3: d / "3"}

    none = entries["none"]
    assert none.versions == {}
    assert none.error is not None
    assert "model 'none' has no version to serve" in none.error
    assert "found versions []" in none.error
    assert "'1/'" in none.error

    miss = entries["miss"].error
    assert miss is not None
    assert "found versions [1, 3]" in miss
    assert "'specific': [2]" in miss

    bad = entries["bad name"]
    assert bad.config is None
    assert bad.error is not None and "'bad name' is not a valid model name" in bad.error

    cfg = entries["cfg"]
    assert cfg.config is None
    assert cfg.error is not None and "max_batchsize: unknown field" in cfg.error


def test_scan_repository_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        scan_repository(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)


# --------------------------------------------------------------------------------------------
# server settings precedence: CLI > env > file > defaults
# --------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ServerSettings.model_fields:
        monkeypatch.delenv(f"SHIPYARD_{name.upper()}", raising=False)
    return monkeypatch


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = ServerSettings.resolve({"http_port": None, "host": None})
    assert s.http_port == 8000
    assert s.grpc_port == 8001
    assert s.host == "0.0.0.0"
    assert s.max_body_bytes == 64 * 1024 * 1024
    assert s.model_repository.name == "repository"
    assert (s.model_repository / "risk").is_dir()


def test_settings_precedence(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("http_port: 9200\ngrpc_port: 9201\nhost: 127.0.0.2\n",
                             encoding="utf-8")
    from_file = ServerSettings.resolve({}, settings_file)
    assert (from_file.http_port, from_file.grpc_port, from_file.host) == (9200, 9201,
                                                                           "127.0.0.2")

    clean_env.setenv("SHIPYARD_HTTP_PORT", "9100")
    from_env = ServerSettings.resolve({"http_port": None}, settings_file)
    assert from_env.http_port == 9100  # env beats file
    assert from_env.grpc_port == 9201  # file still beats default
    assert from_env.host == "127.0.0.2"

    from_cli = ServerSettings.resolve({"http_port": 9300, "grpc_port": None}, settings_file)
    assert from_cli.http_port == 9300  # CLI beats env
    assert from_cli.grpc_port == 9201

    clean_env.setenv("SHIPYARD_MODEL_REPOSITORY", str(tmp_path))
    assert ServerSettings.resolve({}).model_repository == tmp_path
    assert ServerSettings.resolve({}).http_port == 9100  # env beats default without a file


def test_settings_errors_name_the_field(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("SHIPYARD_HTTP_PORT", "eighty")
    with pytest.raises(InvalidInput) as info:
        ServerSettings.resolve({})
    assert "server settings" in info.value.message
    assert "http_port" in info.value.message
    assert "'eighty'" in info.value.message
    clean_env.delenv("SHIPYARD_HTTP_PORT")

    with pytest.raises(InvalidInput) as info:
        ServerSettings.resolve({"max_body_bytes": 0})
    assert "max_body_bytes" in info.value.message

    bad = tmp_path / "bad.yaml"
    bad.write_text("htp_port: 1\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        ServerSettings.resolve({}, bad)
    assert "htp_port: unknown field" in info.value.message

    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        ServerSettings.resolve({}, listy)
    assert str(listy) in info.value.message
    assert "expected a mapping" in info.value.message
