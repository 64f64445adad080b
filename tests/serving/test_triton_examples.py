"""The flows of Triton's published client examples (``src/python/examples`` of
triton-inference-server/client), against models built the way those examples expect.

The example scripts are not on PyPI (the ``tritonclient`` wheel ships none) and GitHub is out
of reach here, so they cannot run unmodified in this suite. Each test below makes, in order,
the calls its example makes and applies the checks the example applies before it trusts the
server (image_client's ``parse_model``, simple_string's comparisons, the model-control
sequence), so a server that would turn the example away fails the test.

- ``image_client.py`` (HTTP and gRPC): reads model metadata and config, insists on one image
  input whose config ``format`` is FORMAT_NCHW or FORMAT_NHWC, one FP32 vector output, reads
  c/h/w from the shape, sends the image, asks for ``class_count`` and parses Triton's
  ``"score:index:label"`` strings.
- ``simple_http_string_infer_client.py`` / ``simple_grpc_string_infer_client.py``: the
  ``simple_string`` model (BYTES INPUT0/INPUT1 [-1, 16] holding integers as text; OUTPUT0 the
  sum, OUTPUT1 the difference, as text), here a python model.
- ``simple_http_model_control.py`` / ``simple_grpc_model_control.py``: load, readiness,
  repository index, unload, in explicit mode.

This process imports ``tritonclient.grpc``; it never imports ``shipyard.serving.grpc``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
import tritonclient.http as httpclient
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import DEMO_REPOSITORY, SHARED, ServerProcess, start_server
from onnx_models import add_sub_model, write_repository

MNIST_TEST = SHARED / "data" / "mnist_png" / "test"
TOKEN = "example-control-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}  # gRPC metadata keys are lower case

SIMPLE_STRING_PY = '''
import numpy as np


class Model:
    def predict(self, inputs):
        a = np.vectorize(lambda b: int(b.decode()))(inputs["INPUT0"])
        b = np.vectorize(lambda b: int(b.decode()))(inputs["INPUT1"])
        text = np.vectorize(lambda v: str(int(v)).encode(), otypes=[object])
        return {"OUTPUT0": text(a + b), "OUTPUT1": text(a - b)}
'''

SIMPLE_STRING_CONFIG = """
trust: true
max_batch_size: 8
warmup: {enabled: false}  # the warm-up's empty strings are no integers
inputs:
  - {name: INPUT0, datatype: BYTES, shape: [16]}
  - {name: INPUT1, datatype: BYTES, shape: [16]}
outputs:
  - {name: OUTPUT0, datatype: BYTES, shape: [16]}
  - {name: OUTPUT1, datatype: BYTES, shape: [16]}
"""


@pytest.fixture
def connect() -> Iterator[Callable[[str, ServerProcess], Any]]:
    """Makes Triton clients and closes them after the test (a tritonclient.http client left
    to the garbage collector may be collected on another thread, which gevent refuses)."""
    made: list[Any] = []

    def make(protocol: str, server: ServerProcess) -> Any:
        client: Any = (httpclient.InferenceServerClient(server.http_url) if protocol == "http"
                       else grpcclient.InferenceServerClient(server.grpc_url))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("examples")
    for name in ("cnn",):
        src = DEMO_REPOSITORY / name
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.yaml").write_bytes((src / "config.yaml").read_bytes())
        (root / name / "1" / "model.onnx").write_bytes((src / "1" / "model.onnx").read_bytes())
    (root / "simple_string" / "1").mkdir(parents=True)
    (root / "simple_string" / "1" / "model.py").write_text(SIMPLE_STRING_PY)
    (root / "simple_string" / "config.yaml").write_text(SIMPLE_STRING_CONFIG)
    server = start_server(root)
    yield server
    server.stop()


# --------------------------------------------------------------------------------------------
# image_client.py
# --------------------------------------------------------------------------------------------


def parse_model(model_metadata: Any, model_config: Any, protocol: str
                ) -> tuple[int, str, str, int, int, int, int, str]:
    """image_client's checks, on the JSON (HTTP) or protobuf (gRPC) answers: the example
    raises where any of them fails, so this asserts them."""
    if protocol == "http":
        inputs, outputs = model_metadata["inputs"], model_metadata["outputs"]
        config_inputs = model_config["input"]
        max_batch_size = model_config.get("max_batch_size", 0)
        in_name, in_shape, in_type = inputs[0]["name"], inputs[0]["shape"], inputs[0]["datatype"]
        out_name, out_shape, out_type = (outputs[0]["name"], outputs[0]["shape"],
                                         outputs[0]["datatype"])
        fmt = config_inputs[0]["format"]
        assert isinstance(fmt, str), "the HTTP config carries format as the enum's name"
        fmt = mc.ModelInput.Format.Value(fmt)
    else:
        inputs, outputs = model_metadata.inputs, model_metadata.outputs
        config_inputs = model_config.config.input
        max_batch_size = model_config.config.max_batch_size
        in_name, in_shape, in_type = inputs[0].name, list(inputs[0].shape), inputs[0].datatype
        out_name, out_shape, out_type = (outputs[0].name, list(outputs[0].shape),
                                         outputs[0].datatype)
        fmt = config_inputs[0].format
    assert len(inputs) == 1, f"expecting 1 input, got {len(inputs)}"
    assert len(outputs) == 1, f"expecting 1 output, got {len(outputs)}"
    assert len(config_inputs) == 1, "expecting 1 input in model configuration"
    assert out_type == "FP32", f"expecting output datatype to be FP32, model has {out_type}"
    # the output must be a vector: at most one dimension > 1 after the batch dimension
    batch_dim = max_batch_size > 0
    assert sum(1 for d in out_shape[1 if batch_dim else 0:] if d > 1) <= 1
    assert len(in_shape) == 3 + (1 if batch_dim else 0), (
        f"expecting input to have {3 + batch_dim} dimensions, model has {len(in_shape)}")
    assert fmt in (mc.ModelInput.FORMAT_NCHW, mc.ModelInput.FORMAT_NHWC), (
        f"unexpected input format {mc.ModelInput.Format.Name(fmt)}, expecting FORMAT_NCHW "
        "or FORMAT_NHWC")
    dims = in_shape[1:] if batch_dim else in_shape
    if fmt == mc.ModelInput.FORMAT_NHWC:
        h, w, c = dims
    else:
        c, h, w = dims
    return max_batch_size, in_name, out_name, c, h, w, fmt, in_type


def preprocess(path: Path, fmt: int, dtype: str, c: int, h: int, w: int) -> np.ndarray:
    """image_client's preprocess (scaling NONE would send 0..255; this model was trained on
    [0, 1], so the pixels are divided by 255, as its config's description says)."""
    with Image.open(path) as img:
        sample = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        array = np.asarray(sample).astype(np.float32 if dtype == "FP32" else np.uint8) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return np.transpose(array, (2, 0, 1)) if fmt == mc.ModelInput.FORMAT_NCHW else array


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_client_flow(examples_server: ServerProcess, protocol: str,
                           connect: Callable[[str, ServerProcess], Any]) -> None:
    if not MNIST_TEST.is_dir():
        pytest.skip(f"MNIST PNGs not found at {MNIST_TEST}")
    module: Any = httpclient if protocol == "http" else grpcclient
    client = connect(protocol, examples_server)
    metadata = client.get_model_metadata("cnn")
    config = client.get_model_config("cnn")
    max_batch_size, in_name, out_name, c, h, w, fmt, dtype = parse_model(metadata, config,
                                                                         protocol)
    assert (max_batch_size, c, h, w, fmt) == (64, 1, 28, 28, mc.ModelInput.FORMAT_NCHW)
    session = ort.InferenceSession(str(DEMO_REPOSITORY / "cnn" / "1" / "model.onnx"))
    right = 0
    files = [sorted((MNIST_TEST / str(d)).glob("*.png"))[0] for d in range(10)]
    for digit, path in enumerate(files):
        image = preprocess(path, fmt, dtype, c, h, w)
        batch = image[None, ...]  # image_client's -b 1
        inp = module.InferInput(in_name, list(batch.shape), dtype)
        inp.set_data_from_numpy(batch)
        out = module.InferRequestedOutput(out_name, class_count=3)
        result = client.infer("cnn", [inp], outputs=[out])
        classes = result.as_numpy(out_name)
        assert classes.shape == (1, 3)
        parsed = [(float(s), int(i), label)
                  for s, i, label in (x.decode().split(":") for x in classes[0])]
        scores = [p[0] for p in parsed]
        assert scores == sorted(scores, reverse=True)
        (logits,) = session.run(None, {in_name: batch})
        assert parsed[0][1] == int(logits.argmax())  # the server's top class is onnxruntime's
        assert parsed[0][2] == str(parsed[0][1])  # labels from the config: "0".."9"
        np.testing.assert_allclose(parsed[0][0], logits.max(), rtol=1e-5)
        right += parsed[0][1] == digit
    assert right >= 8, f"only {right} of 10 digits recognised"


# --------------------------------------------------------------------------------------------
# simple_{http,grpc}_string_infer_client.py
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_string_flow(examples_server: ServerProcess, protocol: str,
                            connect: Callable[[str, ServerProcess], Any]) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    client = connect(protocol, examples_server)
    in0 = np.arange(start=0, stop=16, dtype=np.int32).reshape(1, 16)
    in1 = np.ones(shape=(1, 16), dtype=np.int32)
    expected_sum, expected_diff = in0 + in1, in0 - in1
    in0n = np.array([str(x).encode("utf-8") for x in in0.reshape(in0.size)],
                    dtype=np.object_).reshape(in0.shape)
    in1n = np.array([str(x).encode("utf-8") for x in in1.reshape(in1.size)],
                    dtype=np.object_).reshape(in1.shape)
    inputs = [module.InferInput("INPUT0", [1, 16], "BYTES"),
              module.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_data_from_numpy(in0n)
    inputs[1].set_data_from_numpy(in1n)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple_string", inputs, outputs=outputs)
    out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    for i in range(16):  # the example's own comparisons
        assert int(out0[0][i]) == expected_sum[0][i], f"{i}: {out0[0][i]!r}"
        assert int(out1[0][i]) == expected_diff[0][i], f"{i}: {out1[0][i]!r}"


# --------------------------------------------------------------------------------------------
# simple_{http,grpc}_model_control.py
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = write_repository(tmp_path_factory.mktemp("control"), {"simple": (add_sub_model, None)})
    server = start_server(root, "--model-control", "explicit", "--control-token", TOKEN)
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_model_control_flow(control_server: ServerProcess, protocol: str,
                            connect: Callable[[str, ServerProcess], Any]) -> None:
    client = connect(protocol, control_server)
    assert client.is_server_live() and client.is_server_ready()
    client.load_model("simple", headers=AUTH)
    assert client.is_model_ready("simple")
    index = client.get_model_repository_index()  # no token: the index is read-only
    if protocol == "grpc":
        rows = [(m.name, m.state) for m in index.models]
    else:
        rows = [(m["name"], m.get("state")) for m in index]
    assert ("simple", "READY") in rows
    client.unload_model("simple", headers=AUTH)
    assert not client.is_model_ready("simple")
    client.load_model("simple", headers=AUTH)  # the example loads it again at the end
    assert client.is_model_ready("simple")
