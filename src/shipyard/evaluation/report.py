"""The Markdown report of a run or an evaluation, embedding its PNG plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReportData", "markdown_table", "render_report", "write_report"]


@dataclass
class ReportData:
    """What a report shows; every part but the title may be empty."""

    title: str
    """First heading."""
    description: str = ""
    """Paragraph under the title."""
    facts: list[tuple[str, str]] = field(default_factory=list)
    """Key facts (data, split, model, ...) as a two-column table."""
    metrics: dict[str, Mapping[str, float | None]] = field(default_factory=dict)
    """Split name -> metric -> value."""
    per_class: Mapping[str, Mapping[str, Any]] | None = None
    """Class -> precision, recall, f1, support (one split)."""
    per_class_split: str = "test"
    """Which split ``per_class`` describes."""
    plots: list[tuple[str, str]] = field(default_factory=list)
    """(caption, path relative to the report)."""
    columns: list[Mapping[str, Any]] = field(default_factory=list)
    """Resolved columns: name, type, impute, scale, encode, served datatype."""
    export: Mapping[str, Any] | None = None
    """``export.json`` content."""
    warnings: list[str] = field(default_factory=list)
    """Warnings raised while fitting (convergence and the like)."""
    notes: list[str] = field(default_factory=list)
    """Further Markdown lines after the export section (a torch run's training table)."""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines (numbers formatted as in the metrics tables)."""
    return _table(header, rows)


def _column_rows(columns: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for c in columns:
        steps = []
        if c.get("impute"):
            imp = c["impute"]
            if imp == "constant":
                imp += f" {c.get('fill_value')!r}"
            steps.append(f"impute {imp}")
        if c.get("type") == "numeric" and c.get("scale"):
            steps.append(f"scale {c['scale']}")
        if c.get("encode"):
            steps.append(f"encode {c['encode']}")
        if c.get("type") == "text":
            steps.append("TF-IDF")
        served = f"{'FP32' if c.get('type') == 'numeric' else 'BYTES'} [N, 1]"
        rows.append([f"`{c['name']}`", c.get("type"), served, ", ".join(steps) or "-"])
    return rows


def _export_lines(export: Mapping[str, Any]) -> list[str]:
    lines = ["## ONNX export", ""]
    if not export.get("converted"):
        reason = export.get("error") or "export disabled (export.onnx: false)"
        return [*lines, f"**Not exported.** {reason}", ""]
    lines.append(f"`{export.get('file') or 'model.onnx'}` ({export.get('bytes', 0) / 1024:.1f} "
                 f"KiB, opset {export.get('opset')}): "
                 + (export.get("summary") or "the whole pipeline, preprocessing included."))
    lines.append("")
    rows = [[f"input `{t['name']}`", t["datatype"], t["shape"]] for t in export.get("inputs", [])]
    rows += [[f"output `{t['name']}`", t["datatype"], t["shape"]]
             for t in export.get("outputs", [])]
    if len(rows) > 14:
        rows = [*rows[:12], ["...", "", f"{len(rows) - 12} more"]]
    lines += _table(["tensor", "datatype", "shape"], rows)
    agreement = export.get("agreement") or {}
    if agreement:
        verdict = "**passed**" if agreement.get("passed") else "**FAILED**"
        parts = [f"ONNX Runtime vs {export.get('reference', 'scikit-learn')} on the "
                 f"{agreement.get('split')} split "
                 f"({agreement.get('rows')} rows): {verdict}"]
        if "labels_identical" in agreement:
            parts.append(f"labels identical: {agreement['labels_identical']} "
                         f"({agreement.get('label_mismatches', 0)} mismatches)")
        if agreement.get("max_abs_diff") is not None:
            parts.append(f"max abs difference {_fmt(agreement['max_abs_diff'])}")
        if agreement.get("max_rel_diff") is not None:
            parts.append(f"max relative difference {_fmt(agreement['max_rel_diff'])}")
        parts.append(f"tolerance {_fmt(agreement.get('tolerance'))}")
        lines += ["", "; ".join(parts) + "."]
    return [*lines, ""]


def render_report(data: ReportData) -> str:
    """The report as Markdown text."""
    out = [f"# {data.title}", ""]
    if data.description:
        out += [data.description.strip(), ""]
    if data.facts:
        out += [*_table(["", ""], data.facts), ""]
    if data.metrics:
        splits = [s for s, m in data.metrics.items() if m]
        names: list[str] = []
        for s in splits:
            names += [k for k in data.metrics[s] if k not in names]
        out += ["## Metrics", ""]
        out += _table(["metric", *splits], [[n, *(data.metrics[s].get(n) for s in splits)]
                                            for n in names])
        out.append("")
    if data.per_class:
        out += [f"## Per class ({data.per_class_split})", ""]
        out += _table(["class", "precision", "recall", "f1", "support"],
                      [[c, v["precision"], v["recall"], v["f1"], v["support"]]
                       for c, v in data.per_class.items()])
        out.append("")
    if data.plots:
        out += ["## Plots", ""]
        for caption, rel in data.plots:
            out += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    if data.columns:
        out += ["## Columns", "", "In the order the model takes them; missing values are NaN "
                "for numbers and the empty string for text.", ""]
        out += _table(["column", "type", "served as", "preprocessing"], _column_rows(data.columns))
        out.append("")
    if data.export is not None:
        out += _export_lines(data.export)
    if data.notes:
        out += [*data.notes, ""]
    if data.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in data.warnings] + [""]
    return "\n".join(out)


def write_report(path: Path, data: ReportData) -> Path:
    """Write :func:`render_report` to ``path``."""
    path.write_text(render_report(data), encoding="utf-8")
    return path
