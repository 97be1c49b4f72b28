"""The daemon against the Alvaria simulator over real sockets: values, OAuth2, 429, failures.

Token sources are kept per target name for the whole process (so their failure counters
survive reloads): every test here uses target names of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import pytest
import structlog

from ccwatch.simulator.alvaria import TOKEN_PATH
from ccwatch.sources import parse_config
from tests import harness
from tests.harness import Scrape, Sim, daemon, simulator

CLIENT_ID = "ccwatch-it"
SECRET = "it-client-secret-3f9a1c"
API_KEY = "it-api-key-77d2e0"
COLLECTIONS = ("settings", "customers", "services", "channels")
DAY = 86400.0
ITEMS = "ccwatch_alvaria_context_cookies_items"
EXPIRED = "ccwatch_alvaria_context_cookies_expired_settings"
STALE = "ccwatch_alvaria_context_cookies_stale_settings"
TOKEN_FAILURES = "ccwatch_alvaria_token_failures_total"


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator(
        alvaria_orgs=["orgA", "orgB"],
        alvaria_client_id=CLIENT_ID,
        alvaria_client_secret=SECRET,
        alvaria_api_key=API_KEY,
    ) as running:
        yield running


def alvaria_target(sim: Sim, name: str, org: str = "orgA", **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": "alvaria_context_cookies",
        "url": sim.url,
        "org_id": org,
        "oauth2": {
            "token_url": sim.url + TOKEN_PATH,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scopes": ["customerexperienceapi.contextcookies"],
        },
        "api_key": API_KEY,
        "stale_after": "1h",
        "interval": "250ms",
        **overrides,
    }


def gms_target(sim: Sim, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": "gms_probe",
        "url": sim.url,
        "gms_service": "request-callback",
        "interval": "250ms",
    }


def config(*targets: dict[str, Any]) -> dict[str, Any]:
    return {"targets": list(targets)}


def all_ok(target: str) -> Callable[[Scrape], bool]:
    def check(s: Scrape) -> bool:
        values = [x.value for x in s.series("ccwatch_poll_success", target=target)]
        return len(values) == len(COLLECTIONS) and all(v == 1.0 for v in values)

    return check


async def stats(sim: Sim) -> dict[str, int]:
    async with sim.session.get(f"{sim.url}/-/sim/alvaria/stats") as resp:
        result: dict[str, int] = await resp.json()
        return result


async def request_log(sim: Sim) -> list[dict[str, Any]]:
    async with sim.session.get(f"{sim.url}/-/sim/alvaria/requests") as resp:
        result: list[dict[str, Any]] = await resp.json()
        return result


async def test_values_match_the_simulator(sim: Sim) -> None:
    now = time.time()
    c1 = {"customerId": "c1", "channel": "voice"}
    c2 = {"customerId": "c2", "channel": "chat"}
    settings = [
        # expired yesterday, modified two hours ago: expired and stale
        {**c1, "service": "sales", "expiresOnTime": now - DAY, "lastModifiedTime": now - 7200},
        # expires tomorrow, modified just now
        {**c2, "service": "", "expiresOnTime": now + DAY},
        # never expires, created long ago and never modified: stale
        {**c2, "service": "support", "creationTime": now - 9 * DAY},
    ]
    await sim.put("alvaria/orgs/orgA/settings", {"settings": settings})
    await sim.put("alvaria/orgs/orgB/settings", {"settings": settings[1:2]})
    targets = (alvaria_target(sim, "alv-values-a"), alvaria_target(sim, "alv-values-b", "orgB"))
    async with daemon(config(*targets)) as d:
        s = await d.wait_for(
            lambda s: all_ok("alv-values-a")(s) and all_ok("alv-values-b")(s), what="all polled"
        )
        a = {"target": "alv-values-a"}
        assert s.value(ITEMS, collection="settings", **a) == 3.0
        assert s.value(ITEMS, collection="customers", **a) == 2.0
        assert s.value(ITEMS, collection="services", **a) == 3.0
        assert s.value(ITEMS, collection="channels", **a) == 2.0
        assert s.value(EXPIRED, **a) == 1.0
        assert s.value(STALE, **a) == 2.0
        assert s.value(TOKEN_FAILURES, **a) == 0.0
        b = {"target": "alv-values-b"}
        assert s.value(ITEMS, collection="settings", **b) == 1.0
        assert s.value(EXPIRED, **b) == 0.0
        assert s.value(STALE, **b) == 0.0
        health = s.series("ccwatch_poll_success", **a)
        assert sorted(x.labels["endpoint"] for x in health) == sorted(COLLECTIONS)
        assert s.value("ccwatch_jobs", source="alvaria_context_cookies") == 8.0
        assert "last successful settings poll" in s.families[EXPIRED].documentation
        assert "last" in s.families["ccwatch_alvaria_token_failures"].documentation
        # totalItems as an integer reads the same; values follow the repository
        await sim.put("alvaria/config", {"total_items_as": "int"})
        await sim.put("alvaria/orgs/orgA/settings", {"settings": settings[:2]})
        s = await d.wait_for(
            lambda s: (
                s.value(ITEMS, collection="settings", **a) == 2.0 and s.value(STALE, **a) == 1.0
            ),
            what="new values",
        )
        # one token per target, cached; never a write. Target b's second settings poll
        # may still be on its way when a's values have changed: give it its interval.
        deadline = time.monotonic() + 5
        counters = await stats(sim)
        while counters["api_settings"] < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            counters = await stats(sim)
        assert counters["token_requests"] == 2
        assert counters["api_settings"] >= 4  # both targets, before and after
        assert "writes" not in counters
        assert {e["method"] for e in await request_log(sim)} <= {"GET", "POST"}
        assert {e["path"] for e in await request_log(sim) if e["method"] == "POST"} == {TOKEN_PATH}


async def test_a_rejected_token_is_refreshed_once_without_failing(sim: Sim) -> None:
    async with daemon(config(alvaria_target(sim, "alv-refresh"))) as d:
        await d.wait_for(all_ok("alv-refresh"))
        assert (await stats(sim))["token_requests"] == 1
        with structlog.testing.capture_logs() as events:
            before = await stats(sim)
            await sim.delete("alvaria/tokens")  # the server forgets every token
            for _ in range(100):  # until every job has polled again
                counters = await stats(sim)
                if all(counters[f"api_{c}"] >= before[f"api_{c}"] + 2 for c in COLLECTIONS):
                    break
                await asyncio.sleep(0.1)
            s = await d.wait_for(all_ok("alv-refresh"))
        counters = await stats(sim)
        assert counters["token_requests"] == 2  # one refresh for all four jobs
        assert counters["unauthorized"] >= 1
        assert s.series("ccwatch_poll_errors_total", target="alv-refresh") == []
        assert [e for e in events if e["event"].startswith("poll_")] == []
        assert s.value(TOKEN_FAILURES, target="alv-refresh") == 0.0


async def test_short_lived_tokens_are_renewed_before_they_expire() -> None:
    async with (
        simulator(
            alvaria_orgs=["orgA"],
            alvaria_client_id=CLIENT_ID,
            alvaria_client_secret=SECRET,
            alvaria_api_key=API_KEY,
            alvaria_token_ttl=1,
        ) as sim,
        daemon(config(alvaria_target(sim, "alv-short"))) as d,
    ):
        with structlog.testing.capture_logs() as events:
            await d.wait_for(all_ok("alv-short"))
            for _ in range(100):
                if (await stats(sim))["token_requests"] >= 3:
                    break
                await asyncio.sleep(0.1)
            s = await d.wait_for(all_ok("alv-short"))
        assert (await stats(sim))["token_requests"] >= 3
        assert s.series("ccwatch_poll_errors_total", target="alv-short") == []
        assert [e for e in events if e["event"] == "poll_failing"] == []


def _retry_after_seconds() -> tuple[str, float]:
    return "2", 2.0


def _retry_after_date() -> tuple[str, float]:
    when = time.time() + 3
    return formatdate(when, usegmt=True), float(int(when))  # whole seconds, as sent


@pytest.mark.parametrize("make_header", [_retry_after_seconds, _retry_after_date])
async def test_retry_after_holds_back_the_whole_target(
    sim: Sim, make_header: Callable[[], tuple[str, float]]
) -> None:
    name = f"alv-429-{make_header.__name__}"
    targets = (alvaria_target(sim, name), alvaria_target(sim, f"{name}-other", "orgB"))
    job = {"target": name, "endpoint": "customers"}
    async with daemon(config(*targets)) as d:
        await d.wait_for(all_ok(name))
        with structlog.testing.capture_logs() as events:
            header, value = make_header()
            await sim.fault(
                "/organizations/orgA/customerexperience/contextCookies/customers",
                "status",
                status=429,
                count=1,
                headers={"Retry-After": header},
                body='{"code": "429", "message": "Too Many Requests"}',
            )
            s = await d.wait_for(
                lambda s: s.value("ccwatch_poll_errors_total", reason="rate_limited", **job) == 1.0,
                what="the 429",
            )
            assert s.value("ccwatch_poll_success", **job) == 0.0
            assert s.value(ITEMS, target=name, collection="customers") is None
            s = await d.wait_for(lambda s: s.value("ccwatch_poll_success", **job) == 1.0)
        log = await request_log(sim)
        limited = [e for e in log if e["status"] == 429]
        assert len(limited) == 1
        t0 = limited[0]["time"]
        hold_until = t0 + value if header.isdigit() else value
        org_a = [e["time"] for e in log if "/organizations/orgA/" in e["path"]]
        org_b = [e["time"] for e in log if "/organizations/orgB/" in e["path"]]
        # answers to requests already in flight when the 429 came may follow it closely;
        # after that the target got nothing until Retry-After had passed ...
        assert not [t for t in org_a if t0 + 0.1 < t < hold_until - 0.05]
        assert [t for t in org_a if t >= hold_until - 0.05]
        # ... while the other target kept going
        assert [t for t in org_b if t0 + 0.1 < t < hold_until - 0.05]
        failing = [e for e in events if e["event"] == "poll_failing"]
        assert len(failing) == 1, failing
        assert failing[0]["reason"] == "rate_limited"
        assert failing[0]["endpoint"] == "customers"
        assert failing[0]["retry_after_seconds"] > 0
        recovered = [e for e in events if e["event"] == "poll_recovered"]
        assert [e["target"] for e in recovered] == [name]
        errors = s.series("ccwatch_poll_errors_total", target=name)
        assert [(x.labels["endpoint"], x.labels["reason"]) for x in errors] == [
            ("customers", "rate_limited")
        ]


CUSTOMERS_A = "/organizations/orgA/customerexperience/contextCookies/customers"
NO_TOTAL = '{"kind": "cxp#contextCookiesCustomerCollection", "customers": [{"id": "c1"}]}'
JSON = {"headers": {"Content-Type": "application/json"}}
SMALL_CAP = {"max_response_size": "64KiB"}
BAD_INPUTS: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("content-type", {"kind": "content_type", "content_type": "text/plain"}, "parse", {}),
    ("html-200", {"kind": "html"}, "parse", {}),
    ("invalid-json", {"kind": "malformed"}, "parse", {}),
    ("missing-fields", {"kind": "status", "status": 200, "body": NO_TOTAL, **JSON}, "parse", {}),
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
async def test_a_bad_answer_fails_one_job_with_one_reason(
    sim: Sim, fault: dict[str, Any], reason: str, overrides: dict[str, Any]
) -> None:
    name = f"alv-bad-{fault['kind']}-{fault.get('status', '')}"
    other = f"{name}-other"
    targets = (alvaria_target(sim, name, **overrides), alvaria_target(sim, other, "orgB"))
    job = {"target": name, "endpoint": "customers"}
    async with daemon(config(*targets)) as d:
        await d.wait_for(lambda s: all_ok(name)(s) and all_ok(other)(s))
        with structlog.testing.capture_logs() as events:
            s = await harness.fail_with_one_reason(d, sim, CUSTOMERS_A, fault, reason, job)
            # the failed job's series are gone; the target's other jobs keep theirs
            assert s.value(ITEMS, target=name, collection="customers") is None
            assert s.value(ITEMS, target=name, collection="settings") is not None
            assert s.value(EXPIRED, target=name) is not None
            # other targets keep going
            other_job = {"target": other, "endpoint": "customers"}
            await harness.wait_polled_again(d, s, [other_job], what="the other target polled again")
            await sim.clear_faults()
            s = await d.wait_for(lambda s: s.value("ccwatch_poll_success", **job) == 1.0)
            assert s.value(ITEMS, target=name, collection="customers") is not None
        harness.assert_failed_once_then_recovered(events, reason, target=name, endpoint="customers")
        # an API answer is not a token failure
        assert s.value(TOKEN_FAILURES, target=name) == 0.0


@pytest.mark.parametrize(
    "fault",
    [{"kind": "status", "status": 503}, {"kind": "reset"}, {"kind": "html", "status": 200}],
    ids=["503", "reset", "html"],
)
async def test_a_token_endpoint_that_is_down_fails_polls_with_auth(
    sim: Sim, fault: dict[str, Any]
) -> None:
    name = f"alv-token-down-{fault['kind']}"
    gms = f"{name}-gms"
    await sim.fault("/tokenservice/", **fault)
    with structlog.testing.capture_logs() as events:
        async with daemon(config(alvaria_target(sim, name), gms_target(sim, gms))) as d:
            s = await d.wait_for(
                lambda s: (
                    len(s.series("ccwatch_poll_errors_total", target=name, reason="auth"))
                    == len(COLLECTIONS)
                    and s.value("ccwatch_poll_success", target=gms) == 1.0
                ),
                what="every job failing with auth, the other target fine",
            )
            assert all(x.value == 0.0 for x in s.series("ccwatch_poll_success", target=name))
            assert s.series(ITEMS, target=name) == []
            assert s.series("ccwatch_poll_errors_total", target=name) == s.series(
                "ccwatch_poll_errors_total", target=name, reason="auth"
            )
            failures = s.value(TOKEN_FAILURES, target=name)
            assert failures is not None
            assert failures >= 1
            assert "api_settings" not in await stats(sim)  # no API request without a token
            await sim.clear_faults()
            s = await d.wait_for(all_ok(name), what="recovery")
            assert s.series(ITEMS, target=name)
            # the counter survives the failed polls and the recovery
            after = s.value(TOKEN_FAILURES, target=name)
            assert after is not None
            assert after >= failures
            # ... and a reload
            reloaded = {
                **config(alvaria_target(sim, name)),
                "web": {"listen_address": "127.0.0.1:0"},
            }
            await d.daemon.apply(parse_config(reloaded))
            s = await d.wait_for(all_ok(name), what="polls after the reload")
            assert s.value(TOKEN_FAILURES, target=name) == after
            assert s.series("ccwatch_poll_success", target=gms) == []
    mine = [e for e in events if e.get("target") == name and e["event"].startswith("poll_")]
    failing = [e for e in mine if e["event"] == "poll_failing"]
    assert sorted(e["endpoint"] for e in failing) == sorted(COLLECTIONS)  # one per job
    assert all(e["reason"] == "auth" for e in failing)
    assert all(e["error"].startswith("token request failed") for e in failing)
    assert not [e for e in mine if e["event"] == "poll_failure_reason_changed"]
    assert len([e for e in mine if e["event"] == "poll_recovered"]) == len(COLLECTIONS)
    assert not [e for e in events if e.get("target") == gms and e["event"] == "poll_failing"]


async def test_no_secret_in_metrics_or_logs(sim: Sim) -> None:
    wrong_secret = "it-wrong-secret-5e5e5e"
    good = alvaria_target(sim, "alv-secrets")
    bad = alvaria_target(sim, "alv-secrets-bad", "orgB")
    bad["oauth2"] = {**bad["oauth2"], "client_secret": wrong_secret}
    with structlog.testing.capture_logs() as events:
        async with daemon(config(good, bad)) as d:
            await d.wait_for(all_ok("alv-secrets"))
            await sim.delete("alvaria/tokens")  # a refresh on 401
            await sim.fault(CUSTOMERS_A, "status", status=401, count=3)
            s = await d.wait_for(
                lambda s: (
                    (s.value(TOKEN_FAILURES, target="alv-secrets-bad") or 0) >= 2
                    and (
                        s.value(
                            "ccwatch_poll_errors_total",
                            target="alv-secrets",
                            endpoint="customers",
                            reason="auth",
                        )
                        or 0
                    )
                    >= 1
                ),
                what="token failures and a 401",
            )
            await sim.clear_faults()
            s = await d.wait_for(all_ok("alv-secrets"))
            async with sim.session.get(f"{sim.url}/-/sim/alvaria/tokens") as resp:
                tokens: list[str] = await resp.json()
            text = (
                s.text
                + (await d.get("/metrics", headers={"Accept": "application/openmetrics-text"}))[1]
            )
    assert tokens
    logged = repr(events)
    assert "token request failed" in logged  # the bad target's failures were logged
    for secret in (SECRET, API_KEY, wrong_secret, *tokens):
        assert secret not in text
        assert secret not in logged


NUMBER_VALUES = {"400-digits": "9" * 400, "arabic-indic-four": "٤"}


@pytest.mark.parametrize("total_items_as", ["string", "int"])
@pytest.mark.parametrize("value", list(NUMBER_VALUES.values()), ids=list(NUMBER_VALUES))
async def test_a_total_items_out_of_rule_fails_the_job_as_parse(
    sim: Sim, value: str, total_items_as: str
) -> None:
    # "string": "totalItems": "<value>" (as in the spec's examples); "int": "totalItems": <value>
    await sim.put("alvaria/config", {"total_items_as": total_items_as})
    name = f"alv-number-{len(value)}-{total_items_as}"
    job = {"target": name, "endpoint": "customers"}
    async with daemon(config(alvaria_target(sim, name))) as d:
        s = await d.wait_for(all_ok(name))
        items = s.value(ITEMS, target=name, collection="customers")
        assert items is not None
        with structlog.testing.capture_logs() as events:
            fault = {"kind": "number", "value": value}
            s = await harness.fail_with_one_reason(d, sim, CUSTOMERS_A, fault, "parse", job)
            # never a ccwatch bug; the failed job's series are gone, the others' kept
            assert s.series("ccwatch_poll_errors_total", reason="internal") == []
            assert s.value(ITEMS, target=name, collection="customers") is None
            assert s.value(ITEMS, target=name, collection="settings") is not None
            # the daemon keeps running: the target's other jobs are polled again
            others = [{"target": name, "endpoint": c} for c in ("settings", "channels")]
            await harness.wait_polled_again(d, s, others, what="the other jobs polled again")
            assert (await d.get("/-/healthy"))[0] == 200
            await sim.clear_faults()
            s = await d.wait_for(lambda s: s.value("ccwatch_poll_success", **job) == 1.0)
            assert s.value(ITEMS, target=name, collection="customers") == items
        failing = harness.assert_failed_once_then_recovered(
            events, "parse", target=name, endpoint="customers"
        )
        assert len(failing["error"]) < 200  # 400 digits do not bloat the log line
        assert s.value(TOKEN_FAILURES, target=name) == 0.0
