"""The text-format reader of Triton's ``config.pbtxt`` (shipyard.repository.pbtxt): good input
in every form Triton's documentation writes, and malformed input named by line and column."""

from __future__ import annotations

import math

import pytest

from shipyard.protocol.errors import InvalidInput
from shipyard.repository.pbtxt import parse_pbtxt

#: Triton's documented densenet_onnx example (docs/user_guide/model_configuration.md, the
#: quickstart repository), with comments added
DENSENET = '''
# the quickstart's image classifier
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"  # one class name per line
  }
]
'''


def test_densenet_example() -> None:
    doc = parse_pbtxt(DENSENET, "config.pbtxt")
    assert doc.fields == {
        "name": "densenet_onnx", "platform": "onnxruntime_onnx", "max_batch_size": 0,
        "input": [{"name": "data_0", "data_type": "TYPE_FP32", "format": "FORMAT_NCHW",
                   "dims": [3, 224, 224], "reshape": {"shape": [1, 3, 224, 224]}}],
        "output": [{"name": "fc6_1", "data_type": "TYPE_FP32", "dims": [1000],
                    "reshape": {"shape": [1, 1000, 1, 1]},
                    "label_filename": "densenet_labels.txt"}],
    }
    assert doc.lines == {"name": 3, "platform": 4, "max_batch_size": 5, "input": 6,
                         "output": 15}


def test_every_form_of_fields_and_values() -> None:
    text = '''
    input { name: "a" data_type: TYPE_INT64 dims: 4 }   # repeated field, given once, no list
    input: { name: 'b', data_type: TYPE_STRING; dims: [-1] }
    instance_group < count: 2 kind: KIND_CPU >
    dynamic_batching: { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 0x64 }
    parameters { key: "k1" value: { string_value: "v" "1" } }
    parameters [ { key: "k2", value { string_value: "\\x41\\102\\n\\"" } } ]
    version_policy: { all { } }
    x: 1.5e3 y: -2 z: true w: False v: -inf u: nan t: 2.5f
    empty: []
    '''
    f = parse_pbtxt(text, "c").fields
    assert f["input"] == [{"name": "a", "data_type": "TYPE_INT64", "dims": [4]},
                          {"name": "b", "data_type": "TYPE_STRING", "dims": [-1]}]
    assert f["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert f["dynamic_batching"] == {"preferred_batch_size": [4, 8],
                                     "max_queue_delay_microseconds": 100}
    assert f["parameters"] == {"k1": {"string_value": "v1"}, "k2": {"string_value": 'AB\n"'}}
    assert f["version_policy"] == {"all": {}}
    assert (f["x"], f["y"], f["z"], f["w"], f["t"]) == (1500.0, -2, True, False, 2.5)
    assert f["v"] == -math.inf and math.isnan(f["u"])
    assert f["empty"] == []
    assert isinstance(f["y"], int) and isinstance(f["x"], float)


def test_a_field_given_twice_becomes_a_list_unless_it_takes_one_value() -> None:
    assert parse_pbtxt("tag: 1\ntag: 2", "c").fields == {"tag": [1, 2]}
    with pytest.raises(InvalidInput) as err:
        parse_pbtxt('name: "a"\n\nname: "b"\n', "m/config.pbtxt")
    assert str(err.value).startswith("m/config.pbtxt:3:1: field 'name' given twice "
                                     "(first on line 1)")
    with pytest.raises(InvalidInput, match=r"c:1:1: field 'max_batch_size' given as a list"):
        parse_pbtxt("max_batch_size: [1, 2]", "c")


@pytest.mark.parametrize(("text", "where", "message"), [
    ('input {\n  name: "a"\n', "3:1", "expected '}' to close field 'input' (opened on line 1)"),
    ("dims: [1, 2", "1:12", "field 'dims': expected ',' or ']' in the list"),
    ("dims: [1 2]", "1:10", "field 'dims': expected ',' or ']' in the list, got '2'"),
    ("max_batch_size 8", "1:16", "expected ':' or '{' after field 'max_batch_size'"),
    ('name: "abc\n', "1:7", "a string is not closed on its line"),
    ("name: }", "1:7", "field 'name': expected a value"),
    ("input [ 1 ]", "1:9", "a list without ':' holds messages"),
    ("\n\n  $x: 1", "3:3", "unexpected character '$'"),
    ("{ name: 1 }", "1:1", "expected a field name, got '{'"),
    ("a { b: 1 ]", "1:10", "expected a field name, got ']'"),
    ('name: "a\\qb"', "1:7", "unknown escape"),
    ("parameters { value: 1 }", "1:1", "map field 'parameters': each entry is"),
])
def test_malformed_input_names_line_and_column(text: str, where: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_pbtxt(text, "r/m/config.pbtxt")
    assert str(err.value).startswith(f"r/m/config.pbtxt:{where}: "), str(err.value)
    assert message in str(err.value)
