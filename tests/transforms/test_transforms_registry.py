"""The declarative form, the one table of steps, specs through a pipeline, and the import floor."""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

import shipyard.transforms as transforms
from shipyard.transforms import (
    STEPS,
    StepConfigError,
    TransformError,
    build_step,
    build_steps,
    steps_input_spec,
    steps_output_spec,
    steps_to_config,
)

PACKAGE = ROOT / "src" / "shipyard" / "transforms"
# one declaration of every step, with its required parameters (tokenize needs a file: not loaded)
EVERY_STEP = [
    {"image_decode": {"mode": "L", "max_pixels": 1000}},
    {"resize": {"size": [28, 28], "interpolation": "nearest"}},
    {"center_crop": {"size": 24}},
    {"to_dtype": {"dtype": "float64", "scale": 0.5}},
    {"normalize": {"mean": [0.5], "std": [0.25]}},
    {"layout": {"to": "NHWC"}},
    {"text_normalize": {"form": None, "lowercase": True}},
    {"tokenize": {"path": "tok/tokenizer.json", "max_length": 16, "truncation": True}},
    {"words": {"stop_words": ["the", "a"], "stemmer": "snowball", "language": "dutch"}},
    {"softmax": {}},
    {"top_k": {"k": 3}},
    {"labels": {"labels": ["a", "b"]}},
]


def test_the_table_holds_every_step_once_under_its_own_name() -> None:
    assert list(STEPS) == [next(iter(d)) for d in EVERY_STEP]
    assert all(cls.name == name for name, cls in STEPS.items())


def test_declared_steps_round_trip_through_to_config() -> None:
    steps = build_steps(EVERY_STEP, load=False)
    config = steps_to_config(steps)
    for declared, written in zip(EVERY_STEP, config, strict=True):
        ((name, params),) = declared.items()
        assert set(written) == {name}
        assert params.items() <= written[name].items() or name == "center_crop"
    again = build_steps(config, load=False)
    assert [s.get_params() for s in again] == [s.get_params() for s in steps]
    assert config[2] == {"center_crop": {"size": [24, 24]}}
    assert "base_dir" not in config[7]["tokenize"]


def test_short_forms_name_only_the_step() -> None:
    steps = build_steps(["softmax", {"top_k": None}], where="postprocess")
    assert [type(s).__name__ for s in steps] == ["Softmax", "TopK"]
    assert build_steps(None) == []


@pytest.mark.parametrize(("declared", "message"), [
    ({"image_decode": {}}, "preprocess: must be a list of steps; got {'image_decode': {}}"),
    ([{"resize": {"size": [28]}}], "preprocess[0].resize.size: must be [height, width]"),
    ([{"softmax": None}, {"rezise": {}}], "preprocess[1]: unknown step 'rezise'; the steps are "
                                          "image_decode, resize,"),
    ([{"resize": {"size": 3, "szie": 1}}], "preprocess[0].resize.szie: unknown parameter; "
                                           "resize takes size, interpolation"),
    ([{"softmax": {"axis": 1}}], "preprocess[0].softmax.axis: unknown parameter; softmax takes "
                                 "no parameters"),
    ([{"tokenize": {"path": "t.json", "base_dir": "/"}}],
     "preprocess[0].tokenize.base_dir: unknown parameter"),
    ([{"normalize": {"mean": [0.5]}}], "preprocess[0].normalize.std: is required by normalize"),
    ([{"resize": {"size": 2}, "layout": {}}], "preprocess[0]: must be one mapping"),
    ([{"resize": [28, 28]}], "preprocess[0].resize: must be a mapping of parameters"),
    ([{"to_dtype": {"dtype": "float128"}}], "preprocess[0].to_dtype.dtype: must be one of "
                                            "'float32', 'float64'"),
])
def test_declaration_errors_are_one_message_with_a_path(declared: object, message: str) -> None:
    with pytest.raises(StepConfigError) as caught:
        build_steps(declared)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message), str(caught.value)
    assert str(caught.value).startswith(caught.value.path + ": ")


def test_build_step_names_its_own_path() -> None:
    with pytest.raises(StepConfigError, match=r"^postprocess\[4\]\.top_k\.k: must be an integer"):
        build_step({"top_k": {"k": "3"}}, where="postprocess[4]")


def test_the_pipeline_spec_shows_what_it_takes_and_makes() -> None:
    image = build_steps([{"image_decode": {"mode": "L"}}, {"resize": {"size": [28, 28]}},
                         {"to_dtype": {"scale": 1 / 255}},
                         {"normalize": {"mean": [0.5], "std": [0.5]}}, {"layout": {}}])
    assert steps_input_spec(image) == ("BYTES", (-1,))
    assert steps_output_spec(image) == ("FP32", (-1, 1, 28, 28))
    rgb = build_steps([{"image_decode": {}}, {"center_crop": {"size": [8, 6]}}])
    assert steps_output_spec(rgb) == ("UINT8", (-1, 8, 6, 3))
    text = build_steps([{"text_normalize": {}},
                        {"tokenize": {"path": "t.json", "max_length": 7}}], load=False)
    assert steps_output_spec(text) == ("INT64", (-1, 7))
    post = build_steps([{"softmax": {}}, {"labels": {"labels": ["a", "b"]}}])
    assert steps_input_spec(post) is None
    assert steps_output_spec(post, ("FP32", (-1, 2))) == ("BYTES", (-1,))


def test_steps_that_cannot_follow_each_other_are_named() -> None:
    steps = build_steps([{"text_normalize": {}}, {"resize": {"size": 4}}])
    with pytest.raises(StepConfigError) as caught:
        steps_output_spec(steps)
    assert str(caught.value) == ("preprocess[1].resize: takes UINT8 or float images, "
                                 "but gets BYTES")
    rgb = build_steps([{"image_decode": {}}, {"normalize": {"mean": [1, 2], "std": 1}}])
    with pytest.raises(StepConfigError, match=r"^preprocess\[1\]\.normalize: has 2 channels"):
        steps_output_spec(rgb)
    with pytest.raises(StepConfigError, match="give input_spec"):
        steps_output_spec(build_steps(["softmax"]))


def test_transform_error_keeps_its_index_through_pickling() -> None:
    error = pickle.loads(pickle.dumps(TransformError("not valid UTF-8", 4)))
    assert isinstance(error, ValueError) and error.index == 4
    assert str(error) == "item 4: not valid UTF-8" and error.reason == "not valid UTF-8"
    config = pickle.loads(pickle.dumps(StepConfigError("bad", "preprocess[0].resize")))
    assert config.path == "preprocess[0].resize" and str(config) == "preprocess[0].resize: bad"


def test_every_module_declares_all_and_stays_small() -> None:
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {t.id for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        assert "__all__" in names, path.name
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 300, path.name
    assert sorted(transforms.__all__) == sorted(set(transforms.__all__))
    assert all(hasattr(transforms, name) for name in transforms.__all__)


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_transforms_import_no_torch_no_server_no_training() -> None:
    allowed_shipyard = ("shipyard.transforms", "shipyard.protocol",  # its floor: DESIGN.md
                        "shipyard._lazy")  # the package root's dir() helper (stdlib only)
    offenders = [f"{path.name}: {name}" for path in PACKAGE.glob("*.py")
                 for name in _imports(path)
                 if name.split(".")[0] == "torch"
                 or (name.startswith("shipyard") and not name.startswith(allowed_shipyard))]
    assert not offenders
    code = (
        "import sys, numpy as np\n"
        "from shipyard.transforms import build_steps, apply_steps\n"
        "steps = build_steps([{'image_decode': {}}, {'resize': {'size': 4}}, 'to_dtype',"
        " 'layout', 'softmax', {'top_k': {'k': 1}}])\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert "shipyard.transforms.image" in out  # the probe did import the package
    leaked = [m for m in out if m.split(".")[0] in ("torch", "sklearn", "pandas", "grpc")
              or (m.startswith("shipyard.") and not m.startswith(allowed_shipyard))]
    assert not leaked


def test_a_batch_of_one_and_an_empty_batch() -> None:
    steps = build_steps([{"resize": {"size": 3}}, "to_dtype", "layout"])
    assert steps[0](np.zeros((0, 5, 5), np.uint8)).shape == (0, 3, 3)
    out = transforms.apply_steps(steps, np.zeros((1, 5, 5), np.uint8))
    assert out.shape == (1, 1, 3, 3)
