"""The parent of ``shipyard serve --workers N``: starts N worker processes that share the HTTP
and gRPC ports, restarts one that dies, and drains them all on SIGTERM / SIGINT.

* The parent serves nothing. It binds both ports first with ``SO_REUSEPORT`` (without listening:
  the kernel hands connections only to listening sockets) so that port 0 becomes one free port
  the workers share and a port in use fails here, once; then it starts the workers
  (``multiprocessing`` *spawn*: a fresh interpreter each, no fork of grpc's threads), each
  running the normal :class:`~shipyard.serving.server.Server` on those ports with
  ``SO_REUSEPORT``, its own event loop and its own copy of every model.
* Readiness: a shared byte array holds one flag per worker (:mod:`shipyard.serving.peers`);
  a worker raises its flag once its models are loaded and clears it when it begins to stop,
  the parent clears the flag of a worker that died. Every worker's ``/v2/health/ready`` (and
  gRPC ServerReady) is true only while all flags are up. The parent logs ``ready: serving``
  once they first are.
* Model control (``--model-control explicit``): a load or unload reaches every worker and the
  loaded set lives in the folder, so a restarted worker loads what is loaded now
  (:mod:`shipyard.serving.broadcast`).
* Statistics and ``/metrics``: each worker writes snapshots to the parent's private folder and
  sums the others' into its answers (see :mod:`shipyard.serving.peers` for the staleness).
* A worker that exits is logged and restarted after a back-off (0.5 s, doubling per quick
  death up to 30 s; a worker that served 10 s or more counts as fresh). When a worker fails
  to become ready 5 times in a row, the parent gives up: it drains the others and exits 1.
* SIGTERM / SIGINT: the parent passes SIGTERM to every worker, each drains within the grace
  period; a worker still running ``grace_period_s + 10`` s later is killed. Exit status 0 when
  every worker stopped cleanly, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from shipyard.serving.broadcast import record_loaded
from shipyard.serving.config import ServerSettings
from shipyard.serving.peers import WorkerSlot

__all__ = ["supervise"]

log = logging.getLogger("shipyard.workers")

#: consecutive starts without becoming ready after which the parent gives up
MAX_UNREADY_STARTS = 5
#: a worker that lived at least this long restarts after the shortest back-off
STABLE_S = 10.0
#: back-off after the first quick death, doubled per further one, capped at BACKOFF_MAX_S
BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0
#: how long after the grace period the parent waits before it kills a worker
KILL_AFTER_S = 10.0


@dataclass
class _Worker:
    index: int
    process: multiprocessing.process.BaseProcess | None = None
    started: float = 0.0
    #: seen ready since its last start
    was_ready: bool = False
    quick_deaths: int = 0
    unready_starts: int = 0
    restart_at: float = 0.0


def _worker_main(settings: ServerSettings, slot: WorkerSlot) -> None:
    """A worker process: log with the worker index, then run the normal server."""
    from shipyard.serving.logs import configure_logging
    from shipyard.serving.server import run

    configure_logging(settings.log_level, settings.log_format)
    factory = logging.getLogRecordFactory()
    index = slot.index

    def record(*args: object, **kwargs: object) -> logging.LogRecord:
        rec = factory(*args, **kwargs)
        rec.worker = index
        return rec

    logging.setLogRecordFactory(record)
    run(settings, slot)


def supervise(settings: ServerSettings) -> int:
    """Serve with ``settings.worker_count()`` worker processes until SIGTERM / SIGINT; the
    exit status (0: every worker stopped cleanly)."""
    from shipyard.serving.ports import bind_socket

    count = settings.worker_count()
    ctx = multiprocessing.get_context("spawn")
    directory = Path(tempfile.mkdtemp(prefix="shipyard-workers-"))  # mode 0700
    ready = ctx.RawArray("b", count)
    if settings.model_control == "explicit":  # the loaded set every worker starts with
        for name in settings.load_models:
            record_loaded(directory, name, None)
    host = settings.host
    if settings.http_port == settings.grpc_port != 0:
        log.error("http_port and grpc_port are both %d: give them different ports",
                  settings.http_port)
        return 2
    held = []
    try:
        for port in (settings.http_port, settings.grpc_port):
            held.append(bind_socket(host, port, reuse_port=True, listen=False))
    except OSError as exc:
        for sock in held:
            sock.close()
        shutil.rmtree(directory, ignore_errors=True)
        log.error("cannot bind %s: %s; pass free --http-port / --grpc-port (0 = any)", host, exc)
        return 1
    http_port, grpc_port = (sock.getsockname()[1] for sock in held)
    worker_settings = settings.model_copy(update={"http_port": http_port,
                                                  "grpc_port": grpc_port})
    tls = settings.tls_cert is not None
    log.info("HTTP listening on %s://%s:%d", "https" if tls else "http", host, http_port)
    log.info("gRPC listening on %s:%d (%s; %d workers share both ports)", host, grpc_port,
             "TLS" if tls else "plain", count)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("stopping: draining %d workers (grace %g s)", count,
                     settings.grace_period_s)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers = [_Worker(i) for i in range(count)]
    failed = False
    announced = False

    def start(w: _Worker) -> None:
        slot = WorkerSlot(w.index, count, directory, ready, parent_pid=os.getpid())
        proc = ctx.Process(target=_worker_main, args=(worker_settings, slot),
                           name=f"shipyard-worker-{w.index}")
        proc.start()
        w.process, w.started, w.was_ready = proc, time.monotonic(), False
        log.info("worker %d started (pid %s)", w.index, proc.pid)

    try:
        for w in workers:
            start(w)
        while not stop.is_set():
            now = time.monotonic()
            for w in workers:
                proc = w.process
                if proc is None:
                    if now >= w.restart_at:
                        start(w)
                    continue
                if proc.is_alive():
                    if ready[w.index]:
                        w.was_ready = True
                    continue
                proc.join()
                ready[w.index] = 0
                _retire_snapshot(directory, proc.pid)
                w.process = None
                lived = now - w.started
                w.quick_deaths = 0 if lived >= STABLE_S else w.quick_deaths + 1
                w.unready_starts = 0 if w.was_ready else w.unready_starts + 1
                if w.unready_starts >= MAX_UNREADY_STARTS:
                    log.error("worker %d exited (exit code %s) before it was ready %d times in "
                              "a row; giving up: stopping every worker", w.index,
                              proc.exitcode, w.unready_starts)
                    failed = True
                    stop.set()
                    break
                delay = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** max(0, w.quick_deaths - 1))
                w.restart_at = now + delay
                log.error("worker %d (pid %s) exited with code %s after %.1f s; restarting "
                          "in %.1f s", w.index, proc.pid, proc.exitcode, lived, delay)
            if not announced and all(w.was_ready for w in workers):
                announced = True
                log.info("ready: serving from %s with %d workers (pids %s; model control: %s)",
                         settings.model_repository, count,
                         ", ".join(str(w.process.pid) for w in workers if w.process),
                         settings.model_control)
            stop.wait(0.1)
        failed = _drain(workers, settings.grace_period_s) or failed
    finally:
        for w in workers:  # an exception above: leave no worker behind
            if w.process is not None and w.process.is_alive():
                w.process.kill()
                w.process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in held:
            sock.close()
        shutil.rmtree(directory, ignore_errors=True)
    log.info("stopped (%s)", "a worker failed to stop cleanly" if failed else "every worker "
             "stopped cleanly")
    return 1 if failed else 0


def _drain(workers: list[_Worker], grace_s: float) -> bool:
    """SIGTERM every worker, wait for them (killing any still running ``KILL_AFTER_S`` after
    the grace period); whether one failed (killed, or a non-zero exit code)."""
    running = [w.process for w in workers if w.process is not None]
    for proc in running:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s + KILL_AFTER_S
    failed = False
    for proc in running:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            log.error("worker pid %s still running %g s after the grace period; killing it",
                      proc.pid, KILL_AFTER_S)
            proc.kill()
            proc.join()
            failed = True
        elif proc.exitcode != 0:
            log.error("worker pid %s exited with code %s", proc.pid, proc.exitcode)
            failed = True
    return failed


def _retire_snapshot(directory: Path, pid: int | None) -> None:
    """Keep a dead worker's last counters in the sums, but not its gauges."""
    path = directory / f"worker-{pid}.pkl"
    with contextlib.suppress(OSError):  # it died before its first snapshot
        os.replace(path, directory / f"dead-{pid}.pkl")
