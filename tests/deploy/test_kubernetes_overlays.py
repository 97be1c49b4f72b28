"""deploy/kubernetes-overlays: the optional secured variants of deploy/kubernetes.

``secure``: TLS and basic auth from a web config in Secrets, /-/healthy and /-/ready public
so that the kubelet's HTTPS probes pass, and a ServiceMonitor that scrapes over https with
the CA and basic auth. ``client-certs``: on top of it, client certificates required, so
the probes run ``ccwatch healthcheck`` (exec) or open a TCP connection instead.

The overlays are rendered with the emulation of kustomize in tests/deploy/kustomize.py (a
kustomization key or patch it does not know, or a patch that matches nothing, fails), and
compared with ``kustomize build`` / ``kubectl kustomize`` where either is on PATH. The
rendered core resources and the example Secrets are validated against the Kubernetes
schemas with kubernetes-validate, as the base's are in test_kubernetes.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from .helpers import (
    CONFIG_PATH,
    DEPLOY,
    PORT,
    check_web_config,
    cli_accepts,
    parse_with_secrets,
)
from .kustomize import Resource, build, build_with_cli, key, kustomize_cli, load_all

K8S = DEPLOY / "kubernetes"
OVERLAYS = DEPLOY / "kubernetes-overlays"
SECURE = OVERLAYS / "secure"
CLIENT_CERTS = OVERLAYS / "client-certs"
#: Where the secure overlay mounts the web config and the certificate files.
WEB_DIR = PurePosixPath("/run/secrets/ccwatch-web")
WEB_CONFIG = WEB_DIR / "web-config.yml"
WEB_FLAG = f"--web.config.file={WEB_CONFIG}"
PUBLIC = ["/-/healthy", "/-/ready"]
PROBES = {"startupProbe": "/-/healthy", "livenessProbe": "/-/healthy", "readinessProbe": "/-/ready"}
CORE_KINDS = {"Deployment", "Service", "ConfigMap", "Secret"}
OLDEST_K8S = "1.28.0"
#: The fields of a ServiceMonitor endpoint (monitoring.coreos.com/v1) the overlays use.
ENDPOINT_KEYS = {
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "scheme",
    "tlsConfig",
    "basicAuth",
}
TLS_CONFIG_KEYS = {"ca", "cert", "keySecret", "serverName", "insecureSkipVerify"}


Rendered = dict[tuple[str, str], Resource]


def render(directory: Path) -> Rendered:
    return {key(r): r for r in build(directory)}


def example(directory: Path, name: str) -> Resource:
    [resource] = load_all(directory / name)
    return resource


def examples(directory: Path) -> dict[str, Resource]:
    """The example Secrets of an overlay, by Secret name."""
    found = [example(directory, p.name) for p in sorted(directory.glob("*.secret.example.yaml"))]
    return {r["metadata"]["name"]: r for r in found}


def secret_keys(name: str, *directories: Path) -> set[str]:
    """The keys of the example Secret ``name``: the first directory that has one."""
    for directory in directories:
        found = examples(directory).get(name)
        if found is not None:
            return set(found.get("stringData", {})) | set(found.get("data", {}))
    raise AssertionError(f"no example of the Secret {name} in {directories}")


def container_of(rendered: Rendered) -> dict[str, Any]:
    [container] = rendered["Deployment", "ccwatch"]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def pod_of(rendered: Rendered) -> dict[str, Any]:
    result: dict[str, Any] = rendered["Deployment", "ccwatch"]["spec"]["template"]["spec"]
    return result


def endpoint_of(rendered: Rendered) -> dict[str, Any]:
    [endpoint] = rendered["ServiceMonitor", "ccwatch"]["spec"]["endpoints"]
    result: dict[str, Any] = endpoint
    return result


def web_config_example(directory: Path) -> dict[str, Any]:
    text = example(directory, "web-config.secret.example.yaml")["stringData"]["web-config.yml"]
    return check_web_config(yaml.safe_load(text))


@pytest.fixture(scope="module")
def base() -> Rendered:
    return render(K8S)


@pytest.fixture(scope="module")
def secure() -> Rendered:
    return render(SECURE)


@pytest.fixture(scope="module")
def client_certs() -> Rendered:
    return render(CLIENT_CERTS)


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("directory", [K8S, SECURE, CLIENT_CERTS], ids=lambda p: p.name)
def test_emulation_renders_as_kustomize(directory: Path) -> None:
    argv = kustomize_cli()
    assert {key(r): r for r in build_with_cli(argv, directory)} == render(directory)


def test_overlays_are_beside_the_base_not_inside() -> None:
    # kustomize refuses an overlay inside its base's directory (a cycle: the base's
    # directory would contain the overlay)
    for directory in (SECURE, CLIENT_CERTS):
        assert not directory.resolve().is_relative_to(K8S.resolve())
    [secure] = load_all(SECURE / "kustomization.yaml")
    assert [(SECURE / r).resolve() for r in secure["resources"]] == [K8S.resolve()]
    [client] = load_all(CLIENT_CERTS / "kustomization.yaml")
    assert [(CLIENT_CERTS / r).resolve() for r in client["resources"]] == [SECURE.resolve()]


@pytest.mark.parametrize("directory", [SECURE, CLIENT_CERTS], ids=lambda p: p.name)
def test_every_file_is_a_patch_or_an_example(directory: Path) -> None:
    [kustomization] = load_all(directory / "kustomization.yaml")
    patches = {p["path"] for p in kustomization["patches"]}
    assert all((directory / p).is_file() for p in patches)
    files = {p.name for p in directory.iterdir() if p.is_file()}
    example_files = {n for n in files if n.endswith(".secret.example.yaml")}
    assert files == {"kustomization.yaml"} | patches | example_files
    assert example_files, "each overlay shows the Secrets it needs"
    # the examples stay out, so that applying never overwrites the real Secrets
    assert not set(kustomization["resources"]) & example_files


def test_secure_changes_only_the_deployment_and_the_servicemonitor(
    base: Rendered, secure: Rendered
) -> None:
    assert set(secure) == set(base)
    changed = {k for k in base if base[k] != secure[k]}
    assert changed == {("Deployment", "ccwatch"), ("ServiceMonitor", "ccwatch")}


def test_client_certs_changes_only_the_probes_and_the_client_certificate(
    secure: Rendered, client_certs: Rendered
) -> None:
    assert set(client_certs) == set(secure)
    changed = {k for k in secure if secure[k] != client_certs[k]}
    assert changed == {("Deployment", "ccwatch"), ("ServiceMonitor", "ccwatch")}
    before, after = container_of(secure), container_of(client_certs)
    assert {k: v for k, v in before.items() if k not in PROBES} == {
        k: v for k, v in after.items() if k not in PROBES
    }
    tls_before = endpoint_of(secure)["tlsConfig"]
    tls_after = endpoint_of(client_certs)["tlsConfig"]
    assert {k: v for k, v in tls_after.items() if k not in ("cert", "keySecret")} == tls_before
    assert {k: v for k, v in endpoint_of(client_certs).items() if k != "tlsConfig"} == {
        k: v for k, v in endpoint_of(secure).items() if k != "tlsConfig"
    }


def _kubernetes_validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    latest = subprocess.run(
        [sys.executable, "-c", "import kubernetes_validate as k; print(k.latest_version())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            *("-k", OLDEST_K8S, "-k", latest),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rendered_resources_and_examples_match_the_kubernetes_schemas(
    secure: Rendered, client_certs: Rendered, tmp_path: Path
) -> None:
    paths: list[Path] = []
    for name, rendered in (("secure", secure), ("client-certs", client_certs)):
        for (kind, resource_name), resource in rendered.items():
            if kind in CORE_KINDS:
                path = tmp_path / f"{name}-{kind}-{resource_name}.yaml"
                path.write_text(yaml.safe_dump(resource), encoding="utf-8")
                paths.append(path)
    paths += sorted(OVERLAYS.glob("*/*.secret.example.yaml"))
    result = _kubernetes_validate(paths)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert not [line for line in lines if not line.startswith("INFO ")], report
    assert len([line for line in lines if " passed for resource " in line]) == 2 * len(paths)


def test_example_secrets_are_clearly_placeholders() -> None:
    for path in sorted(OVERLAYS.glob("*/*.secret.example.yaml")):
        text = path.read_text(encoding="utf-8")
        assert "PLACEHOLDER" in text, path
        assert "-----BEGIN" not in text, f"{path}: no key material, not even a demo one"
        secret = example(path.parent, path.name)
        assert secret["kind"] == "Secret"
        assert "data" not in secret, "stringData: readable placeholders"
        for name, value in secret["stringData"].items():
            if name != "username":
                assert "CHANGE-ME" in value, f"{path}: {name}"


# --------------------------------------------------------------------------- secure


def test_secure_runs_ccwatch_with_the_web_config(base: Rendered, secure: Rendered) -> None:
    args = container_of(secure)["args"]
    assert args == [*container_of(base)["args"], WEB_FLAG]
    assert cli_accepts(*args)


def test_secure_mounts_the_web_config_and_the_certificate_together(secure: Rendered) -> None:
    pod, container = pod_of(secure), container_of(secure)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(WEB_DIR)]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount would not follow Secret updates"
    volumes = {v["name"]: v for v in pod["volumes"]}
    projected = volumes[mount["name"]]["projected"]
    assert projected["defaultMode"] & 0o007 == 0, "not world-readable: fsGroup reads it"
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]
    sources = [s["secret"] for s in projected["sources"]]
    assert all("items" not in s for s in sources), "every key, ca.crt when it is there"
    names = [s["name"] for s in sources]
    assert names == ["ccwatch-web-config", "ccwatch-tls"]
    files: list[str] = []
    for name in names:
        files += secret_keys(name, SECURE)
    assert len(files) == len(set(files)), "one directory: no key in both Secrets"
    assert WEB_CONFIG.name in files
    # the web config names the certificate files relative to itself: same directory
    tls = web_config_example(SECURE)["tls_server_config"]
    for name in ("cert_file", "key_file"):
        path = WEB_DIR / tls[name]
        assert path.parent == WEB_DIR, f"{name}: {tls[name]}"
        assert path.name in secret_keys("ccwatch-tls", SECURE), f"{name}: {tls[name]}"


def test_secure_probes_are_https_on_public_paths(
    base: Rendered, secure: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = container_of(secure)
    for probe, path in PROBES.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTPS"}
        timing = {k: v for k, v in container[probe].items() if k != "httpGet"}
        assert timing == {k: v for k, v in container_of(base)[probe].items() if k != "httpGet"}
    # the probes send no credentials: their paths must be web.public_paths, as ccwatch
    # parses the ConfigMap's ccwatch.yml with the container's environment
    for variable in container["env"]:
        assert variable["name"].startswith("CCWATCH_")
        monkeypatch.setenv(variable["name"], variable["value"])
    text = secure["ConfigMap", "ccwatch-config"]["data"][PurePosixPath(CONFIG_PATH).name]
    config = parse_with_secrets(yaml.safe_load(text), tmp_path, origin="ccwatch-config")
    assert config.web.public_paths == PUBLIC
    assert set(PROBES.values()) <= set(config.web.public_paths)


def test_secure_servicemonitor_scrapes_over_https_with_basic_auth(
    base: Rendered, secure: Rendered
) -> None:
    endpoint = endpoint_of(secure)
    assert set(endpoint) <= ENDPOINT_KEYS
    added = {"scheme", "tlsConfig", "basicAuth"}
    assert {k: v for k, v in endpoint.items() if k not in added} == endpoint_of(base)
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert set(tls) <= TLS_CONFIG_KEYS
    assert not tls.get("insecureSkipVerify", False)
    ca = tls["ca"]["secret"]
    assert ca["key"] in secret_keys(ca["name"], SECURE)
    # Prometheus scrapes the pod IP; the certificate is checked against the Service's name
    assert tls["serverName"] == secure["Service", "ccwatch"]["metadata"]["name"]
    auth = endpoint["basicAuth"]
    assert set(auth) == {"username", "password"}
    for part in auth.values():
        assert part["key"] in secret_keys(part["name"], SECURE)
    assert examples(SECURE)[ca["name"]]["type"] == "kubernetes.io/tls"
    # the user the ServiceMonitor sends is one the web config lets in
    username = examples(SECURE)[auth["username"]["name"]]["stringData"]["username"]
    assert username in web_config_example(SECURE)["basic_auth_users"]


def test_secure_web_config_example() -> None:
    data = web_config_example(SECURE)
    assert data["tls_server_config"].get("client_auth_type", "NoClientCert") == "NoClientCert"
    assert data["basic_auth_users"], "basic auth is on: every path but web.public_paths"


# --------------------------------------------------------------------------- client-certs


def test_client_certs_probes_need_no_client_certificate(
    base: Rendered, client_certs: Rendered
) -> None:
    container = container_of(client_certs)
    for probe in PROBES:
        assert "httpGet" not in container[probe], "the kubelet has no client certificate"
    run_flags = [a for a in container["args"] if a.startswith("--")]
    for probe in ("startupProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        # ccwatch healthcheck with the same config and web config as `run`
        assert command == ["ccwatch", "healthcheck", *run_flags], probe
        assert container[probe]["timeoutSeconds"] >= 3, "a Python process starts"
        assert cli_accepts(*command[1:])
    assert container["readinessProbe"]["tcpSocket"] == {"port": "metrics"}
    # at least the base's time budget: a slow start still fits
    for probe in PROBES:
        ours, theirs = container[probe], container_of(base)[probe]
        budget = ours["periodSeconds"] * ours["failureThreshold"]
        assert budget >= theirs["periodSeconds"] * theirs["failureThreshold"], probe
        assert ours["periodSeconds"] >= theirs["periodSeconds"], "no more often than HTTP"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": PORT}


def test_client_certs_servicemonitor_presents_a_certificate(client_certs: Rendered) -> None:
    tls = endpoint_of(client_certs)["tlsConfig"]
    assert set(tls) <= TLS_CONFIG_KEYS
    cert, key_secret = tls["cert"]["secret"], tls["keySecret"]
    assert cert["name"] == key_secret["name"] == "ccwatch-scrape-client-tls"
    assert (cert["key"], key_secret["key"]) == ("tls.crt", "tls.key")
    text = (CLIENT_CERTS / "kustomization.yaml").read_text(encoding="utf-8")
    assert "kubectl create secret tls ccwatch-scrape-client-tls" in text, "says how to make it"


def test_client_certs_web_config_example_requires_verified_client_certificates() -> None:
    data = web_config_example(CLIENT_CERTS)
    tls = data["tls_server_config"]
    assert tls["client_auth_type"] == "RequireAndVerifyClientCert"
    path = WEB_DIR / tls["client_ca_file"]
    assert path.parent == WEB_DIR
    assert path.name in secret_keys("ccwatch-tls", CLIENT_CERTS, SECURE)
    secure_data = web_config_example(SECURE)
    # the rest as in the secure overlay's example
    tls_rest = {k: v for k, v in tls.items() if not k.startswith("client_")}
    assert {**data, "tls_server_config": tls_rest} == secure_data


def test_client_certs_overlay_reuses_the_secure_secrets() -> None:
    # only the web config example differs; ccwatch-tls and ccwatch-scrape-auth are ../secure's
    assert set(examples(CLIENT_CERTS)) == {"ccwatch-web-config"}
