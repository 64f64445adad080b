"""The PMML runtime: the conformance suite, inputs and outputs from the PMML's fields (shape
[-1, 1]; [n] accepted and answered as [n]), dynamic batching, missing values (JSON null over
REST, NaN over gRPC), errors by Java exception class, worker threads."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from pmml_models import CLASSIFIER, add_sub_pmml, classifier_pmml, echo_text_pmml

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import InvalidInput
from shipyard.serving.http.codec import decode_infer_request
from shipyard.serving.model import ModelVersion
from shipyard.serving.runtimes import create_runtime
from shipyard.serving.runtimes.testing import ConformanceCase, check_runtime

pytest.importorskip("jpmml_evaluator")


def _version(folder: Path, name: str = "m") -> ModelVersion:
    (folder / "1").mkdir(parents=True)
    classifier_pmml(folder / "1")
    mv = ModelVersion(name, 1, folder / "1", ModelConfig.model_validate({"name": name}))
    mv.load()
    assert mv.ready, mv.reason
    return mv


def _infer(mv: ModelVersion, body: bytes) -> dict[str, np.ndarray]:
    request = decode_infer_request(body, None, mv.name, "")
    response = asyncio.run(mv.infer(request))
    for t in response.outputs:
        assert t.shape == t.data.shape, (t.name, t.shape, t.data.shape)
    return {t.name: t.data for t in response.outputs}


def _reference(rows: dict[str, list[object]]) -> dict[str, list[object]]:
    """The same rows scored by jpmml_evaluator directly."""
    import pandas as pd
    from jpmml_evaluator import make_evaluator

    evaluator = make_evaluator(CLASSIFIER)
    return evaluator.evaluateAll(pd.DataFrame(rows)).to_dict("list")  # type: ignore[no-any-return]


def test_conformance(tmp_path: Path) -> None:
    check_runtime(ConformanceCase("pmml", add_sub=add_sub_pmml, echo_text=echo_text_pmml,
                                  fieldwise=True), tmp_path)


def test_metadata_follows_the_data_dictionary(tmp_path: Path) -> None:
    classifier_pmml(tmp_path)
    rt = create_runtime(tmp_path, ModelConfig.model_validate({"name": "m"}))
    assert type(rt).__name__ == "PmmlRuntime"  # found by its file name, model.pmml
    rt.load()
    inputs, outputs = rt.metadata()
    assert [(s.name, s.datatype, s.shape) for s in inputs] == [
        ("sex", "BYTES", (-1, 1)), ("age", "FP64", (-1, 1)), ("n", "INT64", (-1, 1))]
    assert [(s.name, s.datatype, s.shape) for s in outputs] == [
        ("y", "BYTES", (-1, 1)), ("probability(no)", "FP64", (-1, 1)),
        ("probability(yes)", "FP64", (-1, 1))]
    # one value per row: Triton's dims [1], so the server batches the model
    mv = _version(tmp_path / "served")
    try:
        assert mv.max_batch_size > 0
        assert [s.shape for s in mv.inputs] == [(-1, 1)] * 3
    finally:
        mv.unload()


@pytest.mark.parametrize("shape", [[3, 1], [3]], ids=["column", "vector"])
def test_json_null_is_a_missing_value(tmp_path: Path, shape: list[int]) -> None:
    mv = _version(tmp_path)
    dims = str(shape).encode()
    try:
        body = (b'{"inputs": ['
                b'{"name": "sex", "datatype": "BYTES", "shape": ' + dims + b','
                b' "data": ["male", null, "female"]},'
                b'{"name": "age", "datatype": "FP64", "shape": ' + dims + b','
                b' "data": [null, 40, 2.5]},'
                b'{"name": "n", "datatype": "INT64", "shape": ' + dims + b','
                b' "data": [1, 2, 3]}]}')
        got = _infer(mv, body)
        # answered in the shape the fields came in: [n, 1], or [n] for a request of [n]s
        assert {v.shape for v in got.values()} == {tuple(shape)}
        want = _reference({"sex": ["male", None, "female"], "age": [None, 40.0, 2.5],
                           "n": [1, 2, 3]})
        assert got["y"].reshape(-1).tolist() == want["y"]
        np.testing.assert_allclose(got["probability(yes)"].reshape(-1), want["probability(yes)"])
        # age missing is replaced by 30, as the MiningField says
        same = _reference({"sex": ["male"], "age": [30.0], "n": [1]})
        p_yes = got["probability(yes)"].reshape(-1)
        assert p_yes[0] == pytest.approx(same["probability(yes)"][0])
        # NaN (how gRPC and the binary extension say missing) scores as null does
        nan = mv.runtime.run(  # type: ignore[union-attr]
            {"sex": np.array([["male"]], object), "age": np.array([[np.nan]]),
             "n": np.array([[1]])}, ["probability(yes)"])[0]
        assert nan.shape == (1, 1) and nan[0, 0] == pytest.approx(p_yes[0])
    finally:
        mv.unload()


def test_requests_are_batched_and_answered_in_their_own_shapes(tmp_path: Path) -> None:
    """Requests of [n, 1] and of [n] (and one mixing both) queue into the same batches; each
    gets its own rows back, [n] only where every input came as [n]."""
    mv = _version(tmp_path)
    rng = np.random.default_rng(1)
    requests = []
    for i in range(12):
        n = int(rng.integers(1, 5))
        rows = {"sex": rng.choice(["male", "female"], n).tolist(),
                "age": rng.uniform(1, 80, n).round(1).tolist(),
                "n": rng.integers(0, 5, n).tolist()}
        shapes = {name: [n, 1] if i % 3 == 0 else [n] if i % 3 == 1 else
                  ([n] if name == "age" else [n, 1]) for name in rows}
        datatypes = {"sex": "BYTES", "age": "FP64", "n": "INT64"}
        body = json.dumps({"inputs": [
            {"name": name, "datatype": datatypes[name], "shape": shapes[name], "data": values}
            for name, values in rows.items()]}).encode()
        requests.append((rows, [n] if i % 3 == 1 else [n, 1], body))

    async def all_at_once() -> list[dict[str, np.ndarray]]:
        answers = await asyncio.gather(*(
            mv.infer(decode_infer_request(body, None, mv.name, "")) for _, _, body in requests))
        return [{t.name: t.data for t in a.outputs} for a in answers]

    try:
        answers = asyncio.run(all_at_once())
        stats = mv.stats
        for (rows, shape, _), got in zip(requests, answers, strict=True):
            want = _reference(rows)
            assert got["y"].shape == tuple(shape)
            assert got["y"].reshape(-1).tolist() == want["y"]
            np.testing.assert_allclose(got["probability(yes)"].reshape(-1),
                                       want["probability(yes)"], rtol=1e-12)
        # the batcher merged requests (the shapes give them one batch key)
        assert stats.inference_count == sum(len(rows["n"]) for rows, _, _ in requests)
        assert stats.execution_count < len(requests), stats.execution_count
    finally:
        mv.unload()


def test_a_field_of_two_columns_is_refused(tmp_path: Path) -> None:
    mv = _version(tmp_path)
    try:
        body = (b'{"inputs": ['
                b'{"name": "sex", "datatype": "BYTES", "shape": [1, 2],'
                b' "data": ["male", "male"]},'
                b'{"name": "age", "datatype": "FP64", "shape": [1, 1], "data": [1]},'
                b'{"name": "n", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}')
        with pytest.raises(InvalidInput, match=r"'sex' of model 'm' expects shape \[-1, 1\]"):
            _infer(mv, body)
    finally:
        mv.unload()


def test_null_for_another_runtime_is_refused_as_before(tmp_path: Path) -> None:
    from onnx_models import add_sub_model

    (tmp_path / "1").mkdir()
    add_sub_model(tmp_path / "1" / "model.onnx")
    mv = ModelVersion("a", 1, tmp_path / "1", ModelConfig.model_validate({"name": "a"}))
    mv.load()
    assert mv.ready, mv.reason
    row = [0.0] * 15
    body = ('{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": '
            f'[null, {", ".join(map(str, row))}]}}, {{"name": "INPUT1", "datatype": "FP32", '
            f'"shape": [1, 16], "data": [{", ".join(["1.0"] * 16)}]}}]}}').encode()
    try:
        with pytest.raises(InvalidInput) as refused:
            _infer(mv, body)
        assert refused.value.message == (
            "input 'INPUT0': FP32 data must be numbers, got None (element 0)")
    finally:
        mv.unload()
    # and a null next to a real error keeps the decoder's first message
    bad = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [null, "a"]}]}'
    with pytest.raises(InvalidInput, match="got None"):
        decode_infer_request(bad, None, "m", "")
    # INT64 and BOOL carry no missing values
    for datatype in ("INT64", "BOOL"):
        body = ('{"inputs": [{"name": "x", "datatype": "' + datatype
                + '", "shape": [1], "data": [null]}]}').encode()
        with pytest.raises(InvalidInput, match="got None"):
            decode_infer_request(body, None, "m", "")


def test_invalid_category_is_invalid_input_naming_the_field(tmp_path: Path) -> None:
    mv = _version(tmp_path)
    try:
        body = (b'{"inputs": ['
                b'{"name": "sex", "datatype": "BYTES", "shape": [2], "data": ["male", "robot"]},'
                b'{"name": "age", "datatype": "FP64", "shape": [2], "data": [1, 2]},'
                b'{"name": "n", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}')
        with pytest.raises(InvalidInput) as refused:
            _infer(mv, body)
        message = refused.value.message
        assert "'m'" in message and '"sex"' in message and "robot" in message, message
        assert "(row 1)" in message
    finally:
        mv.unload()


def test_predict_from_many_threads(tmp_path: Path) -> None:
    classifier_pmml(tmp_path)
    rt = create_runtime(tmp_path, ModelConfig.model_validate({"name": "m"}))
    rt.load()
    n = 50
    inputs = {"sex": np.array(["male", "female"] * n, object),
              "age": np.linspace(1, 80, 2 * n), "n": np.arange(2 * n)}
    (want,) = rt.run(inputs, ["probability(yes)"])
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(5):
            results.append(rt.run(inputs, ["probability(yes)"])[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_missing_java_and_missing_package_are_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import jpype

    from shipyard.serving.runtimes import pmml

    classifier_pmml(tmp_path)
    monkeypatch.setattr(pmml._Jvm, "started", None)

    def no_java(cls: type) -> None:
        raise jpype.JVMNotFoundException("No JVM shared library file (libjvm.so) found")

    monkeypatch.setattr(pmml._Jvm, "__init__", no_java)
    rt = create_runtime(tmp_path, ModelConfig.model_validate({"name": "m"}))
    with pytest.raises(InvalidInput, match="apt-get install default-jre-headless"):
        rt.load()
    monkeypatch.setitem(sys.modules, "jpmml_evaluator", None)
    with pytest.raises(InvalidInput, match=r"pip install 'shipyard\[pmml\]'"):
        rt.load()
