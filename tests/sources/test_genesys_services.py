"""Genesys context services: parsers on the spec's sample and on bad answers; config; jobs."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ccwatch.errors import ConfigError, ConnectFailure, ParseFailure, StatusFailure
from ccwatch.http import TRACE, Exchange
from ccwatch.sources import SOURCES, genesys_services, parse_config
from ccwatch.sources.base import Reading, Sample
from ccwatch.sources.genesys_services import (
    ACTIVE_BY_TYPE,
    ACTIVE_SERVICES,
    COMPLETED_SERVICES,
    OLDEST_AGE,
    ActiveServices,
    CompletedServices,
    GenesysServicesTarget,
    format_timestamp,
    parse_active,
    parse_completed,
    parse_timestamp,
    pseudonym,
)
from tests.sources.conftest import Answer, Server

#: The sample's start timestamp, read as UTC, plus one hour.
NOW = datetime(2009, 5, 7, 13, 5, 20, 157000, tzinfo=UTC)
#: A contact key (a phone number, as in the spec) and its pseudonym in target "gms-cs".
KEY = "408-832-7799"
KEY_LABEL = "ck-c87b0086d27d"
#: Every way the key could show up where it must not.
KEY_FORMS = (KEY, "4088327799", "408%2D832%2D7799")


def strip_documentation_comments(text: str) -> str:
    """Drop the ``//`` comments of the spec's JSON example (documentation, see specs/README).

    A comment reading "additional Start Event fields" stands for fields the example leaves
    out, so the comma in front of it belongs to them and goes too. ``//`` inside a string
    is kept.
    """
    out: list[str] = []
    in_string = escaped = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(c)
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    stripped = "".join(out)
    # commas left dangling before a closing bracket by the elided fields
    result: list[str] = []
    for c in stripped:
        if c in "}]":
            j = len(result) - 1
            while j >= 0 and result[j].isspace():
                j -= 1
            if j >= 0 and result[j] == ",":
                del result[j]
        result.append(c)
    return "".join(result)


def documented(fixtures: Path) -> bytes:
    return (fixtures / "genesys_services" / "customer_services_active.jsonc").read_bytes()


def sample(fixtures: Path) -> bytes:
    return strip_documentation_comments(documented(fixtures).decode()).encode()


def services(*items: dict[str, Any]) -> bytes:
    return json.dumps(list(items)).encode()


def started(timestamp: str, **extra: Any) -> dict[str, Any]:
    return {"service_id": 1, "started": {"timestamp": timestamp, **extra}}


# --------------------------------------------------------------------------- the sample


def test_the_documented_sample_with_comments_is_not_json(fixtures: Path) -> None:
    raw = documented(fixtures)
    assert b"// returned in an array" in raw  # the fixture is the spec's text, verbatim
    with pytest.raises(ParseFailure, match="invalid JSON") as info:
        parse_active(raw, NOW)
    assert info.value.reason == "parse"


def test_the_sample_without_its_documentation_comments(fixtures: Path) -> None:
    raw = sample(fixtures)
    data = json.loads(raw)
    assert data[0]["customer_id"] == "ABC1234"
    assert data[0]["active_states"][0]["state_type"] == 8
    reading = parse_active(raw, NOW)
    # "2009-05-07T12:05:20.157" has no zone: read as UTC, so exactly one hour before NOW
    assert reading == ActiveServices(count=1, oldest_age_seconds=3600.0, by_type=None)
    assert list(reading.samples()) == [(ACTIVE_SERVICES, (), 1.0), (OLDEST_AGE, (), 3600.0)]
    assert reading.watched() == {}
    # the sample has no service type
    typed = parse_active(raw, NOW, ["400"])
    assert typed.by_type == (("400", 0),)
    assert parse_completed(raw) == CompletedServices(1)


def test_the_comment_stripper_keeps_slashes_in_strings() -> None:
    text = '[{"url": "http://x/y", // c\n "a": "b\\"//"}]'
    assert json.loads(strip_documentation_comments(text)) == [{"url": "http://x/y", "a": 'b"//'}]


# --------------------------------------------------------------------------- active


def test_oldest_age_and_count() -> None:
    raw = services(
        started("2009-05-07T12:55:20.157"),
        started("2009-05-07T11:05:20.157Z"),  # the oldest: two hours
        started("2009-05-07T14:35:20.157+02:00"),  # 12:35 UTC
    )
    reading = parse_active(raw, NOW)
    assert reading.count == 3
    assert reading.oldest_age_seconds == 7200.0


def test_no_active_service_gives_count_and_age_0() -> None:
    reading = parse_active(b"[]", NOW, ["400"])
    assert list(reading.samples()) == [
        (ACTIVE_SERVICES, (), 0.0),
        (OLDEST_AGE, (), 0.0),
        (ACTIVE_BY_TYPE, ("400",), 0.0),
    ]


def test_a_start_in_the_future_counts_as_just_started() -> None:
    reading = parse_active(services(started("2009-05-07T13:10:00")), NOW)
    assert reading.oldest_age_seconds == 0.0


def test_a_naive_now_is_utc() -> None:
    reading = parse_active(services(started("2009-05-07T12:05:20.157")), NOW.replace(tzinfo=None))
    assert reading.oldest_age_seconds == 3600.0


def test_types_only_for_configured_ones() -> None:
    raw = services(
        started("2009-05-07T12:00:00", service_type=400),
        started("2009-05-07T12:00:00", service_type="400"),
        started("2009-05-07T12:00:00", service_type="billing"),
        {"service_id": 4, "service_type": 401, "started": {"timestamp": "2009-05-07T12:00:00"}},
        started("2009-05-07T12:00:00", service_type=999),
        started("2009-05-07T12:00:00"),
    )
    reading = parse_active(raw, NOW, ["400", "401", "billing", "402"])
    assert reading.count == 6
    assert reading.by_type == (("400", 2), ("401", 1), ("billing", 1), ("402", 0))
    by_type = [(extra, v) for name, extra, v in reading.samples() if name == ACTIVE_BY_TYPE]
    assert by_type == [
        (("400",), 2.0),
        (("401",), 1.0),
        (("billing",), 1.0),
        (("402",), 0.0),
    ]
    # not configured: not exported at all
    assert not [s for s in parse_active(raw, NOW).samples() if s[0] == ACTIVE_BY_TYPE]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "invalid JSON"),
        (b"[{", "invalid JSON"),
        (b"<html><body>Service Unavailable</body></html>", "invalid JSON"),
        (b"[1, 2,]", "invalid JSON"),
        (b'[{"service_id": 1, "started": {"timestamp": NaN}}]', "invalid JSON"),
        (b"\xff\xfe[]", "invalid JSON"),
        (b'{"services": []}', "expected a JSON array of services, got an object"),
        (b"null", "got null"),
        (b'"[]"', "got a string"),
        (b"[null]", r"\[0\]: expected a service object, got null"),
        (b"[[]]", "expected a service object, got an array"),
        (b'[{"started": {"timestamp": "2009-05-07T12:05:20.157"}}]', "no service_id"),
        (b'[{"service_id": true, "started": {}}]', "service_id: expected an id"),
        (b'[{"service_id": 1}]', r"\[0\]: service has no started event"),
        (b'[{"service_id": 1, "started": "2009-05-07"}]', "started: expected an object"),
        (b'[{"service_id": 1, "started": {}}]', "started: no timestamp"),
        (b'[{"service_id": 1, "started": {"timestamp": 1241697920}}]', "expected an ISO 8601"),
        (b'[{"service_id": 1, "started": {"timestamp": "yesterday"}}]', "not an ISO 8601"),
        (
            b'[{"service_id": 1, "started": {"timestamp": "2009-05-07T12:05:20", '
            b'"service_type": [400]}}]',
            "service_type: expected a number or a string",
        ),
    ],
)
def test_unreadable_active_answers_are_parse_failures(raw: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message) as info:
        parse_active(raw, NOW, ["400"])
    assert info.value.reason == "parse"


def test_the_second_item_is_checked_too() -> None:
    raw = services(started("2009-05-07T12:05:20"), {"service_id": 2})
    with pytest.raises(ParseFailure, match=r"\[1\]: service has no started event"):
        parse_active(raw, NOW)


# --------------------------------------------------------------------------- completed


def completed(service_id: int, timestamp: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "service_id": service_id,
        "started": {"timestamp": "2009-05-07T10:00:00"},
    }
    if timestamp is not None:
        item["completed"] = {"timestamp": timestamp}
    return item


def test_completed_counts_the_services() -> None:
    raw = services(completed(1, "2009-05-07T12:30:00"), completed(2, None))
    assert parse_completed(raw) == CompletedServices(2)
    assert list(parse_completed(raw).samples()) == [(COMPLETED_SERVICES, (), 2.0)]
    assert parse_completed(b"[]").count == 0


def test_completed_before_the_window_is_not_counted() -> None:
    since = NOW - timedelta(hours=1)
    raw = services(
        completed(1, "2009-05-07T12:30:00"),
        completed(2, "2009-05-07T12:05:20.156"),  # a millisecond too early
        completed(3, "2009-05-07T12:05:20.157"),
        completed(4, None),  # no completion time: the server's filter counts
    )
    assert parse_completed(raw, since).count == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{}", "expected a JSON array"),
        (b"[{}]", "no service_id"),
        (b'[{"service_id": 1, "completed": 5}]', "completed: expected an object"),
        (b'[{"service_id": 1, "completed": {"timestamp": "x"}}]', "not an ISO 8601"),
    ],
)
def test_unreadable_completed_answers_are_parse_failures(raw: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message):
        parse_completed(raw, NOW)


# --------------------------------------------------------------------------- timestamps


def test_timestamps() -> None:
    assert parse_timestamp("2009-05-07T12:05:20.157", "t") == datetime(
        2009, 5, 7, 12, 5, 20, 157000, tzinfo=UTC
    )
    assert parse_timestamp("2009-05-07T14:05:20+02:00", "t") == datetime(
        2009, 5, 7, 12, 5, 20, tzinfo=UTC
    )
    assert format_timestamp(datetime(2009, 5, 7, 12, 5, 20, 157999, tzinfo=UTC)) == (
        "2009-05-07T12:05:20.157Z"
    )
    east = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2009, 5, 7, 14, 0, tzinfo=east)) == "2009-05-07T12:00:00.000Z"


# --------------------------------------------------------------------------- number rule

HUGE = "9" * 400


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # numbers beyond a double: orjson refuses them, the answer is no JSON
        ('"service_id": 4692834', f'"service_id": {HUGE}'),
        ('"est_duration": 86400', '"est_duration": 1e400'),
        ('"state_type": 8', f'"state_type": -{HUGE}'),
        # a non-ASCII digit: no JSON either
        ('"service_id": 4692834', '"service_id": ٤'),
        # non-ASCII or odd digits in a timestamp: fromisoformat refuses them
        ('"2009-05-07T12:05:20.157"', '"٢٠٠٩-05-07T12:05:20.157"'),
        ('"2009-05-07T12:05:20.157"', '"2009-05-07T12:05:20.15²"'),
        ('"2009-05-07T12:05:20.157"', '"\uff12\uff10\uff10\uff19-05-07T12:05:20.157"'),  # fullwidth
        # a service type id beyond 2**53 (a business attribute id is a plain integer)
        ('"est_duration": 86400,', f'"est_duration": 86400, "service_type": {2**53 + 1},'),
        ('"est_duration": 86400,', f'"est_duration": 86400, "service_type": {2**64},'),
    ],
)
def test_numbers_out_of_rule_in_the_sample_are_parse_failures(
    fixtures: Path, old: str, new: str
) -> None:
    body = sample(fixtures).decode()
    assert body.count(old) == 1, old
    raw = body.replace(old, new).encode()
    with pytest.raises(ParseFailure) as info:
        parse_active(raw, NOW, ["400"])
    assert info.value.reason == "parse"
    assert len(str(info.value)) < 300  # a 400-digit value does not bloat the log line


def test_a_service_type_id_at_the_limit(fixtures: Path) -> None:
    old = '"est_duration": 86400,'
    raw = sample(fixtures).decode().replace(old, f'{old} "service_type": {2**53},')
    reading = parse_active(raw.encode(), NOW, [str(2**53)])
    assert reading.by_type == ((str(2**53), 1),)


# --------------------------------------------------------------------------- config


def target(**extra: Any) -> dict[str, Any]:
    return {
        "name": "gms-cs",
        "source": "genesys_services",
        "url": "http://gms.example.com:8080",
        "customer_ids": ["ABC1234"],
        "contact_keys": ["408-832-7799"],
        "completed_window": "1h",
        **extra,
    }


def test_config_example() -> None:
    cfg = parse_config({"targets": [target()]})
    gms = cfg.targets[0]
    assert isinstance(gms, GenesysServicesTarget)
    assert gms.customer_ids == ["ABC1234"]
    assert gms.contact_key_labels() == [(pseudonym(KEY, "gms-cs"), KEY)]
    assert gms.completed_window == 3600.0
    assert gms.service_types is None


def test_config_defaults_and_types() -> None:
    data = target(service_types=[400, "billing"])
    del data["completed_window"]
    del data["customer_ids"]
    gms = parse_config({"targets": [data]}).targets[0]
    assert isinstance(gms, GenesysServicesTarget)
    assert gms.completed_window == 3600.0
    assert gms.customer_ids == []
    assert gms.service_types == ["400", "billing"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"customer_ids": [], "contact_keys": []}, "nothing to watch"),
        ({"customer_ids": ["A", "A"]}, "targets[0].customer_ids: duplicate values: ['A']"),
        ({"contact_keys": [""]}, "targets[0].contact_keys[0].key"),
        ({"service_types": []}, "targets[0].service_types"),
        ({"service_types": [True]}, "not a boolean"),
        ({"service_types": [400, "400"]}, "duplicate values"),
        ({"completed_window": 60}, "invalid duration"),
        ({"customer": "ABC1234"}, "targets[0].customer: unknown key"),
    ],
)
def test_config_errors(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target(**extra)]})
    assert message in str(info.value)


def gms_target(**extra: Any) -> GenesysServicesTarget:
    gms = parse_config({"targets": [target(**extra)]}).targets[0]
    assert isinstance(gms, GenesysServicesTarget)
    return gms


def test_contact_keys_with_names_bare_and_mixed() -> None:
    named = gms_target(contact_keys=[{"key": KEY, "name": "hotline-a"}])
    assert named.contact_key_labels() == [("hotline-a", KEY)]
    bare = gms_target(contact_keys=[KEY])
    assert bare.contact_key_labels() == [(KEY_LABEL, KEY)]
    # a mapping without a name is a bare key
    assert gms_target(contact_keys=[{"key": KEY}]).contact_key_labels() == [(KEY_LABEL, KEY)]
    mixed = gms_target(
        contact_keys=[
            {"key": KEY, "name": "hotline-a"},
            "650-555-0123",
            {"key": "+1 (650) 555-0199", "name": "Support_2.b:x"},
        ]
    )
    assert mixed.contact_key_labels() == [
        ("hotline-a", KEY),
        (pseudonym("650-555-0123", "gms-cs"), "650-555-0123"),
        ("Support_2.b:x", "+1 (650) 555-0199"),
    ]
    # customer ids are not personal data: exported as they are
    assert mixed.customer_ids == ["ABC1234"]


def test_the_pseudonym_formula() -> None:
    digest = hmac.new(b"gms-cs", KEY.encode(), hashlib.sha256).hexdigest()
    assert KEY_LABEL == "ck-" + digest[:12] == pseudonym(KEY, "gms-cs")
    assert re.fullmatch(r"ck-[0-9a-f]{12}", pseudonym("", ""))


def test_the_pseudonym_is_stable_and_depends_on_the_salt(tmp_path: Path) -> None:
    # the same on every load (a restart, a reload): pinned, not just equal to itself
    assert gms_target().contact_key_labels() == [(KEY_LABEL, KEY)]
    assert gms_target().contact_key_labels() == gms_target().contact_key_labels()
    # without a salt the target's name is the HMAC key
    renamed = gms_target(name="other").contact_key_labels()[0][0]
    salted = gms_target(pseudonym_salt="s3cret").contact_key_labels()[0][0]
    assert renamed == pseudonym(KEY, "other") != KEY_LABEL
    assert salted == pseudonym(KEY, "s3cret") not in (KEY_LABEL, renamed)
    # a salt file: read once, stripped, the same pseudonym as inline
    (tmp_path / "salt").write_text("s3cret\n")
    from_file = gms_target(pseudonym_salt_file=str(tmp_path / "salt"))
    assert from_file.contact_key_labels()[0][0] == salted
    assert "s3cret" not in repr(from_file)
    # other keys, other pseudonyms
    assert pseudonym("650-555-0123", "gms-cs") != KEY_LABEL


@pytest.mark.parametrize("salt", ["gms-cs", "", "s3cret", "408", "4088327799", KEY])
@pytest.mark.parametrize("key", [KEY, "4088327799", "+1 408 832 7799", "(408) 832-7799"])
def test_a_pseudonym_never_shows_the_number(key: str, salt: str) -> None:
    label = pseudonym(key, salt)
    assert re.fullmatch(r"ck-[0-9a-f]{12}", label)
    digits = re.sub(r"\D", "", key)
    assert key not in label
    # not the number, nor any 7 of its digits in a row (e.g. without the area code)
    assert not any(digits[i : i + 7] in label for i in range(len(digits) - 6))


def test_the_key_is_kept_out_of_the_config_repr() -> None:
    gms = gms_target(contact_keys=[KEY, {"key": "650-555-0123", "name": "hotline-b"}])
    text = f"{gms!r} {gms} {gms.contact_keys!r}"
    assert KEY not in text
    assert "650-555-0123" not in text
    assert "hotline-b" in text


@pytest.mark.parametrize(
    ("contact_keys", "message"),
    [
        (
            [{"key": KEY, "name": "a"}, {"key": "650-555-0123", "name": "a"}],
            "targets[0].contact_keys[1].name: duplicate name 'a' (also contact_keys[0])",
        ),
        (
            [{"key": KEY, "name": "hotline a"}],
            "targets[0].contact_keys[0].name: a contact key name",
        ),
        ([{"key": KEY, "name": ""}], "targets[0].contact_keys[0].name: a contact key name"),
        ([{"key": KEY, "name": "é"}], "targets[0].contact_keys[0].name: a contact key name"),
        ([{"key": KEY, "name": "x" * 129}], "targets[0].contact_keys[0].name: a contact key name"),
        ([{"key": KEY, "name": "a/b"}], "targets[0].contact_keys[0].name: a contact key name"),
        ([{"name": "a"}], "targets[0].contact_keys[0].key: required key is missing"),
        ([{"key": KEY, "label": "a"}], "targets[0].contact_keys[0].label: unknown key"),
        ([4088327799], "targets[0].contact_keys[0]: a contact key is a string (quote a number)"),
        (
            [KEY, KEY],
            "targets[0].contact_keys[1].key: duplicate contact key (also contact_keys[0])",
        ),
        (
            [KEY, {"key": KEY, "name": "a"}],
            "targets[0].contact_keys[1].key: duplicate contact key (also contact_keys[0])",
        ),
        # a name that is a (phone number) key would export it
        (
            [{"key": "650-555-0123", "name": KEY}, KEY],
            "targets[0].contact_keys[0].name: a name is exported as the label value, so it must "
            "not be a contact key (it is the key of contact_keys[1])",
        ),
        (
            [{"key": KEY, "name": KEY}],
            "targets[0].contact_keys[0].name: a name is exported as the label value",
        ),
        # a name may not take another key's pseudonym, whichever comes first
        (
            [{"key": "650-555-0123", "name": KEY_LABEL}, KEY],
            f"targets[0].contact_keys[1].key: its pseudonym {KEY_LABEL!r} is also the label "
            "value of contact_keys[0]; give one of them another name",
        ),
        (
            [KEY, {"key": "650-555-0123", "name": KEY_LABEL}],
            f"targets[0].contact_keys[1].name: {KEY_LABEL!r} is the pseudonym of "
            "contact_keys[0]; choose another name",
        ),
    ],
)
def test_contact_key_errors(contact_keys: list[Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [target(contact_keys=contact_keys)]})
    assert message in str(info.value)
    # a config error names the key path, never the contact key
    if message.count(KEY) == 0:
        for form in KEY_FORMS:
            assert form not in str(info.value)


def test_salt_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\[0\].pseudonym_salt: must not be empty"):
        parse_config({"targets": [target(pseudonym_salt="")]})
    (tmp_path / "salt").write_text("s")
    both = target(pseudonym_salt="s", pseudonym_salt_file=str(tmp_path / "salt"))
    with pytest.raises(ConfigError, match="set pseudonym_salt or pseudonym_salt_file, not both"):
        parse_config({"targets": [both]})
    missing = target(pseudonym_salt_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config({"targets": [missing]})


# --------------------------------------------------------------------------- jobs


def jobs_for(server: Server, **extra: Any) -> list[Any]:
    extra.setdefault("url", server.url)
    cfg = parse_config({"targets": [target(**extra)]})
    target_cfg = cfg.targets[0]
    return SOURCES["genesys_services"].jobs(target_cfg, server.client(target_cfg, cfg), None)


async def test_jobs_watch_only_the_configured_subjects(
    monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    monkeypatch.setattr(genesys_services, "_utcnow", lambda: NOW)
    server.always(Answer(body=services(started("2009-05-07T12:05:20.157", service_type=400))))
    specs = jobs_for(server, service_types=[400])
    assert [(s.endpoint, dict(s.subject)) for s in specs] == [
        ("active", {"customer_id": "ABC1234"}),
        ("completed", {"customer_id": "ABC1234"}),
        ("active", {"contact_key": KEY_LABEL}),
        ("completed", {"contact_key": KEY_LABEL}),
    ]
    readings = [await s.poll() for s in specs]
    assert readings[0] == ActiveServices(1, 3600.0, (("400", 1),))
    assert readings[1] == CompletedServices(1)
    base = f"{server.url}/genesys/1/cs"
    window_start = {"completed_from": "2009-05-07T12:05:20.157Z"}
    json_ = "application/json"
    assert [
        (r.method, r.url.partition("?")[0], r.query, r.headers["Accept"]) for r in server.requests
    ] == [
        ("GET", f"{base}/customers/ABC1234/services/active", {}, json_),
        ("GET", f"{base}/customers/ABC1234/services/completed", window_start, json_),
        ("GET", f"{base}/services/anonymous/408-832-7799/active", {}, json_),
        ("GET", f"{base}/services/anonymous/408-832-7799/completed", window_start, json_),
    ]
    # every poll accepts JSON answers only
    server.always(Answer(body=b"[]", content_type="text/html"))
    for spec in specs:
        with pytest.raises(ParseFailure, match="unexpected content type 'text/html'"):
            await spec.poll()


async def test_path_segments_are_url_encoded(server: Server) -> None:
    server.always(Answer(body=b"[]"))
    specs = jobs_for(server, customer_ids=["a/b c?d#e%f", ".."], contact_keys=["+1 (408) é"])
    for spec in specs:
        await spec.poll()
    paths = [r.raw_path for r in server.requests if r.raw_path.endswith("/active")]
    assert paths == [
        "/genesys/1/cs/customers/a%2Fb%20c%3Fd%23e%25f/services/active",
        "/genesys/1/cs/customers/%2E%2E/services/active",
        "/genesys/1/cs/services/anonymous/%2B1%20%28408%29%20%C3%A9/active",
    ]
    assert server.requests[0].path == ("/genesys/1/cs/customers/a/b c?d#e%f/services/active")


def test_families() -> None:
    source = SOURCES["genesys_services"]
    assert source.subject_labels == ("customer_id", "contact_key")
    assert source.headers["Accept"] == "application/json"
    names = {f.name: f for f in source.families}
    base = ("target", "customer_id", "contact_key")
    assert names[ACTIVE_SERVICES].labels == base
    assert names[COMPLETED_SERVICES].labels == base
    assert names[OLDEST_AGE].labels == base
    assert names[ACTIVE_BY_TYPE].labels == (*base, "service_type")
    for family in source.families:
        assert family.type == "gauge"
        assert "(from ccwatch's last successful " in family.help
        assert not {"customer", "service", "type"} & set(family.labels)


# --------------------------------------------------------------------------- every state


@pytest.mark.parametrize(
    ("reading", "samples"),
    [
        (ActiveServices(0, 0.0), [(ACTIVE_SERVICES, (), 0.0), (OLDEST_AGE, (), 0.0)]),
        (ActiveServices(3, 7200.5), [(ACTIVE_SERVICES, (), 3.0), (OLDEST_AGE, (), 7200.5)]),
        (ActiveServices(2, 60.0, ()), [(ACTIVE_SERVICES, (), 2.0), (OLDEST_AGE, (), 60.0)]),
        (
            ActiveServices(5, 1.5, (("400", 2), ("billing", 0))),
            [
                (ACTIVE_SERVICES, (), 5.0),
                (OLDEST_AGE, (), 1.5),
                (ACTIVE_BY_TYPE, ("400",), 2.0),
                (ACTIVE_BY_TYPE, ("billing",), 0.0),
            ],
        ),
        (CompletedServices(0), [(COMPLETED_SERVICES, (), 0.0)]),
        (CompletedServices(12), [(COMPLETED_SERVICES, (), 12.0)]),
    ],
)
def test_every_reading_pins_its_samples(reading: Reading, samples: list[Sample]) -> None:
    assert list(reading.samples()) == samples
    assert all(isinstance(value, float) for _, _, value in reading.samples())
    assert reading.watched() == {}


def test_a_naive_since_is_utc() -> None:
    raw = services(completed(1, "2009-05-07T12:00:00Z"), completed(2, "2009-05-07T12:10:00"))
    since = datetime(2009, 5, 7, 12, 5)  # naive: UTC
    assert parse_completed(raw, since) == CompletedServices(1)
    assert parse_completed(raw, since.replace(tzinfo=UTC)) == CompletedServices(1)
    # without a window every listed service counts, whatever its completion time
    assert parse_completed(raw) == CompletedServices(2)


def test_a_service_type_in_the_start_event_wins_over_a_top_level_one() -> None:
    raw = services(
        {
            "service_id": 1,
            "service_type": "billing",
            "started": {"timestamp": "2009-05-07T12:00:00", "service_type": 400},
        },
        {
            "service_id": 2,
            "service_type": "billing",
            "started": {"timestamp": "2009-05-07T12:00:00"},
        },
    )
    reading = parse_active(raw, NOW, ["400", "billing"])
    assert reading.by_type == (("400", 1), ("billing", 1))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"service_id": 1, "started": {"timestamp": "2009-05-07T12:00:00", "service_type": True}},
         r"^\[1\]\.service_type: expected a number or a string$"),
        ({"service_id": 1, "started": {"timestamp": "2009-05-07T12:00:00", "service_type": 1.5}},
         r"^\[1\]\.service_type: expected a number or a string$"),
        ({"service_id": 1, "started": {"timestamp": "2009-05-07T12:00:00", "service_type": 2**60}},
         r"^\[1\]\.service_type: expected an integer of magnitude at most 2\*\*53"),
        ({"service_id": 1, "started": None}, r"^\[1\]: service has no started event$"),
        ({"service_id": 1, "started": []}, r"^\[1\]\.started: expected an object, got an array$"),
        ({"service_id": 1, "started": {"timestamp": None}},
         r"^\[1\]\.started\.timestamp: expected an ISO 8601 date/time, got null$"),
        ({"service_id": None, "started": {}}, r"^\[1\]\.service_id: expected an id, got null$"),
        ({"service_id": 1.5, "started": {}}, r"^\[1\]\.service_id: expected an id, got a number$"),
    ],
)  # fmt: skip
def test_bad_services_are_named_by_their_index(item: dict[str, Any], message: str) -> None:
    raw = services(started("2009-05-07T12:00:00", service_type="400"), item)
    with pytest.raises(ParseFailure, match=message):
        parse_active(raw, NOW, ["400"])


def test_ids_may_be_numbers_or_strings() -> None:
    raw = services(
        {"service_id": "abc", "started": {"timestamp": "2009-05-07T12:05:20.157"}},
        {"service_id": 2**60, "started": {"timestamp": "2009-05-07T12:05:20.157"}},
    )
    assert parse_active(raw, NOW) == ActiveServices(2, 3600.0)


def test_a_completed_service_without_a_timestamp_counts() -> None:
    raw = services({"service_id": 1, "completed": {}}, {"service_id": 2, "completed": None})
    assert parse_completed(raw, NOW) == CompletedServices(2)


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone five and a half hours east of UTC."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east")
def test_the_local_time_zone_plays_no_part() -> None:
    assert parse_timestamp("2009-05-07T12:05:20", "t") == datetime(
        2009, 5, 7, 12, 5, 20, tzinfo=UTC
    )
    assert format_timestamp(datetime(2009, 5, 7, 12, 5, 20, tzinfo=UTC)) == (
        "2009-05-07T12:05:20.000Z"
    )
    raw = services(started("2009-05-07T12:05:20.157"))
    assert parse_active(raw, NOW.replace(tzinfo=None)).oldest_age_seconds == 3600.0


@pytest.mark.usefixtures("far_east")
async def test_polls_use_the_current_utc_time(server: Server) -> None:
    start = datetime.now(UTC) - timedelta(seconds=10)
    stamp = start.replace(tzinfo=None).isoformat()  # no zone: UTC
    server.always(Answer(body=services(started(stamp))))
    specs = jobs_for(server, customer_ids=["c"], contact_keys=[], completed_window="10m")
    active = await specs[0].poll()
    assert isinstance(active, ActiveServices)
    assert 10.0 <= active.oldest_age_seconds < 120.0
    await specs[1].poll()
    sent = parse_timestamp(server.requests[1].query["completed_from"], "completed_from")
    assert timedelta(minutes=10) <= datetime.now(UTC) - sent < timedelta(minutes=12)


async def test_completed_polls_do_not_count_services_before_the_window(
    monkeypatch: pytest.MonkeyPatch, server: Server
) -> None:
    # a server that ignores completed_from: the parser's guard drops the early ones
    monkeypatch.setattr(genesys_services, "_utcnow", lambda: NOW)
    server.always(
        Answer(
            body=services(
                completed(1, "2009-05-07T12:55:00"),
                completed(2, "2009-05-07T12:45:00"),  # before the 15 minutes window
                completed(3, "2009-05-07T13:00:00"),
            )
        )
    )
    specs = jobs_for(server, contact_keys=[], completed_window="15m")
    assert [s.endpoint for s in specs] == ["active", "completed"]
    assert await specs[1].poll() == CompletedServices(2)
    assert server.requests[0].query == {"completed_from": "2009-05-07T12:50:20.157Z"}


async def test_dot_segments_are_encoded(server: Server) -> None:
    server.always(Answer(body=b"[]"))
    specs = jobs_for(server, customer_ids=["."], contact_keys=["..", "a.b"])
    for spec in specs:
        await spec.poll()
    assert [r.raw_path for r in server.requests if r.raw_path.endswith("/completed")] == [
        "/genesys/1/cs/customers/%2E/services/completed",
        "/genesys/1/cs/services/anonymous/%2E%2E/completed",
        "/genesys/1/cs/services/anonymous/a.b/completed",
    ]


async def test_the_base_url_path_is_sent_as_configured(server: Server) -> None:
    server.always(Answer(body=b"[]"))
    specs = jobs_for(server, url=server.url + "/gms%7Eproxy", contact_keys=[])
    for spec in specs:
        await spec.poll()
    assert [r.raw_path for r in server.requests] == [
        "/gms%7Eproxy/genesys/1/cs/customers/ABC1234/services/active",
        "/gms%7Eproxy/genesys/1/cs/customers/ABC1234/services/completed",
    ]


# --------------------------------------------------------------------------- the key stays out


class RaisingClient:
    """Stands in for a TargetClient: builds URLs as it does, and raises ``make(url)``."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.urls: list[str] = []

    def url(self, path: str) -> str:
        return "http://gms.example.com:8080" + path

    async def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        self.urls.append(str(url))
        raise self.make(str(url))


def raising_jobs(make: Any, **extra: Any) -> tuple[RaisingClient, list[Any]]:
    client = RaisingClient(make)
    gms = gms_target(**extra)
    return client, SOURCES["genesys_services"].jobs(gms, client, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    [KEY, "+1 (408) 832-7799", "4088327799", "Key.Of/Someone"],
    ids=["dashes", "plus", "digits", "slash"],
)
async def test_a_failure_detail_names_the_label_not_the_key(key: str) -> None:
    # aiohttp names the URL in some errors (too many redirects, an invalid redirect)
    client, specs = raising_jobs(
        lambda url: ConnectFailure(f"TooManyRedirects: 302, message='Found', url={url!r}"),
        customer_ids=[],
        contact_keys=[{"key": key, "name": "hotline-a"}],
    )
    for spec in specs:
        with pytest.raises(ConnectFailure) as info:
            await spec.poll()
        detail = info.value.detail
        assert "/services/anonymous/hotline-a/" in detail
        assert str(info.value) == detail
        assert info.value.reason == "connect"
        for form in (key, quote(key, safe=""), quote(key), *KEY_FORMS):
            assert form not in detail
    # the request itself went to the key
    assert all(quote(key, safe="") in url for url in client.urls)


async def test_a_failure_keeps_its_kind_and_retry_after() -> None:
    _, specs = raising_jobs(
        lambda url: StatusFailure(429, f"unexpected HTTP status 429 for {url}", retry_after=7.0),
        customer_ids=[],
        contact_keys=[KEY],
    )
    with pytest.raises(StatusFailure) as info:
        await specs[0].poll()
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after == 7.0
    assert info.value.status == 429
    assert info.value.detail.endswith(f"/services/anonymous/{KEY_LABEL}/active")


async def test_a_failure_without_the_key_is_left_alone() -> None:
    failure = ParseFailure("invalid JSON: unexpected character: line 1 column 1 (char 0)")
    _, specs = raising_jobs(lambda url: failure, customer_ids=[], contact_keys=[KEY])
    with pytest.raises(ParseFailure) as info:
        await specs[0].poll()
    assert info.value is failure
    assert failure.detail == "invalid JSON: unexpected character: line 1 column 1 (char 0)"


async def test_a_bug_naming_the_key_is_reported_without_it() -> None:
    _, specs = raising_jobs(
        lambda url: ValueError(f"cannot use {url}"), customer_ids=[], contact_keys=[KEY]
    )
    with pytest.raises(RuntimeError) as info:
        await specs[1].poll()
    message = str(info.value)
    assert message.startswith("ValueError: cannot use http://gms.example.com:8080/")
    assert f"/anonymous/{KEY_LABEL}/completed" in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert info.value.__traceback__ is not None  # where it happened is kept
    # and one that does not name it is raised as it is
    _, specs = raising_jobs(lambda url: ValueError("no"), customer_ids=[], contact_keys=[KEY])
    with pytest.raises(ValueError, match=r"^no$"):
        await specs[0].poll()


async def test_customer_ids_are_not_hidden() -> None:
    _, specs = raising_jobs(
        lambda url: ConnectFailure(f"url={url}"), customer_ids=["ABC1234"], contact_keys=[]
    )
    with pytest.raises(ConnectFailure, match="/customers/ABC1234/services/active"):
        await specs[0].poll()


async def test_a_traced_poll_shows_the_key_in_its_url_only(server: Server) -> None:
    """Under ``ccwatch probe``: the request URL names the key, nothing else does."""
    answer = services(
        {**started("2009-05-07T12:05:20.157"), "contact_key": KEY, "note": "4088327799"}
    )
    server.answer(Answer(body=answer), Answer(status=503))
    specs = jobs_for(server, customer_ids=[], contact_keys=[KEY])
    exchanges: list[Exchange] = []
    token = TRACE.set(exchanges)
    try:
        assert isinstance(await specs[0].poll(), ActiveServices)
        with pytest.raises(StatusFailure):
            await specs[1].poll()
    finally:
        TRACE.reset(token)
    assert len(exchanges) == 2
    for exchange in exchanges:
        assert f"/services/anonymous/{KEY}/" in exchange.url
        rest = repr(dataclasses.replace(exchange, url=""))
        for form in KEY_FORMS:
            assert form not in rest
    body = json.loads(exchanges[0].body)
    assert body[0]["contact_key"] == KEY_LABEL
    assert body[0]["note"] == KEY_LABEL
    assert exchanges[1].error == "http_status: unexpected HTTP status 503"


def _genesys(**target: Any) -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": "gcs",
                "source": "genesys_services",
                "url": "http://127.0.0.1:1",
                **target,
            }
        ]
    }


def test_pseudonyms_salted_with_the_target_name_are_warned_about() -> None:
    cfg = parse_config(_genesys(contact_keys=["408-832-7799", {"key": "650", "name": "b"}]))
    [warning] = cfg.warnings()
    assert warning.startswith("targets[0].contact_keys: 1 contact key(s) without a name")
    assert "'gcs'" in warning
    assert "408-832-7799" not in warning  # personal data stays out of the warning too


@pytest.mark.parametrize(
    "target",
    [
        {"contact_keys": ["408-832-7799"], "pseudonym_salt": "a secret"},
        {"contact_keys": [{"key": "408-832-7799", "name": "hotline"}]},
        {"customer_ids": ["ABC1234"]},
    ],
)
def test_a_secret_salt_or_named_keys_need_no_warning(target: dict[str, Any]) -> None:
    assert parse_config(_genesys(**target)).warnings() == []
