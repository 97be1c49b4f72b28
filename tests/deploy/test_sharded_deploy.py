"""The sharded deployments: deploy/kubernetes-overlays/sharded, deploy/systemd and
deploy/compose/compose.sharded.yaml (docs/deploy.md's "Scaling out").

Kubernetes: the overlay is rendered with the emulation of kustomize (tests/deploy/kustomize.py,
compared with ``kustomize build`` / ``kubectl kustomize`` where either is on PATH); the base's
Deployment becomes a StatefulSet with the same pod plus the shard's environment, the number
of shards is the StatefulSet's replicas and nothing else, the Service is headless, the
ServiceMonitor scrapes every pod, and the core resources pass kubernetes-validate --strict.
systemd: the units are parsed here (and checked by ``systemd-analyze verify`` where it is
installed), their ExecStart parsed by ccwatch's command line. Compose: the override merged
with compose.yaml, ``config -q`` with any compose CLI, Prometheus's config by promtool. Each
deployment's shard settings are then given to ``ccwatch check-config`` with its config.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch.config import split_listen_address

from .helpers import CONFIG_PATH, DEPLOY, PORT, REPO, compose_configs, require_cli
from .helpers import with_stand_in_files as stand_ins
from .kustomize import Resource, build, build_with_cli, key, kustomize_cli, load_all
from .test_compose import COMPOSE_DIR, COMPOSE_FILE, Mount
from .test_compose_secure import _merge_service, load
from .test_kubernetes_overlays import _kubernetes_validate
from .test_rules import promtool

K8S = DEPLOY / "kubernetes"
SHARDED = DEPLOY / "kubernetes-overlays" / "sharded"
SYSTEMD = DEPLOY / "systemd"
#: where the README installs ccwatch (a virtual environment), and so what the units run
INSTALLED = "/opt/ccwatch/bin/ccwatch"
SHARDED_COMPOSE = COMPOSE_DIR / "compose.sharded.yaml"
PROMETHEUS = DEPLOY / "prometheus"
SHARD_ENV = "CCWATCH_SHARDING__SHARD"
TOTAL_ENV = "CCWATCH_SHARDING__TOTAL_SHARDS"
LISTEN_ENV = "CCWATCH_WEB__LISTEN_ADDRESS"
CORE_KINDS = {"StatefulSet", "Service", "ConfigMap"}

Rendered = dict[tuple[str, str], Resource]


def render(directory: Path) -> Rendered:
    return {key(r): r for r in build(directory)}


@pytest.fixture(scope="module")
def base() -> Rendered:
    return render(K8S)


@pytest.fixture(scope="module")
def sharded() -> Rendered:
    return render(SHARDED)


def statefulset(rendered: Rendered) -> dict[str, Any]:
    result: dict[str, Any] = rendered["StatefulSet", "ccwatch"]
    return result


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [result] = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(result, dict)
    return result


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def check_config(
    config: dict[str, Any], env: dict[str, str], tmp_path: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    """``ccwatch check-config [flags] FILE`` with only ``env`` as ccwatch's environment."""
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump(stand_ins(config, tmp_path)), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ccwatch", "check-config", *flags, str(path)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- Kubernetes


def test_emulation_renders_as_kustomize() -> None:
    argv = kustomize_cli()
    assert {key(r): r for r in build_with_cli(argv, SHARDED)} == render(SHARDED)


def test_overlay_is_beside_the_base_and_every_file_is_used() -> None:
    assert not SHARDED.resolve().is_relative_to(K8S.resolve())
    [kustomization] = load_all(SHARDED / "kustomization.yaml")
    assert [(SHARDED / r).resolve() for r in kustomization["resources"]] == [K8S.resolve()]
    patches = {p["path"] for p in kustomization["patches"]}
    files = {p.name for p in SHARDED.iterdir() if p.is_file()}
    assert files == {"kustomization.yaml"} | patches


def test_only_the_workload_and_the_service_change(base: Rendered, sharded: Rendered) -> None:
    assert set(sharded) == set(base) - {("Deployment", "ccwatch")} | {("StatefulSet", "ccwatch")}
    for name in base:
        if name[0] not in ("Deployment", "Service"):
            assert sharded[name] == base[name], name
    service, before = sharded["Service", "ccwatch"], base["Service", "ccwatch"]
    assert {**service, "spec": {k: v for k, v in service["spec"].items() if k != "clusterIP"}} == (
        before
    )


def test_statefulset_runs_the_base_pod_plus_the_shard_environment(
    base: Rendered, sharded: Rendered
) -> None:
    deployment, workload = base["Deployment", "ccwatch"], statefulset(sharded)
    assert workload["metadata"] == deployment["metadata"]
    # the container: the base's (image, args, probes, resources, security, mounts), plus env
    ours, theirs = container(workload), container(deployment)
    assert {k: v for k, v in ours.items() if k != "env"} == theirs
    assert [e for e in ours["env"] if e["name"] not in (SHARD_ENV, TOTAL_ENV)] == theirs.get(
        "env", []
    )
    # the rest of the pod and its labels: the base's as well
    pod, base_pod = workload["spec"]["template"], deployment["spec"]["template"]
    assert pod["metadata"] == base_pod["metadata"]
    assert {k: v for k, v in pod["spec"].items() if k != "containers"} == {
        k: v for k, v in base_pod["spec"].items() if k != "containers"
    }
    spec = workload["spec"]
    assert spec["selector"] == deployment["spec"]["selector"]
    assert spec["revisionHistoryLimit"] == deployment["spec"]["revisionHistoryLimit"]
    assert "strategy" not in spec, "a Deployment field"
    assert spec["podManagementPolicy"] == "Parallel"


def test_pods_have_no_service_links(sharded: Rendered) -> None:
    # the Service "ccwatch" would put CCWATCH_SERVICE_HOST & co. in ccwatch's config namespace
    assert statefulset(sharded)["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_the_shard_is_the_pod_name(sharded: Rendered) -> None:
    shard = env_of(statefulset(sharded))[SHARD_ENV]
    assert shard == {"name": SHARD_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def test_total_shards_is_the_replicas(sharded: Rendered) -> None:
    workload = statefulset(sharded)
    total = env_of(workload)[TOTAL_ENV]["value"]
    assert isinstance(total, str), "an env value is a string"
    assert total == str(workload["spec"]["replicas"])
    assert workload["spec"]["replicas"] > 1


def _with_replicas(tmp_path: Path, count: int) -> Path:
    """A copy of the base and the overlay, the overlay's replica count set to ``count``."""
    shutil.copytree(K8S, tmp_path / "kubernetes")
    overlay = tmp_path / "kubernetes-overlays" / "sharded"
    shutil.copytree(SHARDED, overlay)
    path = overlay / "kustomization.yaml"
    [kustomization] = load_all(path)
    [replicas] = kustomization["replicas"]
    replicas["count"] = count
    path.write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return overlay


@pytest.mark.parametrize("count", [1, 3, 7])
def test_one_knob_the_replica_count(tmp_path: Path, count: int) -> None:
    """Changing the kustomization's replica count changes the total with it: nothing else
    holds the number of shards."""
    overlay = _with_replicas(tmp_path, count)
    renderings = [render(overlay)]
    argv = kustomize_cli()
    if argv is not None:
        renderings.append({key(r): r for r in build_with_cli(argv, overlay)})
    for rendered in renderings:
        workload = statefulset(rendered)
        assert workload["spec"]["replicas"] == count
        assert env_of(workload)[TOTAL_ENV]["value"] == str(count)
    # the patch's own value is a placeholder, not a second number to keep in step: were
    # the replacement lost, ccwatch would refuse it rather than run with a wrong total
    [patch] = load_all(SHARDED / "shard-env.patch.yaml")
    [patched] = patch["spec"]["template"]["spec"]["containers"]
    written = {e["name"]: e.get("value") for e in patched["env"]}
    assert not str(written[TOTAL_ENV]).strip().isdigit()


def test_headless_service_governs_the_statefulset(sharded: Rendered) -> None:
    workload, service = statefulset(sharded), sharded["Service", "ccwatch"]
    assert service["spec"]["clusterIP"] == "None"
    assert workload["spec"]["serviceName"] == service["metadata"]["name"]
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container(workload)["ports"]}


def test_servicemonitor_scrapes_every_pod(sharded: Rendered) -> None:
    """Through the headless Service's endpoints: one target (``instance``) per pod."""
    monitor, service = sharded["ServiceMonitor", "ccwatch"], sharded["Service", "ccwatch"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "namespaceSelector" not in monitor["spec"], "the Service's own namespace"


def test_rendered_resources_match_the_kubernetes_schemas(sharded: Rendered, tmp_path: Path) -> None:
    paths: list[Path] = []
    for (kind, name), resource in sharded.items():
        if kind in CORE_KINDS:
            path = tmp_path / f"sharded-{kind}-{name}.yaml"
            path.write_text(yaml.safe_dump(resource), encoding="utf-8")
            paths.append(path)
    assert len(paths) == len(CORE_KINDS)
    result = _kubernetes_validate(paths)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert not [line for line in lines if not line.startswith("INFO ")], report
    assert len([line for line in lines if " passed for resource " in line]) == 2 * len(paths)


def _pod_env(workload: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's environment in the pod ``pod_name`` (the downward API resolved)."""
    env: dict[str, str] = {}
    for name, variable in env_of(workload).items():
        if "valueFrom" in variable:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            env[name] = pod_name
        else:
            env[name] = variable["value"]
    return env


def test_every_pod_is_a_valid_shard_and_one_more_is_not(sharded: Rendered, tmp_path: Path) -> None:
    workload = statefulset(sharded)
    text = sharded["ConfigMap", "ccwatch-config"]["data"][Path(CONFIG_PATH).name]
    config = yaml.safe_load(text)
    name, replicas = workload["metadata"]["name"], workload["spec"]["replicas"]
    for ordinal in range(replicas):
        result = check_config(config, _pod_env(workload, f"{name}-{ordinal}"), tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout
    # a pod beyond the total (a `kubectl scale` behind the kustomization's back) refuses
    result = check_config(config, _pod_env(workload, f"{name}-{replicas}"), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr


# --------------------------------------------------------------------------- systemd

Unit = dict[str, list[tuple[str, str]]]
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "User": "ccwatch",
}


def parse_unit(path: Path) -> Unit:
    """A unit file's sections, each a list of (key, value): keys may repeat."""
    unit: Unit = {}
    section: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path}:{number}: no continuation lines"
        match = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if match:
            assert match.group(1) not in unit, f"{path}:{number}: section twice"
            section = unit.setdefault(match.group(1), [])
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path}:{number}: {line!r}"
        assert section is not None, f"{path}:{number}: outside a section"
        section.append((name.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, name: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == name]


def one(unit: Unit, section: str, name: str) -> str:
    [value] = values(unit, section, name)
    return value


@pytest.fixture(scope="module")
def template() -> Unit:
    return parse_unit(SYSTEMD / "ccwatch@.service")


@pytest.fixture(scope="module")
def plain() -> Unit:
    return parse_unit(SYSTEMD / "ccwatch.service")


def env_file(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            result[name.strip()] = value.strip()
    return result


def exec_start(unit: Unit, instance: str) -> list[str]:
    argv = shlex.split(one(unit, "Service", "ExecStart").replace("%i", instance))
    assert argv[0] == INSTALLED
    return argv[1:]


def test_the_units_run_the_binary_the_readme_installs() -> None:
    """The README installs into a virtual environment; the units run its ``ccwatch``."""
    readme = (SYSTEMD.parents[1] / "README.md").read_text(encoding="utf-8")
    venv = re.search(r"^python3 -m venv (\S+)$", readme, re.M)
    assert venv is not None, "the README's install creates no virtual environment"
    assert f"{venv.group(1)}/bin/ccwatch --version" in readme
    assert f"{venv.group(1)}/bin/ccwatch" == INSTALLED
    for name in ("ccwatch.service", "ccwatch@.service"):
        exec_start(parse_unit(SYSTEMD / name), "0")


@pytest.mark.parametrize("name", ["ccwatch.service", "ccwatch@.service"])
def test_unit_is_hardened_and_reloadable(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    assert set(unit) == {"Unit", "Service", "Install"}
    for directive, expected in HARDENING.items():
        assert one(unit, "Service", directive) == expected, directive
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_units_differ_only_in_the_shard(plain: Unit, template: Unit) -> None:
    different = {"Description", "ExecStart", "EnvironmentFile"}
    for section in template:
        ours = [(k, v) for k, v in template[section] if k not in different]
        assert ours == [(k, v) for k, v in plain[section] if k not in different], section
    assert exec_start(template, "1") == [*exec_start(plain, "1"), "--shard=1"]


def test_ccwatch_accepts_exec_start(plain: Unit, template: Unit) -> None:
    require_cli(*exec_start(plain, ""))
    for instance in ("0", "1"):
        argv = exec_start(template, instance)
        require_cli(*argv)
        assert f"--config.file={CONFIG_PATH}" in argv


def test_shard_environment_files(template: Unit) -> None:
    files = values(template, "Service", "EnvironmentFile")
    # both required (no "-"): a shard without its own port fails instead of fighting
    assert files == ["/etc/ccwatch/shards.env", "/etc/ccwatch/shard-%i.env"]
    total = env_file(SYSTEMD / "shards.env")
    assert set(total) == {TOTAL_ENV}, "one value for every instance"
    shards = int(total[TOTAL_ENV])
    ports = set()
    for ordinal in range(shards):
        shard = env_file(SYSTEMD / f"shard-{ordinal}.env")
        assert set(shard) == {LISTEN_ENV}, ordinal
        ports.add(split_listen_address(shard[LISTEN_ENV])[1])
    assert len(ports) == shards, "each shard its own port"
    assert PORT in ports
    assert not (SYSTEMD / f"shard-{shards}.env").exists(), "as many files as shards"


def test_systemd_shards_check_config(template: Unit, tmp_path: Path) -> None:
    config = load(COMPOSE_DIR / "ccwatch.yml")
    total = env_file(SYSTEMD / "shards.env")
    for ordinal in range(int(total[TOTAL_ENV])):
        env = {**total, **env_file(SYSTEMD / f"shard-{ordinal}.env")}
        flags = [a for a in exec_start(template, str(ordinal)) if a.startswith("--shard")]
        result = check_config(config, env, tmp_path, *flags)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK" in result.stdout


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on both units and an instance of the template, with
    ExecStart's binary replaced by one that exists here (verify checks that it does)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze not found: apt-get install systemd (.ci/run does)"
    true = shutil.which("true")
    assert true
    for name in ("ccwatch.service", "ccwatch@.service"):
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED, true), "utf-8")
    (tmp_path / "ccwatch@1.service").symlink_to(tmp_path / "ccwatch@.service")
    for name in ("ccwatch.service", "ccwatch@.service", "ccwatch@1.service"):
        result = subprocess.run(
            [analyze, "verify", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        report = result.stdout + result.stderr
        assert result.returncode == 0, report
        # unknown keys are only warnings: none may mention our units
        assert "ccwatch" not in report, report


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return load(SHARDED_COMPOSE)


@pytest.fixture(scope="module")
def merged(override: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml with the override, as compose merges the keys the override uses."""
    result = load(COMPOSE_FILE)
    services = dict(result["services"])
    for name, service in override["services"].items():
        if name in services:
            # depends_on is a mapping: merged by key (the override lists them all anyway)
            merged_service = _merge_service(services[name], service)
            if "depends_on" in service:
                merged_service["depends_on"] = {
                    **services[name].get("depends_on", {}),
                    **service["depends_on"],
                }
            services[name] = merged_service
        else:
            services[name] = service
    result["services"] = services
    return result


def shard_services(merged: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in merged["services"].items()
        if SHARD_ENV in service.get("environment", {})
    }


def test_override_adds_one_shard_service(override: dict[str, Any]) -> None:
    assert set(override["services"]) == {"ccwatch", "ccwatch-1", "prometheus"}
    assert set(override["services"]["ccwatch"]) == {"environment"}
    assert set(override["services"]["prometheus"]) == {"depends_on", "volumes"}


def test_shards_are_compose_yamls_ccwatch_but_for_shard_and_port(merged: dict[str, Any]) -> None:
    shards = shard_services(merged)
    assert list(shards) == ["ccwatch", "ccwatch-1"]
    first = shards["ccwatch"]
    ordinals = []
    host_ports = []
    for name, service in shards.items():
        env = service["environment"]
        ordinals.append(int(env[SHARD_ENV]))
        assert env[TOTAL_ENV] == str(len(shards)), name
        assert {k: v for k, v in env.items() if k != SHARD_ENV} == {
            k: v for k, v in first["environment"].items() if k != SHARD_ENV
        }
        assert {k: v for k, v in service.items() if k not in ("environment", "ports")} == {
            k: v for k, v in first.items() if k not in ("environment", "ports")
        }, name
        [port] = service["ports"]
        host, published, target = str(port).rsplit(":", 2)
        assert host == "${BIND_ADDRESS:-127.0.0.1}"
        assert int(target) == PORT
        host_ports.append(int(published))
    assert ordinals == list(range(len(shards)))
    assert len(set(host_ports)) == len(shards), "each shard its own host port"


def test_prometheus_scrapes_every_shard(merged: dict[str, Any]) -> None:
    prometheus = merged["services"]["prometheus"]
    shards = shard_services(merged)
    for name in shards:
        assert prometheus["depends_on"][name] == {"condition": "service_healthy"}
    mounts = {m.target: m for m in map(Mount, prometheus["volumes"])}
    config = load(mounts["/etc/prometheus/prometheus.yml"].source)
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ccwatch"]
    [static] = job["static_configs"]
    # one job, one target (instance) per shard: the shard alerts count them
    assert static["targets"] == [f"{name}:{PORT}" for name in shards]


def test_prometheus_sharded_config_is_the_example_but_for_the_targets() -> None:
    sharded, example = (
        load(PROMETHEUS / "prometheus.sharded.yml"),
        load(PROMETHEUS / "prometheus.yml"),
    )

    def without_targets(config: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in j.items() if k != "static_configs"} for j in config["scrape_configs"]
        ]

    assert {k: v for k, v in sharded.items() if k != "scrape_configs"} == {
        k: v for k, v in example.items() if k != "scrape_configs"
    }
    assert without_targets(sharded) == without_targets(example)


def test_promtool_checks_the_sharded_config(tmp_path: Path) -> None:
    config = load(PROMETHEUS / "prometheus.sharded.yml")
    config["rule_files"] = [str(PROMETHEUS / pattern) for pattern in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = promtool("check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_shards_check_config(merged: dict[str, Any], tmp_path: Path) -> None:
    for name, service in shard_services(merged).items():
        [mount] = [m for m in map(Mount, service["volumes"]) if m.target == CONFIG_PATH]
        env = {k: str(v) for k, v in service["environment"].items()}
        result = check_config(load(mount.source), env, tmp_path)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def test_compose_cli_accepts_the_override() -> None:
    for _, theirs in compose_configs(COMPOSE_FILE, SHARDED_COMPOSE):
        services = theirs["services"]
        for name, ordinal in (("ccwatch", "0"), ("ccwatch-1", "1")):
            environment = services[name]["environment"]
            assert str(environment[SHARD_ENV]) == ordinal
            assert str(environment[TOTAL_ENV]) == "2"
        [volume] = [
            v
            for v in services["prometheus"]["volumes"]
            if "/etc/prometheus/prometheus.yml" in str(v)
        ]
        assert "prometheus.sharded.yml" in str(volume)


# --------------------------------------------------------------------------- README


def test_readme_scaling_out_section() -> None:
    """The "Scaling out" section of docs/deploy.md (the README links it)."""
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## .+$", text, flags=re.MULTILINE)
    assert headings.count("## Scaling out") == 1
    assert "docs/deploy.md" in (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Scaling out\n", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "--shard",
        "--total-shards",
        SHARD_ENV,
        TOTAL_ENV,
        "ccwatch_shard_ordinal",
        "ccwatch_total_shards",
        "CcwatchShardsMissing",
        "CcwatchShardCountMismatch",
        "kubectl apply -k deploy/kubernetes-overlays/sharded",
        "systemctl enable --now ccwatch@0 ccwatch@1",
        "compose.sharded.yaml",
        "check-config --shard",
    ):
        assert needed in section, needed
