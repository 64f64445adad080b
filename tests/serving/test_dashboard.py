"""The web dashboard (``/dashboard``): its routes over plain HTTP on both HTTP servers, its
figures against the server's own counters, and the page itself in a real browser (headless
Chromium driven by Playwright): no console errors, a try-it prediction for a tabular, an image
and a text model equal to what ``/predict`` answers, charts that move under load.

The browser tests skip, saying why, when Playwright or Chromium is missing, and fail under CI
(``CI`` set), where ``make test`` installs both (``scripts/install_system_deps.sh`` and the dev
extra). Set
``SHIPYARD_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to rewrite the README's screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DEMO_REPOSITORY,
    SHARED,
    ServerProcess,
    _unavailable,
    http_call,
    start_server,
    wait_until,
)
from onnx_models import add_sub_model
from sklearn.datasets import load_breast_cancer

from shipyard.serving.dashboard import ASSET_TYPES, histogram_quantile
from shipyard.serving.stats import SECONDS_BUCKETS, Histogram

CHROMIUM = Path(os.environ.get("SHIPYARD_CHROMIUM", "/usr/bin/chromium"))
SEVENS = SHARED / "data" / "mnist_png" / "test" / "7"
TOKEN = "dashboard-secret"
SPAM = "WINNER!! You have won a free prize, call 09061701461 now to claim"


def _json(server: ServerProcess, method: str, path: str, doc: Any = None,
          headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body = None if doc is None else json.dumps(doc).encode()
    status, _, raw = http_call(server, method, path, body,
                               {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(raw) if raw else None


def _risk_rows() -> list[list[float]]:
    """Real rows of the risk model's data (raw Wisconsin breast-cancer features)."""
    data = load_breast_cancer().data
    return [[float(v) for v in data[i]] for i in (0, 19, 100)]


# -- figures, in process ---------------------------------------------------------------------


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    h = Histogram(SECONDS_BUCKETS)
    assert histogram_quantile(h, 0.5) is None
    for _ in range(10):
        h.observe(0.00005)  # bucket [0, 0.0001]
    for _ in range(10):
        h.observe(0.007)  # bucket (0.005, 0.01]
    assert histogram_quantile(h, 0.5) == pytest.approx(0.0001)  # rank 10: top of the first
    assert histogram_quantile(h, 0.75) == pytest.approx(0.0075)  # rank 15: middle of (5, 10] ms
    assert histogram_quantile(h, 1.0) == pytest.approx(0.01)
    assert histogram_quantile(h, 0.0) == pytest.approx(0.0)
    h.observe(60.0)  # above every bound: the largest finite bound answers
    assert histogram_quantile(h, 1.0) == 10.0
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        histogram_quantile(h, 1.5)


# -- routes over plain HTTP, on each HTTP server -----------------------------------------------


@pytest.fixture(scope="module")
def server(http_server: str) -> Iterator[ServerProcess]:
    """The demo repository on this round's HTTP server."""
    srv = start_server(DEMO_REPOSITORY, "--http-server", http_server)
    yield srv
    srv.stop()


def test_page_and_assets_have_their_types_and_cache_headers(server: ServerProcess) -> None:
    status, headers, page = http_call(server, "GET", "/dashboard")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff"
    html = page.decode()
    # every file the page loads is one the server serves (no CDN, no other host)
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "dashboard.js", "dashboard.css"):
        assert f'"/dashboard/{name}"' in html
    assert "http://" not in html and "https://" not in html
    assert http_call(server, "GET", "/dashboard/")[2] == page
    for name, content_type in ASSET_TYPES.items():
        status, headers, body = http_call(server, "GET", f"/dashboard/{name}")
        assert status == 200, name
        assert headers["content-type"] == content_type
        assert int(headers["content-length"]) == len(body) > 500
        etag = headers["etag"]
        status, again, body = http_call(server, "GET", f"/dashboard/{name}",
                                        headers={"If-None-Match": etag})
        assert (status, body, again["etag"]) == (304, b"", etag)
    status, headers, body = http_call(server, "HEAD", "/dashboard/dashboard.js")
    assert status == 200 and body == b""
    assert headers["content-type"] == ASSET_TYPES["dashboard.js"]


@pytest.mark.parametrize("path", [
    "/dashboard/nope.js", "/dashboard/api", "/dashboard/__init__.py", "/dashboard/assets.py",
    "/dashboard/static", "/dashboard/..", "/dashboard/../pyproject.toml",
    "/dashboard/static/dashboard.js", "/dashboard/%2e%2e%2fassets.py",
    "/dashboard/..%2f..%2f..%2fpyproject.toml", "/dashboard/dashboard.js%00.png",
    "/dashboard/index.html/..", "/dashboard//etc/passwd",
])
def test_only_the_packaged_files_are_served(server: ServerProcess, path: str) -> None:
    status, headers, body = http_call(server, "GET", path)
    assert status == 404, (path, body[:200])
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error"}


def test_other_methods_are_refused(server: ServerProcess) -> None:
    status, headers, _ = http_call(server, "POST", "/dashboard/dashboard.js", b"x")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_stats_count_what_the_server_served(server: ServerProcess) -> None:
    def risk(doc: dict[str, Any]) -> dict[str, Any]:
        (row,) = [m for m in doc["models"] if m["name"] == "risk"]
        return row

    status, before = _json(server, "GET", "/dashboard/api/stats")
    assert status == 200
    assert sorted({m["name"] for m in before["models"]}) == ["cnn", "digits", "risk", "sms"]
    rows = _risk_rows()
    for row in rows:
        assert _json(server, "POST", "/v2/models/risk/predict", {"features": row})[0] == 200
    assert _json(server, "POST", "/v2/models/risk/predict", {"features": [1.0]})[0] == 400
    status, after = _json(server, "GET", "/dashboard/api/stats")
    a, b = risk(before), risk(after)
    assert after["time_ms"] >= before["time_ms"] and after["workers"] == 1
    assert b["success"] - a["success"] == len(rows)
    # a request refused while it is read (400) never reached the core's counters
    assert b["failure"] == a["failure"]
    assert b["inference_count"] - a["inference_count"] == len(rows)
    lat = b["latency_seconds"]
    assert lat["bounds"] == list(SECONDS_BUCKETS) and len(lat["counts"]) == len(SECONDS_BUCKETS) + 1
    assert lat["count"] == sum(lat["counts"]) == b["success"] + b["failure"]
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= 10_000
    assert sum(b["batch_size"]["counts"]) == b["execution_count"]
    assert b["ready"] is True and b["queue_depth"] == 0
    # the same counters as Triton's statistics extension
    status, triton = _json(server, "GET", "/v2/models/risk/stats")
    assert triton["model_stats"][0]["inference_stats"]["success"]["count"] >= b["success"]


def test_forms_follow_each_models_inputs(server: ServerProcess) -> None:
    status, doc = _json(server, "GET", "/dashboard/api/models")
    assert status == 200
    forms = {m["name"]: m for m in doc["models"]}
    assert forms["risk"]["form"] == {"kind": "row", "input": "features", "datatype": "FP32",
                                     "width": 30}
    assert forms["digits"]["form"] == {"kind": "images", "input": "image"}
    assert forms["sms"]["form"] == {"kind": "texts", "input": "text"}
    cnn = forms["cnn"]["form"]
    assert cnn["kind"] == "tensor"
    # the tensor editor's starting request is one the server takes as it is
    status, answer = _json(server, "POST", "/v2/models/cnn/infer", cnn["request"])
    assert status == 200, answer
    assert answer["outputs"][0]["shape"] == [1, 10]
    _, meta = _json(server, "GET", "/v2/models/risk")
    assert forms["risk"]["version"] in meta["versions"]
    assert "feature_names order" in forms["risk"]["description"]


def test_with_an_auth_token_the_page_is_open_and_its_data_needs_the_token() -> None:
    srv = start_server(DEMO_REPOSITORY, "--auth-token", TOKEN)
    try:
        assert http_call(srv, "GET", "/dashboard")[0] == 200
        assert http_call(srv, "GET", "/dashboard/uPlot.iife.min.js")[0] == 200
        for path in ("/dashboard/api/stats", "/dashboard/api/models"):
            status, headers, body = http_call(srv, "GET", path)
            assert status == 401, path
            assert "Bearer" in headers["www-authenticate"]
            assert "Authorization: Bearer" in json.loads(body)["error"]
            status, _, _ = http_call(srv, "GET", path,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
            assert status == 200, path
        assert http_call(srv, "GET", "/dashboard/nope.js")[0] == 404  # open, and still 404
    finally:
        srv.stop()


def test_with_workers_the_figures_are_summed() -> None:
    srv = start_server(DEMO_REPOSITORY, "--workers", "2")
    try:
        n = 12
        for row in (_risk_rows() * n)[:n]:  # fresh connections: both workers take some
            assert _json(srv, "POST", "/v2/models/risk/predict", {"features": row})[0] == 200

        def summed() -> Any:
            doc = _json(srv, "GET", "/dashboard/api/stats")[1]
            (risk,) = [m for m in doc["models"] if m["name"] == "risk"]
            return doc if risk["success"] == n else None

        doc = wait_until(summed, timeout=10, what="both workers' requests in the figures")
        assert doc["workers"] == 2
    finally:
        srv.stop()


# -- the page in a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), driven by Playwright."""
    try:
        from playwright import sync_api
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright; the dev extra has it)")
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, as "
                    "scripts/install_system_deps.sh does; or set SHIPYARD_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def broken_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repository, a model of one input per column (``addsub``: FP32 INPUT0, INPUT1
    [N, 1]) and a model whose file is not ONNX (its load fails)."""
    root = tmp_path_factory.mktemp("dashboard-repo")
    for name in ("cnn", "digits", "risk", "sms"):
        shutil.copytree(DEMO_REPOSITORY / name, root / name)
    add_sub_model(root / "addsub" / "1" / "model.onnx", dims=(1,))
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx graph")
    return root


def _wait(page: Any, expression: str, timeout: float = 20, what: str = "") -> Any:
    """Poll a JavaScript expression until it is truthy (``page.wait_for_function`` evaluates
    its predicate with eval, which the page's Content-Security-Policy forbids)."""
    return wait_until(lambda: page.evaluate(expression), timeout=timeout,
                      interval=0.1, what=what or expression)


def _answer(page: Any, model: str, before: int, timeout: float = 20) -> dict[str, Any]:
    """The try-it answer shown for ``model`` after the ``before``-th one: the raw JSON the
    page shows, and the label it shows."""
    card = f'article[data-model="{model}"] .tryit-result'
    _wait(page, f'Number(document.querySelector(\'{card}\').dataset.seq || 0) > {before}',
          timeout, f"a try-it answer for {model}")
    assert page.get_attribute(card, "data-state") == "ok", page.inner_text(card)
    raw = page.text_content(f"{card} pre.raw")
    top = page.text_content(f"{card} .top")
    latency = page.text_content(f"{card} .latency")
    assert latency is not None and latency.endswith(" ms") and float(latency[:-3]) > 0
    return {"json": json.loads(raw or "null"), "top": top}


def _burst(server: ServerProcess, seconds: float, stop: threading.Event) -> Callable[[], int]:
    """Send real requests (risk rows, sms texts) from a thread for about ``seconds``; returns a
    function that joins it and answers how many were sent."""
    sent = [0]
    rows = _risk_rows()

    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop.is_set():
            _json(server, "POST", "/v2/models/risk/predict", {"features": rows})
            _json(server, "POST", "/v2/models/sms/predict", {"text": [SPAM, "see you at 8"]})
            sent[0] += 2
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> int:
        thread.join(seconds + 30)
        return sent[0]
    return join


def test_the_page_in_a_browser(browser: Any, broken_repository: Path, http_server: str,
                               tmp_path: Path) -> None:
    srv = start_server(broken_repository, "--http-server", http_server)
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        page.goto(f"http://{srv.http_url}/dashboard")
        _wait(page, "window.shipyardDashboard.polls >= 2", what="two polls of the figures")
        _wait(page, "document.querySelectorAll('.tryit').length === 6", what="try-it panels")

        # models, versions, readiness and the load error
        rows = {r.get_attribute("data-model"): r.inner_text()
                for r in page.query_selector_all("#models tbody tr")}
        assert set(rows) == {"addsub", "broken", "cnn", "digits", "risk", "sms"}
        assert "READY" in rows["risk"] and "onnxruntime_onnx" in rows["risk"]
        assert "features FP32 [-1, 30]" in rows["risk"]
        assert "UNAVAILABLE" in rows["broken"]
        _, index = _json(srv, "POST", "/v2/repository/index")
        (reason,) = [r["reason"] for r in index if r["name"] == "broken"]
        assert reason and reason in rows["broken"]

        # try it: tabular (risk), one field per value, filled by pasting a real row
        row = _risk_rows()[0]
        risk = 'article[data-model="risk"]'
        assert len(page.query_selector_all(f"{risk} .fields input")) == 30
        page.fill(f"{risk} input.paste", ", ".join(map(repr, row)))
        page.click(f"{risk} button")
        shown = _answer(page, "risk", 0)
        _, expected = _json(srv, "POST", "/v2/models/risk/predict", {"features": row})
        assert shown["json"] == expected
        assert float(shown["top"]) == expected["result"][0]

        # image (digits): a PNG of a 7 on the file drop
        seven = sorted(SEVENS.glob("*.png"))[0]
        page.set_input_files('article[data-model="digits"] input[type=file]', str(seven))
        shown = _answer(page, "digits", 0)
        _, expected = _json(srv, "POST", "/v2/models/digits/predict",
                            {"images": [base64.b64encode(seven.read_bytes()).decode()]})
        assert shown["json"] == expected
        assert shown["top"] == expected["labels"][0] == "7"

        # text (sms)
        page.fill('article[data-model="sms"] textarea', SPAM)
        page.click('article[data-model="sms"] button')
        shown = _answer(page, "sms", 0)
        _, expected = _json(srv, "POST", "/v2/models/sms/predict", {"text": [SPAM]})
        assert shown["json"] == expected
        assert shown["top"] == expected["labels"][0] == "spam"

        # one field per column (addsub)
        _, forms = _json(srv, "GET", "/dashboard/api/models")
        (addsub,) = [m["form"] for m in forms["models"] if m["name"] == "addsub"]
        assert addsub == {"kind": "columns", "fields": [
            {"name": "INPUT0", "datatype": "FP32"}, {"name": "INPUT1", "datatype": "FP32"}]}
        columns = {"INPUT0": 2.5, "INPUT1": -4.0}
        for name, value in columns.items():
            page.fill(f'article[data-model="addsub"] input[name="{name}"]', str(value))
        page.click('article[data-model="addsub"] button')
        shown = _answer(page, "addsub", 0)
        _, expected = _json(srv, "POST", "/v2/models/addsub/predict", {"features": columns})
        assert shown["json"] == expected
        assert float(shown["top"]) == expected["result"][0] == -1.5  # OUTPUT0 = INPUT0 + INPUT1

        # the broken model's panel says why it cannot be tried
        assert reason[:40] in page.inner_text('article[data-model="broken"]')

        # charts under load: a bounded burst of real requests from a thread
        def charted(key: str, series: int) -> list[float]:
            values: list[float | None] = page.evaluate(
                f"window.shipyardDashboard.data.{key}[{series}]")
            return [v for v in values if v is not None]

        names = page.evaluate("window.shipyardDashboard.names")
        risk_series = names.index("risk") + 1
        polls = page.evaluate("window.shipyardDashboard.polls")
        rate_before = max(charted("rate", risk_series), default=0.0)
        stop = threading.Event()
        join = _burst(srv, 4.0, stop)
        try:
            _wait(page, f"window.shipyardDashboard.polls >= {polls + 4}", timeout=30)
        finally:
            stop.set()
            sent = join()
        _wait(page, f"window.shipyardDashboard.polls >= {polls + 6}", timeout=30)
        assert sent >= 10
        rates = charted("rate", risk_series)
        assert max(rates) > max(rate_before, 1.0), rates
        assert charted("latency", 3), "no p99 charted under load"  # p99 of the requests
        assert max(charted("batch", risk_series)) >= 3  # 3 rows per risk request
        total = int(page.text_content("#tile-total") or 0)
        assert total >= sent + 4  # the burst and the four try-it calls
        for key in ("rate", "latency", "queue", "batch"):
            assert page.query_selector(f"#chart-{key} canvas") is not None

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        target = os.environ.get("SHIPYARD_DASHBOARD_SCREENSHOT")
        if target:
            shutil.copyfile(shot, target)
    finally:
        seen = list(problems)  # before closing the page (it aborts the poll in flight)
        page.close()
        srv.stop()
    # nothing from another host: every asset came from this server (blob: the image preview)
    origin = f"http://{srv.http_url}/"
    elsewhere = [url for url in requested
                 if not url.startswith((origin, "data:", f"blob:{origin}"))]
    assert not elsewhere, elsewhere
    assert not seen, seen
