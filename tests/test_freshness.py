"""Freshness and Retry-After, over real sockets: no vendor value is served older than
twice its job's interval, whatever the cause (a hold, overload, a stalled loop).

- A ``Retry-After`` is honoured on 429 and 503 only, capped by ``max_retry_after``.
- While a target is held its jobs are not polled; once their data is older than twice
  the interval, their series go and ``ccwatch_poll_success`` reads 0.
- ``ccwatch_target_hold_until_timestamp_seconds`` exists only while a hold lasts.
- ``ccwatch_poll_errors_total`` counts only polls that ran.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.harness import Scrape, Sim, daemon, ece_config, events, gms_probe_target, simulator

HOLD = "ccwatch_target_hold_until_timestamp_seconds"


def config(sim: Sim, **target: Any) -> dict[str, Any]:
    return ece_config(
        sim, **{"entry_points": [1000], "endpoints": ["capacity", "chatAllowed"], **target}
    )


def both_up(s: Scrape) -> bool:
    return (
        s.value("ccwatch_ece_available_slots") is not None
        and s.value("ccwatch_ece_chat_allowed") is not None
    )


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        yield running


@pytest.mark.parametrize(("status", "reason"), [(429, "rate_limited"), (503, "http_status")])
async def test_a_hold_withdraws_the_targets_values_once_they_are_old(
    sim: Sim, status: int, reason: str
) -> None:
    async with daemon(config(sim, max_retry_after="2s")) as d:
        await d.wait_for(both_up)
        before = time.time()
        await sim.fault(
            "/entrypoint/capacity/",
            "status",
            status=status,
            count=1,
            headers={"Retry-After": "3600"},
        )
        s = await d.wait_for(lambda s: s.value(HOLD) is not None, what="a hold")
        # capped by max_retry_after: 2s, not an hour
        hold = s.value(HOLD, target="ece")
        assert hold is not None
        assert before + 1.0 < hold < time.time() + 2.5
        # chatAllowed is not polled, and its value is withdrawn once older than 2 intervals
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_ece_chat_allowed") is None
                and s.value("ccwatch_poll_success", endpoint="chatAllowed") == 0.0
            ),
            what="chatAllowed withdrawn during the hold",
        )
        assert s.value(HOLD, target="ece") == hold
        # only the poll that ran is counted
        assert s.series("ccwatch_poll_errors_total", endpoint="chatAllowed") == []
        assert s.value("ccwatch_poll_errors_total", endpoint="capacity", reason=reason) == 1.0
        stale = [
            e
            for e in await events(d)
            if e["event"] == "poll_stale" and e["endpoint"] == "chatAllowed"
        ]
        assert len(stale) == 1
        assert stale[0]["reason"] == reason
        # the hold ends: the series of the hold is gone and polling resumes
        s = await d.wait_for(lambda s: s.value(HOLD) is None and both_up(s), within=10)
        assert s.value("ccwatch_poll_success", endpoint="chatAllowed") == 1.0
        assert "poll_fresh" in [e["event"] for e in await events(d)]


@pytest.mark.parametrize("status", [401, 403, 500, 502, 404])
async def test_retry_after_is_ignored_on_other_statuses(sim: Sim, status: int) -> None:
    async with daemon(config(sim)) as d:
        await d.wait_for(both_up)
        await sim.fault(
            "/entrypoint/capacity/", "status", status=status, count=1, headers={"Retry-After": "60"}
        )
        s = await d.wait_for(
            lambda s: s.value("ccwatch_poll_success", endpoint="capacity") == 0.0,
            what="the failure",
        )
        assert s.value(HOLD) is None
        assert d.daemon.scheduler.holds == {}
        # the other job of the target goes on, and the failed one recovers at its backoff
        await d.wait_for(both_up, what="both jobs back without a hold")


@pytest.mark.parametrize(
    "value",
    ["²", "٣", "1.5", "-3", "+5", "5s", "Wed, 99 Foo 2026", "9" * 400, "Sun, 06 Nov 1994 08:49"],
)
async def test_odd_retry_after_values_never_break_a_poll(sim: Sim, value: str) -> None:
    async with daemon(config(sim, max_retry_after="3s")) as d:
        await d.wait_for(both_up)
        await sim.fault(
            "/entrypoint/capacity/", "status", status=429, count=1, headers={"Retry-After": value}
        )
        s = await d.wait_for(
            lambda s: (s.value("ccwatch_poll_errors_total", reason="rate_limited") or 0) >= 1,
            what="the 429 counted",
        )
        errors = s.series("ccwatch_poll_errors_total", endpoint="capacity")
        assert {x.labels["reason"] for x in errors} == {"rate_limited"}  # never internal
        hold = s.value(HOLD, target="ece")
        if value == "9" * 400:  # a number: honoured, up to max_retry_after
            assert hold is not None
            assert hold < time.time() + 3.5
        else:  # not a number nor a valid HTTP date: ignored
            assert hold is None
        await d.wait_for(both_up, within=10, what="recovery")


async def test_a_stalled_loop_never_serves_old_values() -> None:
    async with simulator() as sim, daemon(config(sim)) as d:
        await d.wait_for(both_up)
        time.sleep(1.2)  # noqa: ASYNC251 - the point: the loop stalls, no timer runs
        # rendered before any timer or poll of the loop had a chance to run
        text = b"".join(d.daemon.metric_chunks(openmetrics=False)).decode()
        s = Scrape(text)
        assert s.value("ccwatch_ece_available_slots") is None
        assert s.value("ccwatch_ece_chat_allowed") is None
        assert s.value("ccwatch_poll_success", endpoint="capacity") == 0.0
        assert s.value("ccwatch_poll_success", endpoint="chatAllowed") == 0.0
        stale = [e for e in await events(d) if e["event"] == "poll_stale"]
        assert {e["endpoint"] for e in stale} == {"capacity", "chatAllowed"}
        assert all("reason" not in e for e in stale)
        # no poll ran in the stall: nothing is counted as an error
        assert s.series("ccwatch_poll_errors_total") == []
        # and then it catches up
        await d.wait_for(both_up, what="fresh values after the stall")


async def test_overload_withdraws_values_that_could_not_be_refreshed(sim: Sim) -> None:
    cfg = config(sim, endpoints=["capacity", "chatAllowed", "agentAvailability"])
    cfg["scheduler"] = {"max_concurrency": 1}
    cfg["defaults"] = {"interval": "300ms", "timeout": "300ms"}
    async with daemon(cfg) as d:
        await d.wait_for(both_up)
        # every poll now takes the whole interval: with one slot, jobs wait their turn
        await sim.fault("/entrypoint/", "slow", delay=0.25)
        s = await d.wait_for(
            lambda s: any(x.value == 0.0 for x in s.series("ccwatch_poll_success")),
            within=10,
            what="a job withdrawn for want of a poll",
        )
        withdrawn = [x.labels["endpoint"] for x in s.series("ccwatch_poll_success") if x.value == 0]
        stale = [e for e in await events(d) if e["event"] == "poll_stale"]
        assert stale
        assert {e["endpoint"] for e in stale} >= set(withdrawn) - {
            x.labels["endpoint"] for x in s.series("ccwatch_poll_errors_total")
        }
        assert s.value("ccwatch_polls_delayed_total") > 0  # type: ignore[operator]
        await sim.clear_faults()
        await d.wait_for(
            lambda s: all(x.value == 1.0 for x in s.series("ccwatch_poll_success")),
            within=10,
            what="all fresh again",
        )


async def test_a_gms_probe_verdict_older_than_two_intervals_reads_0() -> None:
    async with simulator() as sim:
        probe = gms_probe_target(sim, interval="500ms", timeout="400ms")
        async with daemon({"targets": [probe]}) as d:
            await d.wait_for(
                lambda s: s.value("ccwatch_gms_probe_success", target="probe") == 1.0,
                what="a successful probe",
            )
            time.sleep(1.2)  # noqa: ASYNC251 - the loop stalls: no probe runs
            s = Scrape(b"".join(d.daemon.metric_chunks(openmetrics=False)).decode())
            assert s.value("ccwatch_gms_probe_success", target="probe") == 0.0
            assert s.value("ccwatch_poll_success", target="probe") == 0.0
            await d.wait_for(
                lambda s: s.value("ccwatch_gms_probe_success", target="probe") == 1.0,
                what="fresh again",
            )


async def test_a_429_with_an_undecodable_body_still_holds_the_target(sim: Sim) -> None:
    async with daemon(config(sim)) as d:
        await d.wait_for(both_up)
        await sim.fault(
            "/entrypoint/capacity/",
            "status",
            status=429,
            count=1,
            body="\x1b not brotli",
            headers={"Retry-After": "60", "Content-Encoding": "br"},
        )
        s = await d.wait_for(lambda s: s.value(HOLD) is not None, what="a hold")
        errors = s.series("ccwatch_poll_errors_total", endpoint="capacity")
        assert {x.labels["reason"] for x in errors} == {"rate_limited"}
