"""Prometheus metrics, collected at scrape time from the registry's own counters.

The hot path only bumps plain integers (see ``stats.py``); this collector turns them into
Prometheus families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shipyard.serving.peers import Peers, local_versions
from shipyard.serving.registry import LifecycleCounters, ModelRegistry
from shipyard.serving.stats import Histogram

__all__ = ["CONTENT_TYPE", "MetricsExporter"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ["model", "version"]


class _RegistryCollector(Collector):
    """The registry's figures; with ``peers`` (``--workers N``), summed over every worker."""

    def __init__(self, models: ModelRegistry, peers: Peers | None = None) -> None:
        self.models = models
        self.peers = peers

    def collect(self) -> Iterator[Metric]:
        ok = CounterMetricFamily(
            "shipyard_request_success", "Successful inference requests", labels=_LABELS)
        fail = CounterMetricFamily(
            "shipyard_request_failure", "Failed inference requests by error code",
            labels=[*_LABELS, "code"])
        rejected = CounterMetricFamily(
            "shipyard_request_rejected", "Requests refused (queue_full) or dropped (timeout) "
            "by the batcher", labels=[*_LABELS, "reason"])
        inferences = CounterMetricFamily(
            "shipyard_inference", "Rows inferred (a batch of 8 counts 8)", labels=_LABELS)
        executions = CounterMetricFamily(
            "shipyard_execution", "Model executions (batches)", labels=_LABELS)
        queue_depth = GaugeMetricFamily(
            "shipyard_queue_depth", "Requests waiting in the batcher", labels=_LABELS)
        inflight = GaugeMetricFamily(
            "shipyard_inflight_executions", "Executions running now", labels=_LABELS)
        ready = GaugeMetricFamily(
            "shipyard_model_ready", "1 when the version is ready to serve", labels=_LABELS)
        hists = {
            "request": HistogramMetricFamily(
                "shipyard_request_duration_seconds", "End-to-end time in the server core",
                labels=_LABELS),
            "queue": HistogramMetricFamily(
                "shipyard_queue_duration_seconds", "Time waiting for an instance",
                labels=_LABELS),
            "compute": HistogramMetricFamily(
                "shipyard_compute_duration_seconds", "Time of one execution (a batch)",
                labels=_LABELS),
            "batch": HistogramMetricFamily(
                "shipyard_batch_size", "Rows per execution", labels=_LABELS),
        }
        rows = (local_versions(self.models) if self.peers is None else self.peers.versions())
        for (name, version), row in rows.items():
            lv = [name, str(version)]
            s = row.stats
            ok.add_metric(lv, s.success.count)
            for code, n in sorted(s.failures.items()):
                fail.add_metric([*lv, code], n)
            for reason, n in sorted(s.rejections.items()):
                rejected.add_metric([*lv, reason], n)
            inferences.add_metric(lv, s.inference_count)
            executions.add_metric(lv, s.execution_count)
            ready.add_metric(lv, 1.0 if row.ready else 0.0)
            if row.queue_depth is not None:
                queue_depth.add_metric(lv, row.queue_depth)
            if row.running is not None:
                inflight.add_metric(lv, row.running)
            for key, h in (("request", s.request_seconds), ("queue", s.queue_seconds),
                           ("compute", s.compute_seconds), ("batch", s.batch_size)):
                _add(hists[key], lv, h)
        yield from (ok, fail, rejected, inferences, executions, queue_depth, inflight, ready)
        yield from self._lifecycle()
        yield from hists.values()


    def _lifecycle(self) -> Iterator[Metric]:
        c: LifecycleCounters = (self.models.counters if self.peers is None
                                else self.peers.counters())
        for name, table, text in (
            ("shipyard_model_load", c.loads, "Versions loaded (and warmed up)"),
            ("shipyard_model_load_failure", c.load_failures,
             "Failed loads (bad file, bad config, failed warm-up)"),
            ("shipyard_model_unload", c.unloads, "Versions unloaded after draining"),
        ):
            family = CounterMetricFamily(name, text, labels=_LABELS)
            for (model, version), n in sorted(table.items()):
                family.add_metric([model, version], n)
            yield family


def _add(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, [(le, float(c)) for le, c in h.cumulative()], h.sum)


class MetricsExporter:
    """Renders the Prometheus text format for one registry (with ``peers``: for every
    worker of ``--workers N``, summed)."""

    def __init__(self, models: ModelRegistry, peers: Peers | None = None) -> None:
        self._collector = _RegistryCollector(models, peers)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)

    @property
    def peers(self) -> Peers | None:
        """The other workers whose figures are summed in (None: this process alone)."""
        return self._collector.peers

    @peers.setter
    def peers(self, peers: Peers | None) -> None:
        self._collector.peers = peers

    def render(self) -> bytes:
        """The Prometheus text exposition of the figures now."""
        return generate_latest(self._registry)
