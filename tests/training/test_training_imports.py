"""The two halves meet only at the model repository: neither imports the other."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

TRAINING_HALF = ["data", "training", "evaluation", "export"]


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    return set(out.split())


def test_serving_imports_nothing_of_the_training_half() -> None:
    modules = _imported("import shipyard.serving.server, shipyard.cli")
    leaked = {m for m in modules if m.split(".")[0] in ("sklearn", "pandas", "skl2onnx",
                                                         "matplotlib", "torch")
              or any(m.startswith(f"shipyard.{p}") for p in TRAINING_HALF)}
    assert not leaked


def test_training_half_never_imports_serving() -> None:
    src = ROOT / "src" / "shipyard"
    files = [*(p for part in TRAINING_HALF for p in (src / part).rglob("*.py")),
             src / "api.py", src / "_cli_train.py"]
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("shipyard.serving")]
    assert not offenders
    modules = _imported("import shipyard.api, shipyard.training.trainer, shipyard.export.publish")
    assert not {m for m in modules if m.startswith("shipyard.serving")}
