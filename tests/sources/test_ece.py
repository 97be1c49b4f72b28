"""ECE parsers on the spec's samples, verbatim, and on what real servers may send."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ccwatch.errors import ConfigError, ParseFailure
from ccwatch.sources import SOURCES, ece, parse_config
from ccwatch.sources.base import Reading, Sample
from tests.sources.conftest import Answer, Server


def sample(fixtures: Path, name: str) -> bytes:
    return (fixtures / "ece" / f"{name}.xml").read_bytes()


def test_agent_availability_sample(fixtures: Path) -> None:
    reading = ece.parse_agent_availability(sample(fixtures, "agentAvailability"))
    assert reading == ece.AgentAvailability(available=True)
    assert list(reading.samples()) == [(ece.AGENT_AVAILABLE, (), 1.0)]


def test_capacity_sample(fixtures: Path) -> None:
    assert ece.parse_capacity(sample(fixtures, "capacity")).available_slots == 4


def test_live_session_status_sample(fixtures: Path) -> None:
    reading = ece.parse_live_session_status(sample(fixtures, "liveSessionStatus"))
    assert reading == ece.SessionStatus(wait_time_seconds=3.0, queue_depth=1)


def test_check_eligibility_sample_with_unquoted_attribute(fixtures: Path) -> None:
    body = sample(fixtures, "checkEligibility")
    assert b"responseType=0 " in body  # the spec's quirk is in the fixture
    reading = ece.parse_check_eligibility(body)
    assert reading.state == "accepting"
    assert list(reading.samples()) == [
        (ece.ELIGIBILITY, ("accepting",), 1.0),
        (ece.ELIGIBILITY, ("no_agent",), 0.0),
        (ece.ELIGIBILITY, ("queue_full",), 0.0),
    ]


@pytest.mark.parametrize(("raw", "state"), [(b"1", "no_agent"), (b'"2"', "queue_full")])
def test_check_eligibility_other_states(fixtures: Path, raw: bytes, state: str) -> None:
    body = sample(fixtures, "checkEligibility").replace(b"responseType=0", b"responseType=" + raw)
    assert ece.parse_check_eligibility(body).state == state


def test_chat_allowed_true_sample_with_odd_namespace_case(fixtures: Path) -> None:
    body = sample(fixtures, "chatAllowed_true")
    assert b"urn:iETF" in body
    reading = ece.parse_chat_allowed(body)
    assert reading.allowed is True
    assert reading.reason is None
    samples = list(reading.samples())
    assert samples[0] == (ece.CHAT_ALLOWED, (), 1.0)
    assert all(v == 0.0 for name, _, v in samples if name == ece.CHAT_BLOCKED)
    assert len(samples) == 1 + len(ece.BLOCKED_REASONS)


def test_chat_allowed_false_sample(fixtures: Path) -> None:
    reading = ece.parse_chat_allowed(sample(fixtures, "chatAllowed_false"))
    assert reading.allowed is False
    assert reading.reason == "entry_point_inactive"
    blocked = {values: v for name, values, v in reading.samples() if name == ece.CHAT_BLOCKED}
    assert blocked[("entry_point_inactive",)] == 1.0
    assert sum(blocked.values()) == 1.0
    assert reading.watched() == {"chat_allowed": "false", "blocked_reason": "entry_point_inactive"}


@pytest.mark.parametrize(("reason", "expected"), [("Other", "other"), ("brand_new", "other")])
def test_chat_allowed_unknown_reasons_are_other(reason: str, expected: str) -> None:
    body = f'<chatAllowed allowed="false" reason="{reason}"/>'.encode()
    reading = ece.parse_chat_allowed(body)
    assert reading.reason == expected
    assert reading.raw_reason == reason


def test_other_prefixes_are_read_by_local_name() -> None:
    body = (
        b'<x:sessionStatus xmlns:x="urn:a" xmlns:q="http://bindings.egain.com/chat">'
        b"<q:waitTime>12.5</q:waitTime><queueDepth>7</queueDepth></x:sessionStatus>"
    )
    assert ece.parse_live_session_status(body) == ece.SessionStatus(12.5, 7)


@pytest.mark.parametrize(
    ("parser", "body", "message"),
    [
        (ece.parse_capacity, b"<availableSlots><count>4</count>", "malformed XML"),
        (ece.parse_capacity, b"<availableSlots><count>four</count></availableSlots>", "integer"),
        (ece.parse_capacity, b"<availableSlots/>", "no <count>"),
        (ece.parse_capacity, b"<sessionStatus/>", "expected root element <availableSlots>"),
        (ece.parse_agent_availability, b'<agentAvailability available="maybe"/>', "true or false"),
        (ece.parse_agent_availability, b"<agentAvailability/>", "no available attribute"),
        (ece.parse_check_eligibility, b"<checkEligibility responseType=7 />", "unknown value 7"),
        (
            ece.parse_live_session_status,
            b"<sessionStatus><waitTime>nan</waitTime><queueDepth>1</queueDepth></sessionStatus>",
            "finite",
        ),
        (ece.parse_chat_allowed, b"<html><body>Service Unavailable</body></html>", "root"),
        (ece.parse_chat_allowed, b"", "malformed XML"),
    ],
)
def test_unreadable_answers_are_parse_failures(parser: object, body: bytes, message: str) -> None:
    assert callable(parser)
    with pytest.raises(ParseFailure, match=message) as info:
        parser(body)
    assert info.value.reason == "parse"


def test_entities_and_dtds_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<availableSlots><count>&lol2;</count></availableSlots>"
    )
    with pytest.raises(ParseFailure, match="DOCTYPE"):
        ece.parse_capacity(bomb)
    external = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<availableSlots><count>&x;</count></availableSlots>"
    )
    with pytest.raises(ParseFailure):
        ece.parse_capacity(external)


# --------------------------------------------------------------------------- number rule

HUGE = "9" * 400
#: Numbers Python's int() or float() would read, which are no plain ASCII decimal, or
#: which a float cannot hold exactly.
BAD_NUMBERS = [HUGE, "٤", "²", "1_000", "+4", "1e3", str(2**53 + 1), "-" + HUGE]


def with_value(fixtures: Path, name: str, old: str, new: str) -> bytes:
    """The spec sample ``name`` with its number ``old`` replaced by ``new``."""
    body = sample(fixtures, name)
    assert body.count(old.encode()) == 1, (name, old)
    return body.replace(old.encode(), new.encode())


def assert_parse_failure(parser: object, body: bytes) -> ParseFailure:
    assert callable(parser)
    with pytest.raises(ParseFailure) as info:
        parser(body)
    assert info.value.reason == "parse"
    assert len(str(info.value)) < 200  # a 400-digit value does not bloat the log line
    return info.value


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_capacity_count_out_of_rule_is_a_parse_failure(fixtures: Path, value: str) -> None:
    body = with_value(fixtures, "capacity", ">4<", f">{value}<")
    assert_parse_failure(ece.parse_capacity, body)


@pytest.mark.parametrize("value", [*BAD_NUMBERS, "٤.5", "3.0e0", "1" + "0" * 400 + ".0", "nan"])
def test_live_session_wait_time_out_of_rule_is_a_parse_failure(fixtures: Path, value: str) -> None:
    body = with_value(fixtures, "liveSessionStatus", ">3.0<", f">{value}<")
    assert_parse_failure(ece.parse_live_session_status, body)


@pytest.mark.parametrize("value", [*BAD_NUMBERS, "1.0"])
def test_live_session_queue_depth_out_of_rule_is_a_parse_failure(
    fixtures: Path, value: str
) -> None:
    body = with_value(fixtures, "liveSessionStatus", ">1<", f">{value}<")
    assert_parse_failure(ece.parse_live_session_status, body)


@pytest.mark.parametrize("value", [*BAD_NUMBERS, "\u0660", f'"{HUGE}"', '"\u0660"'])
def test_check_eligibility_response_type_out_of_rule_is_a_parse_failure(
    fixtures: Path, value: str
) -> None:
    # the sample's attribute is unquoted: the bad value is too (and quoted, for good measure)
    body = with_value(fixtures, "checkEligibility", "responseType=0 ", f"responseType={value} ")
    assert_parse_failure(ece.parse_check_eligibility, body)


def test_numeric_character_references_are_read_as_what_they_stand_for(fixtures: Path) -> None:
    # &#x664; is ARABIC-INDIC DIGIT FOUR: lxml resolves it, the number rule refuses it
    body = with_value(fixtures, "capacity", ">4<", ">&#x664;<")
    assert_parse_failure(ece.parse_capacity, body)
    assert (
        ece.parse_capacity(with_value(fixtures, "capacity", ">4<", ">&#x34;<")).available_slots == 4
    )


def test_numbers_at_the_limits_still_read(fixtures: Path) -> None:
    exact = str(2**53)
    body = with_value(fixtures, "capacity", ">4<", f">\n  {exact}\n<")
    assert ece.parse_capacity(body).available_slots == 2**53
    body = with_value(fixtures, "liveSessionStatus", ">3.0<", ">0.123456789012345<")
    assert ece.parse_live_session_status(body).wait_time_seconds == 0.123456789012345
    body = with_value(fixtures, "liveSessionStatus", ">3.0<", ">-0.0<")
    wait = ece.parse_live_session_status(body).wait_time_seconds
    assert math.copysign(1.0, wait) == 1.0  # -0.0 is read as 0.0


# --------------------------------------------------------------------------- every state


def blocked_samples(current: str | None) -> list[Sample]:
    """``chat_blocked`` as exported: every documented reason, 1 on ``current`` only."""
    return [(ece.CHAT_BLOCKED, (r,), 1.0 if r == current else 0.0) for r in ece.BLOCKED_REASONS]


@pytest.mark.parametrize(
    ("name", "reading", "samples"),
    [
        ("agentAvailability", ece.AgentAvailability(True), [(ece.AGENT_AVAILABLE, (), 1.0)]),
        ("agentAvailability", ece.AgentAvailability(False), [(ece.AGENT_AVAILABLE, (), 0.0)]),
        ("capacity", ece.Capacity(4), [(ece.AVAILABLE_SLOTS, (), 4.0)]),
        ("capacity", ece.Capacity(0), [(ece.AVAILABLE_SLOTS, (), 0.0)]),
        (
            "liveSessionStatus",
            ece.SessionStatus(3.0, 1),
            [(ece.QUEUE_DEPTH, (), 1.0), (ece.WAIT_TIME, (), 3.0)],
        ),
        (
            "liveSessionStatus",
            ece.SessionStatus(12.5, 7),
            [(ece.QUEUE_DEPTH, (), 7.0), (ece.WAIT_TIME, (), 12.5)],
        ),
        (
            "liveSessionStatus",
            ece.SessionStatus(0.0, 0),
            [(ece.QUEUE_DEPTH, (), 0.0), (ece.WAIT_TIME, (), 0.0)],
        ),
    ],
)
def test_plain_readings_pin_their_values(
    name: str, reading: Reading, samples: list[Sample]
) -> None:
    assert list(reading.samples()) == samples
    assert all(isinstance(value, float) for _, _, value in reading.samples())
    assert reading.watched() == {}


@pytest.mark.parametrize(("response_type", "state"), list(enumerate(ece.ELIGIBILITY_STATES)))
def test_every_eligibility_state(fixtures: Path, response_type: int, state: str) -> None:
    assert ece.ELIGIBILITY_STATES == ("accepting", "no_agent", "queue_full")
    body = with_value(
        fixtures, "checkEligibility", "responseType=0", f"responseType={response_type}"
    )
    reading = ece.parse_check_eligibility(body)
    assert reading == ece.Eligibility(state)
    assert list(reading.samples()) == [
        (ece.ELIGIBILITY, (s,), 1.0 if s == state else 0.0) for s in ece.ELIGIBILITY_STATES
    ]
    assert reading.watched() == {"eligibility": state}


def test_chat_allowed_true_pins_every_sample(fixtures: Path) -> None:
    reading = ece.parse_chat_allowed(sample(fixtures, "chatAllowed_true"))
    assert reading == ece.ChatAllowed(True, None, None)
    assert list(reading.samples()) == [(ece.CHAT_ALLOWED, (), 1.0), *blocked_samples(None)]
    assert reading.watched() == {"chat_allowed": "true", "blocked_reason": ""}


@pytest.mark.parametrize("reason", ece.BLOCKED_REASONS)
def test_every_blocked_reason(reason: str) -> None:
    assert ece.BLOCKED_REASONS == (
        "queue_depth_reached",
        "agent_not_available",
        "service_not_running",
        "invalid_entry_point",
        "entry_point_inactive",
        "other",
    )
    reading = ece.parse_chat_allowed(f'<chatAllowed allowed="false" reason="{reason}"/>'.encode())
    assert reading == ece.ChatAllowed(False, reason, reason)
    assert list(reading.samples()) == [(ece.CHAT_ALLOWED, (), 0.0), *blocked_samples(reason)]
    assert reading.watched() == {"chat_allowed": "false", "blocked_reason": reason}


@pytest.mark.parametrize(
    ("attribute", "reason", "raw"),
    [
        ("", "other", None),  # no reason given
        (' reason=""', "other", ""),
        (' reason="  Queue_Depth_Reached "', "queue_depth_reached", "  Queue_Depth_Reached "),
        (' reason="AGENT_NOT_AVAILABLE"', "agent_not_available", "AGENT_NOT_AVAILABLE"),
    ],
)
def test_blocked_reasons_as_servers_write_them(
    attribute: str, reason: str, raw: str | None
) -> None:
    reading = ece.parse_chat_allowed(f'<chatAllowed allowed="False"{attribute}/>'.encode())
    assert reading == ece.ChatAllowed(False, reason, raw)
    assert list(reading.samples()) == [(ece.CHAT_ALLOWED, (), 0.0), *blocked_samples(reason)]
    assert reading.watched() == {"chat_allowed": "false", "blocked_reason": reason}


def test_an_allowed_chat_ignores_a_reason() -> None:
    reading = ece.parse_chat_allowed(b'<chatAllowed allowed=" TRUE " reason="other"/>')
    assert reading == ece.ChatAllowed(True, None, None)
    assert list(reading.samples()) == [(ece.CHAT_ALLOWED, (), 1.0), *blocked_samples(None)]


@pytest.mark.parametrize(("raw", "available"), [(b"true", True), (b"false", False)])
def test_agent_availability_both_ways(fixtures: Path, raw: bytes, available: bool) -> None:
    body = sample(fixtures, "agentAvailability").replace(b'"true"', b'"' + raw + b'"')
    reading = ece.parse_agent_availability(body)
    assert reading == ece.AgentAvailability(available)
    assert list(reading.samples()) == [(ece.AGENT_AVAILABLE, (), 1.0 if available else 0.0)]


def test_a_namespaced_attribute_is_read_by_local_name() -> None:
    body = b'<agentAvailability xmlns:q="urn:x" q:available="false"/>'
    assert ece.parse_agent_availability(body) == ece.AgentAvailability(False)
    # a plain attribute wins over a namespaced one of the same local name
    body = b'<agentAvailability xmlns:q="urn:x" q:available="false" available="true"/>'
    assert ece.parse_agent_availability(body) == ece.AgentAvailability(True)


@pytest.mark.parametrize(
    ("parser", "body", "message"),
    [
        (ece.parse_capacity, b"<availableSlots><count>-1</count></availableSlots>", "negative"),
        (
            ece.parse_live_session_status,
            b"<sessionStatus><waitTime>-0.5</waitTime><queueDepth>0</queueDepth></sessionStatus>",
            "negative waitTime -0.5",
        ),
        (
            ece.parse_live_session_status,
            b"<sessionStatus><waitTime>0</waitTime><queueDepth>-1</queueDepth></sessionStatus>",
            "queueDepth -1",
        ),
        (ece.parse_live_session_status, b"<sessionStatus><queueDepth>1</queueDepth>", "XML"),
        (
            ece.parse_live_session_status,
            b"<sessionStatus><waitTime>1</waitTime></sessionStatus>",
            "no <queueDepth>",
        ),
        (ece.parse_check_eligibility, b'<checkEligibility responseType="-1"/>', "unknown value -1"),
        (ece.parse_check_eligibility, b'<checkEligibility responseType="3"/>', "unknown value 3"),
        (ece.parse_check_eligibility, b"<checkEligibility/>", "no responseType attribute"),
        (ece.parse_check_eligibility, b"<chatAllowed allowed='true'/>", "<checkEligibility>"),
        (ece.parse_chat_allowed, b'<chatAllowed reason="other"/>', "no allowed attribute"),
        (ece.parse_chat_allowed, b'<chatAllowed allowed="no"/>', "allowed: expected true or"),
        (
            ece.parse_agent_availability,
            b'<availableSlots available="true"/>',
            "<agentAvailability>",
        ),
        (ece.parse_live_session_status, b"<availableSlots/>", "<sessionStatus>"),
    ],
)
def test_every_documented_bad_answer(parser: object, body: bytes, message: str) -> None:
    assert callable(parser)
    with pytest.raises(ParseFailure, match=message) as info:
        parser(body)
    assert info.value.reason == "parse"


def test_xml_comments_and_processing_instructions_inside_a_value_are_ignored() -> None:
    body = b"<availableSlots><count><!-- four -->4<?pi x?></count></availableSlots>"
    assert ece.parse_capacity(body) == ece.Capacity(4)


def test_only_xml_white_space_is_stripped_from_a_value() -> None:
    assert ece.parse_capacity(b"<availableSlots><count>\r\n\t 4 </count></availableSlots>") == (
        ece.Capacity(4)
    )
    # a no-break space is part of the value, and no digit
    with pytest.raises(ParseFailure, match="plain decimal integer"):
        ece.parse_capacity("<availableSlots><count>\u00a04</count></availableSlots>".encode())
    with pytest.raises(ParseFailure, match="got ''"):
        ece.parse_capacity(b"<availableSlots><count/></availableSlots>")


def test_an_empty_queue(fixtures: Path) -> None:
    body = with_value(fixtures, "liveSessionStatus", ">1<", ">0<")
    reading = ece.parse_live_session_status(body)
    assert reading == ece.SessionStatus(3.0, 0)
    assert list(reading.samples()) == [(ece.QUEUE_DEPTH, (), 0.0), (ece.WAIT_TIME, (), 3.0)]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("00000000000000000003.0", 3.0),  # leading zeros are no digits of magnitude
        ("1000000000000000", 1e15),  # 16 digits, below 2**53
        (str(2**53), float(2**53)),
        ("0." + "0" * 61 + "1", 1e-62),  # 62 fraction digits, one significant
        (format(Decimal(2.0**-85), "f"), 2.0**-85),  # 60 significant digits, exactly a float
        ("0.100000000000000000000000000000000000000000000000000000000000", 0.1),
    ],
)
def test_wait_times_at_the_edges_of_the_number_rule(
    fixtures: Path, value: str, seconds: float
) -> None:
    body = with_value(fixtures, "liveSessionStatus", ">3.0<", f">{value}<")
    assert ece.parse_live_session_status(body) == ece.SessionStatus(seconds, 1)


@pytest.mark.parametrize(
    "value",
    [
        "1.0000000000000001",  # 17 significant digits: a float reads 1.0
        "0.1000000000000000000001",
        str(2**53) + ".5",
        "10000000000000000",  # 17 digits
        "9999999999999999",  # 16 digits, beyond 2**53
        str(2**53 + 2),  # exactly a float, beyond 2**53
        "1." + "1" * 70,  # far too many significant digits
        "0." + "0" * 400 + "1",  # underflows
        "\u00a03.0",
    ],
)
def test_wait_times_beyond_the_number_rule(fixtures: Path, value: str) -> None:
    body = with_value(fixtures, "liveSessionStatus", ">3.0<", f">{value}<")
    assert_parse_failure(ece.parse_live_session_status, body)


@pytest.mark.parametrize(
    ("value", "count"),
    [("00000000000000000004", 4), ("0", 0), (str(2**53), 2**53), ("-0", 0)],
)
def test_counts_at_the_edges_of_the_number_rule(fixtures: Path, value: str, count: int) -> None:
    body = with_value(fixtures, "capacity", ">4<", f">{value}<")
    assert ece.parse_capacity(body) == ece.Capacity(count)


@pytest.mark.parametrize("value", ["10000000000000000000", "90071992547409930", "4 4"])
def test_counts_beyond_the_number_rule(fixtures: Path, value: str) -> None:
    body = with_value(fixtures, "capacity", ">4<", f">{value}<")
    assert_parse_failure(ece.parse_capacity, body)


# --------------------------------------------------------------------------- config


def ece_target(**extra: Any) -> dict[str, Any]:
    return {"name": "ece", "source": "ece", "url": "https://ece.example.com", **extra}


def test_config_defaults_to_every_endpoint() -> None:
    t = parse_config({"targets": [ece_target(entry_points=[1000, 0])]}).targets[0]
    assert isinstance(t, ece.EceTarget)
    assert t.entry_points == [1000, 0]
    assert t.endpoints == list(ece.ENDPOINTS)
    assert ece.ENDPOINTS == (
        "agentAvailability",
        "capacity",
        "liveSessionStatus",
        "checkEligibility",
        "chatAllowed",
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"entry_points": []}, "targets[0].entry_points"),
        ({"entry_points": [1, -1]}, "entry point ids must be non-negative integers"),
        ({"entry_points": [3, 1, 3, 1, 2]}, "duplicate entry point ids: [1, 3]"),
        ({"entry_points": [1], "endpoints": []}, "targets[0].endpoints"),
        ({"entry_points": [1], "endpoints": ["capacity", "capacity"]}, "duplicate endpoints"),
        ({"entry_points": [1], "endpoints": ["survey"]}, "targets[0].endpoints"),
    ],
)
def test_config_errors(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [ece_target(**extra)]})
    assert message in str(info.value)


# --------------------------------------------------------------------------- jobs

XML = "application/xml"


async def test_jobs_poll_every_endpoint_of_every_entry_point(
    fixtures: Path, server: Server
) -> None:
    cfg = parse_config(
        {
            "targets": [
                ece_target(
                    url=server.url + "/base path",
                    entry_points=[1001, 7],
                    endpoints=["chatAllowed", "capacity"],
                )
            ]
        }
    )
    t = cfg.targets[0]
    source = SOURCES["ece"]
    assert source.state is None
    assert source.client_factory is None
    specs = source.jobs(t, server.client(t, cfg), None)
    assert [(s.endpoint, dict(s.subject)) for s in specs] == [
        ("chatAllowed", {"entry_point": "1001"}),
        ("capacity", {"entry_point": "1001"}),
        ("chatAllowed", {"entry_point": "7"}),
        ("capacity", {"entry_point": "7"}),
    ]
    server.answer(
        Answer(body=sample(fixtures, "chatAllowed_false"), content_type=XML),
        Answer(body=sample(fixtures, "capacity"), content_type=XML),
        Answer(body=sample(fixtures, "chatAllowed_true"), content_type="text/xml"),
        Answer(body=b"<availableSlots><count>0</count></availableSlots>", content_type=XML),
    )
    readings = [await s.poll() for s in specs]
    assert readings == [
        ece.ChatAllowed(False, "entry_point_inactive", "entry_point_inactive"),
        ece.Capacity(4),
        ece.ChatAllowed(True, None),
        ece.Capacity(0),
    ]
    prefix = "/base%20path/egain/chat/entrypoint"
    assert [(r.method, r.raw_path, r.query, r.body) for r in server.requests] == [
        ("GET", f"{prefix}/chatAllowed/1001", {}, b""),
        ("GET", f"{prefix}/capacity/1001", {}, b""),
        ("GET", f"{prefix}/chatAllowed/7", {}, b""),
        ("GET", f"{prefix}/capacity/7", {}, b""),
    ]
    assert {r.headers["Accept"] for r in server.requests} == {"application/xml"}
    assert all("Authorization" not in r.headers for r in server.requests)  # anonymous
    # a second poll asks the same URL again, made once at the first poll
    poll = specs[1].poll
    assert isinstance(poll, ece._Poll)
    url = poll.url
    assert url is not None
    server.answer(Answer(body=sample(fixtures, "capacity"), content_type=XML))
    assert await poll() == ece.Capacity(4)
    assert server.requests[-1].raw_path == f"{prefix}/capacity/1001"
    assert poll.url is url
    # every poll accepts XML answers only
    server.always(Answer(body=sample(fixtures, "capacity"), content_type="application/json"))
    with pytest.raises(ParseFailure, match="unexpected content type 'application/json'"):
        await specs[1].poll()


@pytest.mark.parametrize("endpoint", ece.ENDPOINTS)
async def test_each_endpoint_is_read_by_its_parser(
    fixtures: Path, server: Server, endpoint: str
) -> None:
    name = "chatAllowed_false" if endpoint == "chatAllowed" else endpoint
    cfg = parse_config(
        {"targets": [ece_target(url=server.url, entry_points=[5], endpoints=[endpoint])]}
    )
    t = cfg.targets[0]
    (spec,) = SOURCES["ece"].jobs(t, server.client(t, cfg), None)
    server.answer(Answer(body=sample(fixtures, name), content_type=XML))
    reading = await spec.poll()
    assert reading == ece.PARSERS[endpoint](sample(fixtures, name))
    assert server.requests[0].path == f"/egain/chat/entrypoint/{endpoint}/5"


def test_families() -> None:
    source = SOURCES["ece"]
    assert source.subject_labels == ("entry_point",)
    assert source.headers == {"Accept": "application/xml"}
    names = {f.name: f for f in source.families}
    base = ("target", "entry_point")
    assert {name: f.labels for name, f in names.items()} == {
        ece.AGENT_AVAILABLE: base,
        ece.AVAILABLE_SLOTS: base,
        ece.QUEUE_DEPTH: base,
        ece.WAIT_TIME: base,
        ece.ELIGIBILITY: (*base, "state"),
        ece.CHAT_ALLOWED: base,
        ece.CHAT_BLOCKED: (*base, "reason"),
    }
    for family in source.families:
        assert family.type == "gauge"
        assert family.help.endswith(" poll).")
        assert "(from ccwatch's last successful " in family.help


def test_wait_time_in_minutes_is_exported_in_seconds(fixtures: Path) -> None:
    body = sample(fixtures, "liveSessionStatus")  # waitTime 3.0
    assert ece.parser("liveSessionStatus")(body) == ece.SessionStatus(3.0, 1)
    assert ece.parser("liveSessionStatus", "minutes")(body) == ece.SessionStatus(180.0, 1)
    assert ece.parser("capacity", "minutes") is ece.parse_capacity  # only waitTime has a unit


def test_wait_time_unit_is_seconds_or_minutes() -> None:
    target = {"name": "a", "source": "ece", "url": "http://127.0.0.1:1/system"}
    cfg = parse_config({"targets": [{**target, "entry_points": [1]}]})
    assert isinstance(cfg.targets[0], ece.EceTarget)
    assert cfg.targets[0].wait_time_unit == "seconds"
    with pytest.raises(ConfigError, match=r"targets\[0\]\.wait_time_unit: Input should be"):
        parse_config({"targets": [{**target, "entry_points": [1], "wait_time_unit": "hours"}]})
