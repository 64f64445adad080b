"""Import floors: the two halves meet only at the model repository (neither imports the
other), and inside the training half nothing imports upward (DESIGN.md section 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "shipyard"
TRAINING_HALF = ["data", "training", "evaluation", "export"]


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    return set(out.split())


def _imports(path: Path) -> list[str]:
    """Every module an ``import`` statement in ``path`` names (lazy ones inside functions too)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def _files(*parts: str) -> list[Path]:
    """The .py files of packages and modules under src/shipyard (missing ones: none yet)."""
    return [p for part in parts for p in ((SRC / part).rglob("*.py") if (SRC / part).is_dir()
                                          else [SRC / part] if (SRC / part).is_file() else [])]


def _offenders(files: list[Path], prefixes: tuple[str, ...]) -> list[str]:
    return [f"{p.relative_to(SRC)}: {n}" for p in files for n in _imports(p)
            if n == "" or any(n == x or n.startswith(x + ".") for x in prefixes)]


def test_serving_imports_nothing_of_the_training_half() -> None:
    modules = _imported("import shipyard.serving.server, shipyard.cli")
    leaked = {m for m in modules if m.split(".")[0] in ("sklearn", "pandas", "skl2onnx",
                                                         "matplotlib", "torch")
              or any(m.startswith(f"shipyard.{p}") for p in TRAINING_HALF)
              or m == "shipyard.errors"}
    assert not leaked


def test_training_half_never_imports_serving() -> None:
    files = [*_files(*TRAINING_HALF), SRC / "api.py", SRC / "_cli_train.py", SRC / "errors.py"]
    assert not _offenders(files, ("shipyard.serving",))
    modules = _imported("import shipyard.api, shipyard.training.trainer, shipyard.export.publish")
    assert not {m for m in modules if m.startswith("shipyard.serving")}


def test_the_training_errors_have_one_home() -> None:
    """shipyard.errors imports nothing of shipyard (every floor may import it), and nothing in
    src/ imports the old alias shipyard.data.errors."""
    assert not _offenders([SRC / "errors.py"], ("shipyard",))
    assert not _offenders(_files("."), ("shipyard.data.errors",))


def test_nothing_below_training_imports_it() -> None:
    """Floors: training -> {evaluation, export, data, models} -> errors; never the reverse."""
    below = _files("data", "evaluation", "export", "models", "errors.py")
    assert not _offenders(below, ("shipyard.training", "shipyard.api", "shipyard.cli"))
    modules = _imported("import shipyard.evaluation.scoring, shipyard.evaluation.report")
    assert not {m for m in modules if m.startswith(("shipyard.training", "shipyard.data"))}


def test_public_names_stay_importable() -> None:
    """The lazy package exports point at the modules the names live in now."""
    _imported("from shipyard.training import Evaluation, Experiment, Run, evaluate_run, "
              "load_experiment, train_experiment, MODELS\n"
              "from shipyard.evaluation import Evaluation, SplitScore, score_split, split_plots, "
              "importance_plot\n"
              "from shipyard.data import DataError\n"
              "from shipyard.data.errors import ConfigError, DataError, ExperimentError\n"
              "from shipyard import train, evaluate, publish")


def test_family_modules_load_only_when_their_family_runs() -> None:
    """The dispatcher knows family modules by name; torch is imported only by the torch
    trainers, the torch loop and export, the torch networks (training/torch*.py, _torch*.py,
    training/text_torch.py, export/torch_export.py, models/), pruning and optimising
    (export/prune.py, training/optimise.py) and the torch side of the image data (data/augment.py,
    data/image_loader.py). The experiment schema names TorchTraining
    (shipyard.training.torch, which imports no torch until fit runs)."""
    modules = _imported("import shipyard.training.trainer, shipyard.training.config")
    assert not {m for m in modules if m.split(".")[0] in ("sklearn", "torch", "matplotlib")
                or m.startswith(("shipyard.training.sklearn", "shipyard.training.torch_",
                                 "shipyard.training._torch"))}
    torch_home = [p for p in _files(*TRAINING_HALF, "models")
                  if p.parent.name == "models" or p.name.startswith(("torch", "_torch"))
                  or p.relative_to(SRC).as_posix() in ("data/augment.py", "data/image_loader.py",
                                                       "export/prune.py", "training/optimise.py",
                                                       "training/text_torch.py")]
    others = [p for p in _files(*TRAINING_HALF, "api.py", "_cli_train.py", "errors.py")
              if p not in torch_home]
    assert not _offenders(others, ("torch",))


def test_dir_lists_the_lazy_api_without_importing_it() -> None:
    """``dir(shipyard)`` (and each lazy package's) shows the public API before first use, and
    listing it imports nothing heavy; the names are exactly those that resolve."""
    import shipyard.api

    code = ("import shipyard, shipyard.data, shipyard.training, shipyard.export, "
            "shipyard.evaluation, shipyard.models\n"
            "for m in (shipyard, shipyard.data, shipyard.training, shipyard.export, "
            "shipyard.evaluation, shipyard.models):\n"
            "    print(m.__name__, ' '.join(n for n in dir(m) if not n.startswith('_')))\n")
    out = subprocess.run([sys.executable, "-c", code + "import sys\n"
                          "print('LOADED', ' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    listed = {line.split(" ", 1)[0]: line.split()[1:] for line in out.splitlines()
              if not line.startswith("LOADED")}
    loaded = set(out.split("LOADED", 1)[1].split())
    assert not {m for m in loaded if m.split(".")[0] in ("sklearn", "pandas", "torch", "onnx")
                or m == "shipyard.api"}
    assert set(shipyard.api.__all__) <= set(listed["shipyard"])
    for package, names in listed.items():
        module = __import__(package, fromlist=["_"])
        public = {n for n in getattr(module, "__all__", []) if not n.startswith("_")}
        assert public <= set(names), package
        for name in public:  # every listed name resolves
            assert getattr(module, name) is not None
