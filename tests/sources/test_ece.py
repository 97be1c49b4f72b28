"""ECE parsers on the spec's samples, verbatim, and on what real servers may send."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ccwatch.errors import ParseFailure
from ccwatch.sources import ece


def sample(fixtures: Path, name: str) -> bytes:
    return (fixtures / "ece" / f"{name}.xml").read_bytes()


def test_agent_availability_sample(fixtures: Path) -> None:
    reading = ece.parse_agent_availability(sample(fixtures, "agentAvailability"))
    assert reading == ece.AgentAvailability(available=True)
    assert list(reading.samples()) == [(ece.AGENT_AVAILABLE, "", 1.0)]


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
    values = {extra: v for _, extra, v in reading.samples()}
    assert values == {
        ',state="accepting"': 1.0,
        ',state="no_agent"': 0.0,
        ',state="queue_full"': 0.0,
    }


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
    assert samples[0] == (ece.CHAT_ALLOWED, "", 1.0)
    assert all(v == 0.0 for name, _, v in samples if name == ece.CHAT_BLOCKED)
    assert len(samples) == 1 + len(ece.BLOCKED_REASONS)


def test_chat_allowed_false_sample(fixtures: Path) -> None:
    reading = ece.parse_chat_allowed(sample(fixtures, "chatAllowed_false"))
    assert reading.allowed is False
    assert reading.reason == "entry_point_inactive"
    blocked = {extra: v for name, extra, v in reading.samples() if name == ece.CHAT_BLOCKED}
    assert blocked[',reason="entry_point_inactive"'] == 1.0
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
