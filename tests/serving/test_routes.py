"""The REST route table (``shipyard.serving.http.routes``): matching, 404/405, and that the
same table drives the app and the OpenAPI document. In process, no server."""

from __future__ import annotations

import pytest

from shipyard.serving.errors import ErrorCode, MethodNotAllowed, NotFound
from shipyard.serving.http.app import HttpApp
from shipyard.serving.http.openapi import openapi_document
from shipyard.serving.http.routes import ROUTES, Route, Router

ROUTER: Router[str] = Router(ROUTES, lambda name: name)


@pytest.mark.parametrize(("method", "path", "handler", "params"), [
    ("POST", "/v2/models/risk/infer", "infer", ["risk"]),
    ("POST", "/v2/models/risk/versions/2/infer", "infer", ["risk", "2"]),
    ("POST", "/predict", "predict", []),
    ("POST", "/predict/", "predict", []),
    ("POST", "/v2/models/risk/predict", "predict", ["risk"]),
    ("GET", "/v2", "server_metadata", []),
    ("GET", "/v2/", "server_metadata", []),
    ("GET", "/v2/health/live", "live", []),
    ("HEAD", "/v2/health/ready", "ready", []),
    ("GET", "/v2/models/stats", "all_stats", []),
    ("GET", "/v2/models/risk", "model_metadata", ["risk"]),
    ("GET", "/v2/models/risk/versions/1", "model_metadata", ["risk", "1"]),
    ("GET", "/v2/models/risk/ready", "model_ready", ["risk"]),
    ("GET", "/v2/models/risk/config", "model_config", ["risk"]),
    ("GET", "/v2/models/risk/versions/1/stats", "model_stats", ["risk", "1"]),
    # a model may be called like a literal segment: the literal wins only where it leads on
    ("GET", "/v2/models/stats/stats", "model_stats", ["stats"]),
    ("GET", "/v2/models/stats/versions/1", "model_metadata", ["stats", "1"]),
    ("GET", "/v2/models/versions/versions/1/ready", "model_ready", ["versions", "1"]),
    ("POST", "/v2/models//infer", "infer", [""]),
    ("POST", "/v2/repository/index", "repository_index", []),
    ("POST", "/v2/repository/models/risk/load", "repository_load", ["risk"]),
    ("POST", "/v2/repository/models/risk/unload", "repository_unload", ["risk"]),
    ("GET", "/metrics", "metrics", []),
    ("GET", "/openapi.json", "openapi", []),
    ("HEAD", "/docs", "docs", []),
    ("GET", "/dashboard", "dashboard", []),
    ("GET", "/dashboard/", "dashboard", []),
    ("GET", "/dashboard/dashboard.js", "dashboard_asset", ["dashboard.js"]),
    ("GET", "/dashboard/api/stats", "dashboard_stats", []),
    ("GET", "/dashboard/api/models", "dashboard_models", []),
    # a dead end below a literal segment takes the parameter: the asset table answers 404
    ("GET", "/dashboard/api", "dashboard_asset", ["api"]),
])
def test_match(method: str, path: str, handler: str, params: list[str]) -> None:
    assert ROUTER.match(method, path) == (handler, params)


@pytest.mark.parametrize("path", [
    "/", "", "/v2/models", "/v2/health", "/v2/health/dead", "/v2/models/risk/bogus",
    "/v2/models/risk/versions", "/v2/models/risk/versions/1/infer/more", "/v2/repository",
    "/v2/repository/models/risk", "/nothing/at/all", "/predict/more", "/v3/models/risk/infer",
    "/dashboard/api/stats/more", "/dashboard/../README.md", "/dashboard/static/dashboard.js",
])
def test_unknown_path_is_not_found(path: str) -> None:
    with pytest.raises(NotFound) as info:
        ROUTER.match("GET", path)
    assert info.value.code is ErrorCode.NOT_FOUND
    assert info.value.message == f"no route {path!r}; see /docs for the API"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v2/models/risk/infer", ("POST",)),
    ("HEAD", "/v2/models/risk/infer", ("POST",)),
    ("DELETE", "/predict", ("POST",)),
    ("PUT", "/v2/health/ready", ("GET", "HEAD")),
    ("POST", "/v2/models/risk/config", ("GET", "HEAD")),
    ("POST", "/v2/models/stats", ("GET", "HEAD")),
    ("GET", "/v2/repository/index", ("POST",)),
])
def test_other_method_is_not_allowed(method: str, path: str, allowed: tuple[str, ...]) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        ROUTER.match(method, path)
    assert info.value.code is ErrorCode.METHOD_NOT_ALLOWED
    assert info.value.allowed == allowed
    assert info.value.message == f"method {method} not allowed; use {', '.join(allowed)}"


def test_a_pattern_with_several_methods_allows_them_all() -> None:
    routes = (Route("GET", "/thing/{id}", "get", "Get"), Route("POST", "/thing/{id}", "set", "Set"))
    router = Router(routes, lambda name: name)
    assert router.match("HEAD", "/thing/7") == ("get", ["7"])
    assert router.match("POST", "/thing/7") == ("set", ["7"])
    with pytest.raises(MethodNotAllowed) as info:
        router.match("PUT", "/thing/7")
    assert info.value.allowed == ("GET", "HEAD", "POST")
    with pytest.raises(ValueError, match="declared twice"):
        Router((*routes, routes[0]), lambda name: name)


def test_every_route_has_its_handler_on_the_app() -> None:
    for route in ROUTES:
        assert callable(getattr(HttpApp, "_" + route.handler, None)), route


def test_the_document_lists_every_documented_route_and_only_those() -> None:
    paths = openapi_document()["paths"]
    listed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert listed == {(r.method, r.pattern) for r in ROUTES if r.documented}
    for route in ROUTES:
        if route.documented:
            op = paths[route.pattern][route.method.lower()]
            assert op["summary"] == route.summary
            assert {"200", *(str(s) for s, _ in route.statuses)} <= set(op["responses"])


def test_every_http_frontend_module_stays_below_500_lines() -> None:
    """Issue 10's split of the own HTTP/1.1 server and the REST app: no module of
    ``shipyard.serving.http`` grows back past 500 lines."""
    from pathlib import Path

    import shipyard.serving.http as http

    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in Path(http.__file__).parent.glob("*.py")}
    assert len(sizes) > 5 and not {n: k for n, k in sizes.items() if k >= 500}
