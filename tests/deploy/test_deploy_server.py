"""deploy/ against a running server: the probe paths the manifests and Dockerfiles name are
served, the metrics the dashboard and the alert rules query are exported, and the layout KServe
gives /mnt/models is one the server reads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import yaml
from conftest import DEMO_REPOSITORY, ServerProcess, http_call, start_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: Prometheus records ``up`` for each scrape target itself; every other name must be exported
PROMETHEUS_OWN = {"up"}
#: the sample suffixes each Prometheus type adds to its family name (prometheus_client names a
#: counter's family ``<name>_total`` in its ``# TYPE`` line already)
SUFFIXES = {"counter": ("", "_total"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
#: PromQL words that are not metric names
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "inf", "nan"}
_RISK_ROW = [17.99, 10.38, 122.8, 1001, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871, 1.095,
             0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193, 25.38,
             17.33, 184.6, 2019, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, ``by (...)`` lists, range
    selectors and strings are removed, then every identifier that is not a function call, a
    keyword or a number is a metric name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dash = json.loads((DEPLOY / "grafana" / "shipyard-dashboard.json").read_text("utf-8"))
    out: list[tuple[str, str]] = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert m is not None, f"variable {var['name']}: unexpected query {query!r}"
        out.append((f"variable {var['name']}", m.group(1)))
    return out


def alert_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule in deploy/prometheus/alerts.yaml."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text("utf-8"))
    return [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
            for group in doc["spec"]["groups"] for rule in group["rules"]]


def exported(text: str) -> tuple[dict[str, str], set[str]]:
    """(family -> type from the ``# TYPE`` lines, sample names present) of a /metrics page."""
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.MULTILINE))
    return families, samples


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The exported family (``_total`` left off) that sample name ``name`` belongs to (None: not
    exported)."""
    for family, kind in families.items():
        for suffix in SUFFIXES.get(kind, ("",)):
            if name == family + suffix:
                return family.removesuffix("_total") if kind == "counter" else family
    return None


def infer_risk(server: ServerProcess) -> None:
    """One V2 inference on the demo ``risk`` model (so its histograms have samples)."""
    body = orjson.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30],
                                     "data": _RISK_ROW}]})
    status, _, answer = http_call(server, "POST", "/v2/models/risk/infer", body,
                                  {"Content-Type": "application/json"})
    assert status == 200, answer
    assert orjson.loads(answer)["outputs"]


def probe_paths() -> set[str]:
    """Every HTTP path a probe in deploy/ asks for: the Deployment's startup, liveness and
    readiness probes and the Dockerfiles' HEALTHCHECKs."""
    deployment = yaml.safe_load((DEPLOY / "k8s" / "base" / "deployment.yaml").read_text("utf-8"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"]
             for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    for dockerfile in (DEPLOY / "docker").glob("Dockerfile.*"):
        paths |= set(re.findall(r"http://127\.0\.0\.1:\d+(/[\w/]+)",
                                dockerfile.read_text("utf-8")))
    return paths


def test_the_promql_reader_finds_every_metric() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{model=~"$m"}[5m]))) '
            '/ on (model) group_left b_total + sum(rate(c_total[$__rate_interval]) or vector(0)) '
            '> bool 0.5')
    assert metric_names(expr) == {"a_bucket", "b_total", "c_total"}


def test_probe_paths_are_served(demo_server: ServerProcess) -> None:
    paths = probe_paths()
    assert {"/v2/health/live", "/v2/health/ready"} <= paths, paths
    for path in sorted(paths):
        status, _, body = http_call(demo_server, "GET", path)
        assert status == 200, f"{path}: {status} {body!r}"
    status, _, _ = http_call(demo_server, "GET", "/v2/health/nonexistent")
    assert status == 404  # the check can fail


def test_every_queried_metric_is_exported(demo_server: ServerProcess) -> None:
    infer_risk(demo_server)
    status, _, body = http_call(demo_server, "GET", "/metrics")
    assert status == 200
    families, samples = exported(body.decode())
    # after one inference the risk model's histograms have samples
    for family in ("shipyard_request_duration_seconds", "shipyard_batch_size"):
        assert families.get(family) == "histogram"
        assert f"{family}_bucket" in samples
    queries = dashboard_queries() + alert_queries()
    assert len(queries) > 20
    missing: list[str] = []
    used: set[str] = set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: queries no metric: {expr}"
        for name in sorted(names - PROMETHEUS_OWN):
            found = family_of(name, families)
            if found is None:
                missing.append(f"{where}: {name}")
            else:
                used.add(found)
    assert not missing, "queried but not exported:\n" + "\n".join(missing)
    # the dashboard and the rules cover what the issue names
    assert {"shipyard_request_success", "shipyard_request_failure",
            "shipyard_request_duration_seconds", "shipyard_queue_depth",
            "shipyard_batch_size", "shipyard_model_ready"} <= used


def test_dashboard_is_per_model_version_and_worker() -> None:
    queries = [expr for where, expr in dashboard_queries() if where.startswith("panel")]
    assert all('model=~"$model"' in q and 'version=~"$version"' in q and 'pod=~"$pod"' in q
               for q in queries)
    grouped = " ".join(re.findall(r"by \(([^)]*)\)", " ".join(queries)))
    assert "pod" in grouped and "model" in grouped and "version" in grouped


# --- KServe's /mnt/models -----------------------------------------------------------------------

def kserve_args() -> list[str]:
    """The runtime's container args with the ports set to 0 (any free one) for the test."""
    path = DEPLOY / "kserve" / "cluster-serving-runtime.yaml"
    runtime = yaml.safe_load(path.read_text("utf-8"))
    args: list[str] = runtime["spec"]["containers"][0]["args"]
    out = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in ("--model-repository", "--http-port", "--grpc-port", "--host"):
            continue  # start_server sets these
        out.append(arg.replace("{{.Name}}", "risk"))
    return out


def serve_mnt_models(mnt: Path) -> dict[str, Any]:
    """Start the server the way the runtime does on ``mnt`` and say what it serves."""
    server = start_server(mnt, *kserve_args())
    try:
        status, _, index = http_call(server, "POST", "/v2/repository/index", b"{}")
        assert status == 200, index
        ready, _, _ = http_call(server, "GET", "/v2/models/risk/ready")
        result: dict[str, Any] = {"index": orjson.loads(index), "risk_ready": ready == 200}
        if ready == 200:
            infer_risk(server)
        return result
    finally:
        server.stop()


def test_kserve_repository_layout_is_served(tmp_path: Path) -> None:
    """storageUri -> a repository root: /mnt/models/risk/{config.yaml,1/model.onnx}."""
    mnt = tmp_path / "mnt" / "models"
    shutil.copytree(DEMO_REPOSITORY / "risk", mnt / "risk")
    served = serve_mnt_models(mnt)
    assert served["risk_ready"], served
    assert [(m["name"], m["state"]) for m in served["index"]] == [("risk", "READY")]


def test_kserve_model_folder_layout_is_served(tmp_path: Path) -> None:
    """storageUri -> the model folder itself: /mnt/models/{config.yaml,1/model.onnx} is the
    one model --model-name names."""
    mnt = tmp_path / "mnt" / "models"
    shutil.copytree(DEMO_REPOSITORY / "risk", mnt)
    served = serve_mnt_models(mnt)
    assert served["risk_ready"], served
    assert [(m["name"], m["version"], m["state"]) for m in served["index"]] == \
        [("risk", "1", "READY")]


def test_kserve_bare_model_files_are_version_1(tmp_path: Path) -> None:
    """storageUri -> the model's files: /mnt/models/{config.yaml,model.onnx} is version 1."""
    mnt = tmp_path / "mnt" / "models"
    mnt.mkdir(parents=True)
    shutil.copy(DEMO_REPOSITORY / "risk" / "1" / "model.onnx", mnt / "model.onnx")
    shutil.copy(DEMO_REPOSITORY / "risk" / "config.yaml", mnt / "config.yaml")
    served = serve_mnt_models(mnt)
    assert served["risk_ready"], served
    assert [(m["name"], m["version"]) for m in served["index"]] == [("risk", "1")]
