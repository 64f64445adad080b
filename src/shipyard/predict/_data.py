"""Unlabelled data in, one item per row, streamed (bounded memory for big files).

What each kind of model takes (its :attr:`~shipyard.client.ModelInfo.kind`):

- raw columns (one input per column): a CSV file with a header, or a Parquet file; each value is
  converted to its column's datatype (an empty cell of a number column is a missing value);
  columns the model does not take are ignored (an id or target column, say);
- one numeric input (rows of numbers, e.g. the risk demo's 30 features): a CSV (a header is
  optional: a first row that is not all numbers is one) or a Parquet file, the values of a row in
  column order;
- images: a folder of PNG/JPEG files (searched recursively, sorted; other files are skipped and
  counted), or one image file;
- texts: a ``.txt`` file, one text a line (blank lines skipped).

Ids: the data row number (1 = the first row after a CSV's header), a value of ``id_column``, the
image's path relative to the folder, or the text's line number in the file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shipyard.client._vocab import ModelInfo, TensorInfo
from shipyard.predict._source import PredictError

__all__ = ["IMAGE_SUFFIXES", "DataSet", "Row", "read_data"]

#: file names an image folder's images end with (case-insensitive)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CSV = (".csv", ".tsv")
_PARQUET = (".parquet", ".pq")
_TEXT = (".txt",)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True, slots=True)
class Row:
    """One input: its id and its item, or why the item cannot be read."""

    id: int | str
    item: Any = None
    error: str | None = None


@dataclass
class DataSet:
    """The rows of a file or folder (read lazily) and what reading it found."""

    path: Path
    kind: str
    """csv, parquet, images or text."""
    rows: Iterator[Row]
    total: int | None = None
    """How many rows there are, where it is known without reading them all."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know (columns ignored, files skipped)."""


def _takes(info: ModelInfo) -> str:
    kind = info.kind
    if kind == "images":
        return "images (a folder of PNG/JPEG files)"
    if kind == "texts":
        return "texts (a .txt file, one text a line)"
    if kind == "columns":
        return f"columns {[s.name for s in info.inputs]} (a CSV or Parquet file)"
    return f"rows of numbers for input {info.inputs[0].name!r} (a CSV or Parquet file)"


def _wrong_kind(info: ModelInfo, path: Path, what: str) -> PredictError:
    return PredictError(f"model {info.name!r} takes {_takes(info)}; {str(path)!r} is {what}")


def convert(value: Any, datatype: str) -> Any:
    """A CSV cell (str) or a Parquet value as the Python value of a V2 ``datatype``: None for a
    missing number (NaN); ValueError naming what was expected otherwise."""
    if datatype == "BYTES":
        return "" if value is None else value
    text = value.strip() if isinstance(value, str) else value
    if text is None or text == "" or (isinstance(text, float) and math.isnan(text)):
        if datatype.startswith("FP"):
            return None
        raise ValueError(f"a {datatype} value is missing (only float columns take missing "
                         "values)")
    if datatype == "BOOL":
        if isinstance(text, bool):
            return text
        low = str(text).lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(f"{text!r} is not a boolean (true/false, 1/0)")
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is a boolean, not a {datatype} number")
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{text!r} is not a number ({datatype})") from None
    if datatype.startswith(("INT", "UINT")):
        if not number.is_integer():
            raise ValueError(f"{text!r} is not an integer ({datatype})")
        return int(number)
    return number


def _per_row(spec: TensorInfo) -> int | None:
    """Values per row of a one-input model (None when its shape leaves it open)."""
    dims = spec.shape[1:]
    return math.prod(dims) if all(d > 0 for d in dims) else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _header_names(info: ModelInfo, path: Path, header: Sequence[str]
                  ) -> tuple[list[str], list[str]]:
    """(the model's columns, the file's columns the model ignores); PredictError when the file
    lacks one of the model's columns."""
    names = [s.name for s in info.inputs]
    missing = [n for n in names if n not in header]
    if missing:
        raise PredictError(f"{str(path)!r} has no column(s) {missing} that model {info.name!r} "
                           f"takes; its header is {list(header)}; the model's columns are "
                           f"{names}")
    return names, [h for h in header if h not in names]


def _columns_rows(info: ModelInfo, records: Iterator[tuple[int, dict[str, Any]]],
                  id_column: str | None) -> Iterator[Row]:
    specs = info.inputs
    for number, record in records:
        rid: int | str = number if id_column is None else str(record.get(id_column))
        item: dict[str, Any] = {}
        try:
            for spec in specs:
                try:
                    item[spec.name] = convert(record.get(spec.name), spec.datatype)
                except ValueError as exc:
                    raise ValueError(f"row {number}, column {spec.name!r}: {exc}") from None
        except ValueError as exc:
            yield Row(rid, error=str(exc))
            continue
        yield Row(rid, item)


def _number_rows(info: ModelInfo, records: Iterator[tuple[int, Sequence[Any]]],
                 width: int | None) -> Iterator[Row]:
    spec = info.inputs[0]
    for number, values in records:
        if width is not None and len(values) != width:
            yield Row(number, error=f"row {number}: {len(values)} values, but model "
                      f"{info.name!r} takes {width} per row (input {spec.name!r} "
                      f"{list(spec.shape)})")
            continue
        row = []
        bad = None
        for j, value in enumerate(values):
            try:
                converted = convert(value, spec.datatype)
            except ValueError as exc:
                bad = f"row {number}, column {j + 1}: {exc}"
                break
            row.append(math.nan if converted is None else converted)
        yield Row(number, row) if bad is None else Row(number, error=bad)


def _csv(info: ModelInfo, path: Path, id_column: str | None) -> DataSet:
    fh: IO[str] = path.open(newline="", encoding="utf-8-sig")
    try:
        return _csv_rows(info, path, id_column, fh)
    except BaseException:
        fh.close()
        raise


def _csv_rows(info: ModelInfo, path: Path, id_column: str | None, fh: IO[str]) -> DataSet:
    reader = csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    first = next(reader, None)
    if first is None:
        raise PredictError(f"{str(path)!r} is empty; it needs a header and rows")
    notes: list[str] = []
    if info.kind == "columns":
        _, ignored = _header_names(info, path, first)
        if id_column is not None and id_column not in first:
            raise PredictError(f"--id-column: {str(path)!r} has no column {id_column!r}; its "
                               f"header is {first}")
        ignored = [c for c in ignored if c != id_column]
        if ignored:
            notes.append(f"{len(ignored)} column(s) the model does not take are ignored: "
                         + ", ".join(ignored[:8]) + (", ..." if len(ignored) > 8 else ""))

        def records() -> Iterator[tuple[int, dict[str, Any]]]:
            with fh:
                for number, cells in enumerate(reader, start=1):
                    if cells:
                        yield number, dict(zip(first, cells, strict=False))

        return DataSet(path, "csv", _columns_rows(info, records(), id_column), notes=notes)
    if id_column is not None:
        raise PredictError(f"--id-column: model {info.name!r} takes rows of numbers, whose "
                           "CSV has no named columns; drop --id-column")
    header = not all(_is_number(c) for c in first)

    def number_records() -> Iterator[tuple[int, Sequence[Any]]]:
        with fh:
            if not header:
                yield 1, first
            for number, cells in enumerate(reader, start=1 if header else 2):
                if cells:
                    yield number, cells

    return DataSet(path, "csv", _number_rows(info, number_records(), _per_row(info.inputs[0])))


def _parquet(info: ModelInfo, path: Path, id_column: str | None) -> DataSet:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise PredictError(f"reading {str(path)!r} needs pyarrow: pip install pyarrow (or "
                           "'shipyard[train]'), or pass a CSV file") from None
    try:
        source = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own error types
        raise PredictError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
    header = list(source.schema_arrow.names)
    total = source.metadata.num_rows

    def batches() -> Iterator[dict[str, Any]]:
        for batch in source.iter_batches(batch_size=1024):
            yield from batch.to_pylist()

    if info.kind == "columns":
        _header_names(info, path, header)
        if id_column is not None and id_column not in header:
            raise PredictError(f"--id-column: {str(path)!r} has no column {id_column!r}; its "
                               f"columns are {header}")
        records = ((i, r) for i, r in enumerate(batches(), start=1))
        return DataSet(path, "parquet", _columns_rows(info, records, id_column), total)
    rows = ((i, list(r.values())) for i, r in enumerate(batches(), start=1))
    return DataSet(path, "parquet", _number_rows(info, rows, _per_row(info.inputs[0])), total)


def _images(info: ModelInfo, path: Path) -> DataSet:
    if path.is_file():
        return DataSet(path, "images", iter([Row(path.name, path)]), 1)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise PredictError(f"{str(path)!r} holds no PNG/JPEG files ({len(files)} other files); "
                           f"model {info.name!r} takes images")
    notes = []
    if len(files) > len(images):
        notes.append(f"skipped {len(files) - len(images)} file(s) that are not PNG/JPEG")
    rows = (Row(p.relative_to(path).as_posix(), p) for p in images)
    return DataSet(path, "images", rows, len(images), notes)


def _texts(path: Path) -> DataSet:
    def rows() -> Iterator[Row]:
        with path.open(encoding="utf-8", errors="strict") as fh:
            number = 0
            while True:
                try:
                    line = fh.readline()
                except UnicodeDecodeError as exc:
                    yield Row(number + 1, error=f"line {number + 1}: not UTF-8 text "
                              f"({exc.reason})")
                    return
                if not line:
                    return
                number += 1
                text = line.rstrip("\r\n")
                if text.strip():
                    yield Row(number, text)

    return DataSet(path, "text", rows())


def read_data(path: Path, info: ModelInfo, *, id_column: str | None = None) -> DataSet:
    """The rows of ``path`` for model ``info`` (see the module docstring); PredictError for a
    missing file or data of the wrong kind for the model. A row whose value cannot be
    converted comes as a :class:`Row` with ``error`` (its row and column named)."""
    if not path.exists():
        raise PredictError(f"--data: {str(path)!r} not found")
    kind = info.kind
    suffix = path.suffix.lower()
    if path.is_dir():
        if kind != "images":
            raise _wrong_kind(info, path, "a folder")
        return _images(info, path)
    if suffix in IMAGE_SUFFIXES:
        if kind != "images":
            raise _wrong_kind(info, path, "an image")
        return _images(info, path)
    if suffix in _TEXT:
        if kind != "texts":
            raise _wrong_kind(info, path, "a text file")
        return _texts(path)
    if suffix in _CSV or suffix in _PARQUET:
        if kind in ("images", "texts"):
            raise _wrong_kind(info, path, "a table")
        return _csv(info, path, id_column) if suffix in _CSV else \
            _parquet(info, path, id_column)
    raise PredictError(f"--data: {str(path)!r}: unknown kind of file ({suffix or 'no suffix'}); "
                       "pass a .csv, .tsv, .parquet or .txt file or a folder of images")
