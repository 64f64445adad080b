"""docs/reference/: the YAML references are generated from the schemas, kept current, and
document every field (type, default, docstring)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import ROOT
from pydantic import BaseModel, Field

SCRIPT = ROOT / "scripts" / "gen_reference.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_current() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr


def _rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table (cells split on unescaped pipes)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows.append(cells)
    return rows


@pytest.mark.parametrize("name", ["experiment.md", "config.md", "server.md"])
def test_every_field_has_a_type_a_default_and_a_meaning(gen: ModuleType, name: str) -> None:
    rows = _rows(gen.DOCUMENTS[name]())
    assert len(rows) > 20
    undocumented = [r[0] for r in rows if len(r) != 4 or not all(r)]
    assert not undocumented


def test_every_schema_field_is_listed(gen: ModuleType) -> None:
    from shipyard.repository.config import ModelConfig
    from shipyard.training.config import Experiment, ImageExperiment
    from shipyard.training.text_config import TextExperiment

    listed = {r[0].strip("`") for name in ("experiment.md", "config.md")
              for r in _rows(gen.DOCUMENTS[name]())}
    for schema in (ModelConfig, Experiment, ImageExperiment, TextExperiment):
        assert set(schema.model_fields) <= listed, schema.__name__


class _Inner(BaseModel):
    """An inner section."""

    depth: int = Field(3, ge=1)
    """How deep, in metres."""


class _Outer(BaseModel):
    """The file."""

    title: str
    """What it is called."""
    inner: _Inner = Field(default_factory=_Inner)
    """The inner part."""
    mode: str | None = None


def test_the_generator_reads_docstrings_types_and_defaults(gen: ModuleType) -> None:
    ref = gen.Reference()
    ref.add(_Outer, "the whole file")
    text = "\n".join(ref.sections)
    rows = {r[0]: r for r in _rows(text)}
    assert rows["`title`"] == ["`title`", "string", "**required**", "What it is called."]
    assert rows["`inner`"][1] == "[_Inner](#_inner)" and rows["`inner`"][2] == "(its defaults)"
    assert rows["`depth`"] == ["`depth`", "integer (≥ 1)", "`3`", "How deep, in metres."]
    assert rows["`mode`"][1:3] == ["string \\| null", "`null`"]
    assert rows["`mode`"][3] == ""  # no docstring: the completeness test above would fail
