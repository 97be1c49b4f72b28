"""Alvaria Cloud CX Context Cookies REST API v2 (spec 004): repository size and expiry health.

Four GETs per target, one job each (the job's ``endpoint`` label is the collection)::

    GET {url}/via/v2/organizations/{org_id}/customerexperience/contextCookies/settings
    GET {url}/via/v2/organizations/{org_id}/customerexperience/contextCookies/customers
    GET {url}/via/v2/organizations/{org_id}/customerexperience/contextCookies/services
    GET {url}/via/v2/organizations/{org_id}/customerexperience/contextCookies/channels

each with ``Authorization: Bearer <token>`` (OAuth2 client credentials, see
:mod:`ccwatch.oauth2`) and ``x-api-key``. Every answer is a collection with a
``totalItems`` (a string in the spec's examples, an integer in its schema: both are
read). The settings collection is also counted for expired settings (``expiresOnTime``
in the past) and stale ones (``lastModifiedTime``, else ``creationTime``, older than
``stale_after``), computed locally from the one settings answer rather than with a second
request filtered by ``minimumModificationAge`` (whose unit the spec leaves open).

ccwatch never calls the API's POST or DELETE.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote

import orjson
from pydantic import ByteSize, Field, SecretStr, field_validator, model_validator
from yarl import URL

from ccwatch.config import Duration, OAuth2, TargetConfig, _resolve_secret
from ccwatch.errors import ParseFailure
from ccwatch.http import TargetClient
from ccwatch.numbers import check_json_int, parse_decimal_int, shown
from ccwatch.oauth2 import OAuth2Client, TokenSource
from ccwatch.sources.base import NO_LABELS, Family, JobSpec, Reading, Sample, Source

NAME: Final = "alvaria_context_cookies"
Collection = Literal["settings", "customers", "services", "channels"]
COLLECTIONS: Final[tuple[Collection, ...]] = ("settings", "customers", "services", "channels")
#: The ``kind`` each collection answers with.
KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "settings": "cxp#contextCookiesSettingCollection",
        "customers": "cxp#contextCookiesCustomerCollection",
        "services": "cxp#contextCookiesServiceCollection",
        "channels": "cxp#contextCookiesChannelCollection",
    }
)
PATH: Final = "/via/v2/organizations/{org_id}/customerexperience/contextCookies/{collection}"
JSON_TYPES: Final = ("json",)
DEFAULT_STALE_AFTER: Final = 30 * 86400.0


class AlvariaContextCookiesTarget(TargetConfig):
    """``source: alvaria_context_cookies``: one organization's Context Cookies repository."""

    source: Literal["alvaria_context_cookies"]
    org_id: str = Field(min_length=1, max_length=256)
    oauth2: OAuth2
    api_key: SecretStr | None = None
    api_key_file: str | None = None
    #: A setting not modified for longer than this counts as stale.
    stale_after: Duration = DEFAULT_STALE_AFTER
    #: Which collections to poll; all four by default.
    collections: list[Collection] = Field(default_factory=lambda: list(COLLECTIONS), min_length=1)
    #: The body cap of the settings collection, which the API does not paginate and
    #: whose items carry the cookies' content: large organisations answer megabytes.
    #: (The larger of this and the target's cap applies.) The body is parsed for counts
    #: and expiry dates, then dropped; it is never logged or exported.
    settings_max_response_size: ByteSize = Field(default=ByteSize(16 * 1024 * 1024), gt=0)

    #: A cloud API with rate limits, whose numbers move slowly.
    default_interval: ClassVar[float | None] = 60.0

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return _resolve_secret(data, "api_key")

    @model_validator(mode="after")
    def _check(self) -> AlvariaContextCookiesTarget:
        if self.api_key is None or not self.api_key.get_secret_value():
            raise ValueError("api_key or api_key_file is required")
        if self.basic_auth is not None:
            raise ValueError("basic_auth cannot be used with oauth2")
        return self

    @field_validator("collections")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("duplicate collections")
        return value


# --------------------------------------------------------------------------- readings

ITEMS = "ccwatch_alvaria_context_cookies_items"
EXPIRED = "ccwatch_alvaria_context_cookies_expired_settings"
STALE = "ccwatch_alvaria_context_cookies_stale_settings"
TOKEN_FAILURES = "ccwatch_alvaria_token_failures_total"  # noqa: S105 - a metric name

_NOTHING: Final[Mapping[str, str]] = MappingProxyType({})
_COLLECTION_LABEL: Final[Mapping[str, tuple[str]]] = MappingProxyType(
    {c: (c,) for c in COLLECTIONS}
)


@dataclass(frozen=True, slots=True)
class CollectionReading:
    """``totalItems`` of the customers, services or channels collection."""

    collection: str
    total_items: int

    def samples(self) -> Iterable[Sample]:
        return ((ITEMS, _COLLECTION_LABEL[self.collection], float(self.total_items)),)

    def watched(self) -> Mapping[str, str]:
        return _NOTHING


@dataclass(frozen=True, slots=True)
class SettingsReading:
    """``totalItems`` of the settings collection and its expiry health."""

    total_items: int
    expired: int
    stale: int

    def samples(self) -> Iterable[Sample]:
        return (
            (ITEMS, _COLLECTION_LABEL["settings"], float(self.total_items)),
            (EXPIRED, NO_LABELS, float(self.expired)),
            (STALE, NO_LABELS, float(self.stale)),
        )

    def watched(self) -> Mapping[str, str]:
        return _NOTHING


# --------------------------------------------------------------------------- parsers


def _load_object(body: bytes, collection: str) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseFailure(f"{collection}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParseFailure(f"{collection}: expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind is not None and kind != KINDS[collection]:
        raise ParseFailure(f"{collection}: unexpected kind {str(kind)[:80]!r}")
    return data


def parse_total_items(data: Mapping[str, Any], collection: str) -> int:
    """``totalItems``: an integer, or a string of digits as in the spec's examples.

    Either way a plain ASCII decimal of at most 2**53 (:mod:`ccwatch.numbers`): a string
    such as ``"٤"`` or ``"1_000"``, or a number beyond 2**53 (which orjson reads as a
    64-bit integer, or as a float beyond that), fails the poll as ``parse``.
    """
    if "totalItems" not in data:
        raise ParseFailure(f"{collection}: no totalItems")
    value = data["totalItems"]
    what = f"{collection}: totalItems"
    if isinstance(value, str):
        total = parse_decimal_int(value, what)
    elif isinstance(value, int) and not isinstance(value, bool):
        total = check_json_int(value, what)
    else:
        raise ParseFailure(f"{what}: expected a non-negative integer, got {shown(value)}")
    if total < 0:
        raise ParseFailure(f"{what}: expected a non-negative integer, got {shown(value)}")
    return total


def _items(data: Mapping[str, Any], collection: str, total: int) -> list[Any]:
    items = data.get(collection)
    if items is None:
        if total:
            raise ParseFailure(f"{collection}: no {collection} list but totalItems is {total}")
        return []
    if not isinstance(items, list):
        raise ParseFailure(f"{collection}: {collection} is not a list")
    return items


def parse_collection(body: bytes, collection: str) -> CollectionReading:
    """The customers, services or channels collection (the settings one works too)."""
    data = _load_object(body, collection)
    total = parse_total_items(data, collection)
    _items(data, collection, total)
    return CollectionReading(collection, total)


def parse_time(value: object, name: str) -> float:
    """An ISO 8601 date-time (``2017-05-24T13:35:28.000Z``) as Unix time; naive is UTC."""
    if not isinstance(value, str):
        raise ParseFailure(f"settings: {name} is not a string")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ParseFailure(
            f"settings: {name} is not an ISO 8601 date-time: {value[:40]!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_settings(body: bytes, *, now: float, stale_after: float) -> SettingsReading:
    """The settings collection: ``totalItems``, and how many settings are expired or stale
    at ``now`` (Unix time)."""
    data = _load_object(body, "settings")
    total = parse_total_items(data, "settings")
    expired = stale = 0
    stale_before = now - stale_after
    for i, setting in enumerate(_items(data, "settings", total)):
        if not isinstance(setting, dict):
            raise ParseFailure(f"settings[{i}] is not an object")
        expires = setting.get("expiresOnTime")
        if expires is not None and parse_time(expires, f"[{i}].expiresOnTime") < now:
            expired += 1
        for name in ("lastModifiedTime", "creationTime"):
            modified = setting.get(name)
            if modified is not None:
                if parse_time(modified, f"[{i}].{name}") < stale_before:
                    stale += 1
                break
    return SettingsReading(total, expired, stale)


# --------------------------------------------------------------------------- jobs


class TokenState:
    """A target's OAuth2 token source (its cached token and its failure counter), owned
    by the daemon: it outlives polls and reloads, and goes with the target."""

    __slots__ = ("tokens",)

    def __init__(self, target: AlvariaContextCookiesTarget) -> None:
        self.tokens = TokenSource(target.oauth2)

    def reconfigure(self, target: AlvariaContextCookiesTarget) -> None:
        self.tokens.reconfigure(target.oauth2)

    def samples(self) -> Iterator[Sample]:
        """``ccwatch_alvaria_token_failures_total``."""
        yield TOKEN_FAILURES, NO_LABELS, float(self.tokens.failures)


def _client(
    target: AlvariaContextCookiesTarget, client: TargetClient, state: TokenState
) -> TargetClient:
    return OAuth2Client(client, state.tokens)


def _api_key(target: AlvariaContextCookiesTarget) -> dict[str, str]:
    assert target.api_key is not None  # the config model requires it
    return {"x-api-key": target.api_key.get_secret_value()}


async def _poll(
    client: TargetClient, target: AlvariaContextCookiesTarget, url: URL, collection: str
) -> Reading:
    response = await client.request("GET", url, headers=_api_key(target), content_types=JSON_TYPES)
    if collection == "settings":
        return parse_settings(response.body, now=time.time(), stale_after=target.stale_after)
    return parse_collection(response.body, collection)


def jobs(
    target: AlvariaContextCookiesTarget, client: TargetClient, state: TokenState
) -> list[JobSpec]:
    org = quote(target.org_id, safe="")
    out = []
    settings_cap = max(int(target.settings_max_response_size), client.max_response_size)
    for collection in target.collections:
        url = URL(client.url(PATH.format(org_id=org, collection=collection)), encoded=True)
        own = client.with_cap(settings_cap) if collection == "settings" else client
        out.append(JobSpec(collection, {}, partial(_poll, own, target, url, collection)))
    return out


def _help(what: str, collection: str = "settings") -> str:
    return f"{what} (from ccwatch's last successful {collection} poll)."


SOURCE: Final = Source(
    name=NAME,
    config_model=AlvariaContextCookiesTarget,
    subject_labels=(),
    families=(
        Family(
            ITEMS,
            "gauge",
            "Items in the organization's Context Cookies collection, its totalItems "
            "(from ccwatch's last successful poll of that collection).",
            ("target", "collection"),
        ),
        Family(
            EXPIRED,
            "gauge",
            _help("Context Cookies settings whose expiresOnTime has passed"),
            ("target",),
        ),
        Family(
            STALE,
            "gauge",
            _help("Context Cookies settings not modified for longer than stale_after"),
            ("target",),
        ),
        Family(
            TOKEN_FAILURES,
            "counter",
            "Failed OAuth2 token requests of ccwatch's polls of this target since ccwatch "
            "started (as of ccwatch's last poll).",
            ("target",),
        ),
    ),
    jobs=jobs,
    headers={"Accept": "application/json"},
    client_factory=_client,
    state=TokenState,
)
