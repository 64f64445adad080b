"""The worker side of ``shipyard serve --workers N``: what one worker process knows of the others.

The parent (:mod:`shipyard.serving.workers`) gives every worker a :class:`WorkerSlot`: its
index, a private folder and a shared byte array of readiness flags (one per worker). Through
them each worker

* says when it is ready (its flag; the parent clears the flag of a worker that died), so that
  ``/v2/health/ready`` of any worker is true only while every worker is ready;
* writes a snapshot of its statistics (per model version: the counters, readiness and queue
  gauges; and the load / unload counters) to ``worker-<pid>.pkl`` in the folder every
  ``snapshot_interval_s`` (and at start-up and shutdown), atomically (write, then rename);
* sums its own live counters with the other workers' latest snapshots when it answers
  ``/metrics`` or the statistics calls (:meth:`Peers.versions`, :meth:`Peers.counters`).

Staleness: another worker's figures are at most ``snapshot_interval_s`` old (0.5 s by default);
the answering worker's own are live. When a worker dies, the parent renames its snapshot to
``dead-<pid>.pkl``: its counters stay in the sums (counters never go back), its gauges leave
them. The folder is private to the server (mode 0700, made by the parent), so its pickles are
trusted data.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import pickle
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.serving.registry import LifecycleCounters, ModelRegistry
from shipyard.serving.stats import ModelStats

__all__ = ["Peers", "VersionSnapshot", "WorkerSlot", "local_versions"]

log = logging.getLogger("shipyard.workers")


@dataclass(frozen=True)
class WorkerSlot:
    """What the parent hands one worker process (picklable: it crosses the spawn)."""

    index: int
    """This worker's position, 0 .. count-1 (its readiness flag)."""
    count: int
    """How many workers serve the ports."""
    directory: Path
    """The server's private folder of statistics snapshots."""
    ready: MutableSequence[int]
    """One flag per worker (a ``multiprocessing`` shared byte array): 1 = ready."""
    snapshot_interval_s: float = 0.5
    """How often this worker writes its statistics snapshot (seconds)."""
    parent_pid: int = 0
    """The supervising parent: a worker whose parent is gone stops (0 = not watched)."""


@dataclass
class VersionSnapshot:
    """One model version's figures in one worker (or summed over workers)."""

    stats: ModelStats
    """The request, execution and latency counters."""
    ready: bool
    """Whether the version can serve (summed: in every worker that has it)."""
    queue_depth: int | None
    """Requests waiting in the batcher (None: the version has no batcher)."""
    running: int | None
    """Executions running now (None: the version has no batcher)."""


@dataclass
class _Snapshot:
    pid: int
    versions: dict[tuple[str, int], VersionSnapshot] = field(default_factory=dict)
    counters: LifecycleCounters = field(default_factory=LifecycleCounters)


def local_versions(models: ModelRegistry) -> dict[tuple[str, int], VersionSnapshot]:
    """This process's figures per (model, version), live (not copied)."""
    out = {}
    for mv in models.all_versions():
        b = mv.batcher
        out[(mv.name, mv.version)] = VersionSnapshot(
            mv.stats, mv.ready, None if b is None else b.queue_depth,
            None if b is None else b.running)
    return out


class Peers:
    """One worker's view of all workers (see the module docstring)."""

    def __init__(self, slot: WorkerSlot, models: ModelRegistry,
                 on_orphan: Callable[[], None] | None = None) -> None:
        self.slot = slot
        self.models = models
        #: called once when the parent is gone (the worker should stop)
        self.on_orphan = on_orphan
        self.pid = os.getpid()
        self._path = slot.directory / f"worker-{self.pid}.pkl"
        self._task: asyncio.Task[None] | None = None

    # -- readiness ----------------------------------------------------------------------------

    def set_ready(self, ready: bool) -> None:
        """Raise or clear this worker's readiness flag."""
        self.slot.ready[self.slot.index] = 1 if ready else 0

    def all_ready(self) -> bool:
        """Whether every worker's flag is up."""
        return all(self.slot.ready[i] for i in range(self.slot.count))

    # -- snapshots ----------------------------------------------------------------------------

    def write(self) -> None:
        """Write this worker's snapshot now (atomically)."""
        snap = _Snapshot(self.pid, local_versions(self.models), self.models.counters)
        data = pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self._path)
        except OSError as exc:  # the folder went away (the parent is stopping)
            log.debug("statistics snapshot not written: %s", exc)

    async def start(self) -> None:
        """Write the first snapshot and keep writing one every ``snapshot_interval_s``."""
        self.write()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the periodic writes and write a last snapshot."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.write()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.slot.snapshot_interval_s)
            self.write()
            if (self.slot.parent_pid and os.getppid() != self.slot.parent_pid
                    and self.on_orphan is not None):
                log.error("the supervising parent (pid %d) is gone; stopping",
                          self.slot.parent_pid)
                self.on_orphan()
                self.on_orphan = None

    def _others(self) -> tuple[list[_Snapshot], list[_Snapshot]]:
        """(live workers' snapshots, dead workers' snapshots), this worker's left out."""
        live: list[_Snapshot] = []
        dead: list[_Snapshot] = []
        try:
            paths = sorted(self.slot.directory.glob("*.pkl"))
        except OSError:
            return live, dead
        for path in paths:
            if path == self._path:
                continue
            try:
                snap = pickle.loads(path.read_bytes())
            except (OSError, EOFError, pickle.UnpicklingError):
                continue  # renamed or removed under us: next time
            if isinstance(snap, _Snapshot):
                (dead if path.name.startswith("dead-") else live).append(snap)
        return live, dead

    # -- the summed view ----------------------------------------------------------------------

    def versions(self) -> dict[tuple[str, int], VersionSnapshot]:
        """Every (model, version) this worker or another live worker serves, with counters
        summed over all workers (dead ones included) and gauges over the live ones; ready only
        where every live worker that has the version says so."""
        mine = local_versions(self.models)
        live, dead = self._others()
        out = {key: VersionSnapshot(v.stats.copy(), v.ready, v.queue_depth, v.running)
               for key, v in mine.items()}
        for snap in live:
            for key, v in snap.versions.items():
                have = out.get(key)
                if have is None:
                    out[key] = VersionSnapshot(v.stats, v.ready, v.queue_depth, v.running)
                    continue
                have.stats.merge(v.stats)
                have.ready = have.ready and v.ready
                have.queue_depth = _add(have.queue_depth, v.queue_depth)
                have.running = _add(have.running, v.running)
        for snap in dead:
            for key, v in snap.versions.items():
                if key in out:
                    out[key].stats.merge(v.stats)
        return out

    def stats(self, name: str, version: int) -> ModelStats:
        """The counters of one model version summed over every worker."""
        mv = self.models.get(name, str(version))
        total = mv.stats.copy()
        live, dead = self._others()
        for snap in (*live, *dead):
            other = snap.versions.get((name, version))
            if other is not None:
                total.merge(other.stats)
        return total

    def counters(self) -> LifecycleCounters:
        """The load / unload counters summed over every worker."""
        total = copy.deepcopy(self.models.counters)
        live, dead = self._others()
        for snap in (*live, *dead):
            for mine, theirs in ((total.loads, snap.counters.loads),
                                 (total.load_failures, snap.counters.load_failures),
                                 (total.unloads, snap.counters.unloads)):
                for key, n in theirs.items():
                    mine[key] = mine.get(key, 0) + n
        return total


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b
