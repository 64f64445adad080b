"""benchmarks/device/: the one script a session runs on the device tool's GPU machine must be
right the first time (15 minutes of device time a task, start-up included). What can be checked
without that machine is checked here: every benchmark option run.sh passes exists, every step
its header names is a step it runs, every project dependency reaches the machine (its image or a
carried wheel), and take_sections.py moves only the device sections."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

DEVICE = ROOT / "benchmarks" / "device"
RUN = (DEVICE / "run.sh").read_text()
BUNDLE = (DEVICE / "bundle.sh").read_text()


#: run.sh's arrays of options (a GPU run's and a rehearsal's) and the script each goes to
ARRAYS = {"torch_args": "benchmarks/torch_bench.py", "gpu_training": "benchmarks/gpu_training.py",
          "workers": "benchmarks/workers_bench.py"}


def _commands() -> list[tuple[str, list[str]]]:
    """(benchmark script, the options run.sh passes it) for every Python benchmark it runs:
    on its command line and in the arrays it expands there (every assignment of each)."""
    joined = RUN.replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for m in re.finditer(r'"\$py" (benchmarks/[\w/]+\.py)([^\n;]*)', joined):
        found.setdefault(m.group(1), []).extend(re.findall(r"(?<!\S)(--[\w-]+)", m.group(2)))
    for array, script in ARRAYS.items():
        assignments = re.findall(rf"^\s*{array}=\(([^)]*)\)", RUN, re.M)
        assert len(assignments) == 2, f"{array}: a GPU run's and a rehearsal's"
        assert f'"${{{array}[@]}}"' in found_line(script), (array, script)
        for body in assignments:
            found.setdefault(script, []).extend(re.findall(r"(?<!\S)(--[\w-]+)", body))
    return sorted((script, sorted(set(opts))) for script, opts in found.items())


def found_line(script: str) -> str:
    """The line of run.sh that runs ``script``."""
    joined = RUN.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if f'"$py" {script}' in ln]
    return line


def test_run_sh_runs_the_benchmarks_it_names() -> None:
    scripts = {s for s, _ in _commands()}
    assert scripts == {"benchmarks/torch_bench.py", "benchmarks/gpu_training.py",
                       "benchmarks/workers_bench.py"}
    for script in scripts:
        assert (ROOT / script).is_file(), script


@pytest.mark.parametrize("script,options", _commands(), ids=lambda v: str(v))
def test_every_option_run_sh_passes_exists(script: str, options: list[str]) -> None:
    done = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", done.stdout), \
            f"{script} has no {option} (run.sh passes it)"


def test_the_steps_in_the_header_are_the_steps_it_runs() -> None:
    header = re.search(r"\|\| steps=\(([^)]*)\)", RUN)
    assert header is not None
    default = header.group(1).split()
    arms = re.findall(r"^    (\w+)\)$", RUN, re.M)
    assert arms == default == ["tests", "torch", "training", "workers"]
    for step in default:  # each is documented in the header comment
        assert re.search(rf"^#   {step} ", RUN, re.M), step


def _names(array: str) -> set[str]:
    m = re.search(rf"^{array}=\((.*?)\)$", BUNDLE, re.M | re.S)
    assert m is not None, array
    body = re.sub(r"#[^\n]*", "", m.group(1))
    return {re.split(r"[=<>]", w.strip('"'))[0].lower().replace("_", "-")
            for w in body.split()}


def test_every_dependency_reaches_the_gpu_machine() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    needed = {re.split(r"[\s=<>!;\[]", req)[0].lower().replace("_", "-")
              for extra in ("serve", "train") for req in extras[extra]}
    image, wheels = _names("image_has"), _names("wheels")
    assert not image & wheels, f"both in the image and carried: {image & wheels}"
    missing = needed - image - wheels
    assert not missing, f"neither in the GPU image nor carried by bundle.sh: {missing}"


def test_take_sections_moves_only_the_device_sections(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from doc_sections import write_section

    doc, source = tmp_path / "doc.md", tmp_path / "source.md"
    base = "# Benchmarks\n\n## How to reproduce\n\nrun it\n"
    doc.write_text(base)
    source.write_text(base)
    write_section(doc, "workers", "## Workers here\n\n2 cores\n")
    write_section(source, "workers", "## Workers here\n\nchanged there\n")
    write_section(source, "torch-cuda", "## Torch runtime (CUDA)\n\nH200 rows\n")
    write_section(source, "workers-scaling", "## Scaling\n\n16 cores\n")
    done = subprocess.run([sys.executable, str(DEVICE / "take_sections.py"), str(source),
                           "--doc", str(doc)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "torch-cuda, workers-scaling" in done.stdout
    text = doc.read_text()
    assert "H200 rows" in text and "16 cores" in text
    assert "2 cores" in text and "changed there" not in text  # not a device section
    assert text.count("<!-- section:torch-cuda -->") == 1
    assert text.index("16 cores") < text.index("## How to reproduce")
