"""The python runtime: ``model.py`` in a version folder, a class with ``predict``.

* the runtime contract (:func:`check_runtime`) with add/sub and echo models written in Python;
* trust: without ``trust: true`` the model is refused before ``model.py`` is imported (its
  import would create a sentinel file);
* user exceptions by class (ValueError / TypeError / KeyError -> InvalidInput, the rest ->
  InferenceFailed) and bad return values (missing output, non-array, wrong batch, wrong
  dtype), delivered through the batcher as errors, never a hang;
* isolation: module state per model and version, a reload imports the new code, sys.path is
  left as it was, neighbour modules are per version;
* a real ``shipyard serve`` with a BYTES -> INT64 + BYTES model, driven by tritonclient's
  HTTP and gRPC clients.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from conftest import ServerProcess, start_server
from tritonclient.utils import InferenceServerException

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InferenceFailed, InvalidInput
from shipyard.serving.model import ModelVersion
from shipyard.serving.runtimes import create_runtime
from shipyard.serving.runtimes.python import PythonRuntime
from shipyard.serving.runtimes.testing import ConformanceCase, check_runtime
from shipyard.serving.types import InferenceRequest, Tensor

ADD_SUB = """
class Model:
    def predict(self, inputs):
        a, b = inputs["INPUT0"], inputs["INPUT1"]
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}
"""

ECHO = """
class Model:
    def predict(self, inputs):
        return {"OUT": inputs["IN"]}
"""

TEXT = """
import numpy as np


class Model:
    def load(self):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        text = inputs["TEXT"]
        if any(t == b"boom" for t in text.reshape(-1)):
            raise ValueError("'boom' is not a word")
        words = [t.decode("utf-8") for t in text.reshape(-1)]
        length = np.array([len(w) for w in words], dtype=np.int64).reshape(text.shape)
        upper = np.array([w.upper().encode() for w in words], dtype=object).reshape(text.shape)
        return {"LENGTH": length, "UPPER": upper}
"""

TEXT_CONFIG: dict[str, Any] = {
    "backend": "python", "trust": True,
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1]}],
    "outputs": [{"name": "LENGTH", "datatype": "INT64", "shape": [1]},
                {"name": "UPPER", "datatype": "BYTES", "shape": [1]}],
}

X_TO_Y: dict[str, Any] = {
    "backend": "python", "trust": True,
    "inputs": [{"name": "X", "datatype": "FP32", "shape": [2]}],
    "outputs": [{"name": "Y", "datatype": "FP32", "shape": [2]}],
}

FP32_16 = {"datatype": "FP32", "shape": [16]}


def write(folder: Path, source: str, name: str = "model.py") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(source), encoding="utf-8")


def model_dir(root: Path, name: str, versions: dict[int, str], config: dict[str, Any] | None
              ) -> Path:
    for version, source in versions.items():
        write(root / name / str(version), source)
    if config is not None:
        (root / name / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root / name


def loaded(root: Path, source: str, config: dict[str, Any] = X_TO_Y, version: int = 1,
           name: str = "m") -> ModelVersion:
    folder = model_dir(root, name, {version: source}, None) / str(version)
    mv = ModelVersion(name, version, folder, ModelConfig.model_validate({"name": name, **config}))
    mv.load()
    return mv


@pytest.fixture(autouse=True)
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per test (a version's batcher stays on the loop it first ran on)."""
    global _loop
    _loop = asyncio.new_event_loop()
    yield _loop
    _loop.close()


_loop: asyncio.AbstractEventLoop


def infer(mv: ModelVersion, x: np.ndarray) -> dict[str, np.ndarray]:
    request = InferenceRequest(mv.name, inputs=[Tensor("X", "FP32", x.shape, x)])
    response = _loop.run_until_complete(asyncio.wait_for(mv.infer(request), 10))
    return {t.name: t.data for t in response.outputs}


# -- the contract ---------------------------------------------------------------------------


def test_python_runtime_conforms(tmp_path: Path) -> None:
    check_runtime(ConformanceCase(
        "python",
        add_sub=lambda folder: write(folder, ADD_SUB),
        echo_text=lambda folder: write(folder, ECHO),
        config={"trust": True},
        configs={
            "add_sub": {
                "inputs": [{"name": "INPUT0", **FP32_16}, {"name": "INPUT1", **FP32_16}],
                "outputs": [{"name": "OUTPUT0", **FP32_16}, {"name": "OUTPUT1", **FP32_16}],
            },
            "echo_text": {
                "inputs": [{"name": "IN", "datatype": "BYTES", "shape": [1]}],
                "outputs": [{"name": "OUT", "datatype": "BYTES", "shape": [1]}],
            },
        },
    ), tmp_path)


def test_metadata_shapes_follow_max_batch_size(tmp_path: Path) -> None:
    """config.yaml's shapes leave out the batch dimension; the server prepends -1 unless
    max_batch_size is 0, and the merged metadata agrees with the runtime's."""
    source = "class Model:\n    def predict(self, inputs):\n        return {'Y': inputs['X']}\n"
    for mbs, shape in ((None, (-1, 2)), (4, (-1, 2)), (0, (2,))):
        mv = loaded(tmp_path / str(mbs), source, {**X_TO_Y, "max_batch_size": mbs})
        assert mv.ready, mv.reason
        assert mv.runtime is not None
        assert [s.shape for s in mv.inputs] == [s.shape for s in mv.runtime.metadata()[0]]
        assert mv.inputs[0].shape == shape and mv.outputs[0].shape == shape
        assert mv.max_batch_size == (32 if mbs is None else mbs)
        x = np.ones((3, 2) if mbs != 0 else (2,), np.float32)
        np.testing.assert_array_equal(infer(mv, x)["Y"], x)
        mv.unload()


@pytest.mark.parametrize("missing", ["inputs", "outputs"])
def test_inputs_and_outputs_must_be_declared(tmp_path: Path, missing: str) -> None:
    mv = loaded(tmp_path, ECHO, {k: v for k, v in X_TO_Y.items() if k != missing})
    assert not mv.ready
    assert f"declares no {missing}; add {missing}:" in mv.reason, mv.reason
    assert "'m'" in mv.reason and "config.yaml" in mv.reason


# -- trust -----------------------------------------------------------------------------------


def sentinel_source(path: Path) -> str:
    return f"open({str(path)!r}, 'w').close()\n\nclass Model:\n" \
           "    def predict(self, inputs):\n        return {'Y': inputs['X']}\n"


def test_untrusted_python_model_is_refused_before_import(tmp_path: Path) -> None:
    sentinel = tmp_path / "IMPORTED"
    untrusted = {**X_TO_Y, "trust": False}
    for config in (untrusted, {k: v for k, v in untrusted.items() if k != "backend"}):
        mv = loaded(tmp_path / "repo", sentinel_source(sentinel), config, name="x")
        assert not mv.ready
        assert mv.reason == (
            "model 'x' is a python model, which runs code from the model folder; set trust: "
            "true in its config.yaml if you trust that code"), mv.reason
        assert not sentinel.exists(), "model.py was imported without trust"
    with pytest.raises(InvalidInput, match="set trust: true"):
        create_runtime(tmp_path / "repo" / "x" / "1", ModelConfig(name="x"))
    assert not sentinel.exists()
    # the sentinel works: with trust the file is imported
    mv = loaded(tmp_path / "trusted", sentinel_source(sentinel), X_TO_Y, name="x")
    assert mv.ready, mv.reason
    assert sentinel.exists()
    mv.unload()


# -- user errors -----------------------------------------------------------------------------

RAISES = """
class Model:
    def predict(self, inputs):
        raise {exc}("the text of the error")
"""


@pytest.mark.parametrize(("exc", "error"), [
    ("ValueError", InvalidInput), ("TypeError", InvalidInput), ("KeyError", InvalidInput),
    ("ZeroDivisionError", InferenceFailed), ("RuntimeError", InferenceFailed),
    ("SystemExit", InferenceFailed),
])
def test_user_exceptions_are_translated_by_class(tmp_path: Path, exc: str,
                                                 error: type[Exception]) -> None:
    mv = loaded(tmp_path, RAISES.format(exc=exc), {**X_TO_Y, "warmup": {"enabled": False}})
    assert mv.ready, mv.reason
    with pytest.raises(error) as info:
        infer(mv, np.ones((2, 2), np.float32))
    assert type(info.value) is error
    message = str(info.value)
    assert message.startswith(f"model 'm': predict() raised {exc}: "), message
    assert "the text of the error" in message and "(model.py line 4)" in message, message
    mv.unload()


@pytest.mark.parametrize(("returned", "wanted"), [
    ("[inputs['X']]", "returned list; it must return a dict"),
    ("{}", "returned no output 'Y' (it returned [])"),
    ("{'y': inputs['X']}", "returned no output 'Y' (it returned ['y'])"),
    ("{'Y': inputs['X'].tolist()}", "returned a list for output 'Y'; return a numpy array"),
    ("{'Y': inputs['X'][:1]}", "with shape [1, 2] for a batch of 3 rows"),
    ("{'Y': inputs['X'][:, :1]}", "with shape [3, 1], but config.yaml declares [-1, 2]"),
    ("{'Y': np.full((3, 2), 'a')}", "as <U1 values, which do not convert to its declared"),
])
def test_bad_return_values_fail_clearly(tmp_path: Path, returned: str, wanted: str) -> None:
    source = f"import numpy as np\n\nclass Model:\n    def predict(self, inputs):\n" \
             f"        return {returned}\n"
    mv = loaded(tmp_path, source, {**X_TO_Y, "warmup": {"enabled": False}})
    assert mv.ready, mv.reason
    with pytest.raises(InferenceFailed) as info:
        infer(mv, np.ones((3, 2), np.float32))
    assert str(info.value).startswith("model 'm': predict() "), info.value
    assert wanted in str(info.value), info.value
    mv.unload()


def test_outputs_are_cast_to_the_declared_datatype(tmp_path: Path) -> None:
    source = "class Model:\n    def predict(self, inputs):\n" \
             "        return {'Y': inputs['X'].astype('float64') * 2}\n"
    mv = loaded(tmp_path, source)
    y = infer(mv, np.ones((1, 2), np.float32))["Y"]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[2, 2]])
    mv.unload()


@pytest.mark.parametrize(("source", "wanted"), [
    ("def broken(:\n", "cannot load"),
    ("raise ImportError('no such thing')\n", "ImportError: no such thing (model.py line 1)"),
    ("class Other:\n    pass\n", "defines no class 'Model' (classes there: ['Other'])"),
    ("class Model:\n    pass\n", "class 'Model' has no predict(self, inputs) method"),
    ("class Model:\n    def load(self):\n        raise OSError('weights missing')\n"
     "    def predict(self, inputs):\n        pass\n",
     "Model.load() raised OSError: weights missing (model.py line 3)"),
])
def test_load_errors_name_the_problem(tmp_path: Path, source: str, wanted: str) -> None:
    mv = loaded(tmp_path, source)
    assert not mv.ready
    assert mv.reason.startswith("model 'm': cannot load "), mv.reason
    assert wanted in mv.reason, mv.reason
    assert not [m for m in sys.modules if m.startswith("shipyard_python_model_m_")]


def test_class_parameter(tmp_path: Path) -> None:
    source = ("class Scaler:\n    def predict(self, inputs):\n"
              "        return {'Y': inputs['X'] * 3}\n")
    mv = loaded(tmp_path / "a", source, {**X_TO_Y, "parameters": {"class": "Scaler"}})
    assert mv.ready, mv.reason
    np.testing.assert_array_equal(infer(mv, np.ones((1, 2), np.float32))["Y"], [[3, 3]])
    mv.unload()
    mv = loaded(tmp_path / "b", source, {**X_TO_Y, "parameters": {"klass": "Scaler"}})
    assert not mv.ready and "parameters of the python backend" in mv.reason, mv.reason
    assert "klass: unknown field" in mv.reason, mv.reason


# -- isolation -------------------------------------------------------------------------------

STATEFUL = """
import helper

COUNT = [0]


class Model:
    def predict(self, inputs):
        COUNT[0] += 1
        return {{"Y": inputs["X"] * 0 + {factor} * 100 + COUNT[0] + helper.OFFSET}}
"""


def test_versions_and_models_do_not_share_module_state(tmp_path: Path) -> None:
    path_before = list(sys.path)
    config = {**X_TO_Y, "warmup": {"enabled": False}}
    versions = []
    for factor in (1, 2):
        folder = tmp_path / "m" / str(factor)
        write(folder, "OFFSET = 0.5\n" if factor == 1 else "OFFSET = 0.25\n", "helper.py")
        versions.append(loaded(tmp_path, STATEFUL.format(factor=factor), config, factor))
    other = loaded(tmp_path / "other", STATEFUL.format(factor=1).replace("import helper\n", "")
                   .replace(" + helper.OFFSET", ""), config, name="other")
    assert sys.path == path_before, "sys.path changed"
    assert "helper" not in sys.modules, "a neighbour module stayed in sys.modules"
    x = np.ones((1, 2), np.float32)
    assert infer(versions[0], x)["Y"][0, 0] == 101.5
    assert infer(versions[0], x)["Y"][0, 0] == 102.5
    assert infer(versions[1], x)["Y"][0, 0] == 201.25  # its own COUNT and its own helper
    assert infer(other, x)["Y"][0, 0] == 101
    modules = {mv.runtime.module.__name__ for mv in (*versions, other)
               if isinstance(mv.runtime, PythonRuntime) and mv.runtime.module is not None}
    assert len(modules) == 3 and all(m in sys.modules for m in modules)
    # a reload of version 1 with new code runs the new code, with fresh state
    write(tmp_path / "m" / "1", STATEFUL.format(factor=7))
    reloaded = loaded(tmp_path, STATEFUL.format(factor=7), config, 1)
    assert infer(reloaded, x)["Y"][0, 0] == 701.5
    for mv in (*versions, other, reloaded):
        mv.unload()
    assert not modules & set(sys.modules), "unload left the module in sys.modules"
    assert not list((tmp_path / "m").glob("*/__pycache__/model.*")), "bytecode was written"


def test_each_instance_has_its_own_object(tmp_path: Path) -> None:
    source = """
    import itertools, threading, time
    import numpy as np

    SERIAL = itertools.count(1)

    class Model:
        def load(self):
            self.busy = threading.Lock()
            self.n = next(SERIAL)

        def predict(self, inputs):
            if not self.busy.acquire(blocking=False):
                raise RuntimeError("one object ran two predicts at once")
            try:
                time.sleep(0.02)
                return {"Y": np.full_like(inputs["X"], self.n)}
            finally:
                self.busy.release()
    """
    mv = loaded(tmp_path, source, {**X_TO_Y, "instances": 3, "max_batch_size": 0})
    assert mv.ready, mv.reason

    async def many() -> set[float]:
        x = np.ones(2, np.float32)
        requests = [mv.infer(InferenceRequest("m", inputs=[Tensor("X", "FP32", (2,), x)]))
                    for _ in range(12)]
        return {float(r.outputs[0].data[0]) for r in await asyncio.gather(*requests)}

    assert _loop.run_until_complete(asyncio.wait_for(many(), 10)) <= {1, 2, 3}
    mv.unload()


# -- a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def python_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("python-repo")
    model_dir(root, "text", {1: TEXT}, TEXT_CONFIG)
    sentinel = root.parent / "UNTRUSTED_IMPORTED"
    untrusted = {k: v for k, v in X_TO_Y.items() if k not in ("backend", "trust")}
    model_dir(root, "untrusted", {1: sentinel_source(sentinel)}, untrusted)
    return root


@pytest.fixture(scope="module")
def python_server(python_repo: Path) -> Iterator[ServerProcess]:
    server = start_server(python_repo)
    yield server
    server.stop()


def test_served_over_http_and_grpc(python_server: ServerProcess) -> None:
    words = np.array([[b"abc"], ["h\u00e9llo".encode()], [b""]], dtype=object)
    for module, url in ((httpclient, python_server.http_url),
                        (grpcclient, python_server.grpc_url)):
        client: Any = module.InferenceServerClient(url)
        try:
            meta = client.get_model_metadata("text")
            meta = meta if isinstance(meta, dict) else {"platform": meta.platform,
                                                        "inputs": [{"shape": list(i.shape)}
                                                                   for i in meta.inputs]}
            assert meta["platform"] == "python" and meta["inputs"][0]["shape"] == [-1, 1], meta
            text = module.InferInput("TEXT", [3, 1], "BYTES")
            text.set_data_from_numpy(words)
            result = client.infer("text", [text])
            np.testing.assert_array_equal(result.as_numpy("LENGTH"), [[3], [5], [0]])
            assert result.as_numpy("LENGTH").dtype == np.int64
            assert result.as_numpy("UPPER").reshape(-1).tolist() == [
                b"ABC", "H\u00c9LLO".encode(), b""]
            boom = module.InferInput("TEXT", [1, 1], "BYTES")
            boom.set_data_from_numpy(np.array([[b"boom"]], dtype=object))
            with pytest.raises(InferenceServerException) as info:
                client.infer("text", [boom])
            assert "model 'text': predict() raised ValueError: 'boom' is not a word" in str(
                info.value), info.value
            assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT"), info.value
        finally:
            client.close()


def test_server_refuses_the_untrusted_model(python_server: ServerProcess,
                                            python_repo: Path) -> None:
    with httpclient.InferenceServerClient(python_server.http_url) as client:
        rows = {r["name"]: r for r in client.get_model_repository_index()}
        assert rows["text"]["state"] == "READY", rows
        assert rows["untrusted"]["state"] == "UNAVAILABLE", rows
        assert rows["untrusted"]["reason"] == (
            "model 'untrusted' is a python model, which runs code from the model folder; set "
            "trust: true in its config.yaml if you trust that code"), rows
        assert not client.is_model_ready("untrusted")
    assert not (python_repo.parent / "UNTRUSTED_IMPORTED").exists(), "model.py was imported"
