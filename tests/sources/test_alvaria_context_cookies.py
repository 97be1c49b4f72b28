"""Alvaria Context Cookies: config, parsers on the spec's samples verbatim, and jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ccwatch.config import parse_config
from ccwatch.errors import ConfigError, ParseFailure
from ccwatch.http import HttpClient
from ccwatch.oauth2 import OAuth2Client, parse_token_response
from ccwatch.sources import SOURCES
from ccwatch.sources import alvaria_context_cookies as alvaria

DAY = 86400.0
# the spec's sample setting: expires and was last modified at this moment
SAMPLE_TIME = datetime(2017, 5, 24, 13, 35, 28, tzinfo=UTC).timestamp()


def sample(fixtures: Path, name: str) -> bytes:
    return (fixtures / "alvaria_context_cookies" / f"{name}.json").read_bytes()


def target(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "alvaria",
        "source": "alvaria_context_cookies",
        "url": "https://orgid.via.aspect-cloud.net",
        "org_id": "orgId",
        "oauth2": {
            "token_url": "https://myaspect.us.id.aspect-cloud.net/tokenservice/oauth2/access_token",
            "client_id": "ccwatch",
            "client_secret": "the-client-secret",
            "scopes": ["customerexperienceapi.contextcookies"],
        },
        "api_key": "the-api-key",
        **overrides,
    }


def config_of(**overrides: Any) -> alvaria.AlvariaContextCookiesTarget:
    cfg = parse_config({"targets": [target(**overrides)]})
    result = cfg.targets[0]
    assert isinstance(result, alvaria.AlvariaContextCookiesTarget)
    return result


# --------------------------------------------------------------------------- parsers


def test_settings_sample(fixtures: Path) -> None:
    body = sample(fixtures, "settings")
    assert b'"totalItems": "1"' in body  # a string, as in the spec
    later = parse_settings_at(body, SAMPLE_TIME + 31 * DAY)
    assert later == alvaria.SettingsReading(total_items=1, expired=1, stale=1)
    assert list(later.samples()) == [
        (alvaria.ITEMS, ',collection="settings"', 1.0),
        (alvaria.EXPIRED, "", 1.0),
        (alvaria.STALE, "", 1.0),
    ]
    # just before it expired, and only a day after its last change
    assert parse_settings_at(body, SAMPLE_TIME - 1) == alvaria.SettingsReading(1, 0, 0)
    assert parse_settings_at(body, SAMPLE_TIME + DAY) == alvaria.SettingsReading(1, 1, 0)


def parse_settings_at(body: bytes, now: float) -> alvaria.SettingsReading:
    return alvaria.parse_settings(body, now=now, stale_after=30 * DAY)


@pytest.mark.parametrize("collection", ["customers", "services", "channels", "settings"])
def test_collection_samples(fixtures: Path, collection: str) -> None:
    reading = alvaria.parse_collection(sample(fixtures, collection), collection)
    assert reading == alvaria.CollectionReading(collection, 1)
    assert list(reading.samples()) == [(alvaria.ITEMS, f',collection="{collection}"', 1.0)]
    assert reading.watched() == {}


@pytest.mark.parametrize(("raw", "value"), [(b"7", 7), (b'"7"', 7), (b'" 12 "', 12), (b"0", 0)])
def test_total_items_string_or_integer(raw: bytes, value: int) -> None:
    body = b'{"kind": "cxp#contextCookiesChannelCollection", "channels": [], "totalItems": ' + raw
    reading = alvaria.parse_collection(body + b"}", "channels")
    assert reading.total_items == value


def test_settings_without_list_when_empty() -> None:
    reading = alvaria.parse_settings(b'{"totalItems": 0}', now=time.time(), stale_after=DAY)
    assert reading == alvaria.SettingsReading(0, 0, 0)


def test_staleness_falls_back_to_creation_time_and_naive_times_are_utc() -> None:
    now = datetime(2024, 1, 31, tzinfo=UTC).timestamp()
    body = b"""{"totalItems": 4, "settings": [
        {"creationTime": "2024-01-01T00:00:00Z"},
        {"creationTime": "2024-01-01T00:00:00Z", "lastModifiedTime": "2024-01-30T00:00:00Z"},
        {"expiresOnTime": "2024-01-30T23:59:59"},
        {"expiresOnTime": "2024-02-01T00:00:00.000+00:00", "lastModifiedTime": null}
    ]}"""
    reading = alvaria.parse_settings(body, now=now, stale_after=7 * DAY)
    assert reading == alvaria.SettingsReading(total_items=4, expired=1, stale=1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"kind": "cxp#contextCookiesSettingCollection", "settings": [', "invalid JSON"),
        (b"<html><body>Maintenance</body></html>", "invalid JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"settings": []}', "no totalItems"),
        (b'{"totalItems": "-1", "settings": []}', "totalItems: expected a"),
        (b'{"totalItems": "one", "settings": []}', "totalItems: expected a"),
        (b'{"totalItems": true, "settings": []}', "totalItems: expected a"),
        (b'{"totalItems": 1.5, "settings": []}', "totalItems: expected a"),
        (b'{"totalItems": 1}', "no settings list but totalItems is 1"),
        (b'{"totalItems": 1, "settings": {}}', "not a list"),
        (b'{"totalItems": 1, "settings": ["a"]}', r"settings\[0\] is not an object"),
        (b'{"totalItems": 1, "settings": [{"expiresOnTime": "soon"}]}', "not an ISO 8601"),
        (b'{"totalItems": 1, "settings": [{"creationTime": 5}]}', "not a string"),
        (b'{"kind": "cxp#contextCookiesChannelCollection", "totalItems": 1}', "unexpected kind"),
    ],
)
def test_unreadable_settings_are_parse_failures(body: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message) as info:
        alvaria.parse_settings(body, now=time.time(), stale_after=DAY)
    assert info.value.reason == "parse"


def test_error_response_sample_is_a_parse_failure(fixtures: Path) -> None:
    with pytest.raises(ParseFailure, match="no totalItems"):
        alvaria.parse_collection(sample(fixtures, "error_400"), "customers")


def test_lists_of_other_collections() -> None:
    assert alvaria.parse_collection(b'{"totalItems": "0"}', "customers").total_items == 0
    with pytest.raises(ParseFailure, match="no customers list but totalItems is 3"):
        alvaria.parse_collection(b'{"totalItems": "3"}', "customers")
    with pytest.raises(ParseFailure, match="not a list"):
        alvaria.parse_collection(b'{"totalItems": "3", "customers": "x"}', "customers")


# --------------------------------------------------------------------------- number rule

HUGE = "9" * 400


@pytest.mark.parametrize(
    "value",
    [
        f'"{HUGE}"',  # a huge string of digits: int() reads it, a float cannot hold it
        '"٤"',  # ARABIC-INDIC DIGIT FOUR: str.isdigit() and int() accept it
        '"²"',  # SUPERSCRIPT TWO: isdigit() is true, int() fails
        '"1_000"',
        '"+4"',
        '"1e3"',
        f'"{2**53 + 1}"',
        HUGE,  # a huge JSON number: orjson refuses it (infinity as a double)
        str(2**53 + 1),  # a JSON integer orjson reads exactly, but no float can hold
        str(2**64 - 1),
        str(2**64),  # orjson reads it as a float
        "1e400",
        "4.0",
        "٤",  # not even JSON
    ],
)
@pytest.mark.parametrize("collection", ["customers", "services", "channels", "settings"])
def test_total_items_out_of_rule_is_a_parse_failure(
    fixtures: Path, collection: str, value: str
) -> None:
    body = sample(fixtures, collection)
    assert body.count(b'"totalItems": "1"') == 1
    body = body.replace(b'"totalItems": "1"', f'"totalItems": {value}'.encode())
    parse: Callable[[bytes], object] = partial(alvaria.parse_collection, collection=collection)
    if collection == "settings":
        parse = partial(parse_settings_at, now=SAMPLE_TIME)
    with pytest.raises(ParseFailure) as info:
        parse(body)
    assert info.value.reason == "parse"
    assert len(str(info.value)) < 200  # a 400-digit value does not bloat the log line


def test_total_items_at_the_limit(fixtures: Path) -> None:
    for value in (f'"{2**53}"', str(2**53), '"007"'):
        body = sample(fixtures, "customers").replace(b'"1"', value.encode())
        with pytest.raises(ParseFailure, match="totalItems is"):  # the list has one item only
            alvaria.parse_collection(body.replace(b'"customers": [', b'"x": ['), "customers")
        assert alvaria.parse_collection(body, "customers").total_items == int(value.strip('"'))


@pytest.mark.parametrize(
    "value",
    ['"٤"', '"3600s"', '"1e3"', '"1_000"', '" nan"', '"inf"', f'"{HUGE}"', "1e300", str(2**60)],
)
def test_token_expires_in_out_of_rule_is_refused(value: str) -> None:
    body = f'{{"access_token": "t", "token_type": "bearer", "expires_in": {value}}}'.encode()
    with pytest.raises(ValueError, match="expires_in is not a positive number"):
        parse_token_response(body, now=0.0)


@pytest.mark.parametrize("value", [HUGE, "1e400"])
def test_token_expires_in_beyond_a_double_is_no_json(value: str) -> None:
    body = f'{{"access_token": "t", "expires_in": {value}}}'.encode()
    with pytest.raises(ValueError, match="not valid JSON"):  # orjson refuses it
        parse_token_response(body, now=0.0)


@pytest.mark.parametrize(
    ("value", "lifetime"), [("3600", 3600.0), ('" 3600 "', 3600.0), ("0.5", 0.5)]
)
def test_token_expires_in_plain_numbers(value: str, lifetime: float) -> None:
    body = f'{{"access_token": "t", "expires_in": {value}}}'.encode()
    token = parse_token_response(body, now=0.0)
    assert token.renew_at == lifetime - min(60.0, lifetime / 10)


# --------------------------------------------------------------------------- config


def test_contract_config_with_secret_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("file-client-secret\n")
    (tmp_path / "key").write_text("file-api-key\n")
    data = target(api_key=None, api_key_file=str(tmp_path / "key"), stale_after="30d")
    del data["api_key"]
    data["oauth2"] = {**data["oauth2"], "client_secret_file": str(tmp_path / "secret")}
    del data["oauth2"]["client_secret"]
    cfg = parse_config({"targets": [data]})
    t = cfg.targets[0]
    assert isinstance(t, alvaria.AlvariaContextCookiesTarget)
    assert t.api_key is not None
    assert t.api_key.get_secret_value() == "file-api-key"
    assert t.oauth2.client_secret is not None
    assert t.oauth2.client_secret.get_secret_value() == "file-client-secret"
    assert t.stale_after == 30 * DAY
    assert t.collections == list(alvaria.COLLECTIONS)
    assert cfg.interval_of(t) == 60.0  # the source's own default
    for secret in ("file-api-key", "file-client-secret"):
        assert secret not in repr(t)
        assert secret not in str(t.model_dump())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_key": None}, "api_key or api_key_file is required"),
        ({"api_key_file": "/nonexistent/ccwatch-key"}, "set api_key or api_key_file, not both"),
        ({"basic_auth": {"username": "u", "password": "p"}}, "basic_auth cannot be used"),
        ({"collections": ["settings", "settings"]}, "duplicate collections"),
        ({"collections": ["cookies"]}, "collections"),
        ({"stale_after": "30"}, "invalid duration"),
        ({"oauth2": None}, "oauth2"),
        ({"org_id": ""}, "org_id"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_of(**overrides)


def test_oauth2_needs_a_client_secret() -> None:
    data = target()
    del data["oauth2"]["client_secret"]
    with pytest.raises(ConfigError, match="client_secret or client_secret_file is required"):
        parse_config({"targets": [data]})


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    data = target(api_key_file=str(tmp_path / "missing"))
    del data["api_key"]
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config({"targets": [data]})


def test_model_is_frozen() -> None:
    t = config_of()
    with pytest.raises(ValidationError):
        t.org_id = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- jobs


async def test_jobs_one_per_collection() -> None:
    t = config_of(org_id="org/with space", collections=["channels", "settings"])
    http = HttpClient()
    try:
        source = SOURCES["alvaria_context_cookies"]
        assert source.client_factory is not None
        plain = http.for_target(t, max_response_size=1 << 20, headers=source.headers)
        client = source.client_factory(t, plain)
        assert isinstance(client, OAuth2Client)
        specs = source.jobs(t, client)
        assert [s.endpoint for s in specs] == ["channels", "settings"]
        assert all(s.subject == {} for s in specs)
        assert source.subject_labels == ()
        assert source.headers == {"Accept": "application/json"}
        assert alvaria.TOKENS.get("alvaria") is client.tokens
        samples = list(alvaria.scrape_samples())
        assert (alvaria.TOKEN_FAILURES, 'target="alvaria"', 0.0) in samples
    finally:
        await http.close()


def test_families_say_where_values_come_from() -> None:
    source = SOURCES["alvaria_context_cookies"]
    names = {f.name: f for f in source.families}
    assert set(names) == {alvaria.ITEMS, alvaria.EXPIRED, alvaria.STALE, alvaria.TOKEN_FAILURES}
    assert names[alvaria.TOKEN_FAILURES].type == "counter"
    for family in source.families:
        assert "ccwatch's last" in family.help
        assert not {"customer", "service", "type"} & set(family.labels)
