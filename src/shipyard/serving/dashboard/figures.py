"""The JSON the dashboard page reads, built from the server's own statistics objects.

* :func:`dashboard_stats` (``GET /dashboard/api/stats``): per model version, the counters, the
  gauges (queue depth, executions running) and the request-latency and batch-size histograms,
  with the latency percentiles since start. The page polls it and charts the differences
  between two polls (request rate, percentiles of the requests in between, mean batch size),
  so the server keeps no history for it. With ``--workers N`` the figures are summed over the
  workers, as ``/metrics`` sums them (another worker's at most ``snapshot_interval_s`` old).
* :func:`dashboard_forms` (``GET /dashboard/api/models``): per model, the try-it form its
  inputs call for, decided here (one owner of the rule) from the same model version that
  ``/v2/models/{m}`` describes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from shipyard.serving.errors import ShipyardError
from shipyard.serving.model import ModelVersion
from shipyard.serving.peers import VersionSnapshot
from shipyard.serving.registry import ModelRegistry
from shipyard.serving.simple import item_kind
from shipyard.serving.stats import Histogram

__all__ = ["QUANTILES", "FormKind", "dashboard_forms", "dashboard_stats", "histogram_quantile",
           "try_it_form"]

#: the latency percentiles reported (name -> quantile)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
#: the widest row of numbers shown as one field per value (wider: the JSON tensor editor)
MAX_ROW_FIELDS = 256
#: the most elements a tensor editor is pre-filled with (more: one row of them)
MAX_EDITOR_ELEMENTS = 4096

#: the kinds of try-it form: a file drop (``images``), a text box (``texts``), one field per
#: value of a row (``row``), one field per input column (``columns``), a JSON editor of a V2
#: inference request (``tensor``)
FormKind = Literal["images", "texts", "row", "columns", "tensor"]


def histogram_quantile(h: Histogram, q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``h``'s observations, interpolated linearly inside its
    bucket as Prometheus' ``histogram_quantile`` does (the first bucket starts at 0; a rank in
    the last, unbounded bucket answers the largest finite bound); None without observations."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be within [0, 1], got {q}")
    total = sum(h.counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for i, count in enumerate(h.counts):
        if count and below + count >= rank:
            if i == len(h.bounds):  # the +Inf bucket
                return float(h.bounds[-1])
            lower = float(h.bounds[i - 1]) if i > 0 else 0.0
            upper = float(h.bounds[i])
            return lower + (upper - lower) * max(0.0, rank - below) / count
        below += count
    return float(h.bounds[-1])  # pragma: no cover (the loop always answers: rank <= total)


def _histogram(h: Histogram) -> dict[str, Any]:
    """A histogram as JSON: finite upper bounds, and counts per bucket (not cumulative; one
    more than the bounds, the last for values above them)."""
    return {"bounds": list(h.bounds), "counts": list(h.counts), "sum": h.sum,
            "count": sum(h.counts)}


def _version_figures(name: str, version: int, row: VersionSnapshot) -> dict[str, Any]:
    s = row.stats
    latency = _histogram(s.request_seconds)
    for key, q in QUANTILES.items():
        value = histogram_quantile(s.request_seconds, q)
        latency[f"{key}_ms"] = None if value is None else value * 1e3
    return {
        "name": name,
        "version": str(version),
        "ready": row.ready,
        "success": s.success.count,
        "failure": s.fail.count,
        "failures": dict(sorted(s.failures.items())),
        "rejected": dict(sorted(s.rejections.items())),
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "last_inference_ms": s.last_inference_ms,
        "queue_depth": row.queue_depth,
        "running": row.running,
        "latency_seconds": latency,
        "batch_size": _histogram(s.batch_size),
    }


def dashboard_stats(rows: dict[tuple[str, int], VersionSnapshot], *, time_ms: int,
                    workers: int = 1) -> dict[str, Any]:
    """The body of ``GET /dashboard/api/stats``: ``rows`` (per (model, version), as
    :func:`~shipyard.serving.peers.local_versions` or ``Peers.versions`` give them) taken at
    ``time_ms`` (the server's wall clock, ms since the epoch), from ``workers`` processes."""
    return {
        "time_ms": time_ms,
        "workers": workers,
        "models": [_version_figures(name, version, row)
                   for (name, version), row in sorted(rows.items())],
    }


#: the zero of the datatypes whose zero is not the number 0
_ZERO: dict[str, Any] = {"BYTES": "", "BOOL": False}


def _editor_request(mv: ModelVersion) -> dict[str, Any]:
    """A V2 inference request for ``mv``: every input zeros (flat, in row-major order), dynamic
    dimensions 1, cut down to one row where the tensor would pass :data:`MAX_EDITOR_ELEMENTS`."""
    inputs = []
    for spec in mv.inputs:
        shape = [d if d > 0 else 1 for d in spec.shape] or [1]
        if math.prod(shape) > MAX_EDITOR_ELEMENTS:
            shape = [1] * (len(shape) - 1) + [min(shape[-1], MAX_EDITOR_ELEMENTS)]
        inputs.append({"name": spec.name, "datatype": spec.datatype, "shape": shape,
                       "data": [_ZERO.get(spec.datatype, 0)] * math.prod(shape)})
    return {"inputs": inputs}


def try_it_form(mv: ModelVersion) -> dict[str, Any]:
    """The try-it form of ``mv``: ``kind`` (:data:`FormKind`) and what it needs.

    - one BYTES input: ``images`` when the first preprocess step decodes images, else
      ``texts`` (``/predict`` with ``{"images": [...]}`` or ``{"text": [...]}``);
    - one numeric input of at most :data:`MAX_ROW_FIELDS` values per row: ``row``, with
      ``width`` fields (``{"features": [...]}``);
    - several inputs of one value per row: ``columns``, one field per input with its datatype
      (``{"features": {"column": value}}``);
    - anything else: ``tensor``, a V2 inference ``request`` of zeros to edit (``/infer``)."""
    inputs = mv.inputs
    form: dict[str, Any] = {"kind": "tensor"}
    if len(inputs) == 1 and inputs[0].datatype == "BYTES":
        kind = item_kind(mv) or "texts"
        form = {"kind": kind, "input": inputs[0].name}
    elif len(inputs) == 1 and inputs[0].datatype != "BOOL" and len(inputs[0].shape) >= 2:
        per_row = inputs[0].shape[1:]  # as /predict shapes rows (the first dimension: rows)
        width = math.prod(per_row) if all(d > 0 for d in per_row) else 0
        if 0 < width <= MAX_ROW_FIELDS:
            form = {"kind": "row", "input": inputs[0].name, "datatype": inputs[0].datatype,
                    "width": width}
    elif len(inputs) > 1 and all(len(s.shape) >= 1 and all(d in (1, -1) for d in s.shape[1:])
                                 for s in inputs):  # as /predict takes column objects
        form = {"kind": "columns", "fields": [{"name": s.name, "datatype": s.datatype}
                                              for s in inputs]}
    if form["kind"] == "tensor":
        form["request"] = _editor_request(mv)
    return form


def dashboard_forms(models: ModelRegistry) -> dict[str, Any]:
    """The body of ``GET /dashboard/api/models``: per model with a ready version, the version
    ``/v2/models/{m}/predict`` calls now, its description (``config.yaml``) and its try-it form
    (:func:`try_it_form`); models without one are listed with ``form`` None and the reason."""
    out: list[dict[str, Any]] = []
    for name in models.names():
        try:
            mv = models.get(name)
        except ShipyardError as exc:
            out.append({"name": name, "version": "", "description": "", "form": None,
                        "reason": exc.message})
            continue
        out.append({"name": name, "version": str(mv.version),
                    "description": mv.config.description, "form": try_it_form(mv),
                    "reason": ""})
    return {"models": out}
