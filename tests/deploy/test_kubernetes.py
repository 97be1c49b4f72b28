"""deploy/kubernetes: schema-valid, consistent with each other, with the image and the rules.

Core kinds are validated offline against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate (strict: unknown fields fail). ServiceMonitor and PrometheusRule are
CRDs it has no schema for, so they are checked structurally here; the PrometheusRule's
groups must equal deploy/prometheus/rules/ccwatch.rules.yml's (render-prometheusrule.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

import ccwatch
from ccwatch import cli

from .helpers import CONFIG_PATH, DEPLOY, PORT, REPO, UID, parse_with_secrets, secret_files

K8S = DEPLOY / "kubernetes"
RULES = REPO / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml"
RENDER = K8S / "render-prometheusrule.py"
CORE_FILES = ["deployment.yaml", "service.yaml", "configmap.yaml", "secret.example.yaml"]
CRD_FILES = ["servicemonitor.yaml", "prometheusrule.yaml"]
#: The oldest Kubernetes the manifests support (kubernetes-validate's newest is checked too).
OLDEST_K8S = "1.28.0"
MONITORING = "monitoring.coreos.com/v1"


def load(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]
    assert len(docs) == 1, f"{name}: one resource per file"
    doc: dict[str, Any] = docs[0]
    return doc


def quantity(value: str) -> float:
    """A Kubernetes quantity (``96Mi``, ``1``, ``50m``) as a number (bytes, cores)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(value))
    assert match, f"invalid quantity {value!r}"
    number, unit = match.groups()
    return float(number) * (units[unit] if unit else 1)


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return load("deployment.yaml")


@pytest.fixture(scope="module")
def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    [only] = pod["containers"]
    result: dict[str, Any] = only
    return result


# --------------------------------------------------------------------------- schemas


def _kubernetes_validate(*args: str) -> subprocess.CompletedProcess[str]:
    # the module of the dev dependency kubernetes-validate; its schemas ship in the wheel
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", *args],
        cwd=K8S,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _latest() -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import kubernetes_validate as k; print(k.latest_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_core_manifests_match_the_kubernetes_schemas() -> None:
    versions = [OLDEST_K8S, _latest()]
    flags = [arg for version in versions for arg in ("-k", version)]
    result = _kubernetes_validate("--strict", *flags, *CORE_FILES)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    # WARN would mean a schema was not found: the file was not validated at all
    assert not [line for line in lines if not line.startswith("INFO ")], report
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == len(CORE_FILES) * len(versions), report


def test_strict_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    # The validator really checks (and offline): a misspelt field fails.
    broken = load("deployment.yaml")
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = _kubernetes_validate("--strict", str(path))
    assert result.returncode != 0
    assert "livenessProbes" in result.stdout


# --------------------------------------------------------------------------- kustomize


def test_kustomization_lists_the_resources() -> None:
    kustomization = load("kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    for name in resources:
        assert (K8S / name).is_file(), name
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # the example Secret stays out, so that applying never overwrites the real one
    assert set(resources) == manifests - {"secret.example.yaml"}
    assert set(CORE_FILES + CRD_FILES) == manifests


def test_kustomization_image_is_the_released_version(container: dict[str, Any]) -> None:
    [image] = load("kustomization.yaml")["images"]
    assert container["image"].split(":")[0] == image["name"] == "ccwatch"
    assert image["newTag"] == ccwatch.__version__


# --------------------------------------------------------------------------- deployment


def test_one_replica_selected_by_its_labels(deployment: dict[str, Any]) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_container_runs_ccwatch_on_the_mounted_config(
    pod: dict[str, Any], container: dict[str, Any]
) -> None:
    args = cli._parser().parse_args(container["args"])
    assert args.command == "run"
    assert args.config_file == CONFIG_PATH
    assert "command" not in container, "the image's ENTRYPOINT, ccwatch, stays PID 1"
    config_dir = str(PurePosixPath(CONFIG_PATH).parent)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == config_dir]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount would not follow ConfigMap updates"
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmap = load("configmap.yaml")
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert PurePosixPath(CONFIG_PATH).name in configmap["data"]


def test_ports_and_probes(container: dict[str, Any]) -> None:
    [port] = container["ports"]
    assert port == {"name": "metrics", "containerPort": PORT, "protocol": "TCP"}
    expected = {
        "livenessProbe": "/-/healthy",
        "readinessProbe": "/-/ready",
        "startupProbe": "/-/healthy",
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe


def test_security_context(pod: dict[str, Any], container: dict[str, Any]) -> None:
    pod_sc = pod["securityContext"]
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == sc["runAsUser"] == UID, "the image's user"
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("privileged", False) is False
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc.get("seccompProfile", pod_sc["seccompProfile"]) == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # a Service named ccwatch would otherwise inject CCWATCH_* variables, ccwatch's prefix
    assert pod["enableServiceLinks"] is False


def test_resources_fit_the_measured_footprint(container: dict[str, Any]) -> None:
    resources = container["resources"]
    requests, limits = resources["requests"], resources["limits"]
    # ~60 MB RSS with a few targets; up to ~250 MB with 10,000 entry points
    assert 64 * 2**20 <= quantity(requests["memory"]) <= 256 * 2**20
    assert quantity(limits["memory"]) >= 256 * 2**20
    assert quantity(limits["memory"]) <= 1024 * 2**20
    assert quantity(requests["cpu"]) <= quantity(limits["cpu"])


def test_secrets_are_files_from_the_secret(
    pod: dict[str, Any], container: dict[str, Any], tmp_path: Path
) -> None:
    secret = load("secret.example.yaml")
    volumes = {v["name"]: v for v in pod["volumes"]}
    [mount] = [
        m
        for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]]
        and volumes[m["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    ]
    assert mount["mountPath"].startswith("/run/secrets/")
    assert mount["readOnly"] is True
    mode = volumes[mount["name"]]["secret"]["defaultMode"]
    assert mode & 0o007 == 0, "not world-readable: the pod's fsGroup reads it"
    assert pod["securityContext"]["fsGroup"] == UID
    config = yaml.safe_load(load("configmap.yaml")["data"][PurePosixPath(CONFIG_PATH).name])
    files = secret_files(config)
    assert files, "the example shows how a secret reaches ccwatch"
    for path in files:
        where = PurePosixPath(path)
        assert str(where.parent) == mount["mountPath"], path
        assert where.name in secret["stringData"], f"{path}: no such key in the Secret"
    parse_with_secrets(config, tmp_path, origin="configmap.yaml")


def test_example_secret_is_clearly_a_placeholder() -> None:
    text = (K8S / "secret.example.yaml").read_text(encoding="utf-8")
    assert "PLACEHOLDER" in text
    for value in load("secret.example.yaml")["stringData"].values():
        assert "CHANGE-ME" in value


def test_service_exposes_metrics(deployment: dict[str, Any]) -> None:
    service = load("service.yaml")
    [port] = service["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["port"] == PORT
    assert port["targetPort"] == "metrics"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


# --------------------------------------------------------------------------- CRDs


def test_servicemonitor_scrapes_the_service() -> None:
    monitor = load("servicemonitor.yaml")
    service = load("service.yaml")
    assert monitor["apiVersion"] == MONITORING
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["name"]
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}


def _check_rule_groups(groups: Any) -> None:
    assert isinstance(groups, list)
    assert groups
    for group in groups:
        assert isinstance(group["name"], str)
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str | int), rule
            if "alert" in rule:
                assert rule.get("labels", {}).get("severity"), rule["alert"]


def test_prometheusrule_structure() -> None:
    rule = load("prometheusrule.yaml")
    assert rule["apiVersion"] == MONITORING
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    assert set(rule["spec"]) == {"groups"}
    _check_rule_groups(rule["spec"]["groups"])


def test_prometheusrule_equals_the_rules_file() -> None:
    """deploy/kubernetes/prometheusrule.yaml is generated: it must not drift."""
    assert RULES.is_file(), f"{RULES} is missing"
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rendered = load("prometheusrule.yaml")
    assert rendered["spec"]["groups"] == rules["groups"], (
        "prometheusrule.yaml is stale: run python3 deploy/kubernetes/render-prometheusrule.py"
    )
    result = subprocess.run(
        [sys.executable, str(RENDER), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_render_script_wraps_any_rules_file(tmp_path: Path) -> None:
    groups = [
        {
            "name": "example",
            "rules": [
                {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                {
                    "alert": "Down",
                    "expr": "up == 0\nand on() vector(1)\n",
                    "for": "5m",
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "{{ $labels.instance }} is down: 100%"},
                },
            ],
        }
    ]
    rules = tmp_path / "x.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    out = tmp_path / "prometheusrule.yaml"
    cmd = [sys.executable, str(RENDER), "--rules", str(rules), "--output", str(out)]
    subprocess.run(cmd, capture_output=True, timeout=60, check=True)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# GENERATED by deploy/kubernetes/render-prometheusrule.py")
    assert "expr: |" in text, "multi-line PromQL stays readable"
    resource = yaml.safe_load(text)
    assert resource["apiVersion"] == MONITORING
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == groups
    check = subprocess.run([*cmd, "--check"], capture_output=True, timeout=60, check=False)
    assert check.returncode == 0
    changed = [{**groups[0], "name": "changed"}]
    rules.write_text(yaml.safe_dump({"groups": changed}), encoding="utf-8")
    stale = subprocess.run([*cmd, "--check"], capture_output=True, timeout=60, check=False)
    assert stale.returncode == 1
