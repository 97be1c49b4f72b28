"""Cisco Enterprise Chat and Email (ECE) 12.5 chat entry points.

Serves ``GET /system/egain/chat/entrypoint/{endpoint}/{id}`` for the five endpoints of the
ECE chat web services guide (sections 9-13), with the documented XML byte for byte,
including its quirks: the unquoted ``responseType=0`` attribute of ``checkEligibility`` and
the ``urn:iETF:...`` namespace of the ``allowed="true"`` ``chatAllowed`` sample.

Each entry point has an :class:`EntryPointState`; a background task random-walks all of
them every ``tick`` seconds (unless frozen through the control API) and the five bodies of
an entry point are rendered to bytes whenever its state changes, so the GET handlers are
two dictionary lookups.

Control routes:

* ``GET /-/sim/ece/entry_points/{id}``: the state of one entry point.
* ``PUT /-/sim/ece/entry_points/{id}``: apply a partial state (JSON object of
  :class:`EntryPointState` fields) and freeze the entry point.
* ``DELETE /-/sim/ece/entry_points/{id}/freeze``: let the random walk move it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from . import faults
from .common import CONTROL_PREFIX, add_ticker, json_error

__all__ = [
    "BASE_PATH",
    "DEFAULT_ENTRY_POINTS",
    "ECE_KEY",
    "ENDPOINTS",
    "NAME",
    "OPTIONS",
    "PREFIX",
    "EceModel",
    "EntryPointState",
    "setup",
    "snapshot",
]

NAME = "ece"
#: The options ``build_app`` takes for this vendor, as ``ece_<option>``.
OPTIONS: tuple[str, ...] = ("entry_points",)
DEFAULT_ENTRY_POINTS: Final = (1000, 1001, 1002, 1003)
#: The daemon is configured with ``http://HOST:PORT/system`` and appends the ECE path.
BASE_PATH: Final = "/system"
PREFIX: Final = f"{BASE_PATH}/egain/chat/entrypoint"
ENDPOINTS: Final = (
    "agentAvailability",
    "capacity",
    "liveSessionStatus",
    "checkEligibility",
    "chatAllowed",
)
CONTENT_TYPE: Final = "application/xml"

# --------------------------------------------------------------------------- XML bodies

_DECL: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_NS: Final = (
    'xmlns:ns2="http://bindings.egain.com/chat" '
    'xmlns:ns4="urn:ietf:params:xml:ns:xmpp-stanzas" '
    'xmlns:ns3="jabber:client" '
    'xmlns:ns5="http://jabber.org/protocol/httpbind"'
)
# the spec's allowed="true" sample spells this namespace URI in another case
_NS_ODD_CASE: Final = _NS.replace("urn:ietf:", "urn:iETF:")

_AVAILABLE: Final = {
    flag: f'{_DECL}<agentAvailability available="{str(flag).lower()}" {_NS}/>'.encode()
    for flag in (True, False)
}
_ELIGIBILITY: Final = {
    # unquoted attribute and " />", exactly like the spec's sample
    rt: f"{_DECL}<checkEligibility {_NS} responseType={rt} />".encode()
    for rt in (0, 1, 2)
}
REASONS: Final = (
    "queue_depth_reached",
    "agent_not_available",
    "service_not_running",
    "invalid_entry_point",
    "entry_point_inactive",
)
_CHAT_ALLOWED: Final[dict[str | None, bytes]] = {
    None: f'{_DECL}<chatAllowed {_NS_ODD_CASE} allowed="true"/>'.encode(),
    **{
        reason: f'{_DECL}<chatAllowed {_NS} allowed="false" reason="{reason}"/>'.encode()
        for reason in REASONS
    },
}
_ERRORS: Final = {  # the spec's wording of each endpoint's 500
    "agentAvailability": "Unable to retrieve agent availability information.",
    "capacity": "Unable to retrieve the information.",
    "liveSessionStatus": "Unable to retrieve the queue depth and wait time.",
    "checkEligibility": "Unable to retrieve the eligibility of chat entry point.",
}
_capacity_cache: dict[int, bytes] = {}


def _capacity_body(count: int) -> bytes:
    body = _capacity_cache.get(count)
    if body is None:
        body = (
            f"{_DECL}<availableSlots {_NS}>\n  <ns2:count>{count}</ns2:count>\n</availableSlots>"
        ).encode()
        if count < 1024:
            _capacity_cache[count] = body
    return body


def _java_double(value: float) -> str:
    """A float the way the server (Java) writes it: ``3.0``, ``12.5``."""
    text = repr(float(value))
    if "e" in text or "inf" in text or "nan" in text:
        text = f"{value:.1f}"
    return text


def _session_body(wait_time: float, queue_depth: int) -> bytes:
    return (
        f"{_DECL}<sessionStatus {_NS}>\n"
        f"  <ns2:waitTime>{_java_double(wait_time)}</ns2:waitTime>\n"
        f"  <ns2:queueDepth>{queue_depth}</ns2:queueDepth>\n"
        "</sessionStatus>"
    ).encode()


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class EntryPointState:
    """What the ECE server knows about one chat entry point."""

    agents_available: int  # agents logged in and available for chat
    slots: int  # free chat capacity of those agents
    queue_depth: int  # chats waiting in the queue
    max_queue_depth: int
    wait_time: float  # estimated wait in seconds
    active: bool = True
    service_running: bool = True  # the agent assignment service

    @property
    def available(self) -> bool:
        return self.agents_available > 0

    @property
    def capacity(self) -> int:
        return self.slots if self.agents_available > 0 else 0

    @property
    def response_type(self) -> int:
        """checkEligibility: 0 accepting, 1 no agent available, 2 max queue depth reached."""
        if self.agents_available <= 0:
            return 1
        if self.queue_depth >= self.max_queue_depth:
            return 2
        return 0

    @property
    def chat_allowed_reason(self) -> str | None:
        """chatAllowed: None when allowed, else the reason."""
        if not self.active:
            return "entry_point_inactive"
        if not self.service_running:
            return "service_not_running"
        if self.agents_available <= 0:
            return "agent_not_available"
        if self.queue_depth >= self.max_queue_depth:
            return "queue_depth_reached"
        return None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


STATE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(EntryPointState))
_INT_FIELDS: Final = frozenset({"agents_available", "slots", "queue_depth", "max_queue_depth"})
_BOOL_FIELDS: Final = frozenset({"active", "service_running"})


def _coerce(name: str, value: object) -> int | float | bool:
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if name in _INT_FIELDS:
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
    elif not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value if name in _INT_FIELDS else float(value)


@dataclass(slots=True)
class _EntryPoint:
    id: int
    key: str  # str(id), the key of the rendered bodies
    state: EntryPointState
    max_agents: int
    chats_per_agent: int
    secs_per_chat: float
    frozen: bool = False
    inactive_ticks: int = 0
    service_down_ticks: int = 0


# random walk tuning (per entry point and tick)
_P_INACTIVE: Final = 0.01
_P_SERVICE_DOWN: Final = 0.004
_P_ALL_LOGOUT: Final = 0.01
_P_LOGOUT: Final = 0.25
_P_LOGIN: Final = 0.30
_STEP_SLICE: Final = 1000  # entry points walked between two yields to the loop


class EceModel:
    """All configured entry points, their evolution and their rendered bodies."""

    def __init__(self, entry_points: Iterable[int], rng: random.Random) -> None:
        self.rng = rng
        self.entry_points: dict[int, _EntryPoint] = {}
        # endpoint -> str(id) -> body; the handlers read these and nothing else
        self.bodies: dict[str, dict[str, bytes]] = {name: {} for name in ENDPOINTS}
        self.ticks = 0
        for ep_id in entry_points:
            self.entry_points[ep_id] = self._new_entry_point(ep_id)
        for ep in self.entry_points.values():
            self.render(ep)

    def _new_entry_point(self, ep_id: int) -> _EntryPoint:
        rng = self.rng
        max_agents = rng.randint(2, 12)
        chats_per_agent = rng.randint(2, 4)
        agents = rng.randint(1, max_agents) if rng.random() < 0.9 else 0
        max_queue_depth = rng.randint(5, 25)
        queue = rng.randint(0, max_queue_depth // 2)
        secs_per_chat = round(rng.uniform(3.0, 45.0), 1)
        ep = _EntryPoint(
            id=ep_id,
            key=str(ep_id),
            state=EntryPointState(
                agents_available=agents,
                slots=rng.randint(0, agents * chats_per_agent),
                queue_depth=queue,
                max_queue_depth=max_queue_depth,
                wait_time=0.0,
            ),
            max_agents=max_agents,
            chats_per_agent=chats_per_agent,
            secs_per_chat=secs_per_chat,
        )
        ep.state.wait_time = self._wait_time(ep)
        return ep

    def _wait_time(self, ep: _EntryPoint) -> float:
        s = ep.state
        if s.queue_depth <= 0:
            return 0.0
        per_agent = ep.secs_per_chat / max(1, s.agents_available)
        jitter = 0.8 + 0.4 * self.rng.random()
        return round(s.queue_depth * per_agent * jitter, 1)

    # ---- rendering

    def render(self, ep: _EntryPoint) -> None:
        s = ep.state
        key = ep.key
        bodies = self.bodies
        bodies["agentAvailability"][key] = _AVAILABLE[s.agents_available > 0]
        bodies["capacity"][key] = _capacity_body(s.capacity)
        bodies["liveSessionStatus"][key] = _session_body(s.wait_time, s.queue_depth)
        bodies["checkEligibility"][key] = _ELIGIBILITY[s.response_type]
        bodies["chatAllowed"][key] = _CHAT_ALLOWED[s.chat_allowed_reason]

    # ---- evolution

    def step(self) -> None:
        """One tick of the random walk for every entry point that is not frozen."""
        self.ticks += 1
        self._step(list(self.entry_points.values()))

    async def astep(self) -> None:
        """:meth:`step` in slices, yielding to the event loop between them so that a
        tick over thousands of entry points does not stall the request handlers."""
        self.ticks += 1
        eps = list(self.entry_points.values())
        for i in range(0, len(eps), _STEP_SLICE):
            if i:
                await asyncio.sleep(0)
            self._step(eps[i : i + _STEP_SLICE])

    def _step(self, eps: Iterable[_EntryPoint]) -> None:
        walk = self._walk
        render = self.render
        for ep in eps:
            if not ep.frozen and walk(ep):
                render(ep)

    def _walk(self, ep: _EntryPoint) -> bool:
        """Move one entry point; True if its state changed."""
        rnd = self.rng.random
        s = ep.state
        before = (
            s.agents_available,
            s.slots,
            s.queue_depth,
            s.wait_time,
            s.active,
            s.service_running,
        )
        # now and then an entry point goes inactive for a few ticks
        if not s.active:
            ep.inactive_ticks -= 1
            if ep.inactive_ticks <= 0:
                s.active = True
        elif rnd() < _P_INACTIVE:
            s.active = False
            ep.inactive_ticks = 2 + int(rnd() * 5)  # 2..6
        # rarer: the agent assignment service stops for a few ticks
        if not s.service_running:
            ep.service_down_ticks -= 1
            if ep.service_down_ticks <= 0:
                s.service_running = True
        elif rnd() < _P_SERVICE_DOWN:
            s.service_running = False
            ep.service_down_ticks = 1 + int(rnd() * 4)  # 1..4
        # agents log in and out (and sometimes everybody leaves at once)
        x = rnd()
        agents = s.agents_available
        if x < _P_ALL_LOGOUT:
            agents = 0
        elif x < _P_ALL_LOGOUT + _P_LOGOUT:
            agents = max(0, agents - 1)
        elif x < _P_ALL_LOGOUT + _P_LOGOUT + _P_LOGIN:
            agents = min(ep.max_agents, agents + 1)
        s.agents_available = agents
        # free capacity moves with the agents' load
        if agents <= 0:
            s.slots = 0
        else:
            capacity = agents * ep.chats_per_agent
            s.slots = min(capacity, max(0, s.slots + int(rnd() * 5) - 2))  # -2..+2
        # the queue grows with new chats and drains while agents have capacity
        queue = s.queue_depth
        arrivals = int(rnd() * 4)  # 0..3
        served = int(rnd() * (min(queue, s.slots + 1) + 1)) if agents > 0 else 0
        s.queue_depth = min(s.max_queue_depth, max(0, queue + arrivals - served))
        # wait time follows queue depth
        s.wait_time = self._wait_time(ep)
        return before != (
            s.agents_available,
            s.slots,
            s.queue_depth,
            s.wait_time,
            s.active,
            s.service_running,
        )

    # ---- control

    def get(self, raw_id: str) -> _EntryPoint | None:
        try:
            return self.entry_points.get(int(raw_id))
        except ValueError:
            return None

    def update(self, ep: _EntryPoint, patch: object) -> None:
        """Apply a partial state, freeze the entry point and re-render it."""
        if not isinstance(patch, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(patch) - set(STATE_FIELDS))
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: {list(STATE_FIELDS)}")
        values = {name: _coerce(name, value) for name, value in patch.items()}
        for name, value in values.items():
            setattr(ep.state, name, value)
        if not ep.state.active:
            ep.inactive_ticks = 0  # back at the first tick after the freeze ends
        if not ep.state.service_running:
            ep.service_down_ticks = 0
        ep.frozen = True
        self.render(ep)

    def describe(self, ep: _EntryPoint) -> dict[str, Any]:
        s = ep.state
        reason = s.chat_allowed_reason
        return {
            **s.to_json(),
            "frozen": ep.frozen,
            "derived": {
                "agent_available": s.available,
                "capacity": s.capacity,
                "response_type": s.response_type,
                "chat_allowed": reason is None,
                "reason": reason,
            },
        }

    def snapshot(self) -> dict[str, Any]:
        return {ep.key: self.describe(ep) for ep in self.entry_points.values()}


ECE_KEY: Final = web.AppKey("ccwatch_sim_ece", EceModel)

# --------------------------------------------------------------------------- ECE routes

_ID_RE: Final = re.compile(r"[+-]?[0-9]{1,18}")


def _constant(status: int, body: bytes, content_type: str) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)

    return handle


def _routes(model: EceModel) -> list[web.RouteDef]:
    routes: list[web.RouteDef] = []
    for endpoint in ENDPOINTS:
        if endpoint == "chatAllowed":
            unknown = _constant(200, _CHAT_ALLOWED["invalid_entry_point"], CONTENT_TYPE)
        else:
            unknown = _constant(500, _ERRORS[endpoint].encode(), "text/plain")
        handler = _handler(model.bodies[endpoint], unknown)
        routes.append(web.get(f"{PREFIX}/{endpoint}/{{id}}", handler))
    return routes


def _handler(table: dict[str, bytes], unknown: Handler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        raw = request.match_info["id"]
        body = table.get(raw)
        if body is None:
            # a long, as the server parses it: "+1000" and "01000" are entry point 1000
            if _ID_RE.fullmatch(raw):
                body = table.get(str(int(raw)))
            if body is None:
                return await unknown(request)
        return web.Response(body=body, content_type=CONTENT_TYPE)

    faults.set_unknown_id_handler(handle, unknown)
    return handle


# --------------------------------------------------------------------------- control routes

_CONTROL: Final = f"{CONTROL_PREFIX}/{NAME}/entry_points"


async def _get_ep(request: web.Request) -> web.Response:
    model = request.app[ECE_KEY]
    ep = model.get(request.match_info["id"])
    if ep is None:
        return json_error(404, "no such entry point")
    return web.json_response(model.describe(ep))


async def _put_ep(request: web.Request) -> web.Response:
    model = request.app[ECE_KEY]
    ep = model.get(request.match_info["id"])
    if ep is None:
        return json_error(404, "no such entry point")
    try:
        patch = await request.json()
    except ValueError:
        return json_error(400, "body must be JSON")
    try:
        model.update(ep, patch)
    except ValueError as exc:
        return json_error(400, str(exc))
    return web.json_response(model.describe(ep))


async def _unfreeze_ep(request: web.Request) -> web.Response:
    model = request.app[ECE_KEY]
    ep = model.get(request.match_info["id"])
    if ep is None:
        return json_error(404, "no such entry point")
    ep.frozen = False
    return web.json_response(model.describe(ep))


# --------------------------------------------------------------------------- vendor API


def setup(
    app: web.Application,
    *,
    tick: float,
    rng: random.Random,
    options: Mapping[str, Any],
) -> None:
    """Add the ECE routes, state and tick task. Option: ``entry_points`` (ints)."""
    entry_points = options.get("entry_points", DEFAULT_ENTRY_POINTS)
    ids: list[int] = []
    for ep_id in entry_points:
        if isinstance(ep_id, bool) or not isinstance(ep_id, int):
            raise TypeError(f"ECE entry point ids must be integers, got {ep_id!r}")
        ids.append(ep_id)
    model = EceModel(ids, rng)
    app[ECE_KEY] = model
    app.router.add_routes(_routes(model))
    app.router.add_get(f"{_CONTROL}/{{id}}", _get_ep)
    app.router.add_put(f"{_CONTROL}/{{id}}", _put_ep)
    app.router.add_delete(f"{_CONTROL}/{{id}}/freeze", _unfreeze_ep)
    add_ticker(app, NAME, tick, model.astep)


def snapshot(app: web.Application) -> dict[str, Any]:
    return app[ECE_KEY].snapshot()
