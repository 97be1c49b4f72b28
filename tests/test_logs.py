"""Events and vendor strings: every vendor string is capped where the core takes it in,
the event history is bounded in bytes as well as in count, and /logs is streamed.

The daemon tests run a GMS probe against the simulator over real sockets: the GMS status
is a vendor string of any length (``PUT /-/sim/gms/status``), exported as a label value
and logged twice per change (``status``, ``previous_status``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from ccwatch.collector import ELLIPSIS, MAX_DETAIL_CHARS, MAX_LABEL_CHARS
from ccwatch.logs import EventHistory, event_line, ndjson_chunks
from ccwatch.scheduler import HISTORY, HISTORY_BYTES
from tests.harness import Running, Scrape, Sim, daemon

STATUS = "ccwatch_gms_service_status"
#: A 600 KB vendor string, as the red team sent it.
HUGE = 600 * 1024


def probe(sim: Sim, name: str) -> dict[str, Any]:
    # verdicts are kept per target for the whole process: each test names its own
    return {
        "targets": [
            {
                "name": name,
                "source": "gms_probe",
                "url": sim.url,
                "gms_service": "request-inbound-poll",
                "status_request": "status",
                "expected_statuses": ["waiting-for-agent"],
                "interval": "200ms",
            }
        ]
    }


def capped(text: str, limit: int) -> str:
    return text[: limit - 1] + ELLIPSIS


def showing(target: str, status: str) -> Callable[[Scrape], bool]:
    return lambda s: s.value(STATUS, target=target, status=status) == 1.0


async def events(d: Running, query: str = "") -> list[dict[str, Any]]:
    status, body = await d.get(f"/logs{query}")
    assert status == 200
    return [json.loads(line) for line in body.splitlines()]


# --------------------------------------------------------------------------- the daemon


async def test_a_600_kb_status_is_capped_on_metrics_logs_page_and_api(sim: Sim) -> None:
    await sim.put("gms/status", {"status": "waiting-for-agent"})
    huge = "s" * HUGE
    label = capped(huge, MAX_LABEL_CHARS)
    async with daemon(probe(sim, "gms-huge")) as d:
        await d.wait_for(showing("gms-huge", "waiting-for-agent"), what="first probe")
        await sim.put("gms/status", {"status": huge})
        s = await d.wait_for(showing("gms-huge", label), what="the capped status")
        # the label value is cut to MAX_LABEL_CHARS, its end marked; so is /metrics
        [series] = [x for x in s.series(STATUS, target="gms-huge") if x.value == 1.0]
        assert series.labels["status"] == label
        assert len(label) == MAX_LABEL_CHARS
        assert len(s.text) < 100_000

        # the targets API and the status page show the reading as exported
        code, api = await d.get("/api/v1/targets?target=gms-huge")
        assert code == 200
        [job] = json.loads(api)["data"]["targets"][0]["jobs"]
        assert job["reading"]["service_status"] == {"waiting-for-agent": 0, label: 1}
        assert len(api) < 20_000
        code, page = await d.get("/?target=gms-huge")
        assert code == 200
        assert label in page
        assert "s" * MAX_LABEL_CHARS not in page
        assert len(page) < 100_000

        await sim.put("gms/status", {"status": "waiting-for-agent"})
        await d.wait_for(lambda s: s.value(STATUS, target="gms-huge", status=label) is None)
        status, body = await d.get("/logs?target=gms-huge")
        assert status == 200
        assert len(body) < 20_000
        changes = [
            (e["previous_status"], e["status"])
            for e in map(json.loads, body.splitlines())
            if e["event"] == "state_changed"
        ]
        assert changes == [("waiting-for-agent", label), (label, "waiting-for-agent")]
        # the status page's events show the capped fields too
        code, page = await d.get("/")
        assert code == 200
        assert f"previous_status={label}" in page
        assert "s" * MAX_LABEL_CHARS not in page


async def test_a_long_failure_detail_is_capped_in_logs_and_api(sim: Sim) -> None:
    await sim.put("gms/status", {"status": "waiting-for-agent"})
    content_type = "text/" + "x" * 6000  # a header line aiohttp still reads
    await sim.fault("/genesys/1/service/", "content_type", content_type=content_type)
    async with daemon(probe(sim, "gms-long-error")) as d:
        await d.wait_for(
            lambda s: (
                s.value("ccwatch_poll_errors_total", target="gms-long-error", reason="parse")
                is not None
            ),
            what="a failed poll",
        )
        [failing] = [e for e in await events(d) if e["event"] == "poll_failing"]
        error = failing["error"]
        assert len(error) == MAX_DETAIL_CHARS
        assert error.endswith(ELLIPSIS)
        assert error.startswith("unexpected content type 'text/xxx")
        code, api = await d.get("/api/v1/targets?target=gms-long-error")
        assert code == 200
        [job] = json.loads(api)["data"]["targets"][0]["jobs"]
        assert job["lastError"] == error


async def test_the_event_history_stays_under_its_byte_bound(sim: Sim) -> None:
    await sim.put("gms/status", {"status": "waiting-for-agent"})
    async with daemon(probe(sim, "gms-changes")) as d:
        history = d.daemon.history
        assert isinstance(history, EventHistory)
        assert (history.max_events, history.max_bytes) == (HISTORY, HISTORY_BYTES)
        bound = 6 * 1024  # a few changes' worth: the bound, not the count, decides
        history.max_bytes = bound
        await d.wait_for(showing("gms-changes", "waiting-for-agent"), what="first probe")
        statuses = [f"{n}" * HUGE for n in range(10)]
        for vendor_status in statuses:
            await sim.put("gms/status", {"status": vendor_status})
            await d.wait_for(showing("gms-changes", capped(vendor_status, MAX_LABEL_CHARS)))
        code, body = await d.get("/logs")
        assert code == 200
        assert len(body.encode()) <= bound
        assert history.bytes == len(body.encode())
        kept = [json.loads(line) for line in body.splitlines()]
        assert 1 < len(kept) < len(statuses)  # the oldest went first
        assert kept[-1]["status"] == capped(statuses[-1], MAX_LABEL_CHARS)
        assert kept[-1]["previous_status"] == capped(statuses[-2], MAX_LABEL_CHARS)


async def test_logs_are_streamed_in_chunks(sim: Sim) -> None:
    async with daemon(probe(sim, "gms-stream")) as d:
        history = d.daemon.history
        for n in range(400):  # about 1.6 MB of events: many chunks
            target = "a" if n % 2 else "b"
            history.append({"event": "filler", "target": target, "n": n, "pad": "p" * 4000})
        kept = list(history)
        assert len(kept) < 400  # the byte bound held
        async with d.session.get(f"{d.url}/logs?target=a") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/x-ndjson"
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in resp.headers
            body = await resp.read()
        wanted = [e for e in kept if e.get("target") == "a"]
        assert body == b"".join(event_line(e) for e in wanted)


# --------------------------------------------------------------------------- units


def test_the_history_is_bounded_in_count_and_in_bytes() -> None:
    history = EventHistory(max_events=5, max_bytes=10_000)
    for n in range(8):
        history.append({"event": "e", "n": n})
    assert [e["n"] for e in history] == [3, 4, 5, 6, 7]
    assert history.bytes == sum(len(event_line(e)) for e in history)
    for n in range(8, 12):
        history.append({"event": "e", "n": n, "pad": "x" * 3000})
    assert [e["n"] for e in history] == [9, 10, 11]
    assert len(history) == 3
    assert history.bytes == sum(len(event_line(e)) for e in history) <= 10_000


def test_ndjson_chunks_are_bounded_and_filtered() -> None:
    events = [{"event": "e", "target": "a" if n % 3 else "b", "n": n} for n in range(300)]
    chunks = list(ndjson_chunks(events, "a", size=1000))
    assert len(chunks) > 5
    line = max(len(event_line(e)) for e in events)
    assert all(1000 <= len(chunk) < 1000 + line for chunk in chunks[:-1])
    assert 0 < len(chunks[-1]) < 1000 + line
    lines = b"".join(chunks).splitlines()
    assert [orjson.loads(x)["n"] for x in lines] == [n for n in range(300) if n % 3]
    assert list(ndjson_chunks(events, "nobody")) == []
    assert b"".join(ndjson_chunks(events)) == b"".join(event_line(e) for e in events)
