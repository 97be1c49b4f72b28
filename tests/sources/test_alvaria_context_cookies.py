"""Alvaria Context Cookies: config, parsers on the spec's samples verbatim, and jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from ccwatch.errors import ConfigError, ParseFailure, PollError
from ccwatch.http import HttpClient
from ccwatch.oauth2 import OAuth2Client, parse_token_response
from ccwatch.sources import SOURCES, parse_config
from ccwatch.sources import alvaria_context_cookies as alvaria
from ccwatch.sources.base import Reading, Sample
from tests.sources.conftest import Answer, Server, state_of

DAY = 86400.0
ITEMS = alvaria.ITEMS
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
        (alvaria.ITEMS, ("settings",), 1.0),
        (alvaria.EXPIRED, (), 1.0),
        (alvaria.STALE, (), 1.0),
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
    assert list(reading.samples()) == [(alvaria.ITEMS, (collection,), 1.0)]
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
        state = state_of(t)
        assert isinstance(state, alvaria.TokenState)
        client = source.client_factory(t, plain, state)
        assert isinstance(client, OAuth2Client)
        specs = source.jobs(t, client, state)
        assert [s.endpoint for s in specs] == ["channels", "settings"]
        assert all(s.subject == {} for s in specs)
        assert source.subject_labels == ()
        assert source.headers == {"Accept": "application/json"}
        assert client.tokens is state.tokens  # the daemon's state holds the token cache
        assert list(state.samples()) == [(alvaria.TOKEN_FAILURES, (), 0.0)]
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


# --------------------------------------------------------------------------- every state


@pytest.mark.parametrize(
    ("reading", "samples"),
    [
        *[
            (alvaria.CollectionReading(c, 3), [(alvaria.ITEMS, (c,), 3.0)])
            for c in alvaria.COLLECTIONS
        ],
        (alvaria.CollectionReading("channels", 0), [(alvaria.ITEMS, ("channels",), 0.0)]),
        (
            alvaria.SettingsReading(0, 0, 0),
            [(ITEMS, ("settings",), 0.0), (alvaria.EXPIRED, (), 0.0), (alvaria.STALE, (), 0.0)],
        ),
        (
            alvaria.SettingsReading(9, 2, 5),
            [(ITEMS, ("settings",), 9.0), (alvaria.EXPIRED, (), 2.0), (alvaria.STALE, (), 5.0)],
        ),
    ],
)  # fmt: skip
def test_every_reading_pins_its_samples(reading: Reading, samples: list[Sample]) -> None:
    assert list(reading.samples()) == samples
    assert all(isinstance(value, float) for _, _, value in reading.samples())
    assert reading.watched() == {}


def test_expiry_and_staleness_are_strict_comparisons(fixtures: Path) -> None:
    body = sample(fixtures, "settings")
    # expiresOnTime == now: not expired yet
    assert parse_settings_at(body, SAMPLE_TIME) == alvaria.SettingsReading(1, 0, 0)
    # last modified exactly stale_after ago: not stale yet
    assert parse_settings_at(body, SAMPLE_TIME + 30 * DAY) == alvaria.SettingsReading(1, 1, 0)
    assert parse_settings_at(body, SAMPLE_TIME + 30 * DAY + 0.001) == (
        alvaria.SettingsReading(1, 1, 1)
    )


def test_settings_are_counted_one_by_one() -> None:
    now = datetime(2024, 1, 31, tzinfo=UTC).timestamp()
    old, new = "2023-01-01T00:00:00Z", "2024-01-30T00:00:00Z"
    settings = [
        {"expiresOnTime": old, "lastModifiedTime": old},
        {"expiresOnTime": old, "lastModifiedTime": new, "creationTime": old},
        {"expiresOnTime": old, "creationTime": old},
        {"expiresOnTime": "2024-02-01T00:00:00Z", "lastModifiedTime": old},
        {"expiresOnTime": None, "lastModifiedTime": None, "creationTime": None},
        {},
    ]
    body = orjson.dumps({"totalItems": 6, "settings": settings})
    reading = alvaria.parse_settings(body, now=now, stale_after=7 * DAY)
    assert reading == alvaria.SettingsReading(total_items=6, expired=3, stale=3)


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone five and a half hours east of UTC."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east")
def test_naive_times_are_utc_whatever_the_local_zone() -> None:
    assert alvaria.parse_time("2017-05-24T13:35:28", "t") == SAMPLE_TIME
    assert alvaria.parse_time(" 2017-05-24T15:35:28+02:00 ", "t") == SAMPLE_TIME
    assert alvaria.parse_time("2017-05-24T13:35:28.000Z", "t") == SAMPLE_TIME


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("true", "settings: totalItems: expected a non-negative integer, got True"),
        ("1.5", "settings: totalItems: expected a non-negative integer, got 1.5"),
        ("null", "settings: totalItems: expected a non-negative integer, got None"),
        ("[1]", "settings: totalItems: expected a non-negative integer, got list"),
        ("-1", "settings: totalItems: expected a non-negative integer, got -1"),
        ('"-1"', "settings: totalItems: expected a non-negative integer, got '-1'"),
    ],
)
def test_total_items_messages(value: str, message: str) -> None:
    body = f'{{"totalItems": {value}, "settings": []}}'.encode()
    with pytest.raises(ParseFailure) as info:
        alvaria.parse_settings(body, now=SAMPLE_TIME, stale_after=DAY)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "total"),
    [('"00000000000000000004"', 4), ('"\\t5\\n"', 5), ("0", 0), ('"-0"', 0)],
)
def test_total_items_read_as_plain_decimals(value: str, total: int) -> None:
    body = f'{{"totalItems": {value}, "channels": []}}'.encode()
    assert alvaria.parse_collection(body, "channels").total_items == total


@pytest.mark.parametrize("value", ['"10000000000000000000"', '"\\u00a04"', '"4\\u2003"', '""'])
def test_total_items_beyond_the_rule(value: str) -> None:
    body = f'{{"totalItems": {value}, "channels": []}}'.encode()
    with pytest.raises(ParseFailure, match="channels: totalItems: expected"):
        alvaria.parse_collection(body, "channels")


@pytest.mark.parametrize("collection", alvaria.COLLECTIONS)
def test_each_collection_checks_its_own_kind(collection: str) -> None:
    assert (
        alvaria.KINDS[collection]
        == "cxp#contextCookies"
        + {
            "settings": "SettingCollection",
            "customers": "CustomerCollection",
            "services": "ServiceCollection",
            "channels": "ChannelCollection",
        }[collection]
    )
    own = orjson.dumps({"kind": alvaria.KINDS[collection], "totalItems": 0})
    assert alvaria.parse_collection(own, collection).total_items == 0
    for other in set(alvaria.COLLECTIONS) - {collection}:
        body = orjson.dumps({"kind": alvaria.KINDS[other], "totalItems": 0})
        with pytest.raises(ParseFailure, match=f"^{collection}: unexpected kind"):
            alvaria.parse_collection(body, collection)


@pytest.mark.parametrize("value", ["[3600]", "{}", "true", "null", '"-5"', "0"])
def test_token_expires_in_of_no_positive_number(value: str) -> None:
    body = f'{{"access_token": "t", "expires_in": {value}}}'.encode()
    if value == "null":  # no lifetime: kept until the API rejects it
        assert parse_token_response(body, now=0.0).renew_at is None
        return
    with pytest.raises(ValueError, match="expires_in is not a positive number"):
        parse_token_response(body, now=0.0)


def test_token_expires_in_at_the_limit() -> None:
    body = f'{{"access_token": "t", "expires_in": {2**53}}}'.encode()
    assert parse_token_response(body, now=0.0).renew_at == 2**53 - 60.0


# --------------------------------------------------------------------------- state and polls

JSON = "application/json"


def token(value: str = "tok-1") -> Answer:
    return Answer(body=orjson.dumps({"access_token": value, "expires_in": 3600}))


def polled_config(server: Server, **overrides: Any) -> Any:
    overrides.setdefault("url", server.url)
    data = target(**overrides)
    data["oauth2"] = {**data["oauth2"], "token_url": server.url + "/token"}
    return parse_config({"targets": [data]})


def test_a_new_token_state_has_no_failures() -> None:
    t = config_of()
    state = alvaria.TokenState(t)
    assert state.tokens.config == t.oauth2
    assert state.tokens.failures == 0
    assert list(state.samples()) == [(alvaria.TOKEN_FAILURES, (), 0.0)]


async def test_polls_carry_the_token_and_the_api_key(server: Server) -> None:
    cfg = polled_config(server, org_id="org/with space", collections=["customers", "settings"])
    t = cfg.targets[0]
    state = state_of(t)
    assert isinstance(state, alvaria.TokenState)
    specs = SOURCES["alvaria_context_cookies"].jobs(t, server.client(t, cfg, state), state)
    assert [(s.endpoint, dict(s.subject)) for s in specs] == [("customers", {}), ("settings", {})]
    now = time.time()
    recent = datetime.fromtimestamp(now - DAY, UTC).isoformat()
    old = datetime.fromtimestamp(now - 40 * DAY, UTC).isoformat()
    settings = {
        "kind": alvaria.KINDS["settings"],
        "settings": [
            {"lastModifiedTime": old, "expiresOnTime": recent},
            {"lastModifiedTime": recent, "expiresOnTime": "2999-01-01T00:00:00Z"},
        ],
        "totalItems": "2",
    }
    server.answer(
        token(),
        Answer(body=b'{"totalItems": "3", "customers": [{}, {}, {}]}'),
        Answer(body=orjson.dumps(settings)),
    )
    assert await specs[0].poll() == alvaria.CollectionReading("customers", 3)
    assert await specs[1].poll() == alvaria.SettingsReading(2, 1, 1)  # stale_after: 30 days
    token_request, *polls = server.requests
    assert (token_request.method, token_request.path) == ("POST", "/token")
    assert token_request.form is not None
    assert token_request.form["grant_type"] == "client_credentials"
    base = "/via/v2/organizations/org%2Fwith%20space/customerexperience/contextCookies"
    assert [(r.method, r.raw_path) for r in polls] == [
        ("GET", f"{base}/customers"),
        ("GET", f"{base}/settings"),
    ]
    for request in polls:
        assert request.headers["Authorization"] == "Bearer tok-1"
        assert request.headers["x-api-key"] == "the-api-key"
        assert request.headers["Accept"] == JSON
    assert list(state.samples()) == [(alvaria.TOKEN_FAILURES, (), 0.0)]


async def test_stale_after_is_the_targets(server: Server) -> None:
    cfg = polled_config(server, collections=["settings"], stale_after="1h")
    t = cfg.targets[0]
    state = alvaria.TokenState(t)
    (spec,) = SOURCES["alvaria_context_cookies"].jobs(t, server.client(t, cfg, state), state)
    two_hours_ago = datetime.fromtimestamp(time.time() - 7200, UTC).isoformat()
    body = {"totalItems": 1, "settings": [{"creationTime": two_hours_ago}]}
    server.answer(token(), Answer(body=orjson.dumps(body)))
    assert await spec.poll() == alvaria.SettingsReading(1, 0, 1)


@pytest.mark.parametrize("collection", alvaria.COLLECTIONS)
async def test_each_collection_is_read_as_itself(
    fixtures: Path, server: Server, collection: str
) -> None:
    cfg = polled_config(server, collections=[collection], url=server.url + "/cx%7Eapi")
    t = cfg.targets[0]
    state = alvaria.TokenState(t)
    (spec,) = SOURCES["alvaria_context_cookies"].jobs(t, server.client(t, cfg, state), state)
    server.answer(token(), Answer(body=sample(fixtures, collection)))
    reading = await spec.poll()
    if collection == "settings":  # the sample setting expired and went stale long ago
        assert reading == alvaria.SettingsReading(1, 1, 1)
    else:
        assert reading == alvaria.CollectionReading(collection, 1)
    assert server.requests[1].raw_path == (
        f"/cx%7Eapi/via/v2/organizations/orgId/customerexperience/contextCookies/{collection}"
    )
    # JSON answers only
    server.answer(Answer(body=sample(fixtures, collection), content_type="text/plain"))
    with pytest.raises(ParseFailure, match="unexpected content type 'text/plain'"):
        await spec.poll()


async def test_failed_token_requests_are_counted_in_the_state(server: Server) -> None:
    cfg = polled_config(server, collections=["channels"])
    t = cfg.targets[0]
    state = alvaria.TokenState(t)
    (spec,) = SOURCES["alvaria_context_cookies"].jobs(t, server.client(t, cfg, state), state)
    server.answer(Answer(500, b"down", "text/plain"), Answer(401, b"no", "text/plain"))
    for _ in range(2):
        with pytest.raises(PollError) as info:
            await spec.poll()
        assert info.value.reason == "auth"
        assert info.value.detail.startswith("token request failed")
    assert [r.path for r in server.requests] == ["/token", "/token"]
    assert list(state.samples()) == [(alvaria.TOKEN_FAILURES, (), 2.0)]
    # a reload keeps the counter and takes the new credentials
    new_oauth2 = {**target()["oauth2"], "token_url": server.url + "/token", "client_id": "other"}
    new = parse_config({"targets": [{**target(url=server.url), "oauth2": new_oauth2}]})
    t2 = new.targets[0]
    assert isinstance(t2, alvaria.AlvariaContextCookiesTarget)
    state.reconfigure(t2)
    assert state.tokens.config == t2.oauth2
    assert state.tokens.config.client_id == "other"
    assert list(state.samples()) == [(alvaria.TOKEN_FAILURES, (), 2.0)]


def test_the_settings_collection_has_its_own_larger_cap() -> None:
    http = HttpClient()
    cfg = config_of()
    client = http.for_target(cfg, max_response_size=1024 * 1024)
    caps = {
        spec.endpoint: spec.poll.args[0].max_response_size  # type: ignore[attr-defined]
        for spec in alvaria.jobs(cfg, client, alvaria.TokenState(cfg))
    }
    assert caps == {
        "settings": 16 * 1024 * 1024,
        "customers": 1024 * 1024,
        "services": 1024 * 1024,
        "channels": 1024 * 1024,
    }
    # configurable, and never below the target's own cap
    small = config_of(settings_max_response_size="512KiB")
    client = http.for_target(small, max_response_size=1024 * 1024)
    (settings, *_) = alvaria.jobs(small, client, alvaria.TokenState(small))
    assert settings.poll.args[0].max_response_size == 1024 * 1024  # type: ignore[attr-defined]
