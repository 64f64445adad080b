"""Composes the core and both frontends on one event loop: start-up, signals, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from shipyard.repository.layout import single_model_view
from shipyard.serving.broadcast import Broadcast, loaded_set
from shipyard.serving.config import ServerSettings
from shipyard.serving.control import Control
from shipyard.serving.grpc.server import GrpcServer
from shipyard.serving.grpc.service import GrpcFrontend
from shipyard.serving.http import HttpApp
from shipyard.serving.http.servers import HttpListener, http_server
from shipyard.serving.lifecycle import ModelManager
from shipyard.serving.peers import Peers, WorkerSlot
from shipyard.serving.ports import bind_socket
from shipyard.serving.registry import ModelRegistry
from shipyard.serving.shm import SystemSharedMemory
from shipyard.serving.tls import load_tls

__all__ = ["Server", "run"]

log = logging.getLogger("shipyard.server")


class Server:
    """One process serving one model repository over REST and gRPC; with ``slot``, one
    worker of ``--workers N`` (shared ports, readiness and statistics with the others)."""

    def __init__(self, settings: ServerSettings, slot: WorkerSlot | None = None) -> None:
        self.settings = settings
        self.slot = slot
        #: with model_name, the repository that holds model_repository as that one model
        self._view: tempfile.TemporaryDirectory[str] | None = None
        self.models = ModelRegistry(self._repository(settings))
        self.models.strict = settings.strict_readiness
        self.manager = ModelManager(
            self.models, mode=settings.model_control, poll_interval_s=settings.poll_interval_s,
            startup_models=settings.load_models,
            # a worker stages a load's files in the parent's folder: the parent removes them
            # even when the worker is killed
            staging_root=None if slot is None else slot.directory,
        )
        #: with several workers in explicit mode: load / unload calls reach all of them
        self.broadcast = (Broadcast(slot, self.manager)
                          if slot is not None and settings.model_control == "explicit"
                          else None)
        #: the checked TLS files (None: plain HTTP and insecure gRPC)
        self.tls = load_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        control = Control(self.manager, settings.control_token, settings.auth_token,
                          self.broadcast)
        #: with ``slot``: this worker's view of the others
        self.peers = None if slot is None else Peers(slot, self.models, self.request_stop)
        #: the system shared-memory regions, one registry for both frontends
        self.shm = SystemSharedMemory()
        self.http_app = HttpApp(self.models, control, default_model=settings.default_model,
                                max_body_bytes=settings.max_body_bytes,
                                max_json_bytes=settings.max_json_bytes, shm=self.shm,
                                auth_metrics=settings.auth_metrics, peers=self.peers)
        self.grpc_frontend = GrpcFrontend(self.models, control,
                                          default_model=settings.default_model, shm=self.shm,
                                          peers=self.peers)
        self.http_port = 0
        self.grpc_port = 0
        self._stop = asyncio.Event()
        self._http: HttpListener | None = None
        self._grpc: GrpcServer | None = None

    def _repository(self, settings: ServerSettings) -> Path:
        """``model_repository``, or with ``model_name`` a view serving it as that one model
        where it is a model's own folder (KServe's ``/mnt/models``)."""
        root = settings.model_repository
        if settings.model_name is None or not root.is_dir():
            return root
        self._view = tempfile.TemporaryDirectory(prefix="shipyard-model-")
        view = single_model_view(root, settings.model_name, Path(self._view.name))
        if view is None:  # a repository of model folders: served as it is
            self._view.cleanup()
            self._view = None
            return root
        log.info("serving %s as the one model %r", root, settings.model_name)
        return view

    async def serve(self) -> None:
        """Listen, load the models, serve until a stop is requested, then drain."""
        s = self.settings
        shared = self.slot is not None
        sock = bind_socket(s.host, s.http_port, reuse_port=shared)
        self.http_port = sock.getsockname()[1]
        tls = self.tls
        self._http = http_server(s.http_server, self.http_app, keep_alive_s=30.0,
                                 ssl_context=None if tls is None else tls.ssl_context())
        await self._http.start(sock)

        self._grpc = GrpcServer(self.grpc_frontend, max_message_bytes=s.max_body_bytes,
                                tls=tls, reuse_port=shared)
        self.grpc_port = await self._grpc.start(s.host, s.grpc_port)
        wire = ("plain" if tls is None else "TLS, client certificates required" if tls.mutual
                else "TLS")
        log.info("HTTP listening on %s://%s:%d", "http" if tls is None else "https", s.host,
                 self.http_port)
        log.info("gRPC listening on %s:%d (%s)", s.host, self.grpc_port, wire)
        if s.auth_token:
            log.info("auth: every call but health%s needs 'Authorization: Bearer <token>'",
                     "" if s.auth_metrics else " and /metrics")

        if self.broadcast is not None:
            # listen first, then read the loaded set (the parent wrote the start-up models
            # there): a call made meanwhile reaches this worker one way or the other
            await self.broadcast.start()
            startup = loaded_set(self.broadcast.slot.directory)
            self.manager.startup_models = list(startup)
            self.manager.startup_overrides = startup
        await self.manager.start()
        if self.slot is None or self.slot.index == 0:  # one line, not one per worker
            served = self.models.default_model(s.default_model) in self.models.names()
            (log.info if served else log.warning)(self.models.describe_default(s.default_model))
        ready = [mv for mv in self.models.all_versions() if mv.ready]
        if self.peers is None:
            log.info(
                "ready: serving %d model version(s) from %s: %s (model control: %s)",
                len(ready), s.model_repository,
                ", ".join(f"{mv.name}/{mv.version}" for mv in ready) or "none",
                s.model_control,
            )
        else:  # the parent logs "ready: serving" once every worker is
            await self.peers.start()
            if not self._stop.is_set():
                self.peers.set_ready(self.models.ready)
            log.info("worker ready: %d model version(s): %s", len(ready),
                     ", ".join(f"{mv.name}/{mv.version}" for mv in ready) or "none")
        await self._stop.wait()
        await self._shutdown()

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call from a signal handler on the loop)."""
        if not self._stop.is_set():
            log.info("stopping: finishing in-flight requests (grace %g s)",
                     self.settings.grace_period_s)
        if self.peers is not None:
            self.peers.set_ready(False)
        self._stop.set()

    async def _shutdown(self) -> None:
        grace = self.settings.grace_period_s
        self.http_app.accepting = False
        self.grpc_frontend.accepting = False
        assert self._http is not None and self._grpc is not None
        grpc_stop = asyncio.create_task(self._grpc.shutdown(grace))
        try:
            await asyncio.wait_for(asyncio.gather(self._http.shutdown(grace), grpc_stop),
                                   timeout=grace + 5)
        except TimeoutError:
            log.error("grace period passed with requests still running; exiting anyway")
        if self.broadcast is not None:
            await self.broadcast.stop()
        await self.manager.stop()
        self.models.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.models.drain(), timeout=max(grace, 0.1))
        if self.peers is not None:
            await self.peers.stop()
        self.models.unload_all()
        self.shm.close()
        if self._view is not None:
            self._view.cleanup()
        log.info("stopped")


def run(settings: ServerSettings, slot: WorkerSlot | None = None) -> None:
    """Run a server in this process until SIGINT/SIGTERM (with ``slot``: as one worker of
    ``--workers N``; :func:`shipyard.serving.workers.supervise` runs the parent)."""

    sys.setswitchinterval(settings.switch_interval_s)
    # A tokenize step encodes a batch of a few dozen texts; tokenizers' own thread pool
    # then competes with the batcher's workers for the cores (measured on 2 cores: REST JSON
    # c16 of an SMS Transformer 5,200-5,300 msg/s without it, 4,400-5,000 with it). An
    # explicit TOKENIZERS_PARALLELISM in the environment still wins.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    async def main() -> None:
        server = Server(settings, slot)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_stop)
        await server.serve()

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of shipyard[serve]
        asyncio.run(main())
    else:
        uvloop.run(main())
