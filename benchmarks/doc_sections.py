"""docs/benchmarks.md is shared by several benchmark commands: each owns some ``## `` sections.

``serve_bench.py`` writes the serving core's sections; the runtime and pipeline benchmarks
(``pipeline_bench.py``, ``torch_bench.py``, ``pmml_bench.py``) each own one section, marked
``<!-- section:NAME -->`` on the line after its heading. :func:`write_section` replaces a
command's own section (or adds it before "How to reproduce") and leaves the rest alone;
:func:`owned_sections` gives serve_bench the marked sections to keep when it rewrites the file.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["owned_sections", "write_section"]

_MARK = "<!-- section:{} -->"
_HEADING = re.compile(r"^## ", re.M)
_ANY_MARK = re.compile(r"^<!-- section:([\w.-]+) -->$", re.M)


def _sections(text: str) -> list[str]:
    starts = [m.start() for m in _HEADING.finditer(text)]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def owned_sections(text: str) -> list[str]:
    """The sections of ``text`` that a benchmark other than serve_bench owns (marked)."""
    return [s for s in _sections(text) if _ANY_MARK.search(s)]


def write_section(doc: Path, name: str, section: str) -> None:
    """Replace (or add) the section ``name`` of ``doc`` with ``section`` (which starts with its
    ``## `` heading line); an unmarked section with the same heading is replaced too."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n\n"
    mark = _MARK.format(name)
    heading, _, body = section.strip().partition("\n")
    assert heading.startswith("## "), heading
    new = f"{heading}\n{mark}\n\n{body.strip()}\n\n"
    parts = _sections(text)
    head = text[: text.find("## ")] if parts else text
    kept = [s for s in parts if mark not in s and s.splitlines()[0] != heading]
    where = next((i for i, s in enumerate(kept) if s.startswith("## How to reproduce")),
                 len(kept))
    kept.insert(where, new)
    doc.write_text(head + "".join(kept).rstrip() + "\n", encoding="utf-8")
