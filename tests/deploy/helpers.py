"""Shared by the deployment tests: repository paths, dev tools, config checks."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch import cli, healthcheck
from ccwatch.config import ConfigBase
from ccwatch.sources import parse_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
#: Where the image and every deployment mount ccwatch's config.
CONFIG_PATH = "/etc/ccwatch/ccwatch.yml"
#: The image's fixed non-root user.
UID = 65532
PORT = 9865


def dev_tool(name: str) -> str:
    """A console script of the dev dependencies: beside this Python first, then on PATH.

    ``pip install -e '.[dev]'`` puts them next to the interpreter, which need not be on
    PATH (``.venv/bin/pytest``). A missing tool is a failure, not a skip.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"{name} not found: install the dev dependencies (pip install -e '.[dev]')"
    return found


def cli_accepts(*argv: str) -> bool:
    """Whether ccwatch's command line parses ``argv`` (``run --web.config.file=F``, ...)."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            if argv[:1] == ("healthcheck",):  # parsed by its own light module
                healthcheck.parser().parse_args(list(argv[1:]))
            else:
                cli._parser().parse_args(list(argv))
        except SystemExit:
            return False
    return True


def require_cli(*argv: str) -> None:
    """Fail unless ccwatch's command line parses ``argv``.

    For the tests that run the web-config commands and flags (``ccwatch healthcheck``,
    ``--web.config.file``) that the deploy files use against ccwatch itself.
    """
    assert cli_accepts(*argv), f"ccwatch does not accept: ccwatch {' '.join(argv)}"


def secret_files(node: Any) -> list[str]:
    """Every ``*_file`` value (secrets, TLS files) in a parsed config, at any depth."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(secret_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(secret_files(item))
    return found


def _replace_files(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: mapping.get(v, v)
            if isinstance(k, str) and k.endswith("_file") and isinstance(v, str)
            else _replace_files(v, mapping)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_replace_files(item, mapping) for item in node]
    return node


def with_stand_in_files(data: Any, tmp_path: Path) -> Any:
    """``data`` with each ``*_file`` path replaced by a placeholder file under ``tmp_path``.

    A deployment's secret and TLS files exist only inside its containers.
    """
    mapping: dict[str, str] = {}
    for i, path in enumerate(secret_files(data)):
        stand_in = tmp_path / f"file-{i}"
        stand_in.write_text("placeholder\n", encoding="utf-8")
        mapping[path] = str(stand_in)
    return _replace_files(data, mapping)


def parse_with_secrets(data: Any, tmp_path: Path, origin: str) -> ConfigBase:
    """Validate a deployment's config with ccwatch's own parser (see with_stand_in_files)."""
    return parse_config(with_stand_in_files(data, tmp_path), origin=origin)


# --------------------------------------------------------------------------- web config

#: The keys of a web config file (exporter-toolkit's docs/web-configuration.md).
WEB_CONFIG_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
TLS_SERVER_KEYS = {
    "cert",
    "key",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
    "curve_preferences",
}
HTTP_SERVER_KEYS = {"http2", "headers"}
#: The response headers exporter-toolkit lets a web config set.
WEB_HEADERS = {
    "Content-Security-Policy",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
}
#: client_auth_type values ccwatch serves (it refuses RequestClientCert and
#: RequireAnyClientCert: a certificate nobody verifies proves nothing).
CLIENT_AUTH_TYPES = {"NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"}


def check_web_config(data: Any) -> dict[str, Any]:
    """A deployment's web config: known keys only, TLS from files, a TLS 1.2+ floor."""
    assert isinstance(data, dict)
    assert set(data) <= WEB_CONFIG_KEYS, set(data) - WEB_CONFIG_KEYS
    tls = data["tls_server_config"]
    assert set(tls) <= TLS_SERVER_KEYS, set(tls) - TLS_SERVER_KEYS
    assert tls["cert_file"]
    assert tls["key_file"]
    assert tls.get("min_version", "TLS12") in ("TLS12", "TLS13")
    client_auth = tls.get("client_auth_type", "NoClientCert")
    assert client_auth in CLIENT_AUTH_TYPES, client_auth
    if client_auth != "NoClientCert":
        assert tls["client_ca_file"], "client certificates are verified against a CA"
    http = data.get("http_server_config", {})
    assert set(http) <= HTTP_SERVER_KEYS, set(http) - HTTP_SERVER_KEYS
    assert set(http.get("headers", {})) <= WEB_HEADERS
    users = data.get("basic_auth_users", {})
    assert all(isinstance(u, str) and isinstance(h, str) for u, h in users.items())
    return data


def compose_clis() -> list[list[str]]:
    """Every compose CLI on this machine: ``docker compose`` and ``docker-compose``."""
    found: list[list[str]] = []
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            found.append([docker, "compose"])
    legacy = shutil.which("docker-compose")
    if legacy:
        found.append([legacy])
    return found


def compose_configs(*files: Path) -> list[tuple[str, dict[str, Any]]]:
    """``config -q`` (must pass) and ``config`` (parsed) of the compose ``files`` with every
    compose CLI on this machine: (CLI, its merged file) pairs. Skips without any CLI, which
    fails in CI (tests/conftest.py): .ci/run installs docker-compose."""
    clis = compose_clis()
    if not clis:
        pytest.skip("no compose CLI: apt-get install docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "BIND_ADDRESS"}
    args = [arg for path in files for arg in ("-f", str(path))]
    out = []
    for argv in clis:
        shown = ""
        for command in (["config", "-q"], ["config"]):
            result = subprocess.run(
                [*argv, *args, *command],
                cwd=files[0].parent,
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
            assert result.returncode == 0, f"{' '.join(argv)} {command}:\n{result.stderr}"
            shown = result.stdout
        out.append((" ".join(argv), yaml.safe_load(shown)))
    return out
