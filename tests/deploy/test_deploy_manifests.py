"""deploy/ offline: every manifest parses and validates, the overlays render, the settings the
manifests carry are ones the server accepts, and the Dockerfiles agree with the manifests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from shipyard.cli import app
from shipyard.serving.config import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
#: the Kubernetes version the built-in kinds are validated against
K8S_VERSION = "1.32.0"
#: kinds that are not built into Kubernetes -> the JSON schema (tests/deploy/schemas) they must meet
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.schema.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "clusterservingruntime.schema.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.schema.json",
}
OVERLAYS = ["dev", "prod"]
KUBECTL = shutil.which("kubectl")


def manifest_files() -> list[Path]:
    """Every Kubernetes YAML under deploy/ except the kustomization files themselves."""
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_docs(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of one file (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def validate(doc: dict[str, Any], where: str) -> None:
    """Validate one object: built-in kinds with kubernetes-validate (strict: unknown fields are
    errors), the CRD kinds against their schema here."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
        assert not errors, f"{where}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {'/'.join(map(str, exc.path))}: {exc.message}")


def render(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>`` (offline: it reads files only)."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of ``kind`` among ``docs``."""
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def base_docs() -> list[dict[str, Any]]:
    """The base manifests, unrendered."""
    return [d for p in sorted((DEPLOY / "k8s" / "base").glob("*.yaml"))
            if p.name != "kustomization.yaml" for d in load_docs(p)]


def parse_serve_args(args: list[str]) -> dict[str, Any]:
    """Parse ``args`` with the real ``shipyard serve`` command line (nothing is run):
    unknown flags and ill-typed values fail as they would in the container."""
    group: Any = typer.main.get_command(app)
    command = group.commands["serve"]
    with command.make_context("serve", list(args), resilient_parsing=False) as ctx:
        params: dict[str, Any] = dict(ctx.params)
    return params


def test_there_are_manifests_of_every_kind_the_issue_names() -> None:
    kinds = {d["kind"] for p in manifest_files() for d in load_docs(p)}
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler", "ServiceMonitor",
                     "ConfigMap", "PersistentVolumeClaim", "ClusterServingRuntime",
                     "InferenceService", "PrometheusRule"}, kinds


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_validates_offline(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc, f"{path.relative_to(ROOT)} {doc.get('kind')}")


def test_the_validator_catches_a_broken_manifest() -> None:
    deployment = by_kind(base_docs(), "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    runtime = load_docs(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")[0]
    runtime["spec"]["protocolVersions"] = ["v3"]
    with pytest.raises(AssertionError, match="protocolVersions"):
        validate(runtime, "broken runtime")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (kustomize rendering)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    docs = render(overlay)
    for doc in docs:
        validate(doc, f"overlay {overlay} {doc['kind']} {doc['metadata']['name']}")
    deployment = by_kind(docs, "Deployment")
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    service = by_kind(docs, "Service")
    config = by_kind(docs, "ConfigMap")
    pvc = by_kind(docs, "PersistentVolumeClaim")
    pod = deployment["spec"]["template"]["spec"]
    # the renamed objects still point at each other
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert pod["containers"][0]["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    replicas = deployment["spec"]["replicas"]
    assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]
    monitor = by_kind(docs, "ServiceMonitor")
    assert all(service["metadata"]["labels"].get(k) == v
               for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (kustomize rendering)")
def test_overlays_differ_in_replicas_resources_and_image() -> None:
    dev, prod = (by_kind(render(o), "Deployment") for o in OVERLAYS)
    assert dev["spec"]["replicas"] < prod["spec"]["replicas"]
    dev_c, prod_c = (d["spec"]["template"]["spec"]["containers"][0] for d in (dev, prod))
    assert dev_c["image"] != prod_c["image"]
    assert dev_c["image"].endswith(":dev")
    assert dev_c["resources"] != prod_c["resources"]


def effective_settings(config_map: dict[str, Any]) -> ServerSettings:
    """The settings a pod gets from the ConfigMap's SHIPYARD_* variables (and nothing else)."""
    env = config_map["data"]
    fields = {f"SHIPYARD_{name.upper()}": name for name in ServerSettings.model_fields}
    unknown = sorted(set(env) - set(fields))
    assert not unknown, f"ConfigMap keys that are no server setting: {unknown}"
    return ServerSettings.model_validate({fields[k]: v for k, v in env.items()})


def test_configmap_holds_valid_settings_and_the_ports_match_the_container() -> None:
    docs = base_docs()
    settings = effective_settings(by_kind(docs, "ConfigMap"))
    defaults = ServerSettings()
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http_port, "grpc": settings.grpc_port}
    # the manifests keep the server's own defaults (the Dockerfile's EXPOSE says the same)
    assert (settings.http_port, settings.grpc_port) == (defaults.http_port, defaults.grpc_port)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(mounts["models"]) == settings.model_repository
    service = by_kind(docs, "Service")
    assert {(p["name"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", "http"), ("grpc", "grpc")}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (kustomize rendering)")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_exceeds_pre_stop_plus_the_servers_drain(overlay: str) -> None:
    docs = render(overlay)
    settings = effective_settings(by_kind(docs, "ConfigMap"))
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    pre_stop_s = float(command[1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + settings.grace_period_s
    # and above the server's own default, should the ConfigMap key be dropped
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + ServerSettings().grace_period_s


def test_kserve_runtime_passes_flags_the_server_accepts() -> None:
    runtime = load_docs(DEPLOY / "kserve" / "cluster-serving-runtime.yaml")[0]
    spec = runtime["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert set(formats) == {"onnx", "pmml", "pytorch"}
    assert all(f.get("version") and f.get("autoSelect") is True for f in formats.values())
    container = spec["containers"][0]
    assert container["name"] == "kserve-container"  # the name KServe merges its settings into
    args = dict(a.split("=", 1) if "=" in a else (a, "true") for a in container["args"])
    # KServe fills {{.Name}} with the InferenceService's name
    parsed = parse_serve_args([a.replace("{{.Name}}", "risk") for a in container["args"]])
    assert str(parsed["model_repository"]) == "/mnt/models"
    assert (parsed["http_port"], parsed["grpc_port"]) == (8080, 9000)
    with pytest.raises(Exception, match="no-such-flag"):
        parse_serve_args(["--no-such-flag=1"])
    assert args["--model-repository"] == "/mnt/models"
    # KServe's own V2 runtimes (kserve-tritonserver, kserve-mlserver): REST 8080, gRPC 9000
    assert (args["--http-port"], args["--grpc-port"]) == ("8080", "9000")
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    # the values are ones the settings accept (the template {{.Name}} stands for a model name)
    ServerSettings.model_validate({k[2:].replace("-", "_"): v.replace("{{.Name}}", "risk")
                                   for k, v in args.items() if k != "--log-format"})
    assert args["--model-name"] == args["--default-model"] == "{{.Name}}"
    isvc = load_docs(DEPLOY / "kserve" / "inference-service.yaml")[0]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in spec["protocolVersions"]


# --- Dockerfiles -------------------------------------------------------------------------------

def dockerfile_stages(path: Path) -> dict[str, list[str]]:
    """stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE):
            current = stages.setdefault(m.group(1), [])
        current.append(line)
    return stages


def instructions(stage: list[str], name: str) -> list[str]:
    """The arguments of every ``name`` instruction of a stage."""
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == name]


def test_serving_dockerfile_matches_the_server() -> None:
    stages = dockerfile_stages(DEPLOY / "docker" / "Dockerfile.serve")
    assert list(stages)[-1] == "serve", "the default target (last stage) must be the CPU image"
    assert {"serve-cpu", "serve-all", "serve-cuda"} <= set(stages)
    text = (DEPLOY / "docker" / "Dockerfile.serve").read_text(encoding="utf-8")
    cuda_image = re.search(r"^ARG CUDA_IMAGE=(\S+)", text, re.MULTILINE)
    assert cuda_image is not None and cuda_image.group(1).startswith("nvidia/cuda:")
    assert stages["serve-cuda"][0].startswith("FROM ${CUDA_IMAGE}")
    assert any("onnxruntime-gpu" in line for line in instructions(stages["serve-cuda"], "RUN"))
    defaults = ServerSettings()
    for name in ("serve-cpu", "serve-cuda"):
        stage = stages[name]
        assert instructions(stage, "EXPOSE") == [f"{defaults.http_port} {defaults.grpc_port}"]
        (health,) = instructions(stage, "HEALTHCHECK")
        assert f"127.0.0.1:{defaults.http_port}/v2/health/ready" in health
        user = instructions(stage, "USER")[-1]
        assert user not in ("root", "0")
        run = " ".join(instructions(stage, "RUN"))
        assert "[serve]" in run and "torch" not in run
    assert "torch" in " ".join(instructions(stages["serve-all"], "RUN"))


def test_training_dockerfile_installs_the_cpu_torch() -> None:
    stages = dockerfile_stages(DEPLOY / "docker" / "Dockerfile.train")
    (stage,) = stages.values()
    text = " ".join(stage)
    assert "download.pytorch.org/whl/cpu" in text
    assert ".[train,torch]" in text
    assert instructions(stage, "USER")[-1] not in ("root", "0")


def test_dockerignore_keeps_the_build_context_to_the_package() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "**"  # everything out, then only what `pip install .` reads back in
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(rules)
