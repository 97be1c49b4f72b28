"""Genesys Context Services through GMS: the service queries of spec 002.

Serves, as JSON arrays of Service objects (``Content-Type: application/json``)::

    GET /genesys/1/cs/customers/{customer_id}/services[/active|/completed]
    GET /genesys/1/cs/services/anonymous/{contact_key}[/active|/completed]

with the documented query parameters ``started_from``, ``started_to``,
``completed_from``, ``completed_to`` (ISO 8601; a bad one is a 400),
``service_types=1,3,45``, ``active_states`` and ``completed_states``. A Service looks
like the spec's sample (without its ``//`` documentation comments), its timestamps
written the same way, in UTC without a zone (``2009-05-07T12:05:20.157``)::

    {"customer_id": "ABC1234", "service_id": 4692834, "est_duration": 86400,
     "started": {"timestamp": "...", "service_type": 400},
     "completed": {"timestamp": "..."}}                  <- completed services only

Anonymous services carry ``contact_key`` instead of ``customer_id``. A customer or
contact key the simulator does not know simply has no services (``[]``).

Every ``tick`` seconds, services start and complete at random for every subject that is
not frozen. Only ``/genesys/1/cs/...`` is served here; the GMS service API
(``/genesys/1/service/...``) is another module's.

Control routes (``{kind}`` is ``customers`` or ``contact_keys``):

* ``GET /-/sim/genesys/{kind}/{id}``: one subject's services.
* ``PUT /-/sim/genesys/{kind}/{id}``: replace its services and freeze it (the subject is
  created if needed). Body: ``{"active": [{"service_type": 400, "age": 120}, ...],
  "completed": [{"service_type": 400, "age": 900, "completed_ago": 60}, ...]}``; both
  keys optional, ``age`` (seconds since the start) defaults to 0, ``completed_ago`` to 0.
* ``DELETE /-/sim/genesys/{kind}/{id}/freeze``: let services start and complete again.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from .common import CONTROL_PREFIX, add_ticker, json_error

__all__ = [
    "ANONYMOUS_PREFIX",
    "CUSTOMERS_PREFIX",
    "DEFAULT_CONTACT_KEYS",
    "DEFAULT_CUSTOMER_IDS",
    "GENESYS_KEY",
    "NAME",
    "OPTIONS",
    "SERVICE_TYPES",
    "GenesysModel",
    "Service",
    "Subject",
    "setup",
    "snapshot",
]

NAME = "genesys"
#: The options ``build_app`` takes for this vendor, as ``genesys_<option>``.
OPTIONS: tuple[str, ...] = ("customer_ids", "contact_keys")
CUSTOMERS_PREFIX: Final = "/genesys/1/cs/customers"
ANONYMOUS_PREFIX: Final = "/genesys/1/cs/services/anonymous"
CONTENT_TYPE: Final = "application/json"
DEFAULT_CUSTOMER_IDS: Final = ("ABC1234", "DEF5678", "GHI9012")
DEFAULT_CONTACT_KEYS: Final = ("408-832-7799", "650-555-0123")
#: Service Type business attribute ids the simulated applications use.
SERVICE_TYPES: Final = (400, 401, 402, 403)
FIRST_SERVICE_ID: Final = 4692834

Kind = Literal["customers", "contact_keys"]
KINDS: Final[tuple[Kind, ...]] = ("customers", "contact_keys")

# random walk tuning (per subject and tick)
_P_START: Final = 0.3
_P_COMPLETE: Final = 0.08  # per active service
_MAX_ACTIVE: Final = 25
_MAX_COMPLETED: Final = 500
_HISTORY: Final = 86400.0  # completed services older than this are forgotten


def as_kind(value: str) -> Kind | None:
    for kind in KINDS:
        if kind == value:
            return kind
    return None


def format_timestamp(epoch: float) -> str:
    """UTC without a zone, milliseconds, like the spec's sample: ``2009-05-07T12:05:20.157``."""
    when = datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def parse_query_time(value: str) -> float:
    """A query date/time (ISO 8601, UTC when it has no zone) as epoch seconds."""
    when = datetime.fromisoformat(value.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(slots=True)
class Service:
    service_id: int
    service_type: int | str
    started: float  # epoch seconds
    est_duration: int
    completed: float | None = None
    state_id: int = 0
    state_type: int = 8  # "service delivery", as in the spec's sample

    def to_json(
        self, subject: Subject, *, active_states: bool = False, completed_states: bool = False
    ) -> dict[str, Any]:
        who = "customer_id" if subject.kind == "customers" else "contact_key"
        out: dict[str, Any] = {
            who: subject.id,
            "service_id": self.service_id,
            "est_duration": self.est_duration,
            "started": {
                "timestamp": format_timestamp(self.started),
                "service_type": self.service_type,
            },
        }
        if self.completed is not None:
            out["completed"] = {"timestamp": format_timestamp(self.completed)}
        state = {
            "state_id": self.state_id,
            "state_type": self.state_type,
            "started": {"timestamp": format_timestamp(self.started)},
        }
        if active_states:
            out["active_states"] = [state] if self.completed is None else []
        if completed_states:
            if self.completed is None:
                out["completed_states"] = []
            else:
                done = {**state, "completed": {"timestamp": format_timestamp(self.completed)}}
                out["completed_states"] = [done]
        return out


@dataclass(slots=True)
class Subject:
    """A customer id or contact key and its services."""

    kind: Kind
    id: str
    active: list[Service] = field(default_factory=list)
    completed: list[Service] = field(default_factory=list)
    frozen: bool = False


class GenesysModel:
    """The services of every known customer and contact key, and their evolution."""

    def __init__(
        self,
        customer_ids: Iterable[str],
        contact_keys: Iterable[str],
        rng: random.Random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.ticks = 0
        self.next_id = FIRST_SERVICE_ID
        self.subjects: dict[Kind, dict[str, Subject]] = {kind: {} for kind in KINDS}
        now = clock()
        initial: tuple[tuple[Kind, Iterable[str]], ...] = (
            ("customers", customer_ids),
            ("contact_keys", contact_keys),
        )
        for kind, ids in initial:
            for subject_id in ids:
                self.subjects[kind][subject_id] = self._new_subject(kind, subject_id, now)

    def _new_service(self, started: float, service_type: int | str | None = None) -> Service:
        service = Service(
            service_id=self.next_id,
            service_type=self.rng.choice(SERVICE_TYPES) if service_type is None else service_type,
            started=started,
            est_duration=self.rng.choice((600, 3600, 86400)),
            state_id=5000 + self.next_id % 1000,
        )
        self.next_id += 1
        return service

    def _new_subject(self, kind: Kind, subject_id: str, now: float) -> Subject:
        rng = self.rng
        subject = Subject(kind, subject_id)
        for _ in range(rng.randint(1, 4)):
            subject.active.append(self._new_service(now - rng.uniform(30, 3600)))
        for _ in range(rng.randint(0, 5)):
            service = self._new_service(now - rng.uniform(1800, 7200))
            service.completed = now - rng.uniform(0, 1700)
            subject.completed.append(service)
        subject.active.sort(key=lambda s: s.started)
        return subject

    # ---- evolution

    def step(self) -> None:
        """One tick: services start and complete for every subject that is not frozen."""
        self.ticks += 1
        now = self.clock()
        for table in self.subjects.values():
            for subject in table.values():
                if not subject.frozen:
                    self._walk(subject, now)

    async def astep(self) -> None:
        self.step()

    def _walk(self, subject: Subject, now: float) -> None:
        rng = self.rng
        still: list[Service] = []
        for service in subject.active:
            if rng.random() < _P_COMPLETE:
                service.completed = now
                subject.completed.append(service)
            else:
                still.append(service)
        subject.active = still
        if len(subject.active) < _MAX_ACTIVE and rng.random() < _P_START:
            subject.active.append(self._new_service(now))
        horizon = now - _HISTORY
        subject.completed = [s for s in subject.completed if (s.completed or now) >= horizon][
            -_MAX_COMPLETED:
        ]

    # ---- queries

    def query(self, kind: Kind, subject_id: str, which: str, params: Mapping[str, str]) -> bytes:
        """The JSON answer of one query; ``which`` is ``active``, ``completed`` or ``all``.

        Raises :class:`ValueError` for a bad query parameter.
        """
        subject = self.subjects[kind].get(subject_id)
        if subject is None:
            return b"[]"
        services: list[Service] = []
        if which in ("active", "all"):
            services.extend(subject.active)
        if which in ("completed", "all"):
            services.extend(subject.completed)
        bounds: dict[str, float] = {}
        for name in ("started_from", "started_to", "completed_from", "completed_to"):
            if name in params:
                try:
                    bounds[name] = parse_query_time(params[name])
                except ValueError:
                    raise ValueError(f"{name}: not an ISO 8601 date/time") from None
        types = None
        if params.get("service_types"):
            types = {t.strip() for t in params["service_types"].split(",")}
        out = []
        for service in services:
            if not _in_bounds(service, bounds):
                continue
            if types is not None and str(service.service_type) not in types:
                continue
            out.append(
                service.to_json(
                    subject,
                    active_states=params.get("active_states") == "true",
                    completed_states=params.get("completed_states") == "true",
                )
            )
        return orjson.dumps(out)

    # ---- control

    def get(self, kind: str, subject_id: str) -> Subject | None:
        known = as_kind(kind)
        return None if known is None else self.subjects[known].get(subject_id)

    def update(self, kind: Kind, subject_id: str, patch: object) -> Subject:
        """Replace a subject's services (creating it if needed) and freeze it."""
        if not isinstance(patch, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(patch) - {"active", "completed"})
        if unknown:
            raise ValueError(f"unknown fields {unknown}; known: ['active', 'completed']")
        now = self.clock()
        active = [self._service_from(spec, now, completed=False) for spec in _list(patch, "active")]
        completed = [
            self._service_from(spec, now, completed=True) for spec in _list(patch, "completed")
        ]
        subject = self.subjects[kind].get(subject_id)
        if subject is None:
            subject = self.subjects[kind][subject_id] = Subject(kind, subject_id)
        if "active" in patch:
            subject.active = active
        if "completed" in patch:
            subject.completed = completed
        subject.frozen = True
        return subject

    def _service_from(self, spec: object, now: float, *, completed: bool) -> Service:
        if not isinstance(spec, dict):
            raise ValueError("each service must be a JSON object")
        allowed = {"service_type", "age"} | ({"completed_ago"} if completed else set())
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"unknown service fields {unknown}; known: {sorted(allowed)}")
        service_type = spec.get("service_type", SERVICE_TYPES[0])
        if isinstance(service_type, bool) or not isinstance(service_type, int | str):
            raise ValueError("service_type must be a number or a string")
        age = _seconds(spec, "age")
        service = self._new_service(now - age, service_type)
        if completed:
            ago = _seconds(spec, "completed_ago")
            if ago > age:
                raise ValueError("completed_ago must not be more than age")
            service.completed = now - ago
        return service

    def describe(self, subject: Subject) -> dict[str, Any]:
        now = self.clock()
        return {
            "frozen": subject.frozen,
            "active": [
                {**s.to_json(subject), "age": round(now - s.started, 3)} for s in subject.active
            ],
            "completed": [s.to_json(subject) for s in subject.completed],
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            kind: {sid: self.describe(s) for sid, s in table.items()}
            for kind, table in self.subjects.items()
        }


def _in_bounds(service: Service, bounds: Mapping[str, float]) -> bool:
    if not bounds:
        return True
    if "started_from" in bounds and service.started < bounds["started_from"]:
        return False
    if "started_to" in bounds and service.started >= bounds["started_to"]:
        return False
    done = service.completed
    if done is None:  # the completed_* filters apply to service history only
        return True
    if "completed_from" in bounds and done < bounds["completed_from"]:
        return False
    return not ("completed_to" in bounds and done >= bounds["completed_to"])


def _list(patch: Mapping[str, Any], name: str) -> list[Any]:
    value = patch.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of services")
    return value


def _seconds(spec: Mapping[str, Any], name: str) -> float:
    value = spec.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0")
    return float(value)


GENESYS_KEY: Final = web.AppKey("ccwatch_sim_genesys", GenesysModel)

# --------------------------------------------------------------------------- vendor routes


def _query_handler(kind: Kind, which: str) -> Handler:
    param = "customer_id" if kind == "customers" else "contact_key"

    async def handle(request: web.Request) -> web.StreamResponse:
        model = request.app[GENESYS_KEY]
        try:
            body = model.query(kind, request.match_info[param], which, request.query)
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.Response(body=body, content_type=CONTENT_TYPE)

    return handle


def _routes() -> list[web.RouteDef]:
    routes = []
    for which, suffix in (("all", ""), ("active", "/active"), ("completed", "/completed")):
        routes.append(
            web.get(
                f"{CUSTOMERS_PREFIX}/{{customer_id}}/services{suffix}",
                _query_handler("customers", which),
            )
        )
        routes.append(
            web.get(
                f"{ANONYMOUS_PREFIX}/{{contact_key}}{suffix}",
                _query_handler("contact_keys", which),
            )
        )
    return routes


# --------------------------------------------------------------------------- control routes

_CONTROL: Final = f"{CONTROL_PREFIX}/{NAME}"


async def _get_all(request: web.Request) -> web.Response:
    return web.json_response(request.app[GENESYS_KEY].snapshot())


async def _get_subject(request: web.Request) -> web.Response:
    model = request.app[GENESYS_KEY]
    subject = model.get(request.match_info["kind"], request.match_info["id"])
    if subject is None:
        return json_error(404, "no such customer or contact key")
    return web.json_response(model.describe(subject))


async def _put_subject(request: web.Request) -> web.Response:
    model = request.app[GENESYS_KEY]
    kind = as_kind(request.match_info["kind"])
    if kind is None:
        return json_error(404, f"kind must be one of {list(KINDS)}")
    try:
        patch = await request.json()
    except ValueError:
        return json_error(400, "body must be JSON")
    try:
        subject = model.update(kind, request.match_info["id"], patch)
    except ValueError as exc:
        return json_error(400, str(exc))
    return web.json_response(model.describe(subject))


async def _unfreeze(request: web.Request) -> web.Response:
    model = request.app[GENESYS_KEY]
    subject = model.get(request.match_info["kind"], request.match_info["id"])
    if subject is None:
        return json_error(404, "no such customer or contact key")
    subject.frozen = False
    return web.json_response(model.describe(subject))


# --------------------------------------------------------------------------- vendor API


def _ids(name: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"Genesys simulator {name} must be a list of strings")
    ids = list(value)
    if not all(isinstance(i, str) and i for i in ids):
        raise TypeError(f"Genesys simulator {name} must be non-empty strings, got {ids!r}")
    return ids


def setup(
    app: web.Application,
    *,
    tick: float,
    rng: random.Random,
    options: Mapping[str, Any],
) -> None:
    """Add the Context Services routes, state and tick task.

    Options: ``customer_ids`` and ``contact_keys`` (strings), the subjects that have
    services from the start (defaults :data:`DEFAULT_CUSTOMER_IDS`,
    :data:`DEFAULT_CONTACT_KEYS`).
    """
    customers = _ids("customer_ids", options.get("customer_ids", DEFAULT_CUSTOMER_IDS))
    keys = _ids("contact_keys", options.get("contact_keys", DEFAULT_CONTACT_KEYS))
    model = GenesysModel(customers, keys, rng)
    app[GENESYS_KEY] = model
    app.router.add_routes(_routes())
    app.router.add_get(_CONTROL, _get_all)
    app.router.add_get(f"{_CONTROL}/{{kind}}/{{id}}", _get_subject)
    app.router.add_put(f"{_CONTROL}/{{kind}}/{{id}}", _put_subject)
    app.router.add_delete(f"{_CONTROL}/{{kind}}/{{id}}/freeze", _unfreeze)
    add_ticker(app, NAME, tick, model.astep)


def snapshot(app: web.Application) -> dict[str, Any]:
    return app[GENESYS_KEY].snapshot()
