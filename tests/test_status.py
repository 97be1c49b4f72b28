"""The status page at / and /api/v1/targets, over real sockets against the simulator.

The page is read as HTML (lxml) here; tests/test_status_browser.py reads it in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

from lxml import html as lxml_html

from ccwatch import page
from ccwatch.collector import ELLIPSIS, MAX_DETAIL_CHARS
from ccwatch.sources import ece
from ccwatch.status import describe, reading_values, redact_url, rfc3339, short_name
from ccwatch.web import stepped
from tests.harness import (
    Running,
    Scrape,
    Sim,
    daemon,
    ece_config,
    reload,
    reloadable_daemon,
    simulator,
)

#: A vendor answer that carries markup into an error detail: a Content-Type the parser
#: refuses, quoted in the failure's detail.
EVIL_TYPE = 'text/<script>alert("ct")</script>'
EVIL_TARGET = 'ece<script>alert("name")</script>&co'
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
#: a past time on the page: HH:MM:SS (UTC) and how long ago
PAST = re.compile(r"\d\d:\d\d:\d\d \((now|[\dhms]+ ago)\)")


async def get(d: Running, path: str) -> tuple[int, dict[str, str], str]:
    async with d.session.get(f"{d.url}{path}") as resp:
        return resp.status, dict(resp.headers), await resp.text()


def settled(failing: int) -> Any:
    """Every job polled, and exactly ``failing`` of them failing."""

    def check(s: Scrape) -> bool:
        values = [x.value for x in s.series("ccwatch_poll_success")]
        return len(values) == 10 and values.count(0) == failing

    return check


def tree(text: str) -> Any:
    return lxml_html.fromstring(text)


def rows(doc: Any, table_id: str) -> list[list[str]]:
    return [
        [cell.text_content() for cell in row.xpath("./td")]
        for row in doc.xpath(f'//table[@id="{table_id}"]/tbody/tr')
    ]


def tile(doc: Any, name: str) -> int:
    return int(doc.xpath(f'//div[@id="jobs-{name}"]/b')[0].text_content())


async def faulted(sim: Sim) -> None:
    """Entry point 1000 answers 4 free slots; 1001's capacity fails with markup in it."""
    await sim.put(
        "ece/entry_points/1000",
        {"agents_available": 2, "slots": 4, "queue_depth": 1, "wait_time": 3.0},
    )
    await sim.fault("/capacity/1001", "content_type", content_type=EVIL_TYPE)


# --------------------------------------------------------------------------- the page


async def test_overview_puts_the_failing_job_first_with_its_reason(sim: Sim) -> None:
    await faulted(sim)
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(settled(1), what="one failing job")
        status, headers, text = await get(d, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    doc = tree(text)
    assert (tile(doc, "up"), tile(doc, "down"), tile(doc, "unknown")) == (9, 1, 0)
    [failing] = rows(doc, "failing")
    target, endpoint, subject, reason, detail, since, failures, _next = failing
    assert (target, endpoint, subject, reason) == ("ece", "capacity", "entry_point=1001", "parse")
    assert EVIL_TYPE.lower() in detail  # shown as text ...
    assert "<script>alert" not in text  # ... never as markup
    assert "&lt;script&gt;alert(&quot;ct&quot;)" in text
    assert PAST.fullmatch(since)
    assert int(failures) >= 1
    # the failing section comes before the targets
    assert text.index('id="failing"') < text.index('id="targets"')
    [row] = rows(doc, "targets")
    assert row[:2] == ["ece", "ece"]
    assert row[2] == f"{sim.url}/system"
    assert row[3:7] == ["0.5s", "9", "1", "0"]
    # the 20 newest events, newest first: the failure is among them
    events = rows(doc, "events")
    assert 1 <= len(events) <= page.EVENTS
    assert any(e[2] == "poll_failing" and "entry_point=1001" in e[4] for e in events)


async def test_a_target_page_shows_every_job_with_its_reading_in_words(sim: Sim) -> None:
    await faulted(sim)
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(settled(1), what="one failing job")
        status, _, text = await get(d, "/?target=ece")
    assert status == 200
    doc = tree(text)
    jobs = {(r[0], r[1]): r for r in rows(doc, "jobs")}
    assert len(jobs) == 10
    healthy = jobs["capacity", "entry_point=1000"]
    assert healthy[2] == "up"
    assert healthy[3] == "4 free chat slots"
    assert PAST.fullmatch(healthy[4])
    assert PAST.fullmatch(healthy[6])
    assert jobs["liveSessionStatus", "entry_point=1000"][3] == "queue depth 1, estimated wait 3s"
    assert jobs["agentAvailability", "entry_point=1000"][3] == "agent available"
    assert jobs["checkEligibility", "entry_point=1000"][3] == "eligibility: accepting"
    assert jobs["chatAllowed", "entry_point=1000"][3] == "chat allowed"
    failing = jobs["capacity", "entry_point=1001"]
    assert failing[2] == "down"
    assert failing[3].startswith("parse: unexpected content type")
    assert failing[6].strip() == "never"  # no success yet
    assert "<script>alert" not in text


async def test_the_page_escapes_a_target_name(sim: Sim) -> None:
    async with daemon(ece_config(sim, name=EVIL_TARGET, endpoints=["capacity"])) as d:
        await d.wait_for(
            lambda s: s.value("ccwatch_poll_success", endpoint="capacity", entry_point="1000") == 1
        )
        _, _, overview = await get(d, "/")
        link = tree(overview).xpath('//table[@id="targets"]//a/@href')[0]
        status, _, target_page = await get(d, "/" + link.removeprefix("./"))
    assert status == 200
    for text in (overview, target_page):
        assert "<script>alert" not in text
        assert "ece&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;&amp;co" in text
    assert tree(target_page).xpath('//h2[@id="target"]')[0].text_content() == (
        f"Target {EVIL_TARGET}"
    )


async def test_jobs_are_paged_500_to_a_page() -> None:
    entry_points = list(range(1000, 1101))  # 505 jobs
    async with simulator(ece_entry_points=entry_points) as sim:
        config = ece_config(sim, interval="2s", timeout="1s", entry_points=entry_points)
        async with daemon(config) as d:
            await d.wait_for(lambda s: len(s.series("ccwatch_poll_success")) == 505, within=30)
            _, _, first = await get(d, "/?target=ece")
            _, _, second = await get(d, "/?target=ece&page=2")
            _, _, third = await get(d, "/?target=ece&page=3")
            bad, _, _ = await get(d, "/?target=ece&page=0")
            missing, _, text = await get(d, "/?target=nope")
    one, two = tree(first), tree(second)
    assert len(rows(one, "jobs")) == page.PAGE_ROWS
    assert len(rows(two, "jobs")) == 5
    assert rows(tree(third), "jobs") == []
    assert one.xpath('//a[@rel="next"]/@href')[0] == "./?target=ece&page=2"
    assert two.xpath('//a[@rel="prev"]/@href')[0] == "./?target=ece&page=1"
    assert not two.xpath('//a[@rel="next"]')
    # every job once, in config order
    shown = [(r[0], r[1]) for r in rows(one, "jobs") + rows(two, "jobs")]
    assert len(set(shown)) == 505
    assert shown[0] == ("agentAvailability", "entry_point=1000")
    assert shown[-1] == ("chatAllowed", "entry_point=1100")
    assert bad == 400
    assert missing == 404
    assert "No target is named" in text


async def test_a_held_target_shows_its_hold(sim: Sim) -> None:
    await sim.fault("/capacity/1000", "status", status=429, headers={"Retry-After": "120"})
    async with daemon(ece_config(sim, endpoints=["capacity"])) as d:
        await d.wait_for(
            lambda s: (
                s.value("ccwatch_target_hold_until_timestamp_seconds", target="ece") is not None
            )
        )
        _, _, text = await get(d, "/")
        _, _, api = await get(d, "/api/v1/targets")
    [row] = rows(tree(text), "targets")
    assert row[7].startswith("rate_limited until")
    assert "in 1m" in row[7]
    [target] = json.loads(api)["data"]["targets"]
    assert RFC3339.fullmatch(target["heldUntil"])
    assert target["heldReason"] == "rate_limited"


async def test_the_failing_list_across_targets_filters_by_health(sim: Sim) -> None:
    await faulted(sim)
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(settled(1), what="one failing job")
        status, _, text = await get(d, "/?health=down")
        _, _, up = await get(d, "/?health=up")
        bad, _, _ = await get(d, "/?health=sideways")
    assert status == 200
    [only] = rows(tree(text), "jobs")
    assert only[:4] == ["ece", "capacity", "entry_point=1001", "down"]
    assert len(rows(tree(up), "jobs")) == 9
    assert bad == 400


# --------------------------------------------------------------------------- the API


async def test_the_api_answers_as_prometheus_words_it(sim: Sim) -> None:
    await faulted(sim)
    async with daemon(ece_config(sim)) as d:
        await d.wait_for(settled(1), what="one failing job")
        status, headers, text = await get(d, "/api/v1/targets")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    body = json.loads(text)
    assert body["status"] == "success"
    [target] = body["data"]["targets"]
    assert target["name"] == "ece"
    assert target["source"] == "ece"
    assert target["url"] == f"{sim.url}/system"
    assert target["interval"] == 0.5
    assert target["heldUntil"] is None
    jobs = {(j["endpoint"], j["labels"]["entry_point"]): j for j in target["jobs"]}
    assert len(jobs) == 10
    healthy = jobs["capacity", "1000"]
    assert healthy["health"] == "up"
    assert healthy["reading"] == {"available_slots": 4}
    for key in ("lastPoll", "lastSuccess", "nextPoll"):
        assert RFC3339.fullmatch(healthy[key]), key
    assert 0 < healthy["lastPollDuration"] < 0.4
    assert (healthy["lastReason"], healthy["lastError"]) == ("", "")
    assert jobs["liveSessionStatus", "1000"]["reading"] == {
        "queue_depth": 1,
        "wait_time_seconds": 3,
    }
    assert jobs["checkEligibility", "1000"]["reading"] == {
        "eligibility": {"accepting": 1, "no_agent": 0, "queue_full": 0}
    }
    assert jobs["chatAllowed", "1000"]["reading"]["chat_allowed"] == 1
    failing = jobs["capacity", "1001"]
    assert failing["health"] == "down"
    assert failing["lastReason"] == "parse"
    assert EVIL_TYPE.lower() in failing["lastError"]
    assert failing["lastSuccess"] is None  # null, not omitted
    assert failing["reading"] is None
    assert failing["consecutiveFailures"] >= 1
    assert RFC3339.fullmatch(failing["failingSince"])


async def test_the_api_filters_by_target_and_health(sim: Sim) -> None:
    await faulted(sim)
    config = ece_config(sim)
    config["targets"].append({**config["targets"][0], "name": "other", "entry_points": [1002]})
    async with daemon(config) as d:
        await d.wait_for(
            lambda s: (
                len(s.series("ccwatch_poll_success")) == 15
                and [x.value for x in s.series("ccwatch_poll_success")].count(0) == 1
            )
        )
        _, _, down = await get(d, "/api/v1/targets?health=down")
        _, _, other = await get(d, "/api/v1/targets?target=other")
        _, _, nothing = await get(d, "/api/v1/targets?target=nope")
        bad, _, error = await get(d, "/api/v1/targets?health=maybe")
    [target] = json.loads(down)["data"]["targets"]
    assert target["name"] == "ece"
    assert [(j["endpoint"], j["labels"]) for j in target["jobs"]] == [
        ("capacity", {"entry_point": "1001"})
    ]
    [target] = json.loads(other)["data"]["targets"]
    assert target["name"] == "other"
    assert len(target["jobs"]) == 5
    assert {j["health"] for j in target["jobs"]} == {"up"}
    assert json.loads(nothing) == {"status": "success", "data": {"targets": []}}
    assert bad == 400
    assert json.loads(error)["errorType"] == "bad_data"


async def test_jobs_not_polled_yet_are_unknown_with_null_times(sim: Sim) -> None:
    # a long interval: the first polls are spread over a minute, most are still to come
    async with daemon(ece_config(sim, interval="10m", timeout="1s")) as d:
        _, _, text = await get(d, "/api/v1/targets")
    jobs = json.loads(text)["data"]["targets"][0]["jobs"]
    unknown = [j for j in jobs if j["health"] == "unknown"]
    assert unknown
    for job in unknown:
        assert job["lastPoll"] is None
        assert job["lastSuccess"] is None
        assert job["reading"] is None
        assert job["lastPollDuration"] is None
        assert RFC3339.fullmatch(job["nextPoll"])


async def test_a_large_answer_is_streamed() -> None:
    entry_points = list(range(1000, 1500))  # 2,500 jobs
    async with simulator(ece_entry_points=entry_points) as sim:
        config = ece_config(sim, interval="10m", timeout="1s", entry_points=entry_points)
        async with daemon(config) as d, d.session.get(f"{d.url}/api/v1/targets") as resp:
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in resp.headers
            body = await resp.json()
    assert len(body["data"]["targets"][0]["jobs"]) == 2500


# --------------------------------------------------------------------------- helpers


async def test_rendering_lets_the_event_loop_run_between_steps() -> None:
    ran: list[int] = []

    def steps() -> Generator[None, None, str]:
        for i in range(5):
            ran.append(-i)
            yield
        return "done"

    async def other() -> None:
        for i in range(5):
            ran.append(i + 100)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    assert await stepped(steps(), budget=0) == "done"
    await task
    # the other task ran between the steps, not only after them
    first_other = ran.index(100)
    assert first_other < ran.index(-4)


def test_userinfo_is_removed_from_urls() -> None:
    assert redact_url("https://user:s3cret@example.com:8443/a?b=c") == (
        "https://example.com:8443/a?b=c"
    )
    assert redact_url("http://example.com/x") == "http://example.com/x"
    assert "s3cret" not in redact_url("http://:s3cret@[::1]:80/")


def test_times_are_rfc3339_utc_with_milliseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1796032800.1234) == "2026-11-30T10:00:00.123Z"
    assert rfc3339(1796032800.9996) == "2026-11-30T10:00:01.000Z"
    assert rfc3339(None) is None


def test_family_names_lose_their_source_prefix() -> None:
    assert short_name("ccwatch_ece_wait_time_seconds", "ece") == "wait_time_seconds"
    assert short_name("ccwatch_genesys_active_services", "genesys_services") == "active_services"
    assert short_name("ccwatch_alvaria_context_cookies_items", "alvaria_context_cookies") == "items"
    assert short_name("ccwatch_gms_service_status", "gms_probe") == "service_status"


def test_readings_in_words_and_values() -> None:
    blocked = ece.ChatAllowed(False, "entry_point_inactive", "entry_point_inactive")
    assert describe(blocked, "ece") == "chat blocked: entry_point_inactive"
    values = reading_values(blocked, "ece")
    assert values["chat_allowed"] == 0
    assert values["chat_blocked"]["entry_point_inactive"] == 1
    assert sum(values["chat_blocked"].values()) == 1

    class Plain:
        def samples(self) -> Any:
            return (
                ("ccwatch_x_depth", (), 2.0),
                ("ccwatch_x_state", ("open",), 1.0),
                ("ccwatch_x_state", ("closed",), 0.0),
            )

        def watched(self) -> Any:
            return {}

    assert describe(Plain(), "x") == "depth 2; state: open"


async def test_the_header_shows_a_failed_reload_and_its_error(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, ece_config(sim, endpoints=["capacity"])) as d:
        await reload(d)
        _, _, fine = await get(d, "/")
        path.write_text("'<b>evil</b>': 1\ntargets: [{name: x, source: ece}]\n")
        async with d.session.post(f"{d.url}/-/reload") as resp:
            assert resp.status == 500
        _, _, failed = await get(d, "/")
    assert str(path) in fine
    header = tree(fine).xpath("//header")[0].text_content()
    assert "last reload ok" in header
    doc = tree(failed)
    assert "last reload failed" in doc.xpath("//header")[0].text_content()
    error = doc.xpath('//p[@class="err"]')[0].text_content()
    assert "previous configuration is still in use" in error
    assert "targets[0].url: required key is missing" in error  # the key path of the error
    assert "<b>evil</b>" in error  # as text
    assert "<b>evil</b>" not in failed  # never as markup


def test_a_readings_own_description_is_capped() -> None:
    """A source's ``describe()`` may quote a vendor string that is no label value: the
    page and the API show it capped like every other vendor string."""

    class Long:
        def describe(self) -> str:
            return "status " + "x" * 600_000

        def samples(self) -> list[Any]:
            return []

    text = describe(Long(), "gms_probe")  # type: ignore[arg-type]
    assert len(text) == MAX_DETAIL_CHARS
    assert text.startswith("status xxx")
    assert text.endswith(ELLIPSIS)
