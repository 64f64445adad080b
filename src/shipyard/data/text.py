"""Reading a table of texts and their labels: CSV, TSV, or lines of ``label<TAB>text``.

The whole file is read into memory and decoded first (so an encoding error can name its byte),
then split into rows with Python's ``csv`` module: cells stay exactly as the file holds them
(no ``NA`` guessing, no type conversion). The text classification experiments read their data
with :func:`load_text_table`; the same texts then go through ``shipyard.transforms`` steps.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shipyard.errors import DataError

__all__ = ["SNIFF_LINES", "SNIFF_SEPARATORS", "Quoting", "TextTable", "load_text_table"]

#: How ``data.quoting`` treats ``"``: ``auto`` = CSV quoting unless the separator is a tab.
Quoting = Literal["auto", "csv", "none"]
#: The separators ``data.sep: null`` chooses from when the file's extension does not say.
SNIFF_SEPARATORS = "\t,;|"
#: How many of the file's first non-empty lines the separator is sniffed from.
SNIFF_LINES = 20
_BY_SUFFIX = {".tsv": "\t", ".tab": "\t", ".csv": ","}
_QUOTINGS = ("auto", "csv", "none")


@dataclass(frozen=True)
class TextTable:
    """The texts and labels of a file, in file order."""

    texts: list[str]
    """The text cells, exactly as in the file (not stripped, not normalised)."""
    labels: list[str]
    """The label cells as strings, leading and trailing whitespace stripped."""
    source: str
    """The path read (absolute)."""
    dropped: int
    """Rows dropped because their text or label was missing or empty (blank lines are not
    rows and are not counted)."""


def load_text_table(path: str | Path, *, text_column: str | int, label_column: str | int,
                    header: bool | None = None, sep: str | None = None,
                    encoding: str = "utf-8", quoting: Quoting = "auto") -> TextTable:
    """Read the texts and labels of ``path``.

    Parameters:
        text_column, label_column: a column name (needs a header row) or a 0-based position.
        header: whether the first row names the columns. ``None`` (default) detects it: with a
            column name the first row must hold the name(s); with positions only, the first
            row is a header when its label cell appears nowhere else in the label column while
            some other label repeats: the labels of a classification data set repeat, the name
            of their column does not. (A file of one or two data rows cannot show that: give
            ``header``.)
        sep: one character. ``None`` (default): tab for ``.tsv``/``.tab``, comma for ``.csv``,
            otherwise sniffed by ``csv.Sniffer`` from the first :data:`SNIFF_LINES` lines
            among :data:`SNIFF_SEPARATORS` (tab, comma, semicolon, bar).
        encoding: any Python codec (default ``utf-8``; a UTF-8 byte order mark is dropped), or
            ``auto``: UTF-8 if the bytes are valid UTF-8, else ``charset_normalizer``'s best
            guess. The guess is unreliable on short single-byte texts (cp1252 English/French
            comes out as cp1257): give the encoding when you know it.
        quoting: ``csv``: ``"`` quotes fields, which may then hold the separator and newlines
            (``""`` is a quote); ``none``: quotes are ordinary characters; ``auto`` (default):
            ``csv`` unless the separator is a tab (so ``label<TAB>"text`` reads as it looks).
            Without quoting, when the text column is the last column (of the header, or else
            of the narrowest row holding both columns), a row's extra cells are joined back
            into its text: ``label<TAB>text with<TAB>tabs`` keeps its tabs.

    Rows whose text is missing or only whitespace, or whose label is missing or empty, are
    dropped and counted in :attr:`TextTable.dropped`. Errors are :class:`DataError` naming the
    setting to change (``data.text_column``, ``data.label_column``, ``data.encoding``,
    ``data.sep``, ``data.quoting``, ``data.header``).
    """
    file = Path(path).expanduser().resolve()
    name = str(file)
    if not file.is_file():
        raise DataError(f"data.source: file {name!r} not found; give the path of a CSV or TSV "
                        "file of texts and labels")
    _check_column("data.text_column", text_column)
    _check_column("data.label_column", label_column)
    if quoting not in _QUOTINGS:
        raise DataError(f"data.quoting: must be one of {', '.join(_QUOTINGS)}; got {quoting!r}")
    if header is not None and not isinstance(header, bool):
        raise DataError(f"data.header: must be true, false or null (detect); got {header!r}")
    text = _decode(file, file.read_bytes(), encoding)
    separator = _separator(file, text, sep)
    quoted = quoting == "csv" or (quoting == "auto" and separator != "\t")
    rows = _rows(name, text, separator, quoted)
    if not rows:
        raise DataError(f"data.source: {name!r} is empty (no rows); check the file")
    names_given = [c for c in (text_column, label_column) if isinstance(c, str)]
    if header is False and names_given:
        raise DataError(
            f"data.{'text' if isinstance(text_column, str) else 'label'}_column: "
            f"{names_given[0]!r} is a column name, which needs a header row, but data.header "
            "is false; give a 0-based position or set data.header: true")
    first = [cell.strip() for cell in rows[0]]
    columns = first if header or names_given else None
    width = len(first) if columns else max(len(cells) for cells in rows)
    ti = _index("data.text_column", text_column, columns, width, name)
    li = _index("data.label_column", label_column, columns, width, name)
    if ti == li:
        raise DataError(f"data.label_column: is the same column as data.text_column ({ti}, "
                        f"{text_column!r}); name the column of the labels")
    if header is None and not names_given:
        header = _looks_like_header(rows, li)
    body = rows[1:] if header or names_given else rows
    join_tail = not quoted and ti == _width(rows[0] if header or names_given else None, body,
                                            max(ti, li)) - 1
    texts: list[str] = []
    labels: list[str] = []
    for cells in body:
        text_cell = separator.join(cells[ti:]) if join_tail else \
            (cells[ti] if ti < len(cells) else None)
        label = cells[li].strip() if li < len(cells) else ""
        if text_cell is None or not text_cell.strip() or not label:
            continue
        texts.append(text_cell)
        labels.append(label)
    dropped = len(body) - len(texts)
    if not texts:
        raise DataError(
            f"data.text_column: no row of {name!r} has both a text (column {text_column!r}) and "
            f"a label (column {label_column!r}); {dropped} rows dropped: check data.text_column "
            "and data.label_column")
    return TextTable(texts, labels, name, dropped)


def _check_column(field: str, value: object) -> None:
    ok = (isinstance(value, str) and value.strip() != "") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    if not ok:
        raise DataError(f"{field}: must be a column name or a 0-based position (0, 1, ...); "
                        f"got {value!r}")


def _decode(file: Path, raw: bytes, encoding: str) -> str:
    if encoding == "auto":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            from charset_normalizer import from_bytes

            best = from_bytes(raw).best()
            if best is None:
                raise DataError(
                    f"data.encoding: cannot detect the encoding of {str(file)!r}; give it "
                    "(for example utf-8, cp1252 or latin-1)") from None
            encoding = best.encoding
            text = raw.decode(encoding)
    else:
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise DataError(
                f"data.encoding: unknown encoding {encoding!r}; give a Python codec name "
                "(utf-8, cp1252, latin-1, utf-16, ...) or auto") from None
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise DataError(
                f"data.encoding: {str(file)!r} is not valid {encoding} ({exc.reason} at byte "
                f"{exc.start}, line {line}); set data.encoding to the file's encoding (for "
                "example cp1252 or latin-1) or auto") from None
    return text[1:] if text.startswith("\ufeff") else text


def _separator(file: Path, text: str, sep: str | None) -> str:
    if sep is not None:
        if sep == "\\t":  # a YAML '\t' in single quotes
            return "\t"
        if not isinstance(sep, str) or len(sep) != 1 or sep in "\r\n\"":
            raise DataError(f"data.sep: must be one character such as ',' or '\\t' (not a "
                            f"quote or a newline); got {sep!r}")
        return sep
    by_suffix = _BY_SUFFIX.get(file.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    lines = [line for line in text.splitlines() if line.strip()][:SNIFF_LINES]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=SNIFF_SEPARATORS).delimiter
    except csv.Error:
        raise DataError(
            f"data.sep: cannot tell the separator of {str(file)!r} from its first lines (none "
            "of tab , ; | splits them alike); set data.sep") from None


def _rows(name: str, text: str, separator: str, quoted: bool) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=quoted,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    rows: list[list[str]] = []
    start = 1
    try:
        for cells in reader:
            if cells:
                rows.append(cells)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(
            f"data.quoting: cannot read the row that starts on line {start} of {name!r} as CSV "
            f"({exc}); if quotes are ordinary characters in this file, set data.quoting: none"
        ) from None
    return rows


def _index(field: str, column: str | int, columns: list[str] | None, width: int,
           name: str) -> int:
    if isinstance(column, int):
        if column >= width:
            there = (f"the header of {name!r} has columns {columns}" if columns
                     else f"no row of {name!r} has more than {width} column(s)")
            raise DataError(f"{field}: position {column}, but {there}; give a 0-based position "
                            "or a column name")
        return column
    assert columns is not None  # names always come with a header row
    found = [i for i, cell in enumerate(columns) if cell == column.strip()]
    if not found:
        raise DataError(f"{field}: no column {column!r} in {name!r}; the columns there are "
                        f"{columns}: name one of them or give a 0-based position")
    if len(found) > 1:
        raise DataError(f"{field}: {len(found)} columns are named {column!r} in {name!r} "
                        f"(positions {found}); give the 0-based position of one")
    return found[0]


def _width(header: list[str] | None, body: list[list[str]], last: int) -> int:
    """The table's width: the header's, else the narrowest row's that holds both columns."""
    if header is not None:
        return len(header)
    return min((len(cells) for cells in body if len(cells) > last), default=last + 1)


def _looks_like_header(rows: list[list[str]], label: int) -> bool:
    labels = [cells[label].strip() for cells in rows[1:] if label < len(cells)]
    if label >= len(rows[0]):
        return False
    return rows[0][label].strip() not in labels and len(set(labels)) < len(labels)
