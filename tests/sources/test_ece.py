"""ECE parsers on the spec's samples, verbatim, and on what real servers may send."""

from __future__ import annotations

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
