"""Copy the sections that ``benchmarks/device/run.sh`` wrote on the GPU machine into this
checkout's docs/benchmarks.md, leaving every other section as it is here.

    python benchmarks/device/take_sections.py FILE [--doc docs/benchmarks.md]

FILE is the ``benchmarks.md`` the run left under ``$OUT`` (the device tool's ``files_at``).
The sections taken are the ones the device steps own: ``torch-cuda`` (torch_bench.py --device
cuda), ``gpu-training`` (gpu_training.py) and ``workers-scaling`` (workers_bench.py
--scale-load); a step that did not run there leaves this checkout's section unchanged.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from doc_sections import owned_sections, write_section  # noqa: E402

DEVICE_SECTIONS = ("torch-cuda", "gpu-training", "workers-scaling")
_MARK = re.compile(r"^<!-- section:([\w.-]+) -->$", re.M)


def take(source: Path, doc: Path) -> list[str]:
    """Write ``source``'s device sections into ``doc``; the names taken."""
    taken = []
    old = {m.group(1): s for s in owned_sections(doc.read_text(encoding="utf-8"))
           if (m := _MARK.search(s))}
    for section in owned_sections(source.read_text(encoding="utf-8")):
        m = _MARK.search(section)
        if m and m.group(1) in DEVICE_SECTIONS and section != old.get(m.group(1)):
            write_section(doc, m.group(1), _MARK.sub("", section, count=1))
            taken.append(m.group(1))
    return taken


def main(argv: list[str] | None = None) -> int:
    """Take the sections and say which."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the run's benchmarks.md")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"take_sections: {args.source} not found", file=sys.stderr)
        return 2
    taken = take(args.source, args.doc)
    print(f"took {', '.join(taken) or 'nothing new'} into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
