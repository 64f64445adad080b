"""The batch loop: rows in batches to the model, records out in input order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shipyard.predict._data import DataSet, Row
from shipyard.predict._output import RecordWriter, error_record, record
from shipyard.predict._source import PredictError, PredictSource

__all__ = ["DEFAULT_BATCH_SIZE", "Summary", "default_top_k", "predict_data"]

#: rows per request when the command does not say
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True, slots=True)
class Summary:
    """What a batch prediction did."""

    rows: int
    """Records written (predictions and errors)."""
    errors: int
    """Rows that could not be predicted (written as errors with ``skip_errors``)."""
    requests: int
    """Calls to the model."""
    seconds: float
    """Wall time of the loop."""

    @property
    def rows_per_s(self) -> float:
        """Throughput of the whole loop (reading, predicting and writing)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def default_top_k(source: PredictSource) -> int | None:
    """Every class of a labelled output (so CSV has a column for each); None (the model's own
    top k, or the client's default) otherwise."""
    labelled = source.info.labelled
    return max(labelled.values()) if labelled else None


def _refusal(exc: BaseException) -> str | None:
    """The message of an error that concerns the rows themselves (the model refused them),
    None for any other (the server went away, a deadline passed)."""
    from shipyard.client.errors import ClientError, InvalidArgument
    from shipyard.protocol.errors import InvalidInput, ShipyardError

    if isinstance(exc, InvalidArgument | InvalidInput):
        return exc.message
    if isinstance(exc, ClientError | ShipyardError):
        return None
    raise exc


def _failure(source: PredictSource, exc: BaseException, batch: list[Row]) -> PredictError:
    from shipyard.client.errors import ClientError
    from shipyard.protocol.errors import ShipyardError

    message = exc.message if isinstance(exc, ClientError | ShipyardError) else str(exc)
    where = f"row {batch[0].id}" if len(batch) == 1 else f"rows {batch[0].id}..{batch[-1].id}"
    return PredictError(f"{where}: {source.where}: {message}")


def _effective_batch(source: PredictSource, batch_size: int) -> int:
    limit = source.info.properties.get("max_batch_size", "0")
    cap = int(limit) if limit.isdigit() else 0
    return min(batch_size, cap) if cap > 0 else batch_size


def predict_data(source: PredictSource, data: DataSet, writer: RecordWriter, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, top_k: int | None = None,
                 skip_errors: bool = False,
                 progress: Callable[[int], None] | None = None) -> Summary:
    """Predict every row of ``data`` with ``source`` in batches of ``batch_size`` (at most the
    model's max_batch_size) and write one record per row, in order.

    A row that cannot be read or that the model refuses stops the loop with PredictError
    naming the row, unless ``skip_errors``: then its record carries the error (a refused batch
    is retried row by row to find the rows at fault). ``progress`` is called with the rows
    done after each batch."""
    size = _effective_batch(source, batch_size)
    start = time.perf_counter()
    pending: list[Row] = []
    good = 0
    counts = {"rows": 0, "errors": 0, "requests": 0}

    def call(rows: list[Row]) -> list[dict[str, object]]:
        counts["requests"] += 1
        answers = source.predict([r.item for r in rows], top_k)
        return [record(r.id, p) for r, p in zip(rows, answers, strict=True)]

    def flush() -> None:
        nonlocal good
        items = [r for r in pending if r.error is None]
        done: dict[int, dict[str, object]] = {}
        if items:
            try:
                for r, rec in zip(items, call(items), strict=True):
                    done[id(r)] = rec
            except Exception as exc:
                message = _refusal(exc)
                if message is None or not skip_errors:
                    raise _failure(source, exc, items) from exc
                for r in items:  # one by one: which rows did the model refuse?
                    try:
                        done[id(r)] = call([r])[0]
                    except Exception as one:
                        alone = _refusal(one)
                        if alone is None:
                            raise _failure(source, one, [r]) from one
                        done[id(r)] = error_record(r.id, alone)
                        counts["errors"] += 1
        records = []
        for r in pending:
            if r.error is not None:
                records.append(error_record(r.id, r.error))
                counts["errors"] += 1
            else:
                records.append(done[id(r)])
        writer.write(records)
        counts["rows"] += len(records)
        pending.clear()
        good = 0
        if progress is not None:
            progress(counts["rows"])

    for row in data.rows:
        if row.error is not None and not skip_errors:
            raise PredictError(f"{str(data.path)!r}: {row.error}; fix the row or pass "
                               "--skip-errors")
        pending.append(row)
        if row.error is None:
            good += 1
        if good >= size or len(pending) >= 4 * size:
            flush()
    if pending:
        flush()
    return Summary(counts["rows"], counts["errors"], counts["requests"],
                   time.perf_counter() - start)
