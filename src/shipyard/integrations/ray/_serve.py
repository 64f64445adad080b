"""A Ray Serve deployment hosting a Shipyard model repository with the KServe V2 REST routes.

Each replica builds the server's own core and REST frontend (a :class:`ModelRegistry`, its
:class:`ModelManager` and the ASGI app :class:`HttpApp`) and hands the app to Ray Serve as its
ingress (``serve.ingress``, bound when the replica starts), so a replica answers every route
``shipyard serve`` answers over REST (``/v2/...``, ``/predict``, ``/metrics``) with the same
bodies. The models load in the app's ASGI lifespan start-up, which Ray Serve runs before the
replica takes traffic, and unload at its shutdown. gRPC is not hosted (Ray Serve's gRPC proxy
takes its own generated servicers); run ``shipyard serve`` for it.

Ray Serve routes by ``route_prefix``: under a prefix other than ``/`` the app sees paths with
the prefix removed (``/shipyard/v2/health/ready`` answers as ``/v2/health/ready``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path
from typing import Any

from shipyard.integrations.ray._deps import import_ray
from shipyard.serving.control import Control
from shipyard.serving.http import HttpApp
from shipyard.serving.http.asgi import Receive, Scope, Send
from shipyard.serving.lifecycle import ControlMode, ModelManager
from shipyard.serving.registry import ModelRegistry

__all__ = ["ShipyardDeployment", "serve_repository"]

log = logging.getLogger("shipyard.integrations.ray")

_ray = import_ray("shipyard.integrations.ray's Ray Serve deployment", "ray.serve")
from ray import serve  # noqa: E402  (after the check that names the extra to install)


class ShipyardApp:
    """The REST app of one replica: :class:`HttpApp` over a repository, whose models load at
    the ASGI lifespan start-up and unload at its shutdown."""

    def __init__(self, repository: str | Path, *, model_control: ControlMode = "none",
                 load_models: list[str] | None = None, poll_interval_s: float = 1.0,
                 default_model: str | None = None, control_token: str | None = None,
                 auth_token: str | None = None, max_body_bytes: int = 64 * 1024 * 1024,
                 max_json_bytes: int = 16 * 1024 * 1024) -> None:
        root = Path(repository).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"repository: {str(root)!r} is not a folder; give the model "
                                    "repository's root (a path every Ray node can read)")
        self.models = ModelRegistry(root)
        """The model versions this replica serves."""
        self.manager = ModelManager(self.models, mode=model_control,
                                    poll_interval_s=poll_interval_s, startup_models=load_models)
        """Loads the models at start-up (and watches the repository in poll mode)."""
        self.http = HttpApp(self.models, Control(self.manager, control_token, auth_token),
                            default_model=default_model, max_body_bytes=max_body_bytes,
                            max_json_bytes=max_json_bytes)
        """Shipyard's REST frontend (the same routes and bodies as ``shipyard serve``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI 3: lifespan events load and unload the models; HTTP goes to :attr:`http`."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        root = scope.get("root_path") or ""
        path: str = scope.get("path", "")
        if root and root != "/" and path.startswith(root):
            scope = {**scope, "path": path[len(root):] or "/", "root_path": ""}
        await self.http(scope, receive, send)

    async def start(self) -> None:
        """Load the start-up models (every model of the repository with model_control none)."""
        await self.manager.start()

    async def stop(self) -> None:
        """Refuse new requests, let running ones finish (10 s at most) and unload."""
        self.http.accepting = False
        await self.manager.stop()
        self.models.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.models.drain(), timeout=10.0)
        self.models.unload_all()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # Ray Serve marks the replica failed and says why
                    log.exception("model repository start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


@serve.deployment(name="shipyard", ray_actor_options={"num_cpus": 1})
@serve.ingress()
class ShipyardDeployment:
    """Ray Serve deployment: one replica = one :class:`ShipyardApp` over ``repository``
    (keyword arguments as :class:`ShipyardApp`'s), e.g. ``serve.run(ShipyardDeployment.bind(
    repository="models"), route_prefix="/")``. Replicas, CPUs and autoscaling are Ray
    Serve's: ``ShipyardDeployment.options(num_replicas=2).bind(...)``."""

    def __init__(self, repository: str, **options: Any) -> None:
        self.shipyard = ShipyardApp(repository, **options)
        """This replica's app (its registry, manager and REST frontend)."""

    def __serve_build_asgi_app__(self) -> ShipyardApp:
        """The ingress app Ray Serve calls for every HTTP request to this deployment."""
        return self.shipyard

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose start-up models are not loaded is
        unhealthy (Ray Serve replaces it)."""
        if not self.shipyard.models.ready:
            raise RuntimeError("shipyard: the start-up models are not all loaded and ready")


def serve_repository(repository: str | Path, *, name: str = "shipyard", route_prefix: str = "/",
                     host: str = "127.0.0.1", port: int | None = 8000, num_replicas: int = 1,
                     num_cpus: float = 1.0, blocking: bool = False,
                     **options: Any) -> Any:
    """Serve the model repository ``repository`` under Ray Serve as application ``name`` and
    return its deployment handle once every replica is ready (``blocking``: then serve until
    interrupted). Starts a local Ray when none is running (``ray.init()``; join a cluster by
    calling ``ray.init(address=...)`` first). Ray Serve's HTTP proxy listens on
    ``host:port`` (``port=None``: a free port, see :func:`http_url`) unless Serve already
    runs; ``options`` go to :class:`ShipyardApp` (``model_control``, ``default_model``,
    ``auth_token``, ...)."""
    if not _ray.is_initialized():
        _ray.init()
    root = str(Path(repository).resolve())
    if port is None:
        port = _free_port(host)
    serve.start(http_options={"host": host, "port": port})
    deployment: Any = ShipyardDeployment  # a ray.serve Deployment (its decorator is untyped)
    deployment = deployment.options(num_replicas=num_replicas,
                                    ray_actor_options={"num_cpus": num_cpus})
    return serve.run(deployment.bind(root, **options), name=name, route_prefix=route_prefix,
                     blocking=blocking)


def http_url() -> str:
    """``http://host:port`` of Ray Serve's running HTTP proxy (where the V2 routes answer)."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("Ray Serve is not running; start it with serve_repository(...)")
    config = client.http_config
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    return f"http://{host}:{config.port}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
