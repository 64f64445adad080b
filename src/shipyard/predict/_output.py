"""Predictions out: one record per input, as JSON lines or CSV.

A record holds the input's ``id`` and either its best ``label`` with its ``probability`` and
``labels`` (every class returned, best first, with its probability), or, for a model that names
no classes, ``outputs`` (each output's values for this input: a number, or a list); with
``--skip-errors``, a row that could not be predicted has ``error`` instead.

CSV columns are flat, fixed by the first prediction:

- a model whose labelled output returns every class: ``id,label,probability,p_<class>...``
  (classes in sorted order of their names);
- a model that returns its top k classes only (a ``top_k`` step):
  ``id,label,probability,label_2,probability_2,...``;
- a model without labels: ``id,<output>...`` (``<output>_<i>`` for an output of several values);
- and an ``error`` column with ``--skip-errors``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import IO, Any, Literal

from shipyard.client._vocab import Prediction
from shipyard.predict._source import PredictError

__all__ = ["OutputFormat", "RecordWriter", "error_record", "open_writer", "record"]

OutputFormat = Literal["csv", "jsonl"]


def _number(value: Any) -> Any:
    """JSON has no NaN: a missing value is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record(rid: int | str, prediction: Prediction) -> dict[str, Any]:
    """The record of one prediction (see the module docstring)."""
    if prediction.labels:
        return {"id": rid, "label": prediction.label,
                "probability": _number(prediction.probability),
                "labels": {lab.label: _number(lab.probability) for lab in prediction.labels}}
    outputs = prediction.to_dict()["outputs"]
    return {"id": rid, "outputs": {name: _number(v[0]) if len(v) == 1 else
                                   [_number(x) for x in v] for name, v in outputs.items()}}


def error_record(rid: int | str, message: str) -> dict[str, Any]:
    """The record of an input that could not be predicted (``--skip-errors``)."""
    return {"id": rid, "error": message}


class RecordWriter:
    """Writes records to a stream as JSON lines or CSV (the CSV header from the first
    prediction; records before it that are errors wait for it)."""

    def __init__(self, stream: IO[str], fmt: OutputFormat, *, every_class: bool,
                 errors_column: bool, close: bool) -> None:
        self._stream = stream
        self._fmt = fmt
        self._every_class = every_class
        self._errors_column = errors_column
        self._close = close
        self._csv: Any = None
        self._columns: list[str] | None = None
        self._waiting: list[dict[str, Any]] = []
        self.count = 0
        """Records written so far."""

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append records (in input order)."""
        if self._fmt == "jsonl":
            self._stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                       for r in records))
            self.count += len(records)
            return
        for r in records:
            if self._columns is None:
                if "error" in r:
                    self._waiting.append(r)
                    continue
                self._start_csv(r)
            self._csv_row(r)
            self.count += 1

    def _start_csv(self, first: dict[str, Any]) -> None:
        columns = ["id"]
        if "labels" in first:
            columns += ["label", "probability"]
            if self._every_class:
                columns += [f"p_{name}" for name in sorted(first["labels"])]
            else:
                for i in range(2, len(first["labels"]) + 1):
                    columns += [f"label_{i}", f"probability_{i}"]
        else:
            for name, value in first["outputs"].items():
                columns += [name] if not isinstance(value, list) else \
                    [f"{name}_{i}" for i in range(len(value))]
        if self._errors_column:
            columns.append("error")
        self._columns = columns
        self._csv = csv.writer(self._stream)
        self._csv.writerow(columns)
        waiting, self._waiting = self._waiting, []
        for r in waiting:
            self._csv_row(r)
            self.count += 1

    def _csv_row(self, r: dict[str, Any]) -> None:
        assert self._columns is not None
        cells: dict[str, Any] = {"id": r["id"]}
        if "error" in r:
            cells["error"] = r["error"]
        elif "labels" in r:
            cells["label"], cells["probability"] = r["label"], r["probability"]
            if self._every_class:
                cells.update({f"p_{name}": p for name, p in r["labels"].items()})
            else:
                for i, (name, p) in enumerate(list(r["labels"].items())[1:], start=2):
                    cells[f"label_{i}"], cells[f"probability_{i}"] = name, p
        else:
            for name, value in r["outputs"].items():
                if isinstance(value, list):
                    cells.update({f"{name}_{i}": v for i, v in enumerate(value)})
                else:
                    cells[name] = value
        self._csv.writerow(["" if cells.get(c) is None else cells[c] for c in self._columns])

    def close(self) -> None:
        """Write what waits (a CSV of errors only: ``id,error``) and close the file."""
        if self._fmt == "csv" and self._columns is None and self._waiting:
            self._columns = ["id", "error"]
            self._csv = csv.writer(self._stream)
            self._csv.writerow(self._columns)
            for r in self._waiting:
                self._csv_row(r)
                self.count += 1
            self._waiting = []
        self._stream.flush()
        if self._close:
            self._stream.close()


def open_writer(path: Path | None, fmt: OutputFormat | None, stdout: IO[str], *,
                every_class: bool, errors_column: bool) -> RecordWriter:
    """A writer to ``path`` (format from ``fmt``, else its suffix: ``.csv`` or ``.jsonl``),
    or to ``stdout`` (JSON lines unless ``fmt`` says csv)."""
    if path is None:
        return RecordWriter(stdout, fmt or "jsonl", every_class=every_class,
                            errors_column=errors_column, close=False)
    by_suffix: dict[str, OutputFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                          ".json": "jsonl"}
    chosen = fmt or by_suffix.get(path.suffix.lower())
    if chosen is None:
        raise PredictError(f"-o {str(path)!r}: no format for suffix {path.suffix!r}; name it "
                           ".csv or .jsonl, or pass --format csv|jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("w", encoding="utf-8", newline="" if chosen == "csv" else None)
    return RecordWriter(stream, chosen, every_class=every_class, errors_column=errors_column,
                        close=True)
