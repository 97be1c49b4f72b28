"""Alvaria Cloud CX Context Cookies REST API v2 and its OAuth2 token service.

* ``POST /tokenservice/oauth2/access_token``: the client credentials grant. The client
  authenticates in the form (``client_id``, ``client_secret``) or with HTTP Basic; a wrong
  client gets 401 ``{"error": "invalid_client"}``, another grant 400
  ``unsupported_grant_type``, an unknown scope 400 ``invalid_scope``. Tokens live
  ``token_ttl`` seconds (``expires_in``).
* ``GET /via/v2/organizations/{orgId}/customerexperience/contextCookies/{collection}`` for
  ``settings``, ``customers``, ``services`` and ``channels``: a wrong or missing
  ``x-api-key`` gets 403, a missing, unknown or expired bearer token 401 (no body, as
  documented), an unknown organization 404, an ``Accept`` without JSON 406. ``totalItems``
  is a string, as in the spec's examples (``total_items_as: int`` makes it an integer).
* ``POST`` and ``DELETE`` of ``.../contextCookies/settings`` answer 204 and change nothing;
  they are counted as ``writes`` (ccwatch must never make one).

Each organization holds settings (customer, key, content, channel, service, expiry,
creation and modification times); customers, services and channels are the distinct
values of its settings. Every ``tick`` seconds settings are added, modified and expired
ones cleaned out, unless the organization was frozen through the control API.

Control routes:

* ``GET /-/sim/alvaria/stats``: token requests, tokens issued, API requests by
  collection, 401s, 403s, writes.
* ``GET /-/sim/alvaria/requests``: the last answers to the token service and the API
  (``time`` as Unix time, ``method``, ``path``, ``status``), including fault answers.
* ``GET /-/sim/alvaria/tokens``: the tokens currently valid.
  ``DELETE /-/sim/alvaria/tokens``: revoke them all (the next API request gets a 401).
* ``PUT /-/sim/alvaria/config``: ``{"token_ttl": seconds, "total_items_as": "string" |
  "int", "client_id": ..., "client_secret": ..., "api_key": ...}`` (any subset).
* ``PUT /-/sim/alvaria/orgs/{orgId}/settings`` ``{"settings": [...]}``: replace the
  organization's settings (times as ISO 8601 strings or Unix numbers) and freeze it;
  ``DELETE /-/sim/alvaria/orgs/{orgId}/settings/freeze`` lets it move again.
"""

from __future__ import annotations

import base64
import binascii
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from .common import CONTROL_PREFIX, add_ticker, json_body, json_error

__all__ = [
    "ALVARIA_KEY",
    "API_PREFIX",
    "COLLECTIONS",
    "DEFAULT_API_KEY",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "NAME",
    "OPTIONS",
    "TOKEN_PATH",
    "AlvariaModel",
    "setup",
    "snapshot",
]

NAME = "alvaria"
TOKEN_PATH: Final = "/tokenservice/oauth2/access_token"  # noqa: S105 - a path
API_PREFIX: Final = "/via/v2/organizations"
API_PATH: Final = API_PREFIX + "/{org}/customerexperience/contextCookies/{collection}"
COLLECTIONS: Final = ("settings", "customers", "services", "channels")
KINDS: Final = {
    "settings": "cxp#contextCookiesSettingCollection",
    "customers": "cxp#contextCookiesCustomerCollection",
    "services": "cxp#contextCookiesServiceCollection",
    "channels": "cxp#contextCookiesChannelCollection",
}
SCOPES: Final = frozenset({"customerexperienceapi", "customerexperienceapi.contextcookies"})
DEFAULT_ORGS: Final = ("orgId",)
DEFAULT_CLIENT_ID: Final = "ccwatch-demo"
DEFAULT_CLIENT_SECRET: Final = "demo-client-secret"  # noqa: S105 - the simulator's own
DEFAULT_API_KEY: Final = "demo-api-key"
DEFAULT_TOKEN_TTL: Final = 3600
DEFAULT_SETTINGS: Final = 40
MAX_SETTINGS: Final = 5000
MAX_LOG: Final = 1000
DAY: Final = 86400.0
_CONTROL: Final = f"{CONTROL_PREFIX}/{NAME}"
_CHANNELS: Final = ("all", "voice", "chat", "email", "sms")
_SERVICES: Final = ("sales", "support", "billing", "")
_KEYS: Final = ("lastAgent", "language", "lastIntent", "ticket", "segment")


def iso(ts: float) -> str:
    """Unix time as the API writes it: ``2017-05-24T13:35:28.000Z``."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _to_time(value: object, name: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an ISO 8601 string or a Unix time")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name}: invalid ISO 8601 date-time {value!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    raise ValueError(f"{name} must be an ISO 8601 string or a Unix time")


@dataclass(slots=True)
class Setting:
    customer_id: str
    key: str
    content: str
    channel: str
    service: str
    expires: float | None
    created: float
    modified: float

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "customerId": self.customer_id,
            "key": self.key,
            "content": self.content,
            "channel": self.channel,
            "service": self.service,
        }
        if self.expires is not None:
            out["expiresOnTime"] = iso(self.expires)
        out["creationTime"] = iso(self.created)
        out["lastModifiedTime"] = iso(self.modified)
        return out

    @classmethod
    def from_json(cls, data: object, now: float) -> Setting:
        if not isinstance(data, dict):
            raise ValueError("each setting must be a JSON object")
        created = _to_time(data.get("creationTime", now), "creationTime")
        expires = data.get("expiresOnTime")
        return cls(
            customer_id=str(data.get("customerId", "customer1")),
            key=str(data.get("key", "key1")),
            content=str(data.get("content", "")),
            channel=str(data.get("channel", "all")),
            service=str(data.get("service", "")),
            expires=None if expires is None else _to_time(expires, "expiresOnTime"),
            created=created,
            modified=_to_time(data.get("lastModifiedTime", created), "lastModifiedTime"),
        )


@dataclass(slots=True)
class _Org:
    id: str
    settings: list[Setting]
    frozen: bool = False


class AlvariaModel:
    """Organizations, their settings, issued tokens and request counters."""

    def __init__(
        self,
        orgs: tuple[str, ...],
        rng: random.Random,
        *,
        client_id: str,
        client_secret: str,
        api_key: str,
        token_ttl: float,
        settings: int,
    ) -> None:
        self.rng = rng
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_key = api_key
        self.token_ttl = token_ttl
        self.total_items_as = "string"
        self.tokens: dict[str, float] = {}  # token -> time.monotonic() of expiry
        self.stats: Counter[str] = Counter()
        self.log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self.ticks = 0
        now = time.time()
        self.orgs = {
            org: _Org(org, [self._new_setting(now, imported=True) for _ in range(settings)])
            for org in orgs
        }

    # ---- data

    def _new_setting(self, now: float, *, imported: bool = False) -> Setting:
        rng = self.rng
        created = now - rng.uniform(0, 90 * DAY) if imported else now
        modified = rng.uniform(created, now) if imported else now
        # most settings expire in the future; a few have already expired
        expires = modified + rng.uniform(1 * DAY, 60 * DAY) if rng.random() < 0.9 else None
        return Setting(
            customer_id=f"customer{rng.randint(1, 25)}",
            key=rng.choice(_KEYS),
            content=f"content{rng.randint(1, 999)}",
            channel=rng.choice(_CHANNELS),
            service=rng.choice(_SERVICES),
            expires=expires,
            created=created,
            modified=modified,
        )

    async def step(self) -> None:
        """One tick: new settings, modified ones, and a cleanup of expired ones."""
        self.ticks += 1
        rng = self.rng
        now = time.time()
        for org in self.orgs.values():
            if org.frozen:
                continue
            for _ in range(rng.randint(0, 3)):
                if len(org.settings) < MAX_SETTINGS:
                    # now and then a CRM import brings in old settings
                    org.settings.append(self._new_setting(now, imported=rng.random() < 0.3))
            if rng.random() < 0.5 and org.settings:  # a customer came back
                setting = rng.choice(org.settings)
                setting.modified = now
                setting.expires = now + rng.uniform(1 * DAY, 30 * DAY)
            if rng.random() < 0.2:  # the scheduled cleanup ran
                expired = [s for s in org.settings if s.expires is not None and s.expires < now]
                for setting in expired[: rng.randint(1, 5)]:
                    org.settings.remove(setting)

    def collection(self, org: _Org, collection: str) -> dict[str, Any]:
        items: list[dict[str, Any]]
        if collection == "settings":
            items = [s.to_json() for s in org.settings]
        else:
            attr = {"customers": "customer_id", "services": "service", "channels": "channel"}
            values = sorted({getattr(s, attr[collection]) for s in org.settings})
            items = [{"id": v} for v in values]
        total: int | str = len(items) if self.total_items_as == "int" else str(len(items))
        return {"kind": KINDS[collection], collection: items, "totalItems": total}

    # ---- tokens

    def issue(self) -> str:
        now = time.monotonic()
        for token, expiry in list(self.tokens.items()):
            if expiry <= now:
                del self.tokens[token]
        token = secrets.token_urlsafe(24)
        self.tokens[token] = now + self.token_ttl
        self.stats["tokens_issued"] += 1
        return token

    def valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        expiry = self.tokens.get(authorization[7:].strip())
        return expiry is not None and time.monotonic() < expiry

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        return {
            "orgs": {
                org.id: {
                    "settings": len(org.settings),
                    "expired": sum(
                        1 for s in org.settings if s.expires is not None and s.expires < now
                    ),
                    "frozen": org.frozen,
                }
                for org in self.orgs.values()
            },
            "stats": dict(self.stats),
            "token_ttl": self.token_ttl,
            "total_items_as": self.total_items_as,
        }


ALVARIA_KEY: Final = web.AppKey("ccwatch_sim_alvaria", AlvariaModel)

# --------------------------------------------------------------------------- token service


def _oauth_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _token(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    model.stats["token_requests"] += 1
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type")
    creds = _basic(request.headers.get("Authorization"))
    client_id, client_secret = creds or (form.get("client_id"), form.get("client_secret"))
    if client_id != model.client_id or client_secret != model.client_secret:
        model.stats["token_rejections"] += 1
        return _oauth_error(401, "invalid_client")
    scope = form.get("scope")
    scopes = str(scope).split() if scope else []
    if not set(scopes) <= SCOPES:
        return _oauth_error(400, "invalid_scope")
    return web.json_response(
        {
            "access_token": model.issue(),
            "token_type": "Bearer",
            "expires_in": model.token_ttl,
            "scope": " ".join(scopes) or " ".join(sorted(SCOPES)),
        }
    )


# --------------------------------------------------------------------------- API


def _error(status: int, message: str) -> web.Response:
    body = {"code": str(status), "message": message, "errors": []}
    return web.json_response(body, status=status)


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return any(t in ("*/*", "application/*", "application/json", "application/xml") for t in types)


def _check(request: web.Request, model: AlvariaModel) -> web.Response | None:
    """403 for a wrong API key, 401 for a wrong token, 406 for an Accept without JSON."""
    if request.headers.get("x-api-key") != model.api_key:
        model.stats["forbidden"] += 1
        return web.json_response({"message": "Forbidden"}, status=403)
    if not model.valid(request.headers.get("Authorization")):
        model.stats["unauthorized"] += 1
        return web.Response(status=401)
    if not _accepts_json(request.headers.get("Accept")):
        return _error(406, "An output format different from XML and JSON was requested")
    return None


async def _get_collection(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    collection = request.match_info["collection"]
    model.stats[f"api_{collection}"] += 1
    refused = _check(request, model)
    if refused is not None:
        return refused
    org = model.orgs.get(request.match_info["org"])
    if org is None:
        return _error(404, "Organization not found")
    return web.Response(
        body=orjson.dumps(model.collection(org, collection)), content_type="application/json"
    )


async def _write_settings(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    model.stats["writes"] += 1
    refused = _check(request, model)
    return refused if refused is not None else web.Response(status=204)


async def _log_response(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith((API_PREFIX, TOKEN_PATH)):
        request.app[ALVARIA_KEY].log.append(
            {
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                "status": response.status,
            }
        )


# --------------------------------------------------------------------------- control


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[ALVARIA_KEY].stats))


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[ALVARIA_KEY].log))


async def _get_tokens(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    now = time.monotonic()
    return web.json_response(sorted(t for t, expiry in model.tokens.items() if expiry > now))


async def _revoke_tokens(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    revoked = len(model.tokens)
    model.tokens.clear()
    return web.json_response({"revoked": revoked})


_STRING_OPTIONS: Final = ("client_id", "client_secret", "api_key")


async def _put_config(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    data = await json_body(request)
    unknown = sorted(set(data) - {"token_ttl", "total_items_as", *_STRING_OPTIONS})
    if unknown:
        return json_error(400, f"unknown fields {unknown}")
    ttl = data.get("token_ttl", model.token_ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        return json_error(400, "token_ttl must be a positive number")
    total_items_as = data.get("total_items_as", model.total_items_as)
    if total_items_as not in ("string", "int"):
        return json_error(400, "total_items_as must be string or int")
    for name in _STRING_OPTIONS:
        if name in data and not isinstance(data[name], str):
            return json_error(400, f"{name} must be a string")
    model.token_ttl = ttl
    model.total_items_as = total_items_as
    for name in _STRING_OPTIONS:
        if name in data:
            setattr(model, name, data[name])
    return web.json_response(model.snapshot())


async def _put_settings(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    org = model.orgs.get(request.match_info["org"])
    if org is None:
        return json_error(404, "no such organization")
    data = await json_body(request)
    items = data.get("settings")
    if not isinstance(items, list):
        return json_error(400, "settings must be a list")
    now = time.time()
    try:
        settings = [Setting.from_json(item, now) for item in items]
    except ValueError as exc:
        return json_error(400, str(exc))
    org.settings = settings
    org.frozen = True
    return web.json_response(model.snapshot()["orgs"][org.id])


async def _unfreeze(request: web.Request) -> web.Response:
    model = request.app[ALVARIA_KEY]
    org = model.orgs.get(request.match_info["org"])
    if org is None:
        return json_error(404, "no such organization")
    org.frozen = False
    return web.json_response(model.snapshot()["orgs"][org.id])


# --------------------------------------------------------------------------- vendor API

#: The options ``build_app`` takes for this vendor, as ``alvaria_<option>``.
OPTIONS: tuple[str, ...] = (
    "orgs",
    "client_id",
    "client_secret",
    "api_key",
    "token_ttl",
    "settings",
)


def setup(
    app: web.Application,
    *,
    tick: float,
    rng: random.Random,
    options: Mapping[str, Any],
) -> None:
    """Add the Alvaria routes. Options: ``orgs`` (organization ids), ``client_id``,
    ``client_secret``, ``api_key``, ``token_ttl`` (seconds), ``settings`` (initial count
    per organization)."""
    orgs = tuple(options.get("orgs", DEFAULT_ORGS))
    if not orgs or not all(isinstance(o, str) and o for o in orgs):
        raise TypeError("Alvaria organization ids must be non-empty strings")
    model = AlvariaModel(
        orgs,
        rng,
        client_id=str(options.get("client_id", DEFAULT_CLIENT_ID)),
        client_secret=str(options.get("client_secret", DEFAULT_CLIENT_SECRET)),
        api_key=str(options.get("api_key", DEFAULT_API_KEY)),
        token_ttl=float(options.get("token_ttl", DEFAULT_TOKEN_TTL)),
        settings=int(options.get("settings", DEFAULT_SETTINGS)),
    )
    app[ALVARIA_KEY] = model
    app.on_response_prepare.append(_log_response)
    app.router.add_post(TOKEN_PATH, _token)
    any_collection = "{collection:" + "|".join(COLLECTIONS) + "}"
    app.router.add_get(API_PATH.format(org="{org}", collection=any_collection), _get_collection)
    settings_path = API_PATH.format(org="{org}", collection="settings")
    app.router.add_post(settings_path, _write_settings)
    app.router.add_delete(settings_path, _write_settings)
    app.router.add_get(f"{_CONTROL}/stats", _get_stats)
    app.router.add_get(f"{_CONTROL}/requests", _get_requests)
    app.router.add_get(f"{_CONTROL}/tokens", _get_tokens)
    app.router.add_delete(f"{_CONTROL}/tokens", _revoke_tokens)
    app.router.add_put(f"{_CONTROL}/config", _put_config)
    app.router.add_put(f"{_CONTROL}/orgs/{{org}}/settings", _put_settings)
    app.router.add_delete(f"{_CONTROL}/orgs/{{org}}/settings/freeze", _unfreeze)
    add_ticker(app, NAME, tick, model.step)


def snapshot(app: web.Application) -> dict[str, Any]:
    return app[ALVARIA_KEY].snapshot()
