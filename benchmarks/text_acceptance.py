"""Text acceptance: both SMS spam examples trained through ``shipyard train``, side by side.

    python benchmarks/text_acceptance.py [--output DIR] [--no-write]

Trains ``examples/sms_spam_tfidf/experiment.yaml`` and
``examples/sms_spam_transformer/experiment.yaml`` one after the other (the same split: both use
seed 0 and the same split fractions), each as its own ``shipyard train`` process, and reads their
run directories: test accuracy, the spam class's F1 / precision / recall, validation accuracy,
the fit's seconds and the whole command's wall time on this CPU, the model's size and the ONNX
agreement check. The section "Text experiments: SMS spam through `shipyard train`" of
docs/benchmarks.md is replaced unless ``--no-write``. Takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from doc_sections import write_section  # noqa: E402

EXAMPLES = {"TF-IDF + linear SVM": ROOT / "examples" / "sms_spam_tfidf" / "experiment.yaml",
            "Transformer encoder": ROOT / "examples" / "sms_spam_transformer" / "experiment.yaml"}
GOALS = {"accuracy": 0.985, "f1_spam": 0.93}


def _train(experiment: Path, out: Path) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shipyard", "train", str(experiment), "--quiet",
                    "--output", str(out)], check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    read = {name: json.loads((out / f"{name}.json").read_text())
            for name in ("metrics", "run", "export")}
    return read, wall


def _row(label: str, read: dict[str, Any], wall: float) -> dict[str, Any]:
    test, val = read["metrics"]["test"], read["metrics"]["validation"]
    info, export = read["run"], read["export"]
    agreement = export.get("agreement") or {}
    return {"model": label, "accuracy": test["accuracy"], "f1_spam": test["f1_spam"],
            "precision_spam": test["precision_spam"], "recall_spam": test["recall_spam"],
            "val_accuracy": val.get("accuracy"), "fit_s": info["timings_s"].get("fit"),
            "wall_s": wall, "onnx_kib": (export.get("bytes") or 0) / 1024,
            "parameters": info.get("parameters"),
            "agreement": agreement.get("max_abs_diff"), "passed": agreement.get("passed"),
            "split": (info["data"]["train"], info["data"]["validation"] or 0,
                      info["data"]["test"])}


def _section(rows: list[dict[str, Any]], started: str) -> str:
    def goal(key: str, value: float) -> str:
        return f"{value:.4f} {'PASS' if value >= GOALS[key] else 'MISS'}"

    lines = [
        "## Text experiments: SMS spam through `shipyard train`", "",
        f"Written by `python benchmarks/text_acceptance.py` on {started} UTC, one run, "
        f"{os.cpu_count()} CPUs ({platform.processor() or 'cpu'}), alone on the machine. "
        "Both examples read `../shared/data/sms_spam/SMSSpamCollection` (5,574 messages, 747 "
        "spam) and split it the same way (seed 0, stratified: "
        + "; ".join(f"{r['model']} {r['split'][0]:,} train / {r['split'][1]:,} validation / "
                    f"{r['split'][2]:,} test" for r in rows)
        + "). Goals (the issue's): test accuracy >= 0.985 for both, spam F1 >= 0.93 "
        "for the Transformer.", "",
        "| model | test accuracy | spam F1 | spam precision | spam recall | val accuracy "
        "| fit s | whole command s | ONNX KiB | ONNX vs reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        check = "n/a" if r["agreement"] is None else \
            f"{r['agreement']:.1e} {'PASS' if r['passed'] else 'FAIL'}"
        lines.append(
            f"| {r['model']} | {goal('accuracy', r['accuracy'])} | "
            f"{goal('f1_spam', r['f1_spam'])} | {r['precision_spam']:.4f} | "
            f"{r['recall_spam']:.4f} | {r['val_accuracy']:.4f} | {r['fit_s']:.1f} | "
            f"{r['wall_s']:.1f} | {r['onnx_kib']:,.0f} | {check} |")
    lines += ["", "The whole command includes starting Python, loading the table, the chain, "
              "the tokenizer (Transformer), scoring, plots and the ONNX export with its check. "
              "Each run's report.md lists its most confidently wrong test messages.", "",
              "The next section serves this Transformer run: `python "
              "benchmarks/text_acceptance.py --output /tmp/acc && shipyard publish /tmp/acc/run1 "
              "--repo /tmp/textrepo --model sms-transformer && python benchmarks/text_bench.py "
              "--repo /tmp/textrepo --model sms-transformer`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for the two run directories (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.output or Path(tmp)
        rows = []
        for i, (label, experiment) in enumerate(EXAMPLES.items()):
            read, wall = _train(experiment, base / f"run{i}")
            rows.append(_row(label, read, wall))
            print(f"{label}: test accuracy {rows[-1]['accuracy']:.4f}, spam F1 "
                  f"{rows[-1]['f1_spam']:.4f}, fit {rows[-1]['fit_s']:.1f} s, wall "
                  f"{wall:.1f} s", flush=True)
    section = _section(rows, started)
    print(section)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "text-acceptance", section)


if __name__ == "__main__":
    main()
