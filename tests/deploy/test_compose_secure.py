"""deploy/compose/compose.secure.yaml: the optional TLS + basic auth override of compose.yaml.

The override is merged with compose.yaml here as compose merges it (the keys it uses:
command and healthcheck.test replaced, environment merged, volumes and secrets merged by
target), and where a compose CLI is installed, its own merge (``config``) must agree and
``config -q`` must accept both files. Then: the web config, the demo password and its
hash, Prometheus's scrape config (promtool), the certificates make-certs.sh makes (a real
TLS handshake against the name Prometheus checks), and, once this checkout's ccwatch has
``--web.config.file`` and ``healthcheck``, the whole secured ccwatch run from the merged
service's command, files and environment, scraped as Prometheus would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml

from ccwatch import healthcheck
from tests.harness import simulator

from .helpers import (
    CONFIG_PATH,
    PORT,
    REPO,
    check_web_config,
    cli_accepts,
    compose_configs,
    parse_with_secrets,
    require_cli,
)
from .helpers import with_stand_in_files as stand_ins
from .test_compose import COMPOSE_DIR, COMPOSE_FILE, SIM_PORT, Mount
from .test_rules import promtool

SECURE_FILE = COMPOSE_DIR / "compose.secure.yaml"
MAKE_CERTS = COMPOSE_DIR / "make-certs.sh"
CERTS = COMPOSE_DIR / "certs"
BASE_PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
WEB_CONFIG_TARGET = "/etc/ccwatch/web-config.yml"
WEB_FLAG = f"--web.config.file={WEB_CONFIG_TARGET}"
PUBLIC = ["/-/healthy", "/-/ready"]
#: What the override may set, per service; everything else stays compose.yaml's.
OVERRIDE_KEYS = {"command", "environment", "volumes", "healthcheck", "secrets"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- merge


def _merge_by_target(base: list[Any], override: list[Any], target: Any) -> list[Any]:
    merged = {target(item): item for item in base}
    for item in override:
        merged[target(item)] = item
    return list(merged.values())


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for name, value in override.items():
        if name in ("environment", "healthcheck"):  # mappings: merged key by key
            result[name] = {**base.get(name, {}), **value}
        elif name == "volumes":
            result[name] = _merge_by_target(base.get(name, []), value, lambda v: Mount(v).target)
        elif name == "secrets":
            result[name] = _merge_by_target(base.get(name, []), value, lambda s: s["target"])
        else:  # command: replaced
            result[name] = value
    return result


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` applied to ``base`` as ``compose -f base -f override`` does."""
    result = dict(base)
    result["services"] = dict(base["services"])
    for name, service in override.get("services", {}).items():
        result["services"][name] = _merge_service(base["services"][name], service)
    for section in ("secrets", "volumes"):
        if section in override:
            result[section] = {**base.get(section, {}), **override[section]}
    return result


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load(COMPOSE_FILE)


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return load(SECURE_FILE)


@pytest.fixture(scope="module")
def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    return merge(base, override)


@pytest.fixture(scope="module")
def ccwatch(merged: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = merged["services"]["ccwatch"]
    return result


@pytest.fixture(scope="module")
def web_config() -> dict[str, Any]:
    return check_web_config(load(COMPOSE_DIR / "web-config.yml"))


@pytest.fixture(scope="module")
def scrape_config(merged: dict[str, Any]) -> dict[str, Any]:
    mounts = {m.target: m for m in map(Mount, merged["services"]["prometheus"]["volumes"])}
    config = load(mounts["/etc/prometheus/prometheus.yml"].source)
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ccwatch"]
    result: dict[str, Any] = job
    return result


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make-certs.sh's output, in a temporary directory instead of deploy/compose/certs."""
    out = tmp_path_factory.mktemp("certs")
    result = subprocess.run(
        ["bash", str(MAKE_CERTS), str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return out


def container_file(service: dict[str, Any], path: str, certs: Path) -> Path:
    """The host file behind ``path`` in the service's container (make-certs.sh's output
    standing in for deploy/compose/certs/)."""
    where = PurePosixPath(path)
    for mount in map(Mount, service["volumes"]):
        if mount.is_bind and where.is_relative_to(mount.target):
            source = mount.source
            if source.is_relative_to(CERTS):
                source = certs / source.relative_to(CERTS)
            return source / where.relative_to(mount.target)
    raise AssertionError(f"{path} is in no bind mount of the service")


# --------------------------------------------------------------------------- structure


def test_override_changes_only_ccwatch_and_prometheus(override: dict[str, Any]) -> None:
    assert set(override) <= {"services", "secrets"}
    assert set(override["services"]) == {"ccwatch", "prometheus"}
    for name, service in override["services"].items():
        assert set(service) <= OVERRIDE_KEYS, f"{name}: {set(service) - OVERRIDE_KEYS}"
        assert set(service.get("healthcheck", {})) <= {"test"}, "the base's timing stays"


def test_the_base_stack_is_unchanged(base: dict[str, Any], merged: dict[str, Any]) -> None:
    for name in ("simulator", "grafana"):
        assert merged["services"][name] == base["services"][name]
    for name in ("ccwatch", "prometheus"):
        service, before = merged["services"][name], base["services"][name]
        for field in ("image", "user", "ports", "depends_on", "restart"):
            assert service.get(field) == before.get(field), f"{name}: {field}"
    assert merged["volumes"] == base["volumes"]


def test_compose_cli_accepts_the_override(merged: dict[str, Any]) -> None:
    """``config -q`` with both files, and compose's own merge agrees with merge() above."""
    for _, theirs in compose_configs(COMPOSE_FILE, SECURE_FILE):
        for name in ("ccwatch", "prometheus"):
            assert _normal(theirs["services"][name]) == _normal(merged["services"][name]), name
        assert set(theirs["secrets"]) == set(merged["secrets"])


def _normal(service: dict[str, Any]) -> dict[str, Any]:
    """The fields the override sets, as comparable values: compose's output (either
    syntax, absolute paths) and the files' (short syntax, relative paths) alike."""
    volumes: dict[str, tuple[str, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume["source"], volume["target"]
            read_only = bool(volume.get("read_only", False))
        else:
            mount = Mount(volume)
            source, target, read_only = mount.raw_source, mount.target, mount.mode == "ro"
        if source.startswith((".", "/")):
            source = str((COMPOSE_DIR / source).resolve())
        volumes[target] = (source, read_only)
    return {
        "command": list(service["command"]),
        "environment": {k: str(v) for k, v in service.get("environment", {}).items()},
        "healthcheck": list(service["healthcheck"]["test"]),
        "volumes": volumes,
        "secrets": sorted((s["source"], s["target"]) for s in service.get("secrets", [])),
    }


def test_ccwatch_runs_with_the_web_config(base: dict[str, Any], ccwatch: dict[str, Any]) -> None:
    assert ccwatch["command"] == [*base["services"]["ccwatch"]["command"], WEB_FLAG]
    assert cli_accepts(*ccwatch["command"])
    mounts = {m.target: m for m in map(Mount, ccwatch["volumes"])}
    web = mounts[WEB_CONFIG_TARGET]
    assert web.source == COMPOSE_DIR / "web-config.yml"
    assert all(m.mode == "ro" for m in mounts.values())


def test_web_config_paths_agree_on_the_host_and_in_the_container(
    ccwatch: dict[str, Any], web_config: dict[str, Any], certs: Path
) -> None:
    """Relative to the web config: the same relative path reaches the same file on the
    host (ccwatch check-config on the host) and in the container, in a mounted directory
    (so that renewed files show up)."""
    tls = web_config["tls_server_config"]
    for name in ("cert_file", "key_file"):
        relative = tls[name]
        assert not relative.startswith("/"), name
        inside = PurePosixPath(WEB_CONFIG_TARGET).parent / relative
        host = container_file(ccwatch, str(inside), certs)
        assert host.is_file(), f"{name}: make-certs.sh makes no {host}"
        on_host = (COMPOSE_DIR / relative).resolve()
        assert on_host.is_relative_to(CERTS)
        assert host == certs / on_host.relative_to(CERTS)
        mount = next(m for m in map(Mount, ccwatch["volumes"]) if inside.is_relative_to(m.target))
        assert mount.target != str(inside), f"{name}: mount the directory, not the file"


def test_public_paths_come_from_the_environment(
    ccwatch: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ccwatch["environment"].items():
        assert name.startswith("CCWATCH_"), name
        monkeypatch.setenv(name, str(value))
    [mount] = [m for m in map(Mount, ccwatch["volumes"]) if m.target == CONFIG_PATH]
    config = parse_with_secrets(load(mount.source), tmp_path, origin=str(mount.source))
    assert config.web.public_paths == PUBLIC
    assert config.web.config_file is None, "the flag names the web config"


def test_ccwatch_healthcheck_reads_the_web_config(ccwatch: dict[str, Any]) -> None:
    test = ccwatch["healthcheck"]["test"]
    assert test[0] == "CMD"
    argv = test[1:]
    # the config file `run` reads is the healthcheck's default; the web config is a flag
    assert argv == ["ccwatch", "healthcheck", WEB_FLAG]
    assert f"--config.file={CONFIG_PATH}" in ccwatch["command"]
    assert healthcheck.parser().parse_args(argv[2:]).config_file == CONFIG_PATH


def test_web_config(web_config: dict[str, Any], scrape_config: dict[str, Any]) -> None:
    tls = web_config["tls_server_config"]
    assert tls.get("client_auth_type", "NoClientCert") == "NoClientCert"
    assert scrape_config["basic_auth"]["username"] in web_config["basic_auth_users"]


def test_demo_password_matches_its_hash(
    merged: dict[str, Any], web_config: dict[str, Any], scrape_config: dict[str, Any]
) -> None:
    auth = scrape_config["basic_auth"]
    prometheus = merged["services"]["prometheus"]
    [ref] = [s for s in prometheus["secrets"] if s["target"] == auth["password_file"]]
    path = COMPOSE_DIR / merged["secrets"][ref["source"]]["file"]
    assert path.stat().st_mode & 0o004, f"{path}: readable by Prometheus's user (0644)"
    # Prometheus trims the file's whitespace
    password = path.read_text(encoding="utf-8").strip()
    assert password
    stored = web_config["basic_auth_users"][auth["username"]]
    assert stored.startswith(("$2a$", "$2b$", "$2y$")), "a bcrypt hash"
    assert bcrypt.checkpw(password.encode(), stored.encode())
    text = SECURE_FILE.read_text(encoding="utf-8")
    assert password in text, "the override documents the demo password"


def test_prometheus_scrapes_ccwatch_over_https(
    merged: dict[str, Any], scrape_config: dict[str, Any], certs: Path
) -> None:
    assert scrape_config["scheme"] == "https"
    tls = scrape_config["tls_config"]
    assert set(tls) <= {"ca_file", "server_name"}, "server-side TLS only; verified"
    prometheus = merged["services"]["prometheus"]
    ca = container_file(prometheus, tls["ca_file"], certs)
    assert ca == certs / "ca" / "ca.crt", "the demo CA of make-certs.sh"
    targets = [t for sc in scrape_config["static_configs"] for t in sc["targets"]]
    assert targets == [f"ccwatch:{PORT}"]
    assert tls.get("server_name", "ccwatch") == "ccwatch"


def test_prometheus_secure_config_is_the_example_plus_tls_and_auth(
    scrape_config: dict[str, Any],
) -> None:
    """prometheus.secure.yml must not drift from deploy/prometheus/prometheus.yml."""
    secure = load(COMPOSE_DIR / "prometheus.secure.yml")
    example = load(BASE_PROMETHEUS)
    added = {"scheme", "tls_config", "basic_auth"}
    secure_jobs = [
        {k: v for k, v in job.items() if k not in added} for job in secure["scrape_configs"]
    ]
    assert {**secure, "scrape_configs": secure_jobs} == example
    assert added <= set(scrape_config)


def test_promtool_checks_the_secure_config(tmp_path: Path) -> None:
    config = stand_ins(load(COMPOSE_DIR / "prometheus.secure.yml"), tmp_path)
    rules = REPO / "deploy" / "prometheus"
    config["rule_files"] = [str(rules / pattern) for pattern in config["rule_files"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = promtool("check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- certificates


def test_certificates_are_gitignored() -> None:
    lines = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "deploy/compose/certs/" in lines


def test_make_certs_files_and_modes(certs: Path) -> None:
    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert {p.relative_to(certs).as_posix() for p in certs.rglob("*") if p.is_file()} == {
        "ca.key",
        "ca/ca.crt",
        "ccwatch/tls.crt",
        "ccwatch/tls.key",
    }
    assert mode(certs / "ca.key") == 0o600, "the CA's key: mounted nowhere, private"
    # bind-mounted as they are: the container's user (65532) must read them
    for name in ("ca/ca.crt", "ccwatch/tls.crt", "ccwatch/tls.key"):
        assert mode(certs / name) & 0o444 == 0o444, name


def _handshake(certs: Path, server_name: str) -> None:
    """A TLS handshake in memory: ccwatch's certificate, checked as Prometheus checks it."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certs / "ccwatch" / "tls.crt", certs / "ccwatch" / "tls.key")
    client_context = ssl.create_default_context(cafile=str(certs / "ca" / "ca.crt"))
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client = client_context.wrap_bio(client_in, client_out, server_hostname=server_name)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_make_certs_certificate_verifies_for_the_scraped_names(
    certs: Path, scrape_config: dict[str, Any]
) -> None:
    server_name = scrape_config["tls_config"].get("server_name", "ccwatch")
    # Prometheus's name, and the README's curl examples on the host
    for name in (server_name, "localhost", "127.0.0.1"):
        _handshake(certs, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(certs, "not-ccwatch")


def test_make_certs_again_renews_the_server_certificate_and_keeps_the_ca(
    tmp_path: Path,
) -> None:
    out = tmp_path / "certs"

    def run() -> dict[str, bytes]:
        subprocess.run(["bash", str(MAKE_CERTS), str(out)], capture_output=True, check=True)
        return {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    first, second = run(), run()
    assert second["ca.crt"] == first["ca.crt"]
    assert second["ca.key"] == first["ca.key"]
    assert second["tls.crt"] != first["tls.crt"]
    assert second["tls.key"] != first["tls.key"]
    assert not list(out.glob(".tmp*")), "no leftovers"
    _handshake(out, "ccwatch")


# --------------------------------------------------------------------------- run it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _in_root(argv: list[str], root: Path) -> list[str]:
    """Container paths in flags (``--x=/etc/...``) moved under ``root``."""
    result = []
    for arg in argv:
        flag, sep, value = arg.partition("=")
        result.append(f"{flag}={root}{value}" if sep and value.startswith("/etc/") else arg)
    return result


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


def _container(service: dict[str, Any], certs: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The service's bind mounts copied under a temporary root, and its environment."""
    root = tmp_path / "root"
    for mount in map(Mount, service["volumes"]):
        source = container_file(service, mount.target, certs)
        destination = root / mount.target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy(source, destination)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
    env.update({k: str(v) for k, v in service.get("environment", {}).items()})
    return root, env


def test_check_config_accepts_the_mounted_configs(
    ccwatch: dict[str, Any], certs: Path, tmp_path: Path
) -> None:
    """``ccwatch check-config --web.config.file`` on the files as the container sees them
    (certificate and key from make-certs.sh loaded, the hash checked)."""
    require_cli("check-config", WEB_FLAG, CONFIG_PATH)
    root, env = _container(ccwatch, certs, tmp_path)
    config_file = root / CONFIG_PATH.lstrip("/")
    config = stand_ins(load(config_file), tmp_path)
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    web_flag = _in_root([WEB_FLAG], root)[0]
    result = _run(
        [sys.executable, "-m", "ccwatch", "check-config", web_flag, str(config_file)], env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout, result.stdout


async def test_secure_stack_end_to_end(
    ccwatch: dict[str, Any],
    certs: Path,
    scrape_config: dict[str, Any],
    merged: dict[str, Any],
    tmp_path: Path,
) -> None:
    """ccwatch started as the merged service starts it (its command, mounted files and
    environment, under a temporary root), then: the public paths answer without
    credentials, /metrics asks for them, Prometheus's scrape (CA, server name, basic auth)
    gets the metrics with the configured headers, and the service's healthcheck passes,
    then fails once ccwatch is stopped."""
    require_cli(*ccwatch["command"])
    healthcheck_argv = ccwatch["healthcheck"]["test"][1:]
    require_cli(*healthcheck_argv[1:])

    root, env = _container(ccwatch, certs, tmp_path)
    port = _free_port()
    # both processes read it, as both read the container's ccwatch.yml
    env["CCWATCH_WEB__LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    config_file = root / CONFIG_PATH.lstrip("/")
    run = [sys.executable, "-m", "ccwatch", *_in_root(ccwatch["command"], root)]
    healthcheck = [
        sys.executable,
        "-m",
        *_in_root(healthcheck_argv, root),
        f"--config.file={config_file}",
    ]

    auth = scrape_config["basic_auth"]
    [secret] = [
        s
        for s in merged["services"]["prometheus"]["secrets"]
        if s["target"] == auth["password_file"]
    ]
    password = (COMPOSE_DIR / merged["secrets"][secret["source"]]["file"]).read_text().strip()
    credentials = base64.b64encode(f"{auth['username']}:{password}".encode()).decode()
    server_name = scrape_config["tls_config"].get("server_name", "ccwatch")
    context = ssl.create_default_context(cafile=str(certs / "ca" / "ca.crt"))
    headers = load(COMPOSE_DIR / "web-config.yml")["http_server_config"]["headers"]

    async with simulator() as sim:
        config = stand_ins(load(config_file), tmp_path)
        config["defaults"] = {**config.get("defaults", {}), "interval": "1s", "timeout": "1s"}
        for target in config["targets"]:
            target["url"] = target["url"].replace(f"http://simulator:{SIM_PORT}", sim.url)
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        log = tmp_path / "ccwatch.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *run, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr
            )
        try:
            async with aiohttp.ClientSession() as session:

                async def get(path: str, **sent: str) -> tuple[int, dict[str, str], str]:
                    async with session.get(
                        f"https://127.0.0.1:{port}{path}",
                        ssl=context,
                        server_hostname=server_name,
                        headers=sent,
                    ) as resp:
                        return resp.status, dict(resp.headers), await resp.text()

                deadline = time.monotonic() + 20
                while True:
                    try:
                        status, _, _ = await get("/-/healthy")
                        break
                    except aiohttp.ClientConnectionError:
                        assert process.returncode is None, log.read_text(errors="replace")
                        assert time.monotonic() < deadline, log.read_text(errors="replace")
                        await asyncio.sleep(0.2)
                assert status == 200, "public: no credentials needed"
                status, answer, _ = await get("/metrics")
                assert status == 401
                assert answer["WWW-Authenticate"] == 'Basic realm="ccwatch"'
                status, answer, text = await get("/metrics", Authorization=f"Basic {credentials}")
                assert status == 200
                assert "ccwatch_poll_success" in text
                for name, value in headers.items():
                    assert answer[name] == value, name
            check = await asyncio.to_thread(_run, healthcheck, env)
            assert check.returncode == 0, check.stdout + check.stderr
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)
        check = await asyncio.to_thread(_run, healthcheck, env)
        assert check.returncode != 0, "stopped: the healthcheck fails"
