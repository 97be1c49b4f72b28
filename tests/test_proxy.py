"""Proxies from the environment: with ``proxy_from_environment``, a target without a
``proxy_url`` goes through ``HTTP_PROXY`` unless ``NO_PROXY`` names its host. And a proxy
that refuses ``CONNECT`` (407, 403, 502): its password is shown nowhere, not on the status
page, the API, ``/logs``, the process log, nor in ``ccwatch probe``'s output.

The simulator stands in for the proxy: a forward proxy gets the request with the
target's host in its ``Host`` header and the path as sent, and the simulator answers the
ECE paths whatever the host. The target's host (``ece.invalid``) does not resolve, so a
poll that bypasses the proxy fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.harness import Scrape, daemon, simulator
from tests.test_redact import CCWATCH, assert_no_leak, daemon_process, log_events


def config(**target: Any) -> dict[str, Any]:
    return {
        "defaults": {"interval": "200ms", "timeout": "1s"},
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": "http://ece.invalid/system",
                "entry_points": [1000],
                "endpoints": ["chatAllowed"],
                **target,
            }
        ],
    }


def polled(scrape: Scrape) -> bool:
    return scrape.value("ccwatch_poll_success", target="ece") is not None


@pytest.mark.parametrize(
    ("setting", "no_proxy", "through_proxy"),
    [
        ({"proxy_from_environment": True}, "", True),
        ({}, "", False),  # the default, as in Prometheus: the environment is ignored
        ({"proxy_from_environment": True}, "example.com,ece.invalid", False),
    ],
    ids=["from-environment", "ignored-by-default", "no-proxy"],
)
async def test_proxy_from_environment(
    monkeypatch: pytest.MonkeyPatch, setting: dict[str, Any], no_proxy: str, through_proxy: bool
) -> None:
    async with simulator() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        async with daemon(config(**setting)) as d:
            scrape = await d.wait_for(polled, what="the first poll")
    success = scrape.value("ccwatch_poll_success", target="ece")
    assert success == (1.0 if through_proxy else 0.0), scrape.text
    if through_proxy:
        assert scrape.value("ccwatch_ece_chat_allowed", target="ece", entry_point="1000") == 1


async def test_a_defaults_switch_and_a_proxy_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    async with simulator() as proxy:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        cfg = config(proxy_url=proxy.url)
        cfg["defaults"]["proxy_from_environment"] = True
        async with daemon(cfg) as d:
            scrape = await d.wait_for(polled, what="the first poll")
    assert scrape.value("ccwatch_poll_success", target="ece") == 1, scrape.text


# --------------------------------------------------------------------------- proxy failures

PROXY_PASSWORD = "S3cr3t-P@ss"
#: as written in a URL's userinfo
PROXY_USERINFO = f"user:{quote(PROXY_PASSWORD, safe='')}"


@dataclass
class FakeProxy:
    """A forward proxy on 127.0.0.1 that answers every request with one status line."""

    port: int
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def refusing_proxy(status: str) -> AsyncIterator[FakeProxy]:
    """A proxy that answers ``status`` (``407 Proxy Authentication Required``) to CONNECT,
    and to anything else, and closes the connection."""
    proxy = FakeProxy(0)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            proxy.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(
                f'HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm="proxy"\r\n'
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("status", "setting"),
    [
        ("407 Proxy Authentication Required", "proxy_url"),
        ("502 Bad Gateway", "proxy_url"),
        ("403 Forbidden", "proxy_url"),
        ("407 Proxy Authentication Required", "environment"),
    ],
    ids=["407", "502", "403", "407-from-environment"],
)
async def test_a_proxy_refusing_connect_never_shows_its_password(
    tmp_path: Path, status: str, setting: str
) -> None:
    async with refusing_proxy(status) as proxy:
        proxy_url = f"http://{PROXY_USERINFO}@127.0.0.1:{proxy.port}"
        target: dict[str, Any] = {"url": "https://ece.invalid/system"}  # https: a CONNECT
        env: dict[str, str] = {}
        if setting == "proxy_url":
            target["proxy_url"] = proxy_url
        else:
            target["proxy_from_environment"] = True
            env = {"HTTPS_PROXY": proxy_url, "NO_PROXY": ""}
        cfg = config(**target)
        cfg["defaults"]["interval"] = "500ms"
        path = tmp_path / "ccwatch.yml"
        path.write_text(yaml.safe_dump(cfg))
        async with daemon_process(path, env) as d:
            data = await d.wait_for_api(
                lambda data: data["targets"][0]["jobs"][0]["lastError"], "a failed poll"
            )
            shown = {
                "/": (await d.get("/"))[1],
                "/api/v1/targets": (await d.get("/api/v1/targets"))[1],
                "/logs": (await d.get("/logs"))[1],
            }
        probe = await asyncio.create_subprocess_exec(
            *CCWATCH,
            "probe",
            "--config.file",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env, "NO_COLOR": "1"},
        )
        probed = (await asyncio.wait_for(probe.communicate(), 60))[0].decode()
        json_probe = await asyncio.create_subprocess_exec(
            *CCWATCH,
            "probe",
            "--config.file",
            str(path),
            "--format",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env},
        )
        probed_json = (await asyncio.wait_for(json_probe.communicate(), 60))[0].decode()
    assert proxy.requests[0].startswith(b"CONNECT ece.invalid:443 HTTP/1.1\r\n")
    # the proxy got the credentials: the ones that must not be shown
    assert b"Proxy-Authorization: Basic " in proxy.requests[0]
    job = data["targets"][0]["jobs"][0]
    assert job["lastReason"] == "connect"
    code = status.split()[0]
    # the failure is still told: the proxy's answer and where it is, without userinfo
    assert code in job["lastError"], job
    if setting == "proxy_url":
        assert f"url='http://127.0.0.1:{proxy.port}'" in job["lastError"], job
    failing = [e for e in log_events(d.log) if e["event"] == "poll_failing"]
    assert len(failing) == 1, d.log
    assert code in failing[0]["error"], d.log
    assert f"FAILED connect: ClientHttpProxyError: {code}, " in probed, probed
    shown |= {"the process log": d.log, "probe": probed, "probe --format json": probed_json}
    for where, text in shown.items():
        assert "S3cr3t" not in text, f"{where}:\n{text}"
        assert_no_leak(text, PROXY_PASSWORD, where)
