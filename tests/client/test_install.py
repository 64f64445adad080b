"""The client installs and imports without the server: ``shipyard.client`` pulls in none of
onnxruntime, pydantic(-settings), the server, scikit-learn or torch, and the ``client`` extra
lists none of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

from conftest import ROOT

FORBIDDEN_MODULES = ["onnxruntime", "pydantic", "pydantic_settings", "shipyard.serving",
                     "shipyard.repository", "shipyard.transforms", "sklearn", "torch",
                     "pandas", "PIL", "tokenizers", "orjson", "yaml", "typer"]
SERVER_PACKAGES = ["onnxruntime", "pydantic", "pydantic-settings", "uvicorn", "uvloop",
                   "httptools", "prometheus-client", "orjson", "pyyaml", "scikit-learn",
                   "torch", "pillow", "tokenizers", "pandas"]

_PROBE = """
import json, sys
import shipyard.client as c
client = c.Client("grpc://127.0.0.1:1")   # a channel opens lazily: nothing to reach
rest = c.AsyncClient("http://127.0.0.1:1")
from shipyard.client._vocab import ModelInfo, encode_items
info = ModelInfo.from_metadata({"name": "m", "inputs": [{"name": "t", "datatype": "BYTES",
    "shape": [-1, 1]}], "outputs": [], "properties": {"preprocess": "text_normalize"}})
encode_items(info, ["hello"])
client.close()
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_client_loads_no_server_module() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    loaded = set(json.loads(out))
    assert "shipyard.client" in loaded and "grpc" in loaded and "httpx" in loaded
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".")
                                          for f in FORBIDDEN_MODULES))
    assert not bad, f"shipyard.client imported {bad}"


def test_the_client_extra_lists_no_server_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extra = project["project"]["optional-dependencies"]["client"]
    names = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower() for req in extra}
    assert {"numpy", "httpx", "grpcio", "protobuf"} <= names
    assert not names & set(SERVER_PACKAGES), names & set(SERVER_PACKAGES)
    assert not any(n.startswith("shipyard") for n in names), "no other extra inside it"
    assert "shipyard[client]" in project["project"]["optional-dependencies"]["dev"]
