"""GMS probe: config, parsers on the spec's samples verbatim, the probe's steps and verdict."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from ccwatch.errors import ConfigError, ParseFailure, StatusFailure
from ccwatch.sources import SOURCES, gms_probe, parse_config
from ccwatch.sources.base import Sample, StateSet
from tests.sources.conftest import Answer, Server, state_of

STEP = gms_probe.STEP_DURATION
STATUS = gms_probe.SERVICE_STATUS
EXPECTED = ("waiting-for-agent", "connected")


def sample(fixtures: Path, name: str) -> bytes:
    return (fixtures / "gms_probe" / f"{name}.json").read_bytes()


def target_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "gms-probe",
        "source": "gms_probe",
        "url": "http://gms.example.com:8080",
        "gms_service": "request-inbound-poll",
        "form": {"_phone_number": "6504669999"},
        "status_request": "status",
        "expected_statuses": ["waiting-for-agent"],
        **overrides,
    }


def config_of(**overrides: Any) -> gms_probe.GmsProbeTarget:
    data = target_data(**overrides)
    if data.get("interval", "") is None:
        del data["interval"]
    result = parse_config({"targets": [data]}).targets[0]
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


SERVICE_REQUEST_RULE = (
    "service requests are only allowed on request-inbound-... and request-outbound-... "
    "services (spec 003, Service specific Request)"
)


@pytest.mark.parametrize(
    "service",
    [
        "request-interaction",  # the spec's create example: no service requests on it
        "request-callback",
        "request-inbound-",  # the prefix alone names no service
        "request-outbound",
        "inbound-poll",
        "my-request-inbound-poll",
        "Request-Inbound-Poll",
    ],
)
def test_a_service_request_on_another_service_is_a_config_error(service: str) -> None:
    data = target_data(gms_service=service)
    other = {"name": "ece", "source": "ece", "url": "http://ece", "entry_points": [1]}
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [other, data]})
    assert info.value.errors == [
        f"targets[1].status_request: {SERVICE_REQUEST_RULE}; {service!r} is neither"
    ]


@pytest.mark.parametrize(
    "service", ["request-inbound-poll", "request-outbound-survey", "request-inbound-x"]
)
def test_service_requests_on_inbound_and_outbound_services(service: str) -> None:
    assert gms_probe.allows_service_requests(service)
    assert config_of(gms_service=service).status_request == "status"


@pytest.mark.parametrize(
    "service", ["request-interaction", "request-callback", "request-inbound-", "anything"]
)
def test_any_service_may_be_probed_without_a_service_request(service: str) -> None:
    assert not gms_probe.allows_service_requests(service)
    t = config_of(gms_service=service, status_request=None, expected_statuses=[])
    assert (t.gms_service, t.status_request) == (service, None)


def test_an_invalid_service_name_is_reported_once() -> None:
    with pytest.raises(ConfigError) as info:
        config_of(gms_service="")
    assert [e.partition(":")[0] for e in info.value.errors] == ["targets[0].gms_service"]


# --------------------------------------------------------------------------- the probe


def created(service_id: str = "id/1") -> Answer:
    return Answer(body=orjson.dumps({"_id": service_id, "_access_number": "8003449999"}))


def status(value: str) -> Answer:
    return Answer(body=orjson.dumps({"status": value, "dialog": "/x.html"}))


def probe_of(server: Server, **overrides: Any) -> tuple[Any, gms_probe.ProbeState]:
    """The probe job's poll and the target's state, made as the daemon makes them."""
    overrides.setdefault("url", server.url)
    cfg = parse_config({"targets": [target_data(**overrides)]})
    t = cfg.targets[0]
    assert isinstance(t, gms_probe.GmsProbeTarget)
    state = state_of(t)
    assert isinstance(state, gms_probe.ProbeState)
    specs = SOURCES["gms_probe"].jobs(t, server.client(t, cfg, state), state)
    assert len(specs) == 1
    assert specs[0].endpoint == "probe"
    assert specs[0].subject == {"gms_service": t.gms_service}
    return specs[0].poll, state


def success_of(state: gms_probe.ProbeState) -> float | None:
    """The state's ``ccwatch_gms_probe_success`` value, None before the first verdict."""
    samples = list(state.samples())
    if not samples:
        return None
    assert len(samples) == 1
    name, values, value = samples[0]
    assert (name, values) == (gms_probe.PROBE_SUCCESS, (state.service,))
    return value


URLENCODED = "application/x-www-form-urlencoded"


async def test_probe_creates_then_asks_status(server: Server) -> None:
    server.answer(created("39a98e24/x"), status("waiting-for-agent"))
    poll, state = probe_of(server, name="unit-ok")
    assert success_of(state) is None  # not probed yet
    reading = await poll()
    assert [(r.method, r.url) for r in server.requests] == [
        ("POST", f"{server.url}/genesys/1/service/request-inbound-poll"),
        ("POST", f"{server.url}/genesys/1/service/39a98e24%2Fx/status"),
    ]
    assert [(r.content_type, r.form) for r in server.requests] == [
        (URLENCODED, {"_phone_number": "6504669999"}),
        (URLENCODED, {}),
    ]
    assert {r.headers["Accept"] for r in server.requests} == {"application/json"}
    samples = list(reading.samples())
    assert [s[:2] for s in samples] == [
        (gms_probe.STEP_DURATION, ("create",)),
        (gms_probe.STEP_DURATION, ("status",)),
        (gms_probe.SERVICE_STATUS, ("waiting-for-agent",)),
    ]
    assert samples[2][2] == 1.0
    assert reading.watched() == {"status": "waiting-for-agent"}
    assert success_of(state) == 1.0


async def test_unexpected_status_is_a_failed_probe_not_a_failed_poll(server: Server) -> None:
    server.answer(created(), status("failed"))
    poll, state = probe_of(
        server, name="unit-unexpected", expected_statuses=["waiting-for-agent", "connected"]
    )
    reading = await poll()
    statuses = [(name, values, v) for name, values, v in reading.samples() if name != STEP]
    assert statuses == [
        (gms_probe.SERVICE_STATUS, ("waiting-for-agent",), 0.0),
        (gms_probe.SERVICE_STATUS, ("connected",), 0.0),
        (gms_probe.SERVICE_STATUS, ("failed",), 1.0),
    ]
    assert success_of(state) == 0.0


async def test_without_status_request_creating_is_success(server: Server) -> None:
    server.answer(created())
    # a job holds its poll, and so the probe's state
    poll, state = probe_of(
        server, name="unit-create-only", status_request=None, expected_statuses=[]
    )
    reading = await poll()
    assert len(server.requests) == 1
    assert isinstance(reading, gms_probe.ProbeReading)
    assert 0.0 < reading.create_seconds < 30.0
    assert (reading.status_seconds, reading.status) == (None, None)
    assert list(reading.samples()) == [(STEP, ("create",), reading.create_seconds)]
    assert reading.watched() == {}
    assert success_of(state) == 1.0


async def test_any_status_is_success_without_expected_statuses(server: Server) -> None:
    server.answer(created(), status("whatever"))
    poll, state = probe_of(server, name="unit-any", expected_statuses=[])
    reading = await poll()
    assert (gms_probe.SERVICE_STATUS, ("whatever",), 1.0) in list(reading.samples())
    assert success_of(state) == 1.0


async def test_404_names_the_service_and_the_probe_fails(server: Server) -> None:
    server.answer(Answer(404, b"Not Found", "text/plain"))
    poll, state = probe_of(server, name="unit-404", gms_service="request-inbound-nothing")
    with pytest.raises(StatusFailure) as info:
        await poll()
    assert info.value.reason == "http_status"
    assert "'request-inbound-nothing' is not configured" in info.value.detail
    assert success_of(state) == 0.0
    assert list(state.samples()) == [(gms_probe.PROBE_SUCCESS, ("request-inbound-nothing",), 0.0)]


async def test_failed_poll_after_success_sets_probe_success_to_zero(server: Server) -> None:
    server.answer(created(), status("waiting-for-agent"), created(), Answer(body=b"{"))
    poll, state = probe_of(server, name="unit-flip")
    await poll()
    assert success_of(state) == 1.0
    with pytest.raises(ParseFailure):
        await poll()
    assert success_of(state) == 0.0


async def test_timed_out_probe_is_a_failed_probe(server: Server) -> None:
    server.answer(Answer(hang=True))  # the server never answers the create request
    poll, state = probe_of(server, name="unit-timeout")
    task = asyncio.create_task(poll())
    async with asyncio.timeout(30):  # a guard, not a measurement
        await server.hanging.wait()
    _, pending = await asyncio.wait({task}, timeout=0.05)
    assert pending == {task}  # still waiting for the answer
    task.cancel()  # what the scheduler does at the timeout
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(r.method, r.raw_path) for r in server.requests] == [
        ("POST", "/genesys/1/service/request-inbound-poll")
    ]
    assert success_of(state) == 0.0


async def test_multipart_form(server: Server) -> None:
    server.answer(created(), status("waiting-for-agent"))
    poll, _ = probe_of(server, name="unit-multipart", form_encoding="multipart")
    await poll()
    assert [(r.content_type.partition(";")[0], r.form) for r in server.requests] == [
        ("multipart/form-data", {"_phone_number": "6504669999"}),
        ("multipart/form-data", {}),
    ]


async def test_the_job_records_its_verdict_in_the_state_it_was_given(server: Server) -> None:
    # the daemon owns the state: the job writes the verdict into that object, no other
    server.answer(created(), status("waiting-for-agent"))
    t = config_of(name="unit-owned", url=server.url)
    cfg = parse_config({"targets": [target_data(name="unit-owned", url=server.url)]})
    mine, other = gms_probe.ProbeState(t), gms_probe.ProbeState(t)
    poll = SOURCES["gms_probe"].jobs(t, server.client(t, cfg, mine), mine)[0].poll
    await poll()
    assert success_of(mine) == 1.0
    assert success_of(other) is None


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


# --------------------------------------------------------------------------- every state


def record(state: gms_probe.ProbeState, success: bool | None, at: float) -> None:
    """Set a verdict as a finished probe does."""
    state.success, state.at = success, at


class Clock:
    """A stand-in for the ``time`` module as gms_probe reads it: ``monotonic()`` only."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1000.0)
    monkeypatch.setattr(gms_probe, "time", fake)
    return fake


def test_a_fresh_state_has_no_verdict() -> None:
    state = gms_probe.ProbeState(config_of(gms_service="request-outbound-chat"))
    assert state.success is None
    assert state.service == "request-outbound-chat"
    assert state.max_age == 600.0  # twice the source's 5 minutes
    assert list(state.samples()) == []


@pytest.mark.parametrize(("interval", "max_age"), [("1m", 120.0), ("90s", 180.0), (None, 600.0)])
def test_a_verdict_is_fresh_for_two_intervals(interval: str | None, max_age: float) -> None:
    state = gms_probe.ProbeState(config_of(interval=interval))
    assert state.max_age == max_age


@pytest.mark.parametrize("success", [True, False])
def test_a_verdict_reads_until_it_is_stale(clock: Clock, success: bool) -> None:
    state = gms_probe.ProbeState(config_of(interval="1m"))
    record(state, success, 1000.0)
    verdict = 1.0 if success else 0.0
    expected = [(gms_probe.PROBE_SUCCESS, ("request-inbound-poll",), verdict)]
    assert list(state.samples()) == expected
    clock.now = 1120.0  # exactly two intervals old: still fresh
    assert list(state.samples()) == expected
    clock.now = 1120.001  # older: no success any more
    assert list(state.samples()) == [(gms_probe.PROBE_SUCCESS, ("request-inbound-poll",), 0.0)]


def test_reconfigure_with_the_same_service_keeps_the_verdict(clock: Clock) -> None:
    state = gms_probe.ProbeState(config_of(interval="1m"))
    record(state, True, 1000.0)
    state.reconfigure(config_of(interval="5m", form={"x": "y"}))
    assert state.max_age == 600.0
    clock.now = 1500.0  # stale under the old interval, fresh under the new one
    assert list(state.samples()) == [(gms_probe.PROBE_SUCCESS, ("request-inbound-poll",), 1.0)]


def test_reconfigure_with_another_service_resets_the_verdict(clock: Clock) -> None:
    state = gms_probe.ProbeState(config_of(interval="1m"))
    record(state, True, 1000.0)
    state.reconfigure(config_of(gms_service="request-outbound-chat"))
    assert (state.success, state.service, state.max_age) == (None, "request-outbound-chat", 600.0)
    assert list(state.samples()) == []
    record(state, False, 1000.0)
    assert list(state.samples()) == [(gms_probe.PROBE_SUCCESS, ("request-outbound-chat",), 0.0)]


@pytest.mark.parametrize(
    ("reading", "samples", "watched", "success"),
    [
        (
            gms_probe.ProbeReading(0.25, None, None, StateSet(STATUS, "status", []), frozenset()),
            [(STEP, ("create",), 0.25)],
            {},
            True,
        ),
        (
            gms_probe.ProbeReading(
                0.25, 0.5, "queued", StateSet(STATUS, "status", []), frozenset()
            ),
            [(STEP, ("create",), 0.25), (STEP, ("status",), 0.5), (STATUS, ("queued",), 1.0)],
            {"status": "queued"},
            True,
        ),
        (
            gms_probe.ProbeReading(
                1.0, 2.0, "connected", StateSet(STATUS, "status", EXPECTED), frozenset(EXPECTED)
            ),
            [
                (STEP, ("create",), 1.0),
                (STEP, ("status",), 2.0),
                (STATUS, ("waiting-for-agent",), 0.0),
                (STATUS, ("connected",), 1.0),
            ],
            {"status": "connected"},
            True,
        ),
        (
            gms_probe.ProbeReading(
                1.0, 2.0, "waiting-for-agent", StateSet(STATUS, "status", EXPECTED),
                frozenset(EXPECTED),
            ),
            [
                (STEP, ("create",), 1.0),
                (STEP, ("status",), 2.0),
                (STATUS, ("waiting-for-agent",), 1.0),
                (STATUS, ("connected",), 0.0),
            ],
            {"status": "waiting-for-agent"},
            True,
        ),
        (
            gms_probe.ProbeReading(
                1.0, 2.0, "failed", StateSet(STATUS, "status", EXPECTED), frozenset(EXPECTED)
            ),
            [
                (STEP, ("create",), 1.0),
                (STEP, ("status",), 2.0),
                (STATUS, ("waiting-for-agent",), 0.0),
                (STATUS, ("connected",), 0.0),
                (STATUS, ("failed",), 1.0),
            ],
            {"status": "failed"},
            False,
        ),
    ],
)  # fmt: skip
def test_every_probe_reading_pins_its_samples(
    reading: gms_probe.ProbeReading,
    samples: list[Sample],
    watched: dict[str, str],
    success: bool,
) -> None:
    assert list(reading.samples()) == samples
    assert reading.watched() == watched
    assert reading.success is success


def test_form_values_of_both_booleans() -> None:
    t = config_of(form={"yes": True, "no": False, "n": 0})
    assert t.form == {"yes": "true", "no": "false", "n": "0"}


@pytest.mark.parametrize(
    ("body", "service_id"),
    [
        (b'{"_id": true, "id": "second"}', "second"),
        (b'{"_id": "  padded  "}', "padded"),
        (b'{"_id": 0}', "0"),
        (b'{_id: 17, name = "x"}', "17"),
    ],
)
def test_more_create_ids(body: bytes, service_id: str) -> None:
    assert gms_probe.parse_create(body) == service_id


@pytest.mark.parametrize(
    ("parser", "body", "message"),
    [
        (gms_probe.parse_create, b'{_id="x",', "^create: invalid JSON"),  # repaired, still bad
        (gms_probe.parse_create, b'{_id="x"}]', "^create: invalid JSON"),
        (gms_probe.parse_status, b"{status=waiting}", "^status: invalid JSON"),
        (gms_probe.parse_status, b'"waiting"', "^status: expected a JSON object, got str"),
        (gms_probe.parse_status, b'{status="  queued "}', None),
    ],
)
def test_repaired_answers(parser: Any, body: bytes, message: str | None) -> None:
    if message is None:
        assert parser(body) == "queued"
        return
    with pytest.raises(ParseFailure, match=message):
        parser(body)


async def test_both_steps_take_measured_time(server: Server) -> None:
    server.answer(created(), status("waiting-for-agent"))
    poll, _ = probe_of(server)
    reading = await poll()
    assert isinstance(reading, gms_probe.ProbeReading)
    assert 0.0 < reading.create_seconds < 30.0
    assert reading.status_seconds is not None
    assert 0.0 < reading.status_seconds < 30.0
    assert reading.expected == frozenset({"waiting-for-agent"})
    assert reading.statuses.states == ("waiting-for-agent",)


async def test_service_names_and_requests_are_one_path_segment(server: Server) -> None:
    server.answer(created("a b/c"), status("waiting-for-agent"))
    poll, _ = probe_of(server, gms_service="request-inbound-x/y z", status_request="st/at us")
    await poll()
    assert [r.raw_path for r in server.requests] == [
        "/genesys/1/service/request-inbound-x%2Fy%20z",
        "/genesys/1/service/a%20b%2Fc/st%2Fat%20us",
    ]


async def test_the_base_url_path_is_sent_as_configured(server: Server) -> None:
    server.answer(created("x"), status("waiting-for-agent"))
    poll, _ = probe_of(server, url=server.url + "/gms%7Eproxy")
    await poll()
    assert [r.raw_path for r in server.requests] == [
        "/gms%7Eproxy/genesys/1/service/request-inbound-poll",
        "/gms%7Eproxy/genesys/1/service/x/status",
    ]


@pytest.mark.parametrize("step", ["create", "status"])
async def test_each_step_accepts_json_only(server: Server, step: str) -> None:
    html = Answer(body=b'{"_id": "x", "status": "waiting-for-agent"}', content_type="text/html")
    server.answer(*((html,) if step == "create" else (created(), html)))
    poll, state = probe_of(server)
    with pytest.raises(ParseFailure, match="unexpected content type 'text/html'"):
        await poll()
    assert success_of(state) == 0.0


async def test_404_to_the_status_request_names_it(server: Server) -> None:
    server.answer(created(), Answer(404, b"Not Found", "text/plain"))
    poll, state = probe_of(server)
    with pytest.raises(StatusFailure) as info:
        await poll()
    assert (info.value.status, info.value.reason) == (404, "http_status")
    assert info.value.detail == (
        "GMS 'status' request for the new 'request-inbound-poll' service: not found (HTTP 404)"
    )
    assert success_of(state) == 0.0


@pytest.mark.parametrize("step", ["create", "status"])
@pytest.mark.parametrize(("code", "reason"), [(500, "http_status"), (403, "auth")])
async def test_other_http_errors_pass_through(
    server: Server, step: str, code: int, reason: str
) -> None:
    failure = Answer(code, b"no", "text/plain")
    server.answer(*((failure,) if step == "create" else (created(), failure)))
    poll, state = probe_of(server)
    with pytest.raises(StatusFailure) as info:
        await poll()
    assert (info.value.status, info.value.reason) == (code, reason)
    assert "GMS" not in info.value.detail
    assert success_of(state) == 0.0


async def test_404_to_create_keeps_the_status(server: Server) -> None:
    server.answer(Answer(404, b"Not Found", "text/plain"))
    poll, _ = probe_of(server)
    with pytest.raises(StatusFailure) as info:
        await poll()
    assert info.value.status == 404
    assert info.value.detail == (
        "GMS service 'request-inbound-poll' is not configured on the server (HTTP 404)"
    )


def test_an_interval_below_a_minute_is_warned_about() -> None:
    from ccwatch.sources import parse_config as parse

    target = {
        "name": "probe",
        "source": "gms_probe",
        "url": "http://127.0.0.1:1",
        "gms_service": "request-inbound-poll",
        "form": {"_phone_number": "6504669999"},
    }
    assert parse({"targets": [target]}).warnings() == []  # the 5-minute default
    cfg = parse({"targets": [{**target, "interval": "1s"}]})
    assert cfg.warnings() == [
        "targets[0].interval: 1s for gms_probe target 'probe' is below the floor of 1m: "
        "60 real request-inbound-poll services a minute created on GMS (each may become a "
        "real interaction)"
    ]
