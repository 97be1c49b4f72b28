"""The body cap holds after decoding, over real sockets: gzip and deflate bombs, with a
Content-Length and chunked, fail as ``too_large`` while being read; compressed bodies
under the cap are decoded and exported; unknown encodings fail as ``parse``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness import Scrape, Sim, daemon, ece_config, events, simulator

CAPACITY = "/entrypoint/capacity/1000"


def config(sim: Sim) -> dict[str, Any]:
    return ece_config(
        sim,
        interval="300ms",
        timeout="300ms",
        entry_points=[1000],
        endpoints=["capacity", "chatAllowed"],
    )


def capacity_up(s: Scrape) -> bool:
    return s.value("ccwatch_ece_available_slots") is not None


async def warm_up(sim: Sim) -> None:
    """Fetch the faulted answer once, so the simulator has built (and cached) the bomb
    before ccwatch's short poll timeout runs against it."""
    url = f"{sim.url}/system/egain/chat/entrypoint/capacity/1000"
    async with sim.session.get(url, auto_decompress=False) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] in ("gzip", "deflate")
        await resp.read()


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        await running.put("ece/entry_points/1000", {"slots": 7})
        yield running


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("size", [200 << 20, 8 << 20])
async def test_a_body_inflating_past_the_cap_is_too_large(
    sim: Sim, encoding: str, chunked: bool, size: int
) -> None:
    await sim.fault(CAPACITY, "gzip_bomb", size=size, chunked=chunked, encoding=encoding)
    await warm_up(sim)
    async with daemon(config(sim)) as d:
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_poll_errors_total", endpoint="capacity") is not None
                and s.value("ccwatch_ece_chat_allowed") is not None
            ),
            what="the bomb refused, the other job polled",
        )
        assert s.value("ccwatch_poll_success", endpoint="capacity") == 0.0
        errors = s.series("ccwatch_poll_errors_total", endpoint="capacity")
        assert {x.labels["reason"] for x in errors} == {"too_large"}
        assert s.value("ccwatch_ece_available_slots") is None
        # the other job of the target is untouched
        assert s.value("ccwatch_ece_chat_allowed") is not None
        failing = [
            e
            for e in await events(d)
            if e["event"] == "poll_failing" and e["endpoint"] == "capacity"
        ]
        assert "exceeds the 1048576-byte cap" in failing[0]["error"]
        await sim.clear_faults()
        s = await d.wait_for(capacity_up, what="recovery")
        assert s.value("ccwatch_ece_available_slots") == 7.0


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_compressed_body_under_the_cap_is_decoded(
    sim: Sim, encoding: str, chunked: bool
) -> None:
    fault = await sim.fault(CAPACITY, "gzip_bomb", size=500_000, chunked=chunked, encoding=encoding)
    async with daemon(config(sim)) as d:
        s = await d.wait_for(capacity_up, what="the padded document read")
        assert s.value("ccwatch_ece_available_slots") == 7.0
        assert s.series("ccwatch_poll_errors_total", endpoint="capacity") == []
    # what was read was the compressed answer
    async with sim.session.get(f"{sim.url}/-/sim/faults") as resp:
        (listed,) = [f for f in (await resp.json())["faults"] if f["id"] == fault]
    assert listed["hits"] >= 1


async def test_an_encoding_ccwatch_did_not_ask_for_is_a_parse_failure(sim: Sim) -> None:
    async with daemon(config(sim)) as d:
        await d.wait_for(capacity_up)
        await sim.fault(
            CAPACITY, "status", status=200, body="\x1b\x00", headers={"Content-Encoding": "br"}
        )
        s = await d.wait_for(lambda s: s.value("ccwatch_poll_success", endpoint="capacity") == 0.0)
        errors = s.series("ccwatch_poll_errors_total", endpoint="capacity")
        assert {x.labels["reason"] for x in errors} == {"parse"}
        failing = [
            e
            for e in await events(d)
            if e["event"] == "poll_failing" and e["endpoint"] == "capacity"
        ]
        assert failing[0]["error"] == "unsupported Content-Encoding 'br'"
