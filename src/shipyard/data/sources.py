"""Reading a table: a CSV or Parquet file, or one of scikit-learn's bundled data sets.

CSV files are read as text (every cell a ``str``) so that cleaning and type checks see exactly
what the file holds and can name the row of a bad value; Parquet files keep their column types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pandas loads where a table is read: a config that names one needs none
    import pandas as pd

from shipyard.errors import DataError

__all__ = ["SKLEARN_DATASETS", "SKLEARN_PREFIX", "Table", "load_table", "resolve_source"]

SKLEARN_PREFIX = "sklearn:"

#: Bundled data sets (shipped inside scikit-learn, no download). name -> loader function name.
SKLEARN_DATASETS: dict[str, str] = {
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
    "iris": "load_iris",
    "wine": "load_wine",
    "digits": "load_digits",
}

FileFormat = Literal["auto", "csv", "parquet"]


@dataclass
class Table:
    """A loaded table and where it came from."""

    frame: pd.DataFrame
    """The rows; CSV cells are ``str``, Parquet and scikit-learn columns keep their types."""
    source: str
    """What was read: an absolute path or ``sklearn:NAME``."""
    kind: Literal["csv", "parquet", "sklearn"]
    """How it was read; CSV row numbers in messages are also given as file line numbers."""
    class_names: dict[Any, str] = field(default_factory=dict)
    """Names of target values where the source has them (scikit-learn's ``target_names``)."""


def resolve_source(source: str, base_dir: Path | None) -> str:
    """An absolute path for a relative file source (against ``base_dir``); others unchanged."""
    if source.startswith(SKLEARN_PREFIX):
        return source
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return str(path.resolve())


def load_table(
    source: str,
    *,
    base_dir: Path | None = None,
    file_format: FileFormat = "auto",
    separator: str = ",",
    encoding: str = "utf-8",
) -> Table:
    """Read ``source``: a CSV/Parquet path (relative to ``base_dir``) or ``sklearn:NAME``."""
    if source.startswith(SKLEARN_PREFIX):
        return _load_sklearn(source[len(SKLEARN_PREFIX):])
    path = Path(resolve_source(source, base_dir))
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (folder {str(path.parent)!r} does not exist)"
        raise DataError(
            f"data.source: file {str(path)!r} not found{hint}; give a CSV or Parquet path "
            f"(relative to the experiment file) or {SKLEARN_PREFIX}NAME with NAME one of "
            f"{sorted(SKLEARN_DATASETS)}"
        )
    kind = _detect_format(path, file_format)
    frame = _read_parquet(path) if kind == "parquet" else _read_csv(path, separator, encoding)
    if frame.shape[1] == 0:
        raise DataError(f"data.source: {str(path)!r} is empty (no columns); check the file")
    if len(frame) == 0:
        raise DataError(
            f"data.source: {str(path)!r} has a header ({frame.shape[1]} columns) but no rows"
        )
    return Table(frame, str(path), kind)


def _detect_format(path: Path, file_format: FileFormat) -> Literal["csv", "parquet"]:
    if file_format != "auto":
        return file_format
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if path.stat().st_size >= 4:
        with path.open("rb") as fh:
            if fh.read(4) == b"PAR1":
                return "parquet"
    return "csv"


def _read_csv(path: Path, separator: str, encoding: str) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, sep=separator, encoding=encoding, dtype=object, keep_default_na=False,
            na_filter=False, skipinitialspace=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"data.source: {str(path)!r} is empty; give a CSV with a header row"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data.source: {str(path)!r} is not valid {encoding} ({exc.reason} at byte "
            f"{exc.start}); set data.encoding (for example latin-1)"
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataError(
            f"data.source: cannot parse {str(path)!r} as CSV with separator {separator!r}: "
            f"{exc}; check data.separator"
        ) from exc
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'shipyard[train]'"
        ) from exc
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"data.source: cannot read {str(path)!r} as Parquet: {exc}") from exc


def _snake(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]+", "_", name.strip()).strip("_").lower()


def _load_sklearn(name: str) -> Table:
    import pandas as pd

    loader_name = SKLEARN_DATASETS.get(name)
    if loader_name is None:
        raise DataError(
            f"data.source: unknown scikit-learn data set {name!r}; bundled ones are "
            f"{sorted(SKLEARN_DATASETS)} (write {SKLEARN_PREFIX}NAME)"
        )
    from sklearn import datasets

    bunch = getattr(datasets, loader_name)()
    columns = [_snake(str(c)) for c in getattr(bunch, "feature_names", [])]
    if not columns or len(set(columns)) != len(columns):
        columns = [f"x{i}" for i in range(bunch.data.shape[1])]
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame["target"] = bunch.target
    names: dict[Any, str] = {}
    target_names = getattr(bunch, "target_names", None)
    if target_names is not None:
        names = {i: str(n) for i, n in enumerate(target_names)}
    return Table(frame, SKLEARN_PREFIX + name, "sklearn", names)
