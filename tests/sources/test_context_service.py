"""Context Service registration: the parser on the spec's sample, verbatim, and bad answers."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccwatch.collector import ELLIPSIS, CappedReading, MetricStore, SampleRenderer
from ccwatch.errors import ConfigError, ParseFailure
from ccwatch.sources import SOURCES, context_service, parse_config
from ccwatch.sources.base import MAX_LABEL_CHARS, Sample
from ccwatch.sources.context_service import INFO, REGISTRATION, Registration, parse_registration
from tests.sources.conftest import Answer, Server

XML = "application/xml"


def sample(fixtures: Path, name: str = "get_registered") -> bytes:
    return (fixtures / "context_service" / f"{name}.xml").read_bytes()


def body(state: str, management_url: str | None = None) -> bytes:
    url = f"<managementUrl>{management_url}</managementUrl>" if management_url else ""
    return (
        f"<contextServiceRegistration><state>{state}</state>{url}"
        "<refURL>/unifiedconfig/config/contextservice</refURL></contextServiceRegistration>"
    ).encode()


def test_the_spec_sample_verbatim(fixtures: Path) -> None:
    raw = sample(fixtures)
    assert raw.startswith(b" <contextServiceRegistration>")  # as documented, leading space
    assert b"<!-- Included if state is notRegistered \n" in raw  # a comment over two lines
    reading = parse_registration(raw)
    assert reading == Registration("registered", "(url)")
    assert reading.registered
    assert list(reading.samples()) == [
        (REGISTRATION, ("registered",), 1.0),
        (REGISTRATION, ("notRegistered",), 0.0),
        (INFO, ("(url)",), 1.0),
    ]
    assert reading.watched() == {"state": "registered", "management_url": "(url)"}


def test_not_registered_has_no_info() -> None:
    reading = parse_registration(body("notRegistered"))
    assert reading == Registration("notRegistered", None)
    assert list(reading.samples()) == [
        (REGISTRATION, ("registered",), 0.0),
        (REGISTRATION, ("notRegistered",), 1.0),
    ]
    assert reading.watched() == {"state": "notRegistered", "management_url": ""}


def test_a_management_url_is_ignored_unless_registered() -> None:
    reading = parse_registration(body("notRegistered", "https://cs.example.com/x"))
    assert reading.management_url is None
    assert not [s for s in reading.samples() if s[0] == INFO]


def test_another_state_is_exported_with_value_1() -> None:
    reading = parse_registration(body("registrationPending"))
    assert list(reading.samples()) == [
        (REGISTRATION, ("registered",), 0.0),
        (REGISTRATION, ("notRegistered",), 0.0),
        (REGISTRATION, ("registrationPending",), 1.0),
    ]


def test_registered_without_management_url_still_has_info() -> None:
    reading = parse_registration(body("registered"))
    assert (INFO, ("",), 1.0) in list(reading.samples())


def test_label_values_are_data_as_the_server_wrote_them() -> None:
    # escaping is the renderer's job: the sample carries the value itself
    reading = parse_registration(body("registered", 'https://x.example.com/?a="b"&amp;c=\\'))
    info = [s for s in reading.samples() if s[0] == INFO]
    assert info == [(INFO, ('https://x.example.com/?a="b"&c=\\',), 1.0)]


def test_elements_are_read_by_local_name_and_whitespace_is_stripped() -> None:
    raw = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<ns1:contextServiceRegistration xmlns:ns1="urn:cisco:unifiedconfig">\n'
        b"  <ns1:state>\n    registered\n  </ns1:state>\n"
        b"  <ns1:managementUrl> https://cs.example.com/org/1 </ns1:managementUrl>\n"
        b"</ns1:contextServiceRegistration>"
    )
    assert parse_registration(raw) == Registration("registered", "https://cs.example.com/org/1")


@pytest.mark.parametrize(
    ("reading", "samples", "watched"),
    [
        (
            Registration("registered", "https://cs.example.com/o"),
            [
                (REGISTRATION, ("registered",), 1.0),
                (REGISTRATION, ("notRegistered",), 0.0),
                (INFO, ("https://cs.example.com/o",), 1.0),
            ],
            {"state": "registered", "management_url": "https://cs.example.com/o"},
        ),
        (
            Registration("registered"),
            [
                (REGISTRATION, ("registered",), 1.0),
                (REGISTRATION, ("notRegistered",), 0.0),
                (INFO, ("",), 1.0),
            ],
            {"state": "registered", "management_url": ""},
        ),
        (
            Registration("notRegistered"),
            [(REGISTRATION, ("registered",), 0.0), (REGISTRATION, ("notRegistered",), 1.0)],
            {"state": "notRegistered", "management_url": ""},
        ),
        (
            Registration("unknown"),
            [
                (REGISTRATION, ("registered",), 0.0),
                (REGISTRATION, ("notRegistered",), 0.0),
                (REGISTRATION, ("unknown",), 1.0),
            ],
            {"state": "unknown", "management_url": ""},
        ),
    ],
)
def test_every_state_pins_its_samples(
    reading: Registration, samples: list[Sample], watched: dict[str, str]
) -> None:
    assert list(reading.samples()) == samples
    assert reading.watched() == watched
    assert reading.registered is (reading.state == "registered")


def test_registration_states_are_case_sensitive() -> None:
    reading = parse_registration(body("Registered", "https://cs.example.com/o"))
    assert reading == Registration("Registered", None)
    assert not reading.registered


def test_an_empty_management_url_element_gives_an_empty_info_label() -> None:
    reading = parse_registration(
        b"<contextServiceRegistration><state>registered</state><managementUrl/>"
        b"<managementUrl>https://second.example.com</managementUrl></contextServiceRegistration>"
    )
    assert reading == Registration("registered", None)
    assert (INFO, ("",), 1.0) in list(reading.samples())


def test_a_long_management_url_is_capped_by_the_core_with_a_marker() -> None:
    url = "https://cs.example.com/" + "x" * 600_000
    reading = parse_registration(body("registered", url))
    assert reading.management_url == url  # the source keeps it: the core caps, once
    store = MetricStore()
    for family in SOURCES["context_service"].families:
        store.register(family)
    renderer = SampleRenderer(store)
    lines = renderer.lines(reading.samples(), 'target="cs"', 1)
    assert renderer.capped
    [sample] = [x for f in text_string_to_metric_families(lines[INFO]) for x in f.samples]
    assert sample.labels["management_url"] == url[: MAX_LABEL_CHARS - 1] + ELLIPSIS
    assert CappedReading(reading).watched()["management_url"] == sample.labels["management_url"]


def test_a_state_of_64_characters_is_still_a_state() -> None:
    state = "s" * context_service.MAX_STATE_LENGTH
    assert context_service.MAX_STATE_LENGTH == 64
    assert parse_registration(body(state)) == Registration(state)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<contextServiceRegistration><state>registered</state>", "malformed XML"),
        (b"", "malformed XML"),
        (b"<html><body><h1>Service Unavailable</h1></body></html>", "expected root element"),
        (b"<contextServiceRegistration/>", "no <state>"),
        (b"<contextServiceRegistration><state> </state></contextServiceRegistration>", "empty"),
        (b"<contextServiceRegistration><state/></contextServiceRegistration>", "empty"),
        (
            b"<contextServiceRegistration><state>not\tRegistered</state>"
            b"</contextServiceRegistration>",
            "not a registration state",
        ),
        (
            b"<contextServiceRegistration><state>registered</state><state>notRegistered</state>"
            b"</contextServiceRegistration>",
            "2 <state> elements",
        ),
        (
            b"<contextServiceRegistration><state>" + b"x" * 65 + b"</state>"
            b"</contextServiceRegistration>",
            "not a registration state",
        ),
        (
            b"<contextServiceRegistration><state>Service is down</state>"
            b"</contextServiceRegistration>",
            "not a registration state",
        ),
        (
            b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<contextServiceRegistration><state>&x;</state></contextServiceRegistration>",
            "DOCTYPE",
        ),
        (b'{"state": "registered"}', "malformed XML"),
    ],
)
def test_unreadable_answers_are_parse_failures(raw: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message) as info:
        parse_registration(raw)
    assert info.value.reason == "parse"


def test_the_update_request_sample_is_no_get_answer(fixtures: Path) -> None:
    with pytest.raises(ParseFailure, match="no <state>"):
        parse_registration(sample(fixtures, "update_request"))


def test_no_number_is_read_and_a_huge_one_is_no_state(fixtures: Path) -> None:
    # the answer carries no number; a 400-digit state fails as parse, with a short message
    raw = sample(fixtures).replace(b">registered<", b">" + b"9" * 400 + b"<")
    with pytest.raises(ParseFailure, match="not a registration state") as info:
        parse_registration(raw)
    assert info.value.reason == "parse"
    assert len(str(info.value)) < 200


# --------------------------------------------------------------------------- config


def target(**extra: Any) -> dict[str, Any]:
    return {
        "name": "cs",
        "source": "context_service",
        "url": "https://socialminer.example.com/",
        "basic_auth": {"username": "admin", "password": "pw"},
        **extra,
    }


def test_config_with_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "cs-password"
    secret.write_text("s3cret\n")
    cfg = parse_config(
        {"targets": [target(basic_auth={"username": "admin", "password_file": str(secret)})]}
    )
    cs = cfg.targets[0]
    assert isinstance(cs, context_service.ContextServiceTarget)
    assert cs.url == "https://socialminer.example.com"
    assert cs.basic_auth is not None
    assert cs.basic_auth.password is not None
    assert cs.basic_auth.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cs)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"basic_auth": None}, "basic_auth is required"),
        ({"basic_auth": {"username": "admin"}}, "password or password_file is required"),
        ({"entry_points": [1]}, "targets[0].entry_points: unknown key"),
    ],
)
def test_config_errors(extra: dict[str, Any], message: str) -> None:
    data = target(**extra)
    if data["basic_auth"] is None:
        del data["basic_auth"]
    with pytest.raises(ConfigError) as info:
        parse_config({"targets": [data]})
    assert message in str(info.value)


# --------------------------------------------------------------------------- jobs


async def test_one_get_job_without_subject(server: Server) -> None:
    source = SOURCES["context_service"]
    assert source.subject_labels == ()
    cfg = parse_config({"targets": [target(url=server.url)]})
    server.always(Answer(body=body("registered", "https://cs.example.com/o"), content_type=XML))
    specs = source.jobs(cfg.targets[0], server.client(cfg.targets[0], cfg), None)
    assert [(s.endpoint, dict(s.subject)) for s in specs] == [("contextserviceregistration", {})]
    reading = await specs[0].poll()
    assert reading == Registration("registered", "https://cs.example.com/o")
    assert [(r.method, r.url, r.query, r.body) for r in server.requests] == [
        ("GET", f"{server.url}/unifiedconfig/config/contextserviceregistration", {}, b"")
    ]
    assert source.headers["Accept"] == "application/xml"
    sent = server.requests[0].headers
    assert sent["Accept"] == "application/xml"
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"admin:pw").decode()
    # the poll accepts XML answers only
    server.always(Answer(body=body("registered"), content_type="text/html"))
    with pytest.raises(ParseFailure, match="unexpected content type 'text/html'"):
        await specs[0].poll()


def test_families_say_where_values_come_from() -> None:
    source = SOURCES["context_service"]
    names = {f.name: f for f in source.families}
    assert set(names) == {REGISTRATION, INFO}
    assert names[REGISTRATION].labels == ("target", "state")
    assert names[INFO].labels == ("target", "management_url")
    for family in source.families:
        assert family.type == "gauge"
        assert "ccwatch's last successful contextserviceregistration poll" in family.help
