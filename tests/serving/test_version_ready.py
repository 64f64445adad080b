"""``/v2/models/{m}/versions/{v}/ready`` of a version that was tried and failed answers 503
with the reason (its load failed, or its model's config.yaml did), as the README says; an
unknown model or version stays 404."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import DEMO_REPOSITORY, http_call, start_server


def test_failed_versions_are_503_and_unknown_ones_404(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(DEMO_REPOSITORY / "risk", repo / "risk")
    (repo / "bad_file" / "1").mkdir(parents=True)
    (repo / "bad_file" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    shutil.copytree(DEMO_REPOSITORY / "risk", repo / "bad_config")
    (repo / "bad_config" / "config.yaml").write_text("max_batch_size: many\n")
    server = start_server(repo)
    try:
        for model in ("bad_file", "bad_config"):
            status, _, body = http_call(server, "GET", f"/v2/models/{model}/versions/1/ready")
            answer = json.loads(body)
            assert status == 503, (model, body)
            assert answer["ready"] is False and answer["name"] == model
            assert answer["reason"], answer
            assert http_call(server, "GET", f"/v2/models/{model}/ready")[0] == 503
        assert "max_batch_size" in json.loads(http_call(
            server, "GET", "/v2/models/bad_config/versions/1/ready")[2])["reason"]
        assert http_call(server, "GET", "/v2/models/risk/versions/1/ready")[0] == 200
        assert http_call(server, "GET", "/v2/models/risk/versions/9/ready")[0] == 404
        assert http_call(server, "GET", "/v2/models/nothing/versions/1/ready")[0] == 404
    finally:
        server.stop()
