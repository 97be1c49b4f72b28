"""The daemon against the ECE simulator over real sockets: values, states, failures and
recovery.

The daemon's own machinery, tested with the ECE simulator too, is in tests/test_daemon.py
(readiness, reloads, TLS) and tests/test_web.py (the HTTP endpoints).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from tests import harness
from tests.harness import Scrape, Sim, daemon, ece_config, simulator

STATE = {
    "agents_available": 3,
    "slots": 5,
    "queue_depth": 2,
    "max_queue_depth": 10,
    "wait_time": 42.5,
    "active": True,
    "service_running": True,
}


def succeeded(endpoint: str, entry_point: str) -> Any:
    def check(s: Scrape) -> bool:
        value = s.value(
            "ccwatch_poll_success", target="ece", endpoint=endpoint, entry_point=entry_point
        )
        return value == 1.0

    return check


def all_succeeded(s: Scrape) -> bool:
    values = [x.value for x in s.series("ccwatch_poll_success")]
    return len(values) == 10 and all(v == 1.0 for v in values)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        await running.put("ece/entry_points/1000", STATE)
        yield running


async def test_values_match_the_simulator(sim: Sim) -> None:
    async with daemon(ece_config(sim)) as d:
        s = await d.wait_for(all_succeeded, what="every job polled")
        ep = {"target": "ece", "entry_point": "1000"}
        assert s.value("ccwatch_ece_agent_available", **ep) == 1.0
        assert s.value("ccwatch_ece_available_slots", **ep) == 5.0
        assert s.value("ccwatch_ece_queue_depth", **ep) == 2.0
        assert s.value("ccwatch_ece_wait_time_seconds", **ep) == 42.5
        assert s.value("ccwatch_ece_eligibility", state="accepting", **ep) == 1.0
        assert s.value("ccwatch_ece_eligibility", state="no_agent", **ep) == 0.0
        assert s.value("ccwatch_ece_eligibility", state="queue_full", **ep) == 0.0
        assert s.value("ccwatch_ece_chat_allowed", **ep) == 1.0
        blocked = s.series("ccwatch_ece_chat_blocked", **ep)
        assert len(blocked) == 6
        assert all(x.value == 0.0 for x in blocked)
        # poll health carries every subject label, empty where it does not apply
        health = s.series("ccwatch_poll_success", endpoint="capacity", entry_point="1000")
        assert len(health) == 1
        assert health[0].labels["target"] == "ece"
        assert (
            s.value(
                "ccwatch_poll_last_success_timestamp_seconds",
                endpoint="capacity",
                entry_point="1000",
            )
            is not None
        )
        duration = s.value("ccwatch_poll_duration_seconds", endpoint="capacity", entry_point="1000")
        assert duration is not None
        assert duration > 0
        assert s.value("ccwatch_jobs", source="ece") == 10.0
        assert len(s.series("ccwatch_build_info")) == 1
        # HELP says the value comes from ccwatch's last poll
        assert (
            "last successful capacity poll"
            in s.families["ccwatch_ece_available_slots"].documentation
        )


async def test_states_follow_the_entry_point(sim: Sim) -> None:
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(all_succeeded)
        with structlog.testing.capture_logs() as events:
            await sim.put("ece/entry_points/1000", {"active": False})
            ep = {"target": "ece", "entry_point": "1000"}
            s = await d.wait_for(
                lambda s: s.value("ccwatch_ece_chat_allowed", **ep) == 0.0, what="closed"
            )
            assert s.value("ccwatch_ece_chat_blocked", reason="entry_point_inactive", **ep) == 1.0
            await sim.put("ece/entry_points/1000", {"active": True, "agents_available": 0})
            s = await d.wait_for(
                lambda s: (
                    s.value("ccwatch_ece_eligibility", state="no_agent", **ep) == 1.0
                    and s.value("ccwatch_ece_chat_blocked", reason="agent_not_available", **ep)
                    == 1.0
                ),
                what="no agent",
            )
            assert s.value("ccwatch_ece_agent_available", **ep) == 0.0
        changes = [e for e in events if e["event"] == "state_changed"]
        closed = [e for e in changes if e.get("chat_allowed") == "false"]
        assert closed
        assert closed[0]["previous_chat_allowed"] == "true"
        assert closed[0]["blocked_reason"] == "entry_point_inactive"
        assert closed[0]["entry_point"] == "1000"
        assert closed[0]["endpoint"] == "chatAllowed"
        assert any(e.get("eligibility") == "no_agent" for e in changes)
        # nothing about the entry point that did not change
        assert not [e for e in changes if e["entry_point"] == "1001"]


FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"kind": "status", "status": 500}, "http_status"),
    ({"kind": "status", "status": 401}, "auth"),
    ({"kind": "status", "status": 403}, "auth"),
    ({"kind": "slow", "delay": 3.0}, "timeout"),
    ({"kind": "oversized", "size": 2 * 1024 * 1024}, "too_large"),
    ({"kind": "oversized", "size": 2 * 1024 * 1024, "chunked": True}, "too_large"),
    ({"kind": "malformed"}, "parse"),
    ({"kind": "html"}, "parse"),
    ({"kind": "content_type", "content_type": "application/json"}, "parse"),
    ({"kind": "reset"}, "connect"),
]


@pytest.mark.parametrize(
    ("fault", "reason"),
    FAULTS,
    ids=[
        f"{f['kind']}-{r}" + ("-chunked" if f.get("chunked") else "") + str(f.get("status", ""))
        for f, r in FAULTS
    ],
)
async def test_a_failing_poll_removes_its_series_and_counts_one_reason(
    sim: Sim, fault: dict[str, Any], reason: str
) -> None:
    config = ece_config(sim, endpoints=["capacity", "chatAllowed"])
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_available_slots")) == 2)
        job = {"target": "ece", "endpoint": "capacity", "entry_point": "1000"}
        with structlog.testing.capture_logs() as events:
            s = await harness.fail_with_one_reason(
                d, sim, "/entrypoint/capacity/1000", fault, reason, job
            )
            # the failed poll's series are gone, not stale
            assert s.value("ccwatch_ece_available_slots", entry_point="1000") is None
            # every other job keeps going
            assert s.value("ccwatch_ece_available_slots", entry_point="1001") is not None
            assert s.value("ccwatch_poll_success", endpoint="chatAllowed", entry_point="1000") == 1
            await sim.clear_faults()
            s = await d.wait_for(succeeded("capacity", "1000"), what="recovery")
            assert s.value("ccwatch_ece_available_slots", entry_point="1000") is not None
        harness.assert_failed_once_then_recovered(
            events, reason, target="ece", entry_point="1000", endpoint="capacity"
        )


async def test_unreachable_target_is_a_connect_failure(unused_tcp_port: int) -> None:
    config = {
        "defaults": {"interval": "500ms", "timeout": "400ms"},
        "targets": [
            {
                "name": "down",
                "source": "ece",
                "url": f"http://127.0.0.1:{unused_tcp_port}/system",
                "entry_points": [1],
                "endpoints": ["chatAllowed"],
            }
        ],
    }
    async with daemon(config) as d:
        s = await d.wait_for(
            lambda s: s.value("ccwatch_poll_errors_total", target="down", reason="connect") == 1
        )
        assert s.value("ccwatch_poll_success", target="down") == 0.0
        assert s.series("ccwatch_ece_chat_allowed") == []
        assert s.value("ccwatch_poll_last_success_timestamp_seconds", target="down") is None


async def test_unknown_entry_point(sim: Sim) -> None:
    async with daemon(ece_config(sim, entry_points=[4242])) as d:
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_ece_chat_blocked", reason="invalid_entry_point") == 1.0
                and s.value("ccwatch_poll_errors_total", endpoint="capacity", reason="http_status")
                is not None
            )
        )
        assert s.value("ccwatch_ece_chat_allowed", entry_point="4242") == 0.0
        assert s.value("ccwatch_ece_available_slots", entry_point="4242") is None


NUMBER_VALUES = {"400-digits": "9" * 400, "arabic-indic-four": "٤"}
#: What the simulator's entry point 1000 answers once the fault is gone (see STATE).
RECOVERED = {
    "capacity": {"ccwatch_ece_available_slots": 5.0},
    "liveSessionStatus": {"ccwatch_ece_queue_depth": 2.0, "ccwatch_ece_wait_time_seconds": 42.5},
}


@pytest.mark.parametrize("endpoint", ["capacity", "liveSessionStatus"])
@pytest.mark.parametrize("value", list(NUMBER_VALUES.values()), ids=list(NUMBER_VALUES))
async def test_a_number_out_of_rule_fails_the_job_as_parse(
    sim: Sim, endpoint: str, value: str
) -> None:
    config = ece_config(sim, endpoints=["capacity", "liveSessionStatus"])
    async with daemon(config) as d:
        await d.wait_for(
            lambda s: [x.value for x in s.series("ccwatch_poll_success")] == [1.0] * 4,
            what="every job polled",
        )
        job = {"target": "ece", "endpoint": endpoint, "entry_point": "1000"}
        other = {"target": "ece", "endpoint": endpoint, "entry_point": "1001"}
        fault = {"kind": "number", "value": value}
        with structlog.testing.capture_logs() as events:
            s = await harness.fail_with_one_reason(
                d, sim, f"/entrypoint/{endpoint}/1000", fault, "parse", job
            )
            # never a ccwatch bug
            assert s.series("ccwatch_poll_errors_total", reason="internal") == []
            for family in RECOVERED[endpoint]:
                assert s.value(family, entry_point="1000") is None
            # the daemon keeps running: the other entry point is polled again, all is well
            await harness.wait_polled_again(d, s, [other], what="1001 polled again")
            assert (await d.get("/-/healthy"))[0] == 200
            await sim.clear_faults()
            s = await d.wait_for(succeeded(endpoint, "1000"), what="recovery")
            for family, expected in RECOVERED[endpoint].items():
                assert s.value(family, entry_point="1000") == expected
        failing = harness.assert_failed_once_then_recovered(
            events, "parse", target="ece", entry_point="1000", endpoint=endpoint
        )
        assert len(failing["error"]) < 200  # 400 digits do not bloat the log line
        assert not [e for e in events if e["event"] == "scheduler_error"]
