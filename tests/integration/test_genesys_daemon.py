"""The daemon against the Genesys Context Services simulator over real sockets: values,
failures (each with one reason and one log event) while the other jobs keep going, and
recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from tests import harness
from tests.harness import Scrape, Sim, daemon, simulator

ACTIVE = "ccwatch_genesys_active_services"
COMPLETED = "ccwatch_genesys_completed_services"
OLDEST = "ccwatch_genesys_oldest_active_service_age_seconds"
BY_TYPE = "ccwatch_genesys_active_services_by_type"
VENDOR = (ACTIVE, COMPLETED, OLDEST, BY_TYPE)
ABC = {"target": "gms", "customer_id": "ABC1234", "contact_key": ""}
DEF = {"target": "gms", "customer_id": "DEF5678", "contact_key": ""}
KEY = {"target": "gms", "customer_id": "", "contact_key": "408-832-7799"}


def gms_config(sim: Sim, **target: Any) -> dict[str, Any]:
    return {
        "defaults": {"interval": "300ms", "timeout": "250ms"},
        "targets": [
            {
                "name": "gms",
                "source": "genesys_services",
                "url": sim.url,
                "customer_ids": ["ABC1234", "DEF5678"],
                "contact_keys": ["408-832-7799"],
                "completed_window": "1h",
                "service_types": [400, 401],
                **target,
            }
        ],
    }


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        await running.put(
            "genesys/customers/ABC1234",
            {
                "active": [
                    {"service_type": 400, "age": 900},
                    {"service_type": 400, "age": 60},
                    {"service_type": "billing", "age": 30},
                ],
                "completed": [
                    {"service_type": 400, "age": 1200, "completed_ago": 600},
                    {"service_type": 401, "age": 600, "completed_ago": 10},
                    # outside the 1h window: the server's completed_from filter drops it
                    {"service_type": 401, "age": 9000, "completed_ago": 7200},
                ],
            },
        )
        await running.put("genesys/customers/DEF5678", {"active": [], "completed": []})
        await running.put(
            "genesys/contact_keys/408-832-7799",
            {"active": [{"service_type": 401, "age": 120}], "completed": []},
        )
        yield running


def all_polled(s: Scrape) -> bool:
    values = [x.value for x in s.series("ccwatch_poll_success", target="gms")]
    return len(values) == 6 and all(v == 1.0 for v in values)


async def test_values_match_the_simulator(sim: Sim) -> None:
    async with daemon(gms_config(sim)) as d:
        s = await d.wait_for(all_polled, what="every job polled")
        assert s.value(ACTIVE, **ABC) == 3.0
        assert s.value(COMPLETED, **ABC) == 2.0
        oldest = s.value(OLDEST, **ABC)
        assert oldest is not None
        assert 900.0 <= oldest < 3600.0  # the 900 s one, from its start timestamp (UTC)
        assert s.value(BY_TYPE, service_type="400", **ABC) == 2.0
        assert s.value(BY_TYPE, service_type="401", **ABC) == 0.0
        assert s.series(BY_TYPE, service_type="billing") == []  # not configured
        # nothing active: count 0 and age 0
        assert s.value(ACTIVE, **DEF) == 0.0
        assert s.value(OLDEST, **DEF) == 0.0
        assert s.value(COMPLETED, **DEF) == 0.0
        # contact keys: the customer_id label is there, empty
        assert s.value(ACTIVE, **KEY) == 1.0
        assert s.value(BY_TYPE, service_type="401", **KEY) == 1.0
        for name in VENDOR:
            for sample in s.series(name):
                assert {"target", "customer_id", "contact_key"} <= set(sample.labels)
            assert s.families[name].type == "gauge"
            assert "(from ccwatch's last successful " in s.families[name].documentation
        assert s.value("ccwatch_jobs", source="genesys_services") == 6.0
        assert s.value("ccwatch_poll_success", endpoint="active", **ABC) == 1.0
        assert s.value("ccwatch_poll_success", endpoint="completed", **KEY) == 1.0


async def test_values_follow_the_services(sim: Sim) -> None:
    async with daemon(gms_config(sim)) as d:
        await d.wait_for(all_polled)
        await sim.put("genesys/customers/DEF5678", {"active": [{"service_type": 401, "age": 5}]})
        s = await d.wait_for(lambda s: s.value(ACTIVE, **DEF) == 1.0, what="a service started")
        assert s.value(BY_TYPE, service_type="401", **DEF) == 1.0
        await sim.put(
            "genesys/customers/DEF5678",
            {"active": [], "completed": [{"service_type": 401, "age": 5, "completed_ago": 1}]},
        )
        s = await d.wait_for(
            lambda s: s.value(ACTIVE, **DEF) == 0.0 and s.value(COMPLETED, **DEF) == 1.0,
            what="the service completed",
        )
        assert s.value(OLDEST, **DEF) == 0.0


async def test_types_are_not_exported_unless_configured(sim: Sim) -> None:
    config = gms_config(sim)
    del config["targets"][0]["service_types"]
    async with daemon(config) as d:
        s = await d.wait_for(all_polled)
        assert s.value(ACTIVE, **ABC) == 3.0
        assert s.series(BY_TYPE) == []


async def test_a_subject_without_services(sim: Sim) -> None:
    config = gms_config(sim, customer_ids=["NOBODY"], contact_keys=[])
    async with daemon(config) as d:
        s = await d.wait_for(
            lambda s: (
                len(s.series("ccwatch_poll_success", target="gms")) == 2
                and all(x.value == 1.0 for x in s.series("ccwatch_poll_success", target="gms"))
            )
        )
        assert s.value(ACTIVE, customer_id="NOBODY") == 0.0
        assert s.value(COMPLETED, customer_id="NOBODY") == 0.0


JSON = {"Content-Type": "application/json"}
FAULTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "content_type",
        {"kind": "content_type", "content_type": "text/plain"},
        "parse",
        "unexpected content type 'text/plain'",
    ),
    ("html_200", {"kind": "html", "status": 200}, "parse", "unexpected content type 'text/html"),
    ("invalid_json", {"kind": "malformed"}, "parse", "invalid JSON"),
    (
        "commented_json",
        {
            "kind": "status",
            "status": 200,
            "body": '[ // returned in an array\n {"service_id": 1}]',
            "headers": JSON,
        },
        "parse",
        "invalid JSON",
    ),
    (
        "not_an_array",
        {"kind": "status", "status": 200, "body": '{"services": []}', "headers": JSON},
        "parse",
        "expected a JSON array",
    ),
    (
        "missing_started",
        {"kind": "status", "status": 200, "body": '[{"service_id": 1}]', "headers": JSON},
        "parse",
        "no started event",
    ),
    (
        "missing_timestamp",
        {
            "kind": "status",
            "status": 200,
            "body": '[{"service_id": 1, "started": {"service_type": 400}}]',
            "headers": JSON,
        },
        "parse",
        "no timestamp",
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
    job = {**ABC, "endpoint": "active"}
    async with daemon(gms_config(sim)) as d:
        await d.wait_for(all_polled)
        with structlog.testing.capture_logs() as events:
            path = "/genesys/1/cs/customers/ABC1234/services/active"
            s = await harness.fail_with_one_reason(d, sim, path, fault, reason, job)
            # the failed poll's series are gone, not stale
            assert s.value(ACTIVE, **ABC) is None
            assert s.value(OLDEST, **ABC) is None
            assert s.series(BY_TYPE, **ABC) == []
            # every other job keeps going, the same customer's completed job included
            others = (
                {**ABC, "endpoint": "completed"},
                {**DEF, "endpoint": "active"},
                {**KEY, "endpoint": "active"},
            )
            s = await harness.wait_polled_again(d, s, others, what="the other jobs polled again")
            assert s.value(COMPLETED, **ABC) == 2.0
            assert s.value(ACTIVE, **KEY) == 1.0
            assert s.value("ccwatch_poll_success", **job) == 0.0
            # recovery
            await sim.clear_faults()
            s = await d.wait_for(
                lambda s: s.value("ccwatch_poll_success", **job) == 1.0, what="recovery"
            )
            assert s.value(ACTIVE, **ABC) == 3.0
            assert s.value(BY_TYPE, service_type="400", **ABC) == 2.0
        failing = harness.assert_failed_once_then_recovered(
            events, reason, target="gms", endpoint="active", customer_id="ABC1234"
        )
        assert detail in failing["error"]
