"""GMS probe: config, parsers on the spec's samples verbatim, the probe's steps and verdict."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import orjson
import pytest

from ccwatch.config import parse_config
from ccwatch.errors import ConfigError, ParseFailure, StatusFailure
from ccwatch.http import HttpClient
from ccwatch.sources import SOURCES, gms_probe
from tests.sources.conftest import Answer, Server


def sample(fixtures: Path, name: str) -> bytes:
    return (fixtures / "gms_probe" / f"{name}.json").read_bytes()


def target_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "gms-probe",
        "source": "gms_probe",
        "url": "http://gms.example.com:8080",
        "gms_service": "request-interaction",
        "form": {"_phone_number": "6504669999"},
        "status_request": "status",
        "expected_statuses": ["waiting-for-agent"],
        **overrides,
    }


def config_of(**overrides: Any) -> gms_probe.GmsProbeTarget:
    result = parse_config({"targets": [target_data(**overrides)]}).targets[0]
    assert isinstance(result, gms_probe.GmsProbeTarget)
    return result


# --------------------------------------------------------------------------- parsers


def test_create_sample_with_its_unquoted_key(fixtures: Path) -> None:
    body = sample(fixtures, "create")
    assert b'_access_code="7684"' in body  # the spec's example is not valid JSON
    assert gms_probe.parse_create(body) == "39a98e24-b03b-4191-b756-1efe8f3b16b8"


def test_status_sample(fixtures: Path) -> None:
    assert gms_probe.parse_status(sample(fixtures, "status")) == "waiting-for-agent"


@pytest.mark.parametrize(
    ("body", "service_id"),
    [
        (b'{"id": "abc"}', "abc"),
        (b'{"id": 12345}', "12345"),
        (b'{"_id": "", "id": "fallback"}', "fallback"),
        (b'{"_id": "x-1", "_access_number": "8003449999", "_access_code": "7684"}', "x-1"),
        (b'{_id="bare"}', "bare"),
    ],
)
def test_create_ids(body: bytes, service_id: str) -> None:
    assert gms_probe.parse_create(body) == service_id


@pytest.mark.parametrize(
    ("parser", "body", "message"),
    [
        (gms_probe.parse_create, b'{ "_id":"39a98e24-b03b-4191-b756-1e', "invalid JSON"),
        (gms_probe.parse_create, b"<html><body>Error</body></html>", "invalid JSON"),
        (gms_probe.parse_create, b"", "invalid JSON"),
        (gms_probe.parse_create, b'["39a98e24"]', "expected a JSON object"),
        (gms_probe.parse_create, b'{"_access_number": "8003449999"}', "no service id"),
        (gms_probe.parse_create, b'{"_id": true}', "no service id"),
        (gms_probe.parse_status, b'{"dialog": "/waitingforagent.html"}', "no status"),
        (gms_probe.parse_status, b'{"status": 3}', "no status"),
        (gms_probe.parse_status, b'{"status": "  "}', "no status"),
    ],
)
def test_unreadable_answers_are_parse_failures(parser: Any, body: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message) as info:
        parser(body)
    assert info.value.reason == "parse"


# --------------------------------------------------------------------------- number rule

HUGE = "9" * 400


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # beyond a double: orjson refuses it, and the bare-key repair does not help
        ('_access_code="7684"', f"_access_code={HUGE}"),
        ('"_id":"39a98e24-b03b-4191-b756-1efe8f3b16b8"', f'"_id":{HUGE}'),
        ('"_id":"39a98e24-b03b-4191-b756-1efe8f3b16b8"', '"_id":1e400'),
        # a non-ASCII digit is no JSON
        ('_access_code="7684"', "_access_code=٧٦٨٤"),
        ('"_id":"39a98e24-b03b-4191-b756-1efe8f3b16b8"', '"_id":٤'),
        # a numeric id a float cannot hold exactly
        ('"_id":"39a98e24-b03b-4191-b756-1efe8f3b16b8"', f'"_id":{2**53 + 1}'),
    ],
)
def test_numbers_out_of_rule_in_the_sample_are_parse_failures(
    fixtures: Path, old: str, new: str
) -> None:
    body = sample(fixtures, "create").decode()
    assert body.count(old) == 1, old
    with pytest.raises(ParseFailure) as info:
        gms_probe.parse_create(body.replace(old, new).encode())
    assert info.value.reason == "parse"
    assert len(str(info.value)) < 300  # a 400-digit value does not bloat the log line


def test_a_numeric_id_at_the_limit(fixtures: Path) -> None:
    body = sample(fixtures, "create").decode()
    body = body.replace('"39a98e24-b03b-4191-b756-1efe8f3b16b8"', str(2**53))
    assert gms_probe.parse_create(body.encode()) == str(2**53)


# --------------------------------------------------------------------------- config


def test_contract_config() -> None:
    cfg = parse_config({"targets": [target_data(interval="5m")]})
    t = cfg.targets[0]
    assert isinstance(t, gms_probe.GmsProbeTarget)
    assert t.form == {"_phone_number": "6504669999"}
    assert t.form_encoding == "urlencoded"
    assert cfg.interval_of(t) == 300.0


def test_default_interval_is_five_minutes() -> None:
    data = target_data()
    cfg = parse_config({"defaults": {"interval": "15s"}, "targets": [data]})
    assert cfg.interval_of(cfg.targets[0]) == 300.0


def test_form_values_are_strings() -> None:
    t = config_of(form={"_phone_number": 6504669999, "_provide_code": True, "lat": 48.8583})
    assert t.form == {"_phone_number": "6504669999", "_provide_code": "true", "lat": "48.8583"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"status_request": None}, "expected_statuses needs status_request"),
        ({"expected_statuses": ["a", "a"]}, "duplicate statuses"),
        ({"expected_statuses": [""]}, "statuses must not be empty"),
        ({"gms_service": ""}, "gms_service"),
        ({"form_encoding": "json"}, "form_encoding"),
        ({"form": {"file": [1, 2]}}, "form values must be strings"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_of(**overrides)


# --------------------------------------------------------------------------- the probe


def created(service_id: str = "id/1") -> Answer:
    return Answer(body=orjson.dumps({"_id": service_id, "_access_number": "8003449999"}))


def status(value: str) -> Answer:
    return Answer(body=orjson.dumps({"status": value, "dialog": "/x.html"}))


def probe_of(server: Server, **overrides: Any) -> Any:
    cfg = parse_config({"targets": [target_data(url=server.url, **overrides)]})
    t = cfg.targets[0]
    assert isinstance(t, gms_probe.GmsProbeTarget)
    specs = SOURCES["gms_probe"].jobs(t, server.client(t, cfg))
    assert len(specs) == 1
    assert specs[0].endpoint == "probe"
    assert specs[0].subject == {"gms_service": t.gms_service}
    return specs[0].poll


def success_of(target: str, service: str) -> float | None:
    for name, labels, value in gms_probe.scrape_samples():
        if labels == f'target="{target}",gms_service="{service}"':
            assert name == gms_probe.PROBE_SUCCESS
            return value
    return None


URLENCODED = "application/x-www-form-urlencoded"


async def test_probe_creates_then_asks_status(server: Server) -> None:
    server.answer(created("39a98e24/x"), status("waiting-for-agent"))
    poll = probe_of(server, name="unit-ok")
    assert success_of("unit-ok", "request-interaction") is None  # not probed yet
    reading = await poll()
    assert [(r.method, r.url) for r in server.requests] == [
        ("POST", f"{server.url}/genesys/1/service/request-interaction"),
        ("POST", f"{server.url}/genesys/1/service/39a98e24%2Fx/status"),
    ]
    assert [(r.content_type, r.form) for r in server.requests] == [
        (URLENCODED, {"_phone_number": "6504669999"}),
        (URLENCODED, {}),
    ]
    assert {r.headers["Accept"] for r in server.requests} == {"application/json"}
    samples = list(reading.samples())
    assert [s[:2] for s in samples] == [
        (gms_probe.STEP_DURATION, ',step="create"'),
        (gms_probe.STEP_DURATION, ',step="status"'),
        (gms_probe.SERVICE_STATUS, ',status="waiting-for-agent"'),
    ]
    assert samples[2][2] == 1.0
    assert reading.watched() == {"status": "waiting-for-agent"}
    assert success_of("unit-ok", "request-interaction") == 1.0


async def test_unexpected_status_is_a_failed_probe_not_a_failed_poll(server: Server) -> None:
    server.answer(created(), status("failed"))
    poll = probe_of(
        server, name="unit-unexpected", expected_statuses=["waiting-for-agent", "connected"]
    )
    reading = await poll()
    statuses = {extra: v for name, extra, v in reading.samples() if name != gms_probe.STEP_DURATION}
    assert statuses == {
        ',status="waiting-for-agent"': 0.0,
        ',status="connected"': 0.0,
        ',status="failed"': 1.0,
    }
    assert success_of("unit-unexpected", "request-interaction") == 0.0


async def test_without_status_request_creating_is_success(server: Server) -> None:
    server.answer(created())
    # a job holds its poll, and so the probe's state
    poll = probe_of(server, name="unit-create-only", status_request=None, expected_statuses=[])
    reading = await poll()
    assert len(server.requests) == 1
    assert [s[1] for s in reading.samples()] == [',step="create"']
    assert reading.watched() == {}
    assert success_of("unit-create-only", "request-interaction") == 1.0


async def test_any_status_is_success_without_expected_statuses(server: Server) -> None:
    server.answer(created(), status("whatever"))
    poll = probe_of(server, name="unit-any", expected_statuses=[])
    reading = await poll()
    assert (gms_probe.SERVICE_STATUS, ',status="whatever"', 1.0) in list(reading.samples())
    assert success_of("unit-any", "request-interaction") == 1.0


async def test_404_names_the_service_and_the_probe_fails(server: Server) -> None:
    server.answer(Answer(404, b"Not Found", "text/plain"))
    poll = probe_of(server, name="unit-404", gms_service="request-nothing")
    with pytest.raises(StatusFailure) as info:
        await poll()
    assert info.value.reason == "http_status"
    assert "'request-nothing' is not configured" in info.value.detail
    assert success_of("unit-404", "request-nothing") == 0.0


async def test_failed_poll_after_success_sets_probe_success_to_zero(server: Server) -> None:
    server.answer(created(), status("waiting-for-agent"), created(), Answer(body=b"{"))
    poll = probe_of(server, name="unit-flip")
    await poll()
    assert success_of("unit-flip", "request-interaction") == 1.0
    with pytest.raises(ParseFailure):
        await poll()
    assert success_of("unit-flip", "request-interaction") == 0.0


async def test_timed_out_probe_is_a_failed_probe(server: Server) -> None:
    server.answer(Answer(hang=True))  # the server never answers the create request
    poll = probe_of(server, name="unit-timeout")
    task = asyncio.create_task(poll())
    async with asyncio.timeout(30):  # a guard, not a measurement
        await server.hanging.wait()
    _, pending = await asyncio.wait({task}, timeout=0.05)
    assert pending == {task}  # still waiting for the answer
    task.cancel()  # what the scheduler does at the timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.method, r.raw_path) for r in server.requests] == [
        ("POST", "/genesys/1/service/request-interaction")
    ]
    assert success_of("unit-timeout", "request-interaction") == 0.0


async def test_multipart_form(server: Server) -> None:
    server.answer(created(), status("waiting-for-agent"))
    await probe_of(server, name="unit-multipart", form_encoding="multipart")()
    assert [(r.content_type.partition(";")[0], r.form) for r in server.requests] == [
        ("multipart/form-data", {"_phone_number": "6504669999"}),
        ("multipart/form-data", {}),
    ]


def test_probe_state_lives_as_long_as_its_job() -> None:
    t = config_of(name="unit-gone")
    http = HttpClient()  # never opens a session: nothing is polled
    client = http.for_target(t, max_response_size=1 << 20)
    poll = SOURCES["gms_probe"].jobs(t, client)[0].poll
    assert ("unit-gone", "request-interaction") in gms_probe._STATES
    del poll
    gc.collect()
    assert ("unit-gone", "request-interaction") not in gms_probe._STATES


def test_families() -> None:
    source = SOURCES["gms_probe"]
    assert source.subject_labels == ("gms_service",)
    names = {f.name: f for f in source.families}
    assert set(names) == {
        gms_probe.PROBE_SUCCESS,
        gms_probe.STEP_DURATION,
        gms_probe.SERVICE_STATUS,
    }
    assert names[gms_probe.STEP_DURATION].labels == ("target", "gms_service", "step")
    assert names[gms_probe.SERVICE_STATUS].labels == ("target", "gms_service", "status")
    for family in source.families:
        assert family.type == "gauge"
        assert "ccwatch's last" in family.help
        assert not {"customer", "service", "type"} & set(family.labels)
