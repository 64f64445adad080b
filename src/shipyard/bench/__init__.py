"""The capacity report (``shipyard bench``): a model's served throughput and latency at each
concurrency, next to the same model called in this process at the same batch (its ceiling),
measured in the same run; as a table, ``bench.json``, ``bench.md`` and ``bench.png``.

    from shipyard.bench import BenchSettings, run_bench

    result = run_bench(BenchSettings("risk", concurrency=[1, 16], duration_s=2))
    result.levels[0].rows_per_s, result.ceiling.rows_per_s, result.folder

Without a URL it starts ``shipyard serve`` on 127.0.0.1 (ephemeral ports) in a subprocess and
stops it at the end. REST load comes from wrk when it is on PATH, else (and for gRPC) from a
built-in asyncio client; the report says which, and how much CPU it took.
"""

from shipyard.bench._load import HttpBody, LoadResult, find_wrk, grpc_load, rest_load, wrk_load
from shipyard.bench._report import print_table, write_report
from shipyard.bench._result import (
    PROTOCOLS,
    BenchError,
    BenchResult,
    BenchSettings,
    Ceiling,
    Level,
    parse_concurrency,
)
from shipyard.bench._run import run_bench

__all__ = [
    "PROTOCOLS",
    "BenchError",
    "BenchResult",
    "BenchSettings",
    "Ceiling",
    "HttpBody",
    "Level",
    "LoadResult",
    "find_wrk",
    "grpc_load",
    "parse_concurrency",
    "print_table",
    "rest_load",
    "run_bench",
    "write_report",
    "wrk_load",
]
