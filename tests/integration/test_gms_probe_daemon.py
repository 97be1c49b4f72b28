"""The daemon's GMS probe against the simulator over real sockets.

Probe verdicts are kept per (target, service) for the whole process (so they survive
failed polls and reloads): every test here uses target names of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from tests import harness
from tests.harness import Scrape, Sim, daemon, simulator

SUCCESS = "ccwatch_gms_probe_success"
STEP = "ccwatch_gms_probe_step_duration_seconds"
STATUS = "ccwatch_gms_service_status"
CREATE_A = "/genesys/1/service/request-inbound-poll"


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        await running.put("gms/status", {"status": "waiting-for-agent"})
        yield running


def probe(sim: Sim, name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": "gms_probe",
        "url": sim.url,
        "gms_service": "request-inbound-poll",
        "form": {"_phone_number": "6504669999", "language": "french"},
        "status_request": "status",
        "expected_statuses": ["waiting-for-agent"],
        "interval": "250ms",
        **overrides,
    }


def config(*targets: dict[str, Any]) -> dict[str, Any]:
    return {"targets": list(targets)}


def polled(target: str) -> Callable[[Scrape], bool]:
    return lambda s: s.value("ccwatch_poll_success", target=target) == 1.0


async def requests(sim: Sim) -> list[dict[str, Any]]:
    async with sim.session.get(f"{sim.url}/-/sim/gms/requests") as resp:
        result: list[dict[str, Any]] = await resp.json()
        return result


async def test_probe_values_and_status_changes(sim: Sim) -> None:
    async with daemon(config(probe(sim, "gms-values"))) as d:
        s = await d.wait_for(polled("gms-values"))
        labels = {"target": "gms-values", "gms_service": "request-inbound-poll"}
        assert s.value(SUCCESS, **labels) == 1.0
        assert s.value(STATUS, status="waiting-for-agent", **labels) == 1.0
        create = s.value(STEP, step="create", **labels)
        assert create is not None
        assert create > 0
        assert s.value(STEP, step="status", **labels) is not None
        health = s.series("ccwatch_poll_success", target="gms-values")
        assert [(x.labels["endpoint"], x.labels["gms_service"]) for x in health] == [
            ("probe", "request-inbound-poll")
        ]
        assert "last" in s.families[SUCCESS].documentation
        log = await requests(sim)
        assert log[0] == {
            "method": "POST",
            "path": CREATE_A,
            "content_type": "application/x-www-form-urlencoded",
            "form": {"_phone_number": "6504669999", "language": "french"},
        }
        assert log[1]["path"].endswith("/status")
        with structlog.testing.capture_logs() as events:
            await sim.put("gms/status", {"status": "failed"})
            s = await d.wait_for(lambda s: s.value(SUCCESS, **labels) == 0.0, what="failed")
            # an unexpected status is a failed probe, not a failed poll
            assert s.value("ccwatch_poll_success", target="gms-values") == 1.0
            assert s.value(STATUS, status="failed", **labels) == 1.0
            assert s.value(STATUS, status="waiting-for-agent", **labels) == 0.0
            await sim.put("gms/status", {"status": "waiting-for-agent"})
            s = await d.wait_for(lambda s: s.value(SUCCESS, **labels) == 1.0, what="back")
            assert s.value(STATUS, status="failed", **labels) is None
        changes = [e for e in events if e["event"] == "state_changed"]
        assert [(e["status"], e["previous_status"]) for e in changes] == [
            ("failed", "waiting-for-agent"),
            ("waiting-for-agent", "failed"),
        ]
        assert changes[0]["gms_service"] == "request-inbound-poll"
        assert changes[0]["endpoint"] == "probe"
        assert not [e for e in events if e["event"] == "poll_failing"]


async def test_multipart_form_and_the_spec_answer(sim: Sim) -> None:
    await sim.put("gms/config", {"spec_body": True})  # not valid JSON, as documented
    target = probe(sim, "gms-multipart", form_encoding="multipart", expected_statuses=[])
    async with daemon(config(target)) as d:
        s = await d.wait_for(polled("gms-multipart"))
        assert s.value(SUCCESS, target="gms-multipart") == 1.0
        log = await requests(sim)
        assert log[0]["content_type"] == "multipart/form-data"
        assert log[0]["form"] == {"_phone_number": "6504669999", "language": "french"}
        await sim.put("gms/config", {"spec_body": False, "id_key": "id"})
        count = len(log)
        for _ in range(100):  # two more probes
            if len(await requests(sim)) >= count + 4:
                break
            await asyncio.sleep(0.1)
        s = await d.wait_for(polled("gms-multipart"))
        assert s.series("ccwatch_poll_errors_total", target="gms-multipart") == []


async def test_create_only_probe(sim: Sim) -> None:
    # without a service request, any service may be probed (spec 003 restricts only those)
    target = probe(
        sim,
        "gms-create-only",
        gms_service="request-interaction",
        status_request=None,
        expected_statuses=[],
    )
    async with daemon(config(target)) as d:
        s = await d.wait_for(polled("gms-create-only"))
        assert s.value(SUCCESS, target="gms-create-only", gms_service="request-interaction") == 1.0
        assert [x.labels["step"] for x in s.series(STEP, target="gms-create-only")] == ["create"]
        assert s.series(STATUS, target="gms-create-only") == []
    assert all(not e["path"].endswith("/status") for e in await requests(sim))


async def test_a_service_the_server_does_not_know_is_404(sim: Sim) -> None:
    target = probe(sim, "gms-404", gms_service="request-inbound-nothing")
    with structlog.testing.capture_logs() as events:
        async with daemon(config(target, probe(sim, "gms-404-other"))) as d:
            job = {"target": "gms-404", "gms_service": "request-inbound-nothing"}
            s = await d.wait_for(
                lambda s: (
                    (s.value("ccwatch_poll_errors_total", reason="http_status", **job) or 0) >= 2
                    and s.value(SUCCESS, target="gms-404-other") == 1.0
                ),
                what="two 404s, the other probe fine",
            )
            assert s.value("ccwatch_poll_success", **job) == 0.0
            assert s.value(SUCCESS, **job) == 0.0
            assert s.series(STEP, **job) == []
            reasons = {x.labels["reason"] for x in s.series("ccwatch_poll_errors_total", **job)}
            assert reasons == {"http_status"}
    failing = [e for e in events if e["event"] == "poll_failing"]
    assert len(failing) == 1, failing
    assert failing[0]["reason"] == "http_status"
    assert "'request-inbound-nothing' is not configured" in failing[0]["error"]
    assert failing[0]["gms_service"] == "request-inbound-nothing"


#: a create-only probe: spec 003 allows no service request on a request-callback service
CALLBACK: dict[str, Any] = {
    "gms_service": "request-callback",
    "status_request": None,
    "expected_statuses": [],
}
JSON = {"headers": {"Content-Type": "application/json"}}
SMALL_CAP = {"max_response_size": "4KiB"}
NO_ID = '{"_access_number": "8003449999", "_access_code": "7684"}'
BAD_INPUTS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("content-type", {"kind": "content_type", "content_type": "text/plain"}, "parse", {}),
    ("html-200", {"kind": "html"}, "parse", {}),
    ("invalid-json", {"kind": "malformed"}, "parse", {}),
    ("missing-fields", {"kind": "status", "status": 200, "body": NO_ID, **JSON}, "parse", {}),
    ("401", {"kind": "status", "status": 401}, "auth", {}),
    ("403", {"kind": "status", "status": 403}, "auth", {}),
    ("500", {"kind": "status", "status": 500}, "http_status", {}),
    ("slow", {"kind": "slow", "delay": 1.5}, "timeout", {}),
    ("oversized", {"kind": "oversized", "size": 100_000}, "too_large", SMALL_CAP),
    ("reset", {"kind": "reset"}, "connect", {}),
]


@pytest.mark.parametrize(
    ("fault", "reason", "overrides"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_a_bad_answer_fails_the_probe_with_one_reason(
    sim: Sim, fault: dict[str, Any], reason: str, overrides: dict[str, Any]
) -> None:
    name = f"gms-bad-{fault['kind']}-{fault.get('status', '')}"
    other = f"{name}-other"
    targets = (probe(sim, name, **overrides), probe(sim, other, **CALLBACK))
    job = {"target": name, "endpoint": "probe", "gms_service": "request-inbound-poll"}
    async with daemon(config(*targets)) as d:
        await d.wait_for(lambda s: polled(name)(s) and polled(other)(s))
        with structlog.testing.capture_logs() as events:
            s = await harness.fail_with_one_reason(d, sim, CREATE_A, fault, reason, job)
            # the probe's verdict stays, at 0; the poll's own series are gone
            assert s.value(SUCCESS, target=name) == 0.0
            assert s.series(STEP, target=name) == []
            assert s.series(STATUS, target=name) == []
            # the other probe keeps going
            s = await harness.wait_polled_again(
                d, s, [{"target": other}], what="the other probe ran again"
            )
            assert s.value(SUCCESS, target=other) == 1.0
            await sim.clear_faults()
            s = await d.wait_for(lambda s: s.value(SUCCESS, target=name) == 1.0, what="recovery")
            assert s.value(STEP, target=name, step="create") is not None
        harness.assert_failed_once_then_recovered(
            events, reason, target=name, gms_service="request-inbound-poll"
        )
