"""The REST route table: one declarative list that drives both the dispatch in ``app.py``
(:class:`Router`) and the OpenAPI document (``openapi.py``).

A pattern is ``/``-separated literal segments and ``{parameters}``; a request path is split the
same way (leading and trailing slashes ignored) and walked down a tree of dicts, literal
segments before parameters: no regular expression runs per request. A ``GET`` route answers
``HEAD`` too (the server sends no body); a path that matches with another method gets
:class:`~shipyard.serving.errors.MethodNotAllowed` carrying the methods it allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from shipyard.serving.errors import ErrorCode, MethodNotAllowed, NotFound

__all__ = ["ROUTES", "Route", "Router", "guarded_handlers"]

_E = ErrorCode


@dataclass(frozen=True, slots=True)
class Route:
    """One operation of the REST API."""

    method: str
    """``GET`` (answers ``HEAD`` too) or ``POST``; a pattern may appear once per method."""
    pattern: str
    """``/v2/models/{model_name}/infer``: literal segments and ``{parameters}``; the handler
    gets the parameters' values positionally, in the order they appear."""
    handler: str
    """Name of the :class:`~shipyard.serving.http.app.HttpApp` method that answers it, called
    as ``handler(scope, receive, send, *parameters)``."""
    summary: str
    """One line for the OpenAPI document and ``/docs``."""
    errors: tuple[ErrorCode, ...] = ()
    """The error codes it answers (with the ``{"error": ...}`` body) that the document lists."""
    ok: str = ""
    """Description of its 200 answer (default: the summary)."""
    answer: str | None = None
    """Schema of the 200 body: ``object``, ``array``, ``text``, a components schema name, or
    None for an empty body."""
    body: str | None = None
    """Components schema of the request body (None: no body is documented)."""
    statuses: tuple[tuple[int, str], ...] = ()
    """Other answers whose body has the 200 answer's schema, e.g. ``(503, "Not ready")`` for a
    health check that answers ``{"ready": false}``."""
    bearer: bool = False
    """The call needs the control bearer token."""
    access: Literal["token", "open", "metrics"] = "token"
    """On a server with an auth token (``--auth-token``): ``token``, the call needs it;
    ``open``, it never does (health checks, the static API document); ``metrics``, only with
    ``--auth-metrics``."""
    documented: bool = True
    """Listed in the OpenAPI document (the document and ``/docs`` themselves are not)."""


#: the errors of a call that runs a model
_INFER_ERRORS = (_E.INVALID_ARGUMENT, _E.NOT_FOUND, _E.PAYLOAD_TOO_LARGE, _E.RESOURCE_EXHAUSTED,
                 _E.UNAVAILABLE, _E.DEADLINE_EXCEEDED)
_CONTROL_ERRORS = (_E.UNAUTHENTICATED, _E.PERMISSION_DENIED, _E.INVALID_ARGUMENT, _E.NOT_FOUND)
_SETTINGS_ERRORS = (_E.UNAUTHENTICATED, _E.INVALID_ARGUMENT)


def _model_routes(prefix: str) -> list[Route]:
    """The routes of one model (``prefix``: the model, or one version of it)."""
    return [
        Route("GET", prefix, "model_metadata", "Model metadata", (_E.NOT_FOUND, _E.UNAVAILABLE),
              answer="ModelMetadataResponse"),
        Route("GET", f"{prefix}/ready", "model_ready", "200 when the model is ready",
              (_E.NOT_FOUND,), ok="Ready", answer="ModelReadyResponse",
              statuses=((503, "Not ready (the body says why)"),)),
        Route("GET", f"{prefix}/config", "model_config", "Model configuration (Triton's JSON)",
              (_E.NOT_FOUND, _E.UNAVAILABLE), answer="object"),
        Route("GET", f"{prefix}/stats", "model_stats", "Model statistics (Triton's JSON)",
              (_E.NOT_FOUND,), answer="object"),
        Route("POST", f"{prefix}/infer", "infer",
              "KServe V2 inference (JSON, or the binary tensor data extension)", _INFER_ERRORS,
              ok="Outputs; binary outputs follow the JSON part (application/octet-stream, its "
                 "length in Inference-Header-Content-Length)",
              answer="InferResponse", body="InferRequest"),
        Route("POST", f"{prefix}/predict", "predict",
              "Simple API: rows of features in, one result per row out; or images or "
              "texts in, the top labels of each out", _INFER_ERRORS,
              ok="Results", answer="PredictResponse", body="PredictRequest"),
    ]


_SHM = "/v2/systemsharedmemory"
_SHM_REGION = _SHM + "/region/{region_name}"
_CUDA = "/v2/cudasharedmemory"
_CUDA_REGION = _CUDA + "/region/{region_name}"
_CUDA_TEXT = ("CUDA shared memory (Triton's extension): always 501, this server has none; use "
              "system shared memory")


def _cuda_routes() -> list[Route]:
    """Triton's CUDA shared-memory paths, each answering 501 Not Implemented with the reason
    (501 is what Triton itself answers when it is built without GPU support)."""
    return [
        Route(method, pattern, "cuda_shm", _CUDA_TEXT, (_E.UNIMPLEMENTED,), ok="Never")
        for method, pattern in (("GET", f"{_CUDA}/status"), ("GET", f"{_CUDA_REGION}/status"),
                                ("POST", f"{_CUDA_REGION}/register"),
                                ("POST", f"{_CUDA}/unregister"),
                                ("POST", f"{_CUDA_REGION}/unregister"))
    ]


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v2", "server_metadata", "Server metadata", ok="Metadata",
          answer="ServerMetadataResponse"),
    Route("GET", "/v2/health/live", "live", "Liveness", ok="Alive", answer="ServerLiveResponse",
          access="open"),
    Route("GET", "/v2/health/ready", "ready", "Readiness", ok="Ready",
          answer="ServerReadyResponse", statuses=((503, "Not ready"),), access="open"),
    Route("GET", "/v2/models/stats", "all_stats", "Statistics of every model", ok="Statistics",
          answer="object"),
    Route("POST", "/v2/repository/index", "repository_index",
          "Models in the repository and their state", ok="Index", answer="array"),
    Route("POST", "/v2/repository/models/{model_name}/load", "repository_load",
          "Load or reload a model, optionally with its configuration (`config`) and files "
          "(`file:<version>/<path>`, base64) in `parameters` (explicit model control, bearer "
          "token)", _CONTROL_ERRORS,
          ok="Done", bearer=True),
    Route("POST", "/v2/repository/models/{model_name}/unload", "repository_unload",
          "Unload a model after its queued requests finish (explicit model control, bearer "
          "token)", _CONTROL_ERRORS, ok="Done", bearer=True),
    Route("GET", f"{_SHM}/status", "shm_status",
          "Every registered system shared-memory region", ok="Regions: [{name, key, offset, "
          "byte_size}]", answer="array"),
    Route("GET", f"{_SHM_REGION}/status", "shm_status", "One system shared-memory region",
          (_E.NOT_FOUND,), ok="[{name, key, offset, byte_size}]", answer="array"),
    Route("POST", f"{_SHM_REGION}/register", "shm_register",
          "Register byte_size bytes at offset of the POSIX shared-memory object key",
          (_E.INVALID_ARGUMENT, _E.ALREADY_EXISTS), ok="Registered", body="ShmRegisterRequest"),
    Route("POST", f"{_SHM}/unregister", "shm_unregister",
          "Unregister every system shared-memory region", ok="Done"),
    Route("POST", f"{_SHM_REGION}/unregister", "shm_unregister",
          "Unregister one system shared-memory region (an unknown name is not an error)",
          ok="Done"),
    *_cuda_routes(),
    Route("GET", "/v2/logging", "log_settings", "Log settings (Triton's logging extension)",
          ok="Settings", answer="object"),
    Route("POST", "/v2/logging", "update_log_settings",
          "Change log settings: log_info, log_warning, log_error, log_verbose_level, log_format "
          "(bearer token when the server has one)", _SETTINGS_ERRORS,
          ok="Settings after the change", answer="object", body="LogSettings", bearer=True),
    Route("GET", "/v2/trace/setting", "trace_settings",
          "Trace settings (Triton's trace extension; tracing is off)", ok="Settings",
          answer="object"),
    Route("POST", "/v2/trace/setting", "update_trace_settings",
          "Change trace settings: only to what they are (this server records no traces; "
          "bearer token when the server has one)", _SETTINGS_ERRORS,
          ok="Settings", answer="object", body="TraceSettings", bearer=True),
    Route("GET", "/v2/models/{model_name}/trace/setting", "trace_settings",
          "A model's trace settings (the global ones)", (_E.NOT_FOUND,), ok="Settings",
          answer="object"),
    Route("POST", "/v2/models/{model_name}/trace/setting", "update_trace_settings",
          "Change a model's trace settings: only to what they are", (*_SETTINGS_ERRORS,
                                                                      _E.NOT_FOUND),
          ok="Settings", answer="object", body="TraceSettings", bearer=True),
    Route("POST", "/predict", "predict", "Simple API on the default model", _INFER_ERRORS,
          ok="Results", answer="PredictResponse", body="PredictRequest"),
    Route("GET", "/metrics", "metrics", "Prometheus metrics", ok="Text exposition format",
          answer="text", access="metrics"),
    Route("GET", "/openapi.json", "openapi", "This document", answer="object", documented=False,
          access="open"),
    Route("GET", "/docs", "docs", "The API's HTML page", documented=False, access="open"),
    # the web dashboard: its page and packaged files are open; the calls its page makes (these
    # two, and the API above) send the token the user types when the server needs one
    Route("GET", "/dashboard", "dashboard", "The web dashboard", documented=False,
          access="open"),
    Route("GET", "/dashboard/{asset}", "dashboard_asset", "A file of the web dashboard",
          (_E.NOT_FOUND,), documented=False, access="open"),
    Route("GET", "/dashboard/api/stats", "dashboard_stats",
          "The dashboard's figures: per model version, counters, queue depth, request-latency "
          "percentiles and histograms, batch-size histogram", ok="Figures", answer="object"),
    Route("GET", "/dashboard/api/models", "dashboard_models",
          "The dashboard's try-it forms: per model, the form its inputs call for", ok="Forms",
          answer="object"),
    *_model_routes("/v2/models/{model_name}"),
    *_model_routes("/v2/models/{model_name}/versions/{model_version}"),
)

H = TypeVar("H")


class _Node(Generic[H]):
    """One segment of the route tree."""

    __slots__ = ("allow", "literal", "methods", "param")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[H]] = {}
        self.param: _Node[H] | None = None
        self.methods: dict[str, H] = {}  # empty: no route ends here
        self.allow: tuple[str, ...] = ()


def _segments(pattern: str) -> list[str]:
    return pattern.strip("/").split("/")


class Router(Generic[H]):
    """Finds the handler of a request: ``resolve(route.handler)`` for the matching route."""

    def __init__(self, routes: tuple[Route, ...], resolve: Callable[[str], H]) -> None:
        self._root: _Node[H] = _Node()
        for route in routes:
            node = self._root
            for segment in _segments(route.pattern):
                if segment.startswith("{") and segment.endswith("}"):
                    if node.param is None:
                        node.param = _Node()
                    node = node.param
                else:
                    node = node.literal.setdefault(segment, _Node())
            if route.method in node.methods:
                raise ValueError(f"route {route.method} {route.pattern} is declared twice")
            node.methods[route.method] = resolve(route.handler)
            allow = [*node.allow, route.method]
            if route.method == "GET":
                allow.append("HEAD")
            node.allow = tuple(dict.fromkeys(allow))
        self._add_head(self._root)

    def _add_head(self, node: _Node[H]) -> None:
        if "GET" in node.methods:
            node.methods.setdefault("HEAD", node.methods["GET"])
        for child in node.literal.values():
            self._add_head(child)
        if node.param is not None:
            self._add_head(node.param)

    def match(self, method: str, path: str) -> tuple[H, list[str]]:
        """The handler for ``method`` on ``path`` and the values of its parameters; raises
        NotFound (no route has this path) or MethodNotAllowed (one has, not for ``method``)."""
        parts = path.strip("/").split("/")
        params: list[str] = []
        node = self._root
        for segment in parts:  # first, greedily (a literal segment, else the parameter)
            child = node.literal.get(segment)
            if child is None:
                child = node.param
                if child is None:
                    break
                params.append(segment)
            node = child
        else:
            if node.methods:
                return self._method(node, method, params)
        params = []  # a dead end on the way: search again, with backtracking
        found = _find(self._root, parts, 0, params)
        if found is None:
            raise NotFound(path)
        return self._method(found, method, params)

    @staticmethod
    def _method(node: _Node[H], method: str, params: list[str]) -> tuple[H, list[str]]:
        handler = node.methods.get(method)
        if handler is None:
            raise MethodNotAllowed(method, node.allow)
        return handler, params


def _find(node: _Node[H], parts: list[str], i: int, params: list[str]) -> _Node[H] | None:
    """The node where a route ends for ``parts[i:]`` below ``node`` (a literal segment wins
    over a parameter; a dead end takes the parameter instead); fills ``params``."""
    if i == len(parts):
        return node if node.methods else None
    segment = parts[i]
    child = node.literal.get(segment)
    if child is not None:
        found = _find(child, parts, i + 1, params)
        if found is not None:
            return found
    child = node.param
    if child is not None:
        params.append(segment)
        found = _find(child, parts, i + 1, params)
        if found is not None:
            return found
        params.pop()
    return None


def guarded_handlers(auth: bool, auth_metrics: bool) -> frozenset[str]:
    """The handlers that check the auth token before they run (none without one); a handler
    that answers routes of different access is refused (the check is per handler)."""
    access: dict[str, str] = {}
    for route in ROUTES:
        if access.setdefault(route.handler, route.access) != route.access:
            raise ValueError(f"handler {route.handler!r} serves routes of different access")
    if not auth:
        return frozenset()
    return frozenset(name for name, how in access.items()
                     if how == "token" or (how == "metrics" and auth_metrics))
