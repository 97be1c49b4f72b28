"""The daemon against the ECE simulator over real sockets: values, failures, recovery."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import trustme
from aiohttp import web
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from tests import harness
from tests.harness import Running, Scrape, Sim, daemon, ece_config, simulator

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


async def test_a_slow_job_does_not_delay_the_others(sim: Sim) -> None:
    config = ece_config(sim, endpoints=["capacity"], entry_points=[1000, 1001, 1002])
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_available_slots")) == 3)
        await sim.fault("/entrypoint/capacity/1000", "slow", delay=30.0)
        await d.wait_for(
            lambda s: s.value("ccwatch_poll_success", entry_point="1000") == 0.0, what="timeout"
        )
        seen: set[float] = set()

        def others_progress(s: Scrape) -> bool:
            stamp = s.value("ccwatch_poll_last_success_timestamp_seconds", entry_point="1001")
            assert s.value("ccwatch_poll_success", entry_point="1000") == 0.0
            if stamp is not None:
                seen.add(stamp)
            return len(seen) >= 4

        s = await d.wait_for(others_progress, what="1001 polled repeatedly while 1000 hangs")
        assert s.value("ccwatch_poll_success", entry_point="1002") == 1.0
        assert (
            s.value("ccwatch_poll_errors_total", entry_point="1000", reason="timeout") or 0
        ) >= 1


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


async def test_readiness_waits_for_every_first_attempt(sim: Sim) -> None:
    await sim.fault("/entrypoint/", "slow", delay=30.0)
    config = ece_config(sim)
    config["defaults"] = {"interval": "3s", "timeout": "2s"}
    async with daemon(config) as d:
        status, text = await d.get("/-/ready")
        assert status == 503
        assert "not ready" in text
        await sim.clear_faults()
        await d.wait_for(lambda s: len(s.series("ccwatch_poll_success")) == 10, within=20)
        status, _ = await d.get("/-/ready")
        assert status == 200
        status, text = await d.get("/-/healthy")
        assert status == 200
        status, text = await d.get("/")
        assert status == 200
        assert 'href="metrics"' in text


async def test_openmetrics_and_gzip(sim: Sim) -> None:
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(all_succeeded)
        await sim.fault("/entrypoint/capacity/1001", "status", status=500)
        await d.wait_for(lambda s: s.value("ccwatch_poll_errors_total", entry_point="1001") == 1)
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with d.session.get(f"{d.url}/metrics", headers=headers) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            text = await resp.text()
        assert text.endswith("# EOF\n")
        families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
        assert families["ccwatch_poll_errors"].type == "counter"
        assert families["ccwatch_ece_available_slots"].type == "gauge"
        async with d.session.get(
            f"{d.url}/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        ) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = gzip.decompress(await resp.read()).decode()
        assert "ccwatch_ece_available_slots{" in body
        assert "# EOF" not in body


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA, fixtures: Path) -> AsyncIterator[str]:
    body = (fixtures / "ece" / "capacity.xml").read_bytes()

    async def capacity(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/xml")

    app = web.Application()
    app.router.add_get("/system/egain/chat/entrypoint/capacity/{id}", capacity)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    yield f"https://127.0.0.1:{port}/system"
    await runner.cleanup()


async def test_tls(tls_server: str, ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    base = {"source": "ece", "url": tls_server, "entry_points": [7], "endpoints": ["capacity"]}
    config = {
        "defaults": {"interval": "500ms", "timeout": "400ms"},
        "targets": [
            {"name": "untrusted", **base},
            {"name": "trusted", **base, "tls_config": {"ca_file": str(ca_file)}},
            {"name": "skip", **base, "tls_config": {"insecure_skip_verify": True}},
        ],
    }
    async with daemon(config) as d:
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_poll_errors_total", target="untrusted", reason="tls") == 1
                and s.value("ccwatch_poll_success", target="trusted") == 1.0
                and s.value("ccwatch_poll_success", target="skip") == 1.0
            )
        )
        assert s.value("ccwatch_ece_available_slots", target="trusted") == 4.0
        assert s.value("ccwatch_ece_available_slots", target="untrusted") is None


async def test_rate_limited_target_is_held_back(sim: Sim) -> None:
    config = ece_config(sim, endpoints=["capacity", "chatAllowed"], entry_points=[1000])
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_available_slots")) == 1)
        await sim.fault(
            "/entrypoint/capacity/", "status", status=429, count=1, headers={"Retry-After": "120"}
        )
        s = await d.wait_for(
            lambda s: s.value("ccwatch_poll_errors_total", reason="rate_limited") == 1
        )
        assert "ece" in d.daemon.scheduler.holds
        stamp = s.value("ccwatch_poll_last_success_timestamp_seconds", endpoint="chatAllowed")
        await asyncio.sleep(1.5)  # three intervals: without the hold chatAllowed would poll
        s = await d.scrape()
        assert (
            s.value("ccwatch_poll_last_success_timestamp_seconds", endpoint="chatAllowed") == stamp
        )


async def test_reload_keeps_unchanged_jobs(sim: Sim, tmp_path: Path) -> None:
    import yaml

    from ccwatch.config import load_config
    from ccwatch.daemon import Daemon

    path = tmp_path / "ccwatch.yml"
    config = ece_config(sim, endpoints=["capacity"])
    config["web"] = {"listen_address": "127.0.0.1:0"}
    path.write_text(yaml.safe_dump(config))
    instance = Daemon(load_config(path), config_path=path)
    await instance.start()
    try:
        host, port = instance.bound[0]
        async with aiohttp.ClientSession() as session:
            d = Running(instance, f"http://{host}:{port}", session)
            await sim.fault("/entrypoint/capacity/1001", "status", status=500, count=1)
            await d.wait_for(
                lambda s: s.value("ccwatch_poll_errors_total", entry_point="1001") == 1
            )
            config["targets"][0]["entry_points"] = [1001, 1002]
            path.write_text(yaml.safe_dump(config))
            async with session.post(f"{d.url}/-/reload") as resp:
                assert resp.status == 200
            s = await d.wait_for(
                lambda s: s.value("ccwatch_ece_available_slots", entry_point="1002") is not None
            )
            # 1000 is gone, 1001 kept its counter
            assert s.value("ccwatch_poll_success", entry_point="1000") is None
            assert s.value("ccwatch_poll_errors_total", entry_point="1001") == 1.0
            assert s.value("ccwatch_config_last_reload_successful") == 1.0
            path.write_text("targets: []\n")
            async with session.post(f"{d.url}/-/reload") as resp:
                assert resp.status == 500
                assert "targets" in await resp.text()
            s = await d.scrape()
            assert s.value("ccwatch_config_last_reload_successful") == 0.0
            assert s.value("ccwatch_jobs", source="ece") == 2.0
    finally:
        await instance.stop()


async def test_recent_transitions_at_logs(sim: Sim) -> None:
    import json

    config = ece_config(sim, endpoints=["chatAllowed"])
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_chat_allowed")) == 2)
        await sim.fault("/entrypoint/chatAllowed/1001", "status", status=500)
        await d.wait_for(lambda s: s.value("ccwatch_poll_success", entry_point="1001") == 0.0)
        await sim.clear_faults()
        await d.wait_for(lambda s: s.value("ccwatch_poll_success", entry_point="1001") == 1.0)
        status, text = await d.get("/logs")
        assert status == 200
        events = [json.loads(line) for line in text.splitlines()]
        names = [(e["event"], e["entry_point"]) for e in events]
        assert names == [("poll_failing", "1001"), ("poll_recovered", "1001")]
        assert events[0]["reason"] == "http_status"
        assert events[0]["target"] == "ece"
        assert events[0]["timestamp"] <= events[1]["timestamp"]
        status, text = await d.get("/logs?target=other")
        assert status == 200
        assert text == ""


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
