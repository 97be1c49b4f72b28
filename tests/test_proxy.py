"""Proxies from the environment: with ``proxy_from_environment``, a target without a
``proxy_url`` goes through ``HTTP_PROXY`` unless ``NO_PROXY`` names its host.

The simulator stands in for the proxy: a forward proxy gets the request with the
target's host in its ``Host`` header and the path as sent, and the simulator answers the
ECE paths whatever the host. The target's host (``ece.invalid``) does not resolve, so a
poll that bypasses the proxy fails.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Scrape, daemon, simulator


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
