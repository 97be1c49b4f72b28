"""deploy/compose/compose.yaml: structure, mounts, healthchecks, its ccwatch config and its
Alertmanager.

Unconditional: the file is parsed with PyYAML and checked here, and its ccwatch config and
healthcheck commands are run against the simulator in-process. If a compose CLI happens
to be installed (``docker compose`` or ``docker-compose``), ``config -q`` is run too; it
needs no Docker engine.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch import cli
from ccwatch.config import split_listen_address
from tests.harness import daemon, simulator

from .helpers import (
    CONFIG_PATH,
    DEPLOY,
    PORT,
    REPO,
    UID,
    compose_configs,
    parse_with_secrets,
    secret_files,
)
from .helpers import with_stand_in_files as stand_ins

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SIM_PORT = 9866
ALERTMANAGER_PORT = 9093

# Files other engineers write: mounted, but not required to exist for these tests.
OTHERS = (REPO / "deploy" / "prometheus", REPO / "grafana")
#: The host's files that services mount (outside the repository), and why.
HOST_MOUNTS = {
    "/usr/share/zoneinfo": "the time zone database, for Alertmanager's time interval locations",
}

# The compose-spec keys this stack uses, to catch a misspelt key that compose would reject.
SERVICE_KEYS = {
    "build",
    "cap_drop",
    "command",
    "depends_on",
    "environment",
    "healthcheck",
    "image",
    "ports",
    "read_only",
    "restart",
    "secrets",
    "security_opt",
    "stop_grace_period",
    "stop_signal",
    "user",
    "volumes",
}
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "start_period", "retries"}
TOP_LEVEL_KEYS = {"services", "secrets", "volumes", "networks", "configs", "name"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


@pytest.fixture(scope="module")
def ccwatch_config(services: dict[str, Any]) -> dict[str, Any]:
    [mount] = [v for v in _volumes(services["ccwatch"]) if v.target == CONFIG_PATH]
    data = yaml.safe_load(mount.source.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


class Mount:
    def __init__(self, spec: str) -> None:
        parts = spec.split(":")
        assert len(parts) in (2, 3), f"volume {spec!r}: expected SOURCE:TARGET[:MODE]"
        self.spec = spec
        self.raw_source = parts[0]
        self.target = parts[1]
        self.mode = parts[2] if len(parts) == 3 else "rw"
        self.is_bind = self.raw_source.startswith((".", "/"))
        self.source = (COMPOSE_DIR / self.raw_source).resolve()


def _volumes(service: dict[str, Any]) -> list[Mount]:
    return [Mount(v) for v in service.get("volumes", [])]


def _published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> host address, from "HOST:PUBLISHED:TARGET" entries."""
    result: dict[int, str] = {}
    for entry in service.get("ports", []):
        host, published, target = str(entry).rsplit(":", 2)
        assert published == target, f"{entry}: publish on the same port"
        result[int(target)] = host
    return result


def _health_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    match = re.search(r"http://[^'\" ]+", " ".join(test))
    assert match, f"healthcheck without a URL: {test}"
    return match.group(0)


# --------------------------------------------------------------------------- structure


def test_top_level(compose: dict[str, Any]) -> None:
    unknown = {k for k in compose if not k.startswith("x-")} - TOP_LEVEL_KEYS
    assert not unknown, f"unknown top-level keys {unknown}"
    assert "version" not in compose, "the version key is obsolete"
    assert set(compose["services"]) == {
        "simulator",
        "ccwatch",
        "prometheus",
        "alertmanager",
        "grafana",
    }


def test_service_keys_are_compose_keys(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unexpected {set(service) - SERVICE_KEYS}"
        assert set(service["healthcheck"]) <= HEALTHCHECK_KEYS, name


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: pin the image {image}"
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", services["alertmanager"]["image"])


def test_ccwatch_services_use_the_repository_image(services: dict[str, Any]) -> None:
    for name in ("simulator", "ccwatch"):
        service = services[name]
        build = service["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert service["image"] == services["ccwatch"]["image"]


def test_ccwatch_services_are_hardened(services: dict[str, Any]) -> None:
    for name in ("simulator", "ccwatch"):
        service = services[name]
        assert service["user"] == f"{UID}:{UID}", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_every_service_runs_as_non_root(services: dict[str, Any]) -> None:
    for name, service in services.items():
        uid = str(service.get("user", "")).partition(":")[0]
        assert uid.isdigit(), f"{name}: set a numeric user"
        assert int(uid) != 0, f"{name} runs as root"


def test_bind_mounts_exist(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name, service in services.items():
        for mount in _volumes(service):
            assert mount.target.startswith("/"), mount.spec
            if not mount.is_bind:
                assert mount.raw_source in compose["volumes"], f"{name}: {mount.spec}"
                continue
            assert mount.mode == "ro", f"{name}: mount {mount.spec} read-only"
            if mount.raw_source in HOST_MOUNTS:
                continue
            assert mount.source.is_relative_to(REPO), mount.spec
            if not any(mount.source.is_relative_to(other) for other in OTHERS):
                assert mount.source.exists(), f"{name}: {mount.spec}: {mount.source} is missing"


def test_secrets_are_files_on_disk(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for name, secret in declared.items():
        path = COMPOSE_DIR / secret["file"]
        assert path.is_file(), f"secret {name}: {path} is missing"
        # compose bind-mounts it as it is: the container's non-root user must read it
        assert path.stat().st_mode & 0o004, f"{path} must be world-readable (0644)"
    for name, service in services.items():
        for ref in service.get("secrets", []):
            assert ref["source"] in declared, f"{name}: undeclared secret {ref['source']}"
            assert ref["target"].startswith("/run/secrets/")


def test_ports(services: dict[str, Any]) -> None:
    expected = {
        "ccwatch": PORT,
        "simulator": SIM_PORT,
        "prometheus": 9090,
        "alertmanager": ALERTMANAGER_PORT,
        "grafana": 3000,
    }
    for name, port in expected.items():
        published = _published(services[name])
        assert list(published) == [port], name
        assert published[port] == "${BIND_ADDRESS:-127.0.0.1}", "localhost unless asked"


def test_depends_on_waits_for_health(services: dict[str, Any]) -> None:
    chain = {"ccwatch": "simulator", "prometheus": "ccwatch", "grafana": "prometheus"}
    for name, dependency in chain.items():
        assert services[name]["depends_on"] == {dependency: {"condition": "service_healthy"}}
    for service in services.values():
        for dependency in service.get("depends_on", {}):
            assert "healthcheck" in services[dependency], dependency


def test_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form, no shell needed"
    assert _health_url(services["ccwatch"]) == f"http://127.0.0.1:{PORT}/-/healthy"
    assert _health_url(services["simulator"]) == f"http://127.0.0.1:{SIM_PORT}/-/sim/state"
    assert _health_url(services["prometheus"]).endswith(":9090/-/ready")
    assert _health_url(services["grafana"]).endswith(":3000/api/health")
    assert _health_url(services["alertmanager"]).endswith(f":{ALERTMANAGER_PORT}/-/ready")


# --------------------------------------------------------------------------- commands


def test_simulator_command(services: dict[str, Any]) -> None:
    args = cli._parser().parse_args(services["simulator"]["command"])
    assert args.command == "simulate"
    assert split_listen_address(args.listen) == ("0.0.0.0", SIM_PORT)
    # ccwatch simulate stops on SIGINT (KeyboardInterrupt); as PID 1 it ignores SIGTERM
    assert services["simulator"]["stop_signal"] == "SIGINT"


def test_ccwatch_command_and_mounts(services: dict[str, Any]) -> None:
    service = services["ccwatch"]
    args = cli._parser().parse_args(service["command"])
    assert args.command == "run"
    assert args.config_file == CONFIG_PATH
    [config] = [m for m in _volumes(service) if m.target == CONFIG_PATH]
    assert config.source == COMPOSE_DIR / "ccwatch.yml"


def test_ccwatch_config_is_valid(
    services: dict[str, Any],
    ccwatch_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the service's CCWATCH_* overrides must be valid too
    for key, value in services["ccwatch"].get("environment", {}).items():
        assert key.startswith("CCWATCH_"), key
        monkeypatch.setenv(key, str(value))
    config = parse_with_secrets(ccwatch_config, tmp_path, origin="deploy/compose/ccwatch.yml")
    assert split_listen_address(config.web.listen_address) == ("0.0.0.0", PORT)
    ece = [t for t in config.targets if t.source == "ece"]
    assert ece, "the stack watches the simulator's ECE entry points"
    # ECE's chat APIs are anonymous: credentials there would suggest otherwise
    assert all(t.basic_auth is None for t in ece)
    for target in config.targets:
        url = target.url + "/"
        assert url.startswith(f"http://simulator:{SIM_PORT}/"), target.url


def test_ccwatch_secret_files_are_compose_secrets(
    services: dict[str, Any], ccwatch_config: dict[str, Any]
) -> None:
    targets = {ref["target"] for ref in services["ccwatch"]["secrets"]}
    files = secret_files(ccwatch_config)
    assert files, "the example shows how a secret file reaches ccwatch"
    for path in files:
        assert path in targets, f"{path} is not mounted by a compose secret"


def test_grafana_mounts_and_secret(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = {m.target: m.source for m in _volumes(grafana)}
    assert mounts["/etc/grafana/provisioning"] == REPO / "grafana" / "provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == REPO / "grafana" / "dashboards"
    password = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert password in {ref["target"] for ref in grafana["secrets"]}


def test_prometheus_loads_the_rules_and_scrapes_ccwatch(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    flags = {k: v for k, _, v in (arg.partition("=") for arg in prometheus["command"])}
    mounts = {m.target: m for m in _volumes(prometheus)}
    config_mount = mounts[flags["--config.file"]]
    assert config_mount.source == REPO / "deploy" / "prometheus" / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"].source == REPO / "deploy" / "prometheus" / "rules"
    # deploy/prometheus/prometheus.yml (written elsewhere) must fit this stack
    config = yaml.safe_load(config_mount.source.read_text(encoding="utf-8"))
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"ccwatch:{PORT}" in targets
    container_dir = Path(flags["--config.file"]).parent
    for pattern in config["rule_files"]:
        resolved = container_dir / pattern
        assert resolved.is_relative_to(Path("/etc/prometheus/rules")), pattern
        on_disk = REPO / "deploy" / "prometheus" / resolved.relative_to("/etc/prometheus")
        assert list(on_disk.parent.glob(on_disk.name)), f"rule_files {pattern} matches nothing"


def test_alertmanager_service(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """Alertmanager runs deploy/alertmanager/alertmanager.yml (tested by
    test_alertmanager.py), alone (no cluster), keeping its state in a named volume."""
    alertmanager = services["alertmanager"]
    flags = {k: v for k, _, v in (arg.partition("=") for arg in alertmanager["command"])}
    mounts = {m.target: m for m in _volumes(alertmanager)}
    config = mounts[flags["--config.file"]]
    assert config.is_bind
    assert config.source == REPO / "deploy" / "alertmanager" / "alertmanager.yml"
    storage = mounts[flags["--storage.path"]]
    assert not storage.is_bind
    assert storage.raw_source in compose["volumes"]
    assert flags["--cluster.listen-address"] == "", "a single Alertmanager: no clustering"
    # the image has no time zone database; the config's time intervals name a `location`
    zoneinfo = mounts["/usr/share/zoneinfo"]
    assert zoneinfo.is_bind
    assert zoneinfo.raw_source == "/usr/share/zoneinfo"
    assert zoneinfo.mode == "ro"
    locations = {
        interval["location"]
        for named in yaml.safe_load(config.source.read_text(encoding="utf-8"))["time_intervals"]
        for interval in named["time_intervals"]
    }
    for location in locations:
        assert (Path("/usr/share/zoneinfo") / location).is_file(), location
    # an Alertmanager outage must not keep Prometheus from starting
    assert "alertmanager" not in services["prometheus"].get("depends_on", {})


def test_prometheus_sends_alerts_to_the_alertmanager(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    flags = {k: v for k, _, v in (arg.partition("=") for arg in prometheus["command"])}
    [config_mount] = [m for m in _volumes(prometheus) if m.target == flags["--config.file"]]
    config = yaml.safe_load(config_mount.source.read_text(encoding="utf-8"))
    targets = [
        target
        for alertmanagers in config["alerting"]["alertmanagers"]
        for static in alertmanagers.get("static_configs", [])
        for target in static["targets"]
    ]
    assert targets == [f"alertmanager:{ALERTMANAGER_PORT}"]
    [port] = _published(services["alertmanager"])
    assert port == ALERTMANAGER_PORT


# --------------------------------------------------------------------------- run it


def _run(code: str) -> int:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    ).returncode


async def test_stack_config_and_healthchecks_against_the_simulator(
    services: dict[str, Any], ccwatch_config: dict[str, Any], tmp_path: Path
) -> None:
    """ccwatch.yml, with `simulator:9866` replaced by an in-process simulator, polls
    successfully; both services' healthcheck commands pass against the real servers."""
    sim_check = services["simulator"]["healthcheck"]["test"][3]
    ccwatch_check = services["ccwatch"]["healthcheck"]["test"][3]
    async with simulator() as sim:
        sim_port = sim.url.rsplit(":", 1)[1]
        config = stand_ins(ccwatch_config, tmp_path)
        # the first polls are spread over the interval: shorten it for the test
        config["defaults"] = {**config.get("defaults", {}), "interval": "1s", "timeout": "1s"}
        for target in config["targets"]:
            target["url"] = target["url"].replace(f"http://simulator:{SIM_PORT}", sim.url)
            auth = target.get("basic_auth")
            if auth is not None:  # the compose secret itself: the simulator's demo login
                name = ccwatch_config_secret(ccwatch_config, target["name"])
                auth["password_file"] = str(COMPOSE_DIR / "secrets" / name)
        assert (
            await asyncio.to_thread(_run, sim_check.replace(f":{SIM_PORT}/", f":{sim_port}/")) == 0
        )
        async with daemon(config) as running:
            port = running.url.rsplit(":", 1)[1]
            assert (
                await asyncio.to_thread(_run, ccwatch_check.replace(f":{PORT}/", f":{port}/")) == 0
            )
            # five jobs per ECE entry point, one per Context Service target
            expected = sum(len(t.get("entry_points", ())) * 5 or 1 for t in config["targets"])
            scrape = await running.wait_for(
                lambda s: (
                    len(s.series("ccwatch_poll_success")) == expected
                    and all(x.value == 1 for x in s.series("ccwatch_poll_success"))
                ),
                what="every poll of the compose config to succeed",
            )
            assert scrape.series("ccwatch_poll_success")


# --------------------------------------------------------------------------- compose CLI


def test_compose_cli_accepts_the_file() -> None:
    """`config -q` with every compose CLI on this machine (CI installs Debian's
    docker-compose: .ci/run); the merged file has every service."""
    for cli_name, merged in compose_configs(COMPOSE_FILE):
        assert {"ccwatch", "prometheus", "alertmanager"} <= set(merged["services"]), cli_name


def ccwatch_config_secret(config: dict[str, Any], target: str) -> str:
    """The compose secret file name of a target's ``basic_auth.password_file``."""
    (found,) = [t for t in config["targets"] if t["name"] == target]
    path: str = found["basic_auth"]["password_file"]
    return path.removeprefix("/run/secrets/")
