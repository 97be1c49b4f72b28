"""Cisco Context Service registration, as SocialMiner serves it (spec 000).

Serves ``GET /unifiedconfig/config/contextserviceregistration`` (HTTP basic auth) with
the documented XML, laid out like the spec's sample::

     <contextServiceRegistration>
       <state>registered</state>
       <managementUrl>https://...</managementUrl>
       <refURL>/unifiedconfig/config/contextservice</refURL>
    </contextServiceRegistration>

``managementUrl`` is only there while registered. With a ``callbackUrl`` query parameter
the answer also carries ``registrationUrl`` (not registered) or ``deregistrationUrl``
(registered), as documented. ``PUT`` on the same path (the Update API) is answered and
counted (``updates`` in the state), so tests can check that ccwatch never calls it.
A request without the right credentials gets 401 with ``WWW-Authenticate: Basic``.

The registration flips to ``notRegistered`` now and then and comes back a few ticks
later, unless frozen through the control API.

Control routes:

* ``GET /-/sim/context_service``: the state.
* ``PUT /-/sim/context_service``: apply ``{"state": "...", "management_url": "..."}``
  (either key; any non-empty state string, e.g. ``notRegistered`` or an undocumented
  one) and freeze the registration.
* ``DELETE /-/sim/context_service/freeze``: let it flip again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import random
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import hdrs, web

from .common import CONTROL_PREFIX, add_ticker

__all__ = [
    "CONTEXT_SERVICE_KEY",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "NAME",
    "OPTIONS",
    "PATH",
    "ContextServiceModel",
    "setup",
    "snapshot",
]

NAME = "context_service"
#: The options ``build_app`` takes for this vendor, as ``context_service_<option>``.
OPTIONS: tuple[str, ...] = ("username", "password")
PATH: Final = "/unifiedconfig/config/contextserviceregistration"
CONTENT_TYPE: Final = "application/xml"
DEFAULT_USERNAME: Final = "administrator"
DEFAULT_PASSWORD: Final = "ccwatch-demo"  # noqa: S105 - the simulator's documented login
REGISTERED: Final = "registered"
NOT_REGISTERED: Final = "notRegistered"
REF_URL: Final = "/unifiedconfig/config/contextservice"
_MAX_FIELD: Final = 512

# random walk tuning (per tick)
_P_DEREGISTER: Final = 0.04
_DOWN_TICKS: Final = (2, 6)


def _org_url(rng: random.Random) -> str:
    org = "".join(rng.choice("0123456789abcdef") for _ in range(12))
    return f"https://contextservice.example.com/admin/organizations/{org}"


class ContextServiceModel:
    """The registration of one SocialMiner with Context Service."""

    def __init__(self, rng: random.Random, username: str, password: str) -> None:
        self.rng = rng
        self.username = username
        self.password = password
        self.state = REGISTERED
        self.management_url = _org_url(rng)
        self.frozen = False
        self.ticks = 0
        self.down_ticks = 0
        self.gets = 0
        self.updates = 0
        self.body = b""
        self.render()

    # ---- rendering

    def render_body(self, callback_url: str | None = None) -> bytes:
        lines = [" <contextServiceRegistration>", f"   <state>{escape(self.state)}</state>"]
        registered = self.state == REGISTERED
        if registered:
            lines.append(f"   <managementUrl>{escape(self.management_url)}</managementUrl>")
        if callback_url is not None:
            link = "deregistrationUrl" if registered else "registrationUrl"
            action = "deregister" if registered else "register"
            back = quote(callback_url, safe="")
            url = f"https://contextservice.example.com/{action}?callbackUrl={back}"
            lines.append(f"   <{link}>{escape(url)}</{link}>")
        lines.append(f"   <refURL>{REF_URL}</refURL>")
        lines.append("</contextServiceRegistration>")
        return ("\n".join(lines) + "\n").encode()

    def render(self) -> None:
        self.body = self.render_body()

    # ---- evolution

    def step(self) -> None:
        """One tick: now and then the registration drops, and comes back a few ticks later."""
        self.ticks += 1
        if self.frozen:
            return
        before = self.state
        if self.state == REGISTERED:
            if self.rng.random() < _P_DEREGISTER:
                self.state = NOT_REGISTERED
                self.down_ticks = self.rng.randint(*_DOWN_TICKS)
        else:
            self.down_ticks -= 1
            if self.down_ticks <= 0:
                self.state = REGISTERED
        if self.state != before:
            self.render()

    async def astep(self) -> None:
        self.step()

    # ---- control

    def update(self, patch: object) -> None:
        """Apply ``{"state": ..., "management_url": ...}`` and freeze."""
        if not isinstance(patch, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(patch) - {"state", "management_url"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: ['state', 'management_url']")
        for name in ("state", "management_url"):
            if name in patch:
                value = patch[name]
                if not isinstance(value, str) or not value.strip() or len(value) > _MAX_FIELD:
                    raise ValueError(f"{name} must be a non-empty string")
        if "state" in patch:
            self.state = patch["state"].strip()
            self.down_ticks = 0  # registered again at the first tick after the freeze ends
        if "management_url" in patch:
            self.management_url = patch["management_url"].strip()
        self.frozen = True
        self.render()

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "management_url": self.management_url,
            "frozen": self.frozen,
            "gets": self.gets,
            "updates": self.updates,
        }

    # ---- auth

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        return bool(sep) and (
            hmac.compare_digest(user.encode(), self.username.encode())
            & hmac.compare_digest(password.encode(), self.password.encode())
        )


CONTEXT_SERVICE_KEY: Final = web.AppKey("ccwatch_sim_context_service", ContextServiceModel)


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401 Unauthorized",
        headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="SocialMiner"'},
    )


async def _get_registration(request: web.Request) -> web.StreamResponse:
    model = request.app[CONTEXT_SERVICE_KEY]
    if not model.authorized(request):
        return _unauthorized()
    model.gets += 1
    callback = request.query.get("callbackUrl")
    body = model.body if callback is None else model.render_body(callback)
    return web.Response(body=body, content_type=CONTENT_TYPE)


async def _update_registration(request: web.Request) -> web.StreamResponse:
    """The Update API: answered and counted, so that tests can see it is never called."""
    model = request.app[CONTEXT_SERVICE_KEY]
    if not model.authorized(request):
        return _unauthorized()
    model.updates += 1
    await request.read()
    return web.Response(status=200)


# --------------------------------------------------------------------------- control routes

_CONTROL: Final = f"{CONTROL_PREFIX}/{NAME}"


async def _get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONTEXT_SERVICE_KEY].snapshot())


async def _put_state(request: web.Request) -> web.Response:
    model = request.app[CONTEXT_SERVICE_KEY]
    try:
        patch = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    try:
        model.update(patch)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(model.snapshot())


async def _unfreeze(request: web.Request) -> web.Response:
    model = request.app[CONTEXT_SERVICE_KEY]
    model.frozen = False
    return web.json_response(model.snapshot())


# --------------------------------------------------------------------------- vendor API


def setup(
    app: web.Application,
    *,
    tick: float,
    rng: random.Random,
    options: Mapping[str, Any],
) -> None:
    """Add the Context Service routes, state and tick task.

    Options: ``username`` and ``password`` of the basic auth login (defaults
    :data:`DEFAULT_USERNAME`, :data:`DEFAULT_PASSWORD`).
    """
    username = options.get("username", DEFAULT_USERNAME)
    password = options.get("password", DEFAULT_PASSWORD)
    if not isinstance(username, str) or not isinstance(password, str):
        raise TypeError("Context Service simulator username and password must be strings")
    model = ContextServiceModel(rng, username, password)
    app[CONTEXT_SERVICE_KEY] = model
    app.router.add_get(PATH, _get_registration)
    app.router.add_put(PATH, _update_registration)
    app.router.add_get(_CONTROL, _get_state)
    app.router.add_put(_CONTROL, _put_state)
    app.router.add_delete(f"{_CONTROL}/freeze", _unfreeze)
    add_ticker(app, NAME, tick, model.astep)


def snapshot(app: web.Application) -> dict[str, Any]:
    return app[CONTEXT_SERVICE_KEY].snapshot()
