"""The daemon against the Context Service simulator over real sockets: values, state
changes, failures (each with one reason and one log event) and recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from ccwatch.simulator.context_service import DEFAULT_PASSWORD, DEFAULT_USERNAME
from tests import harness
from tests.harness import Scrape, Sim, daemon, simulator

ENDPOINT = "contextserviceregistration"
JOB = {"target": "cs", "endpoint": ENDPOINT}
REGISTRATION = "ccwatch_context_service_registration"
INFO = "ccwatch_context_service_info"
MANAGEMENT_URL = "https://cs.example.com/admin/organizations/42"


def cs_config(sim: Sim, password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
    return {
        "defaults": {"interval": "300ms", "timeout": "250ms"},
        "targets": [
            {
                "name": "cs",
                "source": "context_service",
                "url": sim.url,
                "basic_auth": {"username": DEFAULT_USERNAME, "password": password},
            },
            {
                # another target on the same server, which must keep going
                "name": "ece",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1000],
                "endpoints": ["capacity"],
            },
        ],
    }


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        await running.put(
            "context_service", {"state": "registered", "management_url": MANAGEMENT_URL}
        )
        yield running


def state_is(state: str) -> Callable[[Scrape], bool]:
    def check(s: Scrape) -> bool:
        return s.value(REGISTRATION, target="cs", state=state) == 1.0

    return check


def both_polled(s: Scrape) -> bool:
    return (
        s.value("ccwatch_poll_success", **JOB) == 1.0
        and s.value("ccwatch_poll_success", target="ece") == 1.0
    )


async def test_values_match_the_simulator(sim: Sim) -> None:
    async with daemon(cs_config(sim)) as d:
        s = await d.wait_for(both_polled, what="both targets polled")
        assert s.value(REGISTRATION, target="cs", state="registered") == 1.0
        assert s.value(REGISTRATION, target="cs", state="notRegistered") == 0.0
        assert len(s.series(REGISTRATION)) == 2
        info = s.series(INFO)
        assert len(info) == 1
        assert info[0].labels == {"target": "cs", "management_url": MANAGEMENT_URL}
        assert info[0].value == 1.0
        # only target (+ state / management_url): no subject labels
        assert set(s.series(REGISTRATION)[0].labels) == {"target", "state"}
        assert s.value("ccwatch_jobs", source="context_service") == 1.0
        for family in (REGISTRATION, INFO):
            assert f"last successful {ENDPOINT} poll" in s.families[family].documentation
        assert s.families[REGISTRATION].type == "gauge"
    state = (await sim.state())["context_service"]
    assert state["gets"] >= 1
    assert state["updates"] == 0  # ccwatch never calls the Update API


async def test_every_state_change_is_logged(sim: Sim) -> None:
    async with daemon(cs_config(sim)) as d:
        await d.wait_for(state_is("registered"))
        with structlog.testing.capture_logs() as events:
            await sim.put("context_service", {"state": "notRegistered"})
            s = await d.wait_for(state_is("notRegistered"), what="deregistered")
            assert s.value(REGISTRATION, target="cs", state="registered") == 0.0
            assert s.series(INFO) == []  # only while registered
            await sim.put("context_service", {"state": "registrationPending"})
            s = await d.wait_for(state_is("registrationPending"), what="an undocumented state")
            assert s.value(REGISTRATION, target="cs", state="registered") == 0.0
            assert s.value(REGISTRATION, target="cs", state="notRegistered") == 0.0
            await sim.put("context_service", {"state": "registered"})
            s = await d.wait_for(state_is("registered"), what="registered again")
            assert s.value(INFO, target="cs", management_url=MANAGEMENT_URL) == 1.0
            # the undocumented state is gone again
            assert len(s.series(REGISTRATION)) == 2
        changes = [e for e in events if e["event"] == "state_changed"]
        assert [(e["previous_state"], e["state"]) for e in changes] == [
            ("registered", "notRegistered"),
            ("notRegistered", "registrationPending"),
            ("registrationPending", "registered"),
        ]
        assert all(e["target"] == "cs" and e["endpoint"] == ENDPOINT for e in changes)
        assert changes[0]["previous_management_url"] == MANAGEMENT_URL
        assert changes[0]["management_url"] == ""
        assert not [e for e in events if e["event"] in ("poll_failing", "poll_recovered")]


async def test_a_wrong_password_is_an_auth_failure(sim: Sim) -> None:
    with structlog.testing.capture_logs() as events:
        async with daemon(cs_config(sim, password="wrong")) as d:
            s = await d.wait_for(
                lambda s: (
                    (s.value("ccwatch_poll_errors_total", reason="auth", **JOB) or 0) >= 2
                    and s.value("ccwatch_poll_success", target="ece") == 1.0
                ),
                what="two auth failures",
            )
            assert s.value("ccwatch_poll_success", **JOB) == 0.0
            assert s.series(REGISTRATION) == []
            assert s.series(INFO) == []
            reasons = {x.labels["reason"] for x in s.series("ccwatch_poll_errors_total", **JOB)}
            assert reasons == {"auth"}
    failing = [e for e in events if e["event"] == "poll_failing" and e["target"] == "cs"]
    assert len(failing) == 1
    assert failing[0]["reason"] == "auth"
    assert DEFAULT_PASSWORD not in str(events)
    assert (await sim.state())["context_service"]["gets"] == 0


MISSING_STATE = (
    "<contextServiceRegistration><refURL>/unifiedconfig/config/contextservice</refURL>"
    "</contextServiceRegistration>"
)
XML = {"Content-Type": "application/xml"}
FAULTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "content_type",
        {"kind": "content_type", "content_type": "text/plain"},
        "parse",
        "unexpected content type 'text/plain'",
    ),
    ("html_200", {"kind": "html", "status": 200}, "parse", "unexpected content type 'text/html"),
    ("invalid_xml", {"kind": "malformed"}, "parse", "malformed XML"),
    (
        "missing_state",
        {"kind": "status", "status": 200, "body": MISSING_STATE, "headers": XML},
        "parse",
        "has no <state> element",
    ),
    ("status_401", {"kind": "status", "status": 401}, "auth", "401"),
    ("status_403", {"kind": "status", "status": 403}, "auth", "403"),
    ("status_500", {"kind": "status", "status": 500}, "http_status", "500"),
    ("slow", {"kind": "slow", "delay": 1.0}, "timeout", ""),
    ("oversized", {"kind": "oversized", "size": 2 * 1024 * 1024}, "too_large", "cap"),
    (
        "oversized_chunked",
        {"kind": "oversized", "size": 2 * 1024 * 1024, "chunked": True},
        "too_large",
        "cap",
    ),
]


@pytest.mark.parametrize(
    ("fault", "reason", "detail"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
async def test_a_bad_answer_gives_one_reason_and_one_log_event(
    sim: Sim, fault: dict[str, Any], reason: str, detail: str
) -> None:
    async with daemon(cs_config(sim)) as d:
        await d.wait_for(both_polled)
        with structlog.testing.capture_logs() as events:
            path = "/unifiedconfig/config/contextserviceregistration"
            s = await harness.fail_with_one_reason(d, sim, path, fault, reason, JOB)
            # the failed poll's series are gone, not stale
            assert s.series(REGISTRATION) == []
            assert s.series(INFO) == []
            # the other target keeps going
            s = await harness.wait_polled_again(
                d, s, [{"target": "ece"}], what="the ECE target polled again"
            )
            assert s.value("ccwatch_poll_success", target="ece") == 1.0
            assert s.value("ccwatch_ece_available_slots", target="ece") is not None
            # recovery
            await sim.clear_faults()
            s = await d.wait_for(state_is("registered"), what="recovery")
            assert s.value("ccwatch_poll_success", **JOB) == 1.0
            assert s.value(INFO, target="cs", management_url=MANAGEMENT_URL) == 1.0
        failing = harness.assert_failed_once_then_recovered(
            events, reason, target="cs", endpoint=ENDPOINT
        )
        assert detail in failing["error"]
        # the registration did not change: no state change logged on recovery
        assert not [e for e in events if e["event"] == "state_changed"]
