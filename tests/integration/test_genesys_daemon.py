"""The daemon against the Genesys Context Services simulator over real sockets: values,
failures (each with one reason and one log event) while the other jobs keep going, and
recovery."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ccwatch.sources.genesys_services import pseudonym
from tests import harness
from tests.harness import Scrape, Sim, daemon, simulator

ACTIVE = "ccwatch_genesys_active_services"
COMPLETED = "ccwatch_genesys_completed_services"
OLDEST = "ccwatch_genesys_oldest_active_service_age_seconds"
BY_TYPE = "ccwatch_genesys_active_services_by_type"
VENDOR = (ACTIVE, COMPLETED, OLDEST, BY_TYPE)
ABC = {"target": "gms", "customer_id": "ABC1234", "contact_key": ""}
DEF = {"target": "gms", "customer_id": "DEF5678", "contact_key": ""}
#: The contact key (a phone number): configured bare, so labelled with its pseudonym in
#: target "gms" (HMAC-SHA256 keyed with the target's name: no salt is set).
PHONE = "408-832-7799"
KEY = {"target": "gms", "customer_id": "", "contact_key": "ck-5aa17a3c9578"}


def gms_config(sim: Sim, **target: Any) -> dict[str, Any]:
    return {
        "defaults": {"interval": "300ms", "timeout": "250ms"},
        "targets": [
            {
                "name": "gms",
                "source": "genesys_services",
                "url": sim.url,
                "customer_ids": ["ABC1234", "DEF5678"],
                "contact_keys": [PHONE],
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
            f"genesys/contact_keys/{PHONE}",
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


# --------------------------------------------------------------------------- the contact key

OTHER_PHONE = "650-555-0123"
#: Every way the phone numbers could show up where they must not.
PHONE_FORMS = (PHONE, "4088327799", OTHER_PHONE, "6505550123")
HOTLINE = {"target": "gms", "customer_id": "", "contact_key": "hotline-a"}
#: The pages that show jobs, their labels, failures and the log.
PAGES = ("/metrics", "/logs", "/", "/?target=gms", "/?health=down", "/api/v1/targets")


def test_the_bare_key_is_labelled_with_its_pseudonym() -> None:
    assert KEY["contact_key"] == pseudonym(PHONE, "gms")


async def assert_no_phone_number(d: harness.Running, events: list[Any]) -> None:
    """No page of the daemon and no log event names a phone number."""
    for path in PAGES:
        status, text = await d.get(path)
        assert status == 200, path
        for form in PHONE_FORMS:
            assert form not in text, f"{form} on {path}"
    logged = repr(events)
    for form in PHONE_FORMS:
        assert form not in logged


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        # the detail names the redirect's Location (never followed), which holds the key
        (
            {
                "kind": "status",
                "status": 302,
                "headers": {"Location": f"/genesys/1/cs/services/anonymous/{PHONE}/active"},
            },
            "http_status",
        ),
        ({"kind": "status", "status": 500}, "http_status"),
        ({"kind": "malformed"}, "parse"),
    ],
    ids=["redirect_loop", "status_500", "malformed"],
)
async def test_the_phone_number_is_only_ever_in_the_request(
    sim: Sim, fault: dict[str, Any], reason: str
) -> None:
    """Named and bare keys: the label is the name or the pseudonym, while the polls
    succeed and while one fails; no page and no log event names the number."""
    await sim.put(f"genesys/contact_keys/{OTHER_PHONE}", {"active": [], "completed": []})
    named = {"key": PHONE, "name": "hotline-a"}
    bare = {**KEY, "contact_key": pseudonym(OTHER_PHONE, "gms")}
    config = gms_config(sim, customer_ids=["ABC1234"], contact_keys=[named, OTHER_PHONE])
    with structlog.testing.capture_logs() as events:
        async with daemon(config) as d:
            s = await d.wait_for(
                lambda s: (
                    s.value("ccwatch_poll_success", endpoint="completed", **bare) == 1.0
                    and s.value("ccwatch_poll_success", endpoint="active", **HOTLINE) == 1.0
                ),
                what="the contact keys polled",
            )
            assert s.value(ACTIVE, **HOTLINE) == 1.0
            assert s.value(BY_TYPE, service_type="401", **HOTLINE) == 1.0
            assert s.value(ACTIVE, **bare) == 0.0
            assert {x.labels["contact_key"] for x in s.series(ACTIVE)} == {
                "",
                "hotline-a",
                bare["contact_key"],
            }
            assert s.value(ACTIVE, **ABC) == 3.0  # customer ids stay as they are
            await assert_no_phone_number(d, events)

            job = {**HOTLINE, "endpoint": "active"}
            path = f"/genesys/1/cs/services/anonymous/{PHONE}/active"
            s = await harness.fail_with_one_reason(d, sim, path, fault, reason, job)
            await assert_no_phone_number(d, events)
            failing = [e for e in events if e["event"] == "poll_failing"]
            assert [e["contact_key"] for e in failing] == ["hotline-a"]
            if "headers" in fault:  # the detail names the path, with the name in it
                assert "/services/anonymous/hotline-a/active" in failing[0]["error"]
            api = json.loads((await d.get("/api/v1/targets"))[1])
            [down] = [j for t in api["data"]["targets"] for j in t["jobs"] if j["health"] == "down"]
            assert down["labels"] == {"contact_key": "hotline-a"}
            assert down["lastReason"] == reason

            await sim.clear_faults()
            await d.wait_for(lambda s: s.value("ccwatch_poll_success", **job) == 1.0)
            await assert_no_phone_number(d, events)


async def test_the_pseudonym_is_stable_across_a_reload(sim: Sim, tmp_path: Path) -> None:
    config = gms_config(sim, customer_ids=[], contact_keys=[PHONE])
    async with harness.reloadable_daemon(tmp_path / "ccwatch.yml", config) as d:
        await d.wait_for(lambda s: s.value(ACTIVE, **KEY) == 1.0)
        await harness.reload(d)
        s = await d.wait_for(lambda s: s.value(ACTIVE, **KEY) == 1.0)
        assert [x.labels["contact_key"] for x in s.series(ACTIVE)] == [KEY["contact_key"]]
        # a salt changes it (and nothing else)
        salted = gms_config(sim, customer_ids=[], contact_keys=[PHONE], pseudonym_salt="s3")
        harness.write_config(tmp_path / "ccwatch.yml", salted)
        await harness.reload(d)
        label = pseudonym(PHONE, "s3")
        s = await d.wait_for(lambda s: s.value(ACTIVE, contact_key=label) == 1.0)
        assert s.series(ACTIVE, **KEY) == []
        await assert_no_phone_number(d, [])


@pytest.mark.parametrize("output", ["text", "json"])
async def test_the_probe_shows_the_phone_number_in_the_request_url_only(
    sim: Sim, tmp_path: Path, output: str
) -> None:
    """``ccwatch probe``: the URL requested names the key; the subject, the body (whose
    services carry the key), the failure detail and the exchange's error do not."""
    config = gms_config(sim, customer_ids=[], contact_keys=[{"key": PHONE, "name": "hotline-a"}])
    path = tmp_path / "ccwatch.yml"
    harness.write_config(path, config)
    # the completed job fails with a detail that names its URL (a redirect's Location)
    completed = f"/genesys/1/cs/services/anonymous/{PHONE}/completed"
    await sim.fault(completed, "status", status=302, headers={"Location": completed})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ccwatch",
        "probe",
        "--config.file",
        str(path),
        "--format",
        output,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()  # the completed job failed
    text = out.decode()
    if output == "json":
        urls = [x["url"] for line in text.splitlines() for x in json.loads(line)["exchanges"]]
    else:
        urls = re.findall(r"^  > GET (\S+)$", text, re.MULTILINE)
    assert len(urls) == 2
    assert all(f"/anonymous/{PHONE}/" in url for url in urls)
    outside = text
    for url in urls:  # the URLs requested, and only those, may name the key
        outside = outside.replace(json.dumps(url) if output == "json" else f"> GET {url}", "")
    for form in PHONE_FORMS:
        assert form not in outside
        assert form not in err.decode()
    assert "hotline-a" in outside
    if output == "json":
        active, failed = (json.loads(line) for line in text.splitlines())
        assert active["subject"] == failed["subject"] == {"contact_key": "hotline-a"}
        assert active["ok"]
        [service] = json.loads(active["exchanges"][0]["body"])
        assert service["contact_key"] == "hotline-a"  # the sim echoes the key: replaced
        assert failed["reason"] == "http_status"
        assert "/services/anonymous/hotline-a/completed" in failed["detail"]
