"""Ray smoke tests: ``shipyard train --ray`` (Ray Train's TorchTrainer, 2 workers, the digits
CNN) and :func:`shipyard.integrations.ray.serve_repository` (Ray Serve hosting the demo
``risk`` model) against the normal server. One local Ray for the module (tens of seconds of
start-up on 2 cores). ``dev`` brings ``shipyard[ray]``, so a missing Ray fails here (a broken
install), never skips. The option mistakes need no Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEMO_REPOSITORY, SHARED, ServerProcess
from typer.testing import CliRunner

from shipyard.cli import app
from shipyard.training.distributed import ENV_DIGESTS

TINY_CNN = {"blocks": [{"channels": 8}], "head": {"hidden": [16]}}


def _digits() -> dict[str, Any]:
    return {
        "name": "digits-ray",
        "data": {"source": "sklearn:digits", "size": 8, "limit": 600},
        "model": {"family": "torch", "architecture": "cnn", "params": TINY_CNN},
        "training": {"epochs": 2, "batch_size": 16, "optimizer": {"lr": 0.01}},
        "export": {"torch_program": False},
    }


@pytest.fixture(scope="module")
def ray_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray for the module; its workers inherit the image cache and the digests
    folder (set before Ray starts). Yields the digests folder."""
    import ray  # dev installs shipyard[ray]: an ImportError here is a broken install
    import ray.serve
    import ray.train.torch

    digests = tmp_path_factory.mktemp("digests")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIPYARD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "images"))
        mp.setenv(ENV_DIGESTS, str(digests))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        t0 = time.perf_counter()
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        print(f"\nray.init: {time.perf_counter() - t0:.1f} s")
        try:
            yield digests
        finally:
            ray.shutdown()


def test_ray_is_imported_only_when_used() -> None:
    """The package, the train command and the Ray Train launcher load neither Ray nor the
    serving half; only the Ray Serve module does (in a fresh interpreter)."""
    code = ("import sys, shipyard.integrations.ray, shipyard.integrations.ray._train, "
            "shipyard.cli\nprint('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert not [m for m in out if m == "ray" or m.startswith(("ray.", "shipyard.serving"))]


@pytest.mark.parametrize(("args", "words"), [
    (["--num-workers", "2"], "--num-workers goes with --ray"),
    (["--ray-address", "auto"], "--ray-address goes with --ray"),
    (["--ray", "--nproc-per-node", "2"], "choose one"),
    (["--ray", "--num-workers", "0"], "--num-workers: 0 is below 1"),
    (["--ray", "--num-workers", "3"], "batch_size: 16"),
])
def test_ray_option_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                      words: str) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(_digits()), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "-o", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_sklearn_experiments_are_refused_under_ray(tmp_path: Path) -> None:
    titanic = {"name": "titanic-ray", "task": "binary",
               "data": {"source": str(SHARED / "data" / "titanic" / "titanic3.csv"),
                        "target": "survived"},
               "features": {"pclass": "categorical", "sex": "categorical", "fare": "numeric"},
               "model": {"type": "logistic_regression"}}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(titanic), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "--ray"])
    assert result.exit_code == 2
    assert "--ray: model family" in result.output and "leave out --ray" in result.output


def test_ray_train_two_workers_writes_one_run(ray_env: Path, tmp_path: Path) -> None:
    from shipyard.training.run import Run

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(_digits()), encoding="utf-8")
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["train", str(config), "-o", str(tmp_path / "run"),
                                      "--ray", "--num-workers", "2", "--json"])
    print(f"\nRay Train, 2 workers, 2 epochs: {time.perf_counter() - t0:.1f} s")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    run = Run.load(tmp_path / "run")
    assert run.metrics == metrics
    accuracy = run.metrics["test"]["accuracy"]
    assert accuracy is not None and accuracy > 0.5, run.metrics  # 10 classes: chance is 0.1
    assert (run.path / "model.onnx").is_file() and (run.path / "train.log").is_file()
    # two ranks of one process group trained together and ended with the same weights
    ranks = [json.loads((ray_env / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    # rank 1 wrote nothing: the only run folder is rank 0's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "run"]


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def _get(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_ray_serve_answers_like_the_server(ray_env: Path, demo_server: ServerProcess) -> None:
    from ray import serve
    from sklearn.datasets import load_breast_cancer

    from shipyard.integrations.ray import http_url, serve_repository

    rows = load_breast_cancer().data[:3].astype("float32")
    body = {"id": "q1", "inputs": [{"name": "features", "shape": list(rows.shape),
                                    "datatype": "FP32", "data": rows.ravel().tolist()}]}
    t0 = time.perf_counter()
    serve_repository(DEMO_REPOSITORY, port=None, num_cpus=0.5, route_prefix="/shipyard",
                     model_control="explicit", load_models=["risk"])
    print(f"\nRay Serve start (proxy, controller, replica, risk loaded): "
          f"{time.perf_counter() - t0:.1f} s")
    try:
        # under a route prefix the routes answer below it
        ray_url, plain_url = http_url() + "/shipyard", f"http://{demo_server.http_url}"
        assert _get(f"{ray_url}/v2/health/ready") == (200, {"ready": True})
        for path in ("/v2/models/risk", "/v2/models/risk/config"):
            assert _get(ray_url + path) == _get(plain_url + path), path
        status, answer = _post(f"{ray_url}/v2/models/risk/infer", body)
        assert status == 200
        assert answer == _post(f"{plain_url}/v2/models/risk/infer", body)[1]
        scores = answer["outputs"][0]["data"]
        assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
        # an error answers with the server's status and message
        bad = {"inputs": [{"name": "features", "shape": [1, 29], "datatype": "FP32",
                           "data": [0.0] * 29}]}
        with pytest.raises(urllib.error.HTTPError) as ray_err:
            _post(f"{ray_url}/v2/models/risk/infer", bad)
        with pytest.raises(urllib.error.HTTPError) as plain_err:
            _post(f"{plain_url}/v2/models/risk/infer", bad)
        assert ray_err.value.code == plain_err.value.code == 400
        assert json.loads(ray_err.value.read()) == json.loads(plain_err.value.read())
    finally:
        serve.shutdown()
