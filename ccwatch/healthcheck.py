"""``ccwatch healthcheck``: is the local ccwatch answering? For a container HEALTHCHECK.

It reads the main config (for ``web.listen_address`` and ``web.config_file``) and the web
config (for the scheme), then GETs ``/-/healthy`` on the loopback address at the listen
port. Any HTTP answer means alive: 200, or 401 when basic auth covers the path. Over
TLS the certificate is not verified (it is this machine's own process) and no
credentials are sent; when the web config requires a client certificate, the server's
refusal of a handshake without one is an answer too. Exit 0 when alive, 1 when not.

It runs every 30 s in the container, so it reads the two files as plain YAML (what the
daemon validated at start) and imports neither pydantic nor any source: a check costs
a few tens of milliseconds of CPU.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

PATH = "/-/healthy"
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9865"
#: as ccwatch.config's, which this module does not import (it pulls in pydantic)
DEFAULT_CONFIG_PATH = "/etc/ccwatch/ccwatch.yml"
#: client_auth_type values under which a handshake without a certificate is refused
_REQUIRES_CERT = frozenset({"RequireAndVerifyClientCert", "RequireAnyClientCert"})


@dataclass(frozen=True)
class Outcome:
    alive: bool
    detail: str


@dataclass(frozen=True)
class Endpoint:
    """Where and how the local ccwatch serves."""

    listen_address: str = DEFAULT_LISTEN_ADDRESS
    tls: bool = False
    client_cert_required: bool = False


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _read_yaml(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return _mapping(yaml.safe_load(f))


def endpoint(
    config_file: str | None, web_config_file: str | None, listen_address: str | None
) -> Endpoint:
    """The endpoint from the files and flags (flags win; a missing main config is the
    defaults). Raises OSError or yaml.YAMLError when a named file cannot be read."""
    web: dict[str, Any] = {}
    if config_file is not None and os.path.exists(config_file):
        web = _mapping(_read_yaml(config_file).get("web"))
        if web_config_file is None and isinstance(web.get("config_file"), str):
            web_config_file = web["config_file"]
            if not os.path.isabs(web_config_file):
                base = os.path.dirname(os.path.abspath(config_file))
                web_config_file = os.path.join(base, web_config_file)
    address = (
        listen_address
        or os.environ.get("CCWATCH_WEB__LISTEN_ADDRESS")
        or (web.get("listen_address") if isinstance(web.get("listen_address"), str) else None)
        or DEFAULT_LISTEN_ADDRESS
    )
    if web_config_file is None:
        return Endpoint(address)
    tls = _mapping(_read_yaml(web_config_file).get("tls_server_config"))
    return Endpoint(
        address,
        tls=bool(tls),
        client_cert_required=tls.get("client_auth_type") in _REQUIRES_CERT,
    )


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the local process: nothing to authenticate
    return context


def check(where: Endpoint, timeout: float = 5.0) -> Outcome:
    """One GET of /-/healthy on this machine."""
    host, port = _split(where.listen_address)
    connection: http.client.HTTPConnection
    if where.tls:
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=_client_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    url = f"{'https' if where.tls else 'http'}://{host}:{port}{PATH}"
    try:
        connection.request("GET", PATH, headers={"User-Agent": "ccwatch-healthcheck"})
        response = connection.getresponse()
        response.read(4096)
        return Outcome(True, f"{url}: HTTP {response.status}")
    except ssl.SSLError as exc:
        if where.client_cert_required:
            # the server answered: it refuses a handshake without a client certificate
            return Outcome(True, f"{url}: TLS answered, client certificate required ({exc})")
        return Outcome(False, f"{url}: TLS error: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, f"{url}: {type(exc).__name__}: {exc}")
    finally:
        connection.close()


def parser() -> argparse.ArgumentParser:
    """``ccwatch healthcheck [--config.file F] [--web.config.file W]
    [--web.listen-address HOST:PORT] [--timeout SECONDS]``."""
    parser = argparse.ArgumentParser(
        prog="ccwatch healthcheck",
        description="Exit 0 if the local ccwatch answers on /-/healthy (any HTTP status, "
        "or a TLS refusal for want of a client certificate), else 1. For a container "
        "HEALTHCHECK; the certificate is not verified and no password is sent.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG_PATH,
        help="the main config, for web.listen_address and web.config_file "
        "(default %(default)s; if it does not exist, the defaults)",
    )
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE")
    parser.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    return parser


def main(argv: Sequence[str]) -> int:
    """``ccwatch healthcheck``: 0 alive, 1 not (2 for a usage error, from argparse)."""
    args = parser().parse_args(argv)
    try:
        where = endpoint(args.config_file, args.web_config_file, args.listen_address)
        outcome = check(where, args.timeout)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"ccwatch healthcheck: {exc}", file=sys.stderr)
        return 1
    print(outcome.detail, file=sys.stdout if outcome.alive else sys.stderr)
    return 0 if outcome.alive else 1


__all__ = ["PATH", "Endpoint", "Outcome", "check", "endpoint", "main", "parser"]
