"""Genesys Mobile Services (GMS) Service API: the routes ``/genesys/1/service/...``.

(``/genesys/1/cs/...``, Context Services, is :mod:`ccwatch.simulator.genesys`.)

* ``POST /genesys/1/service/{service}``: creates a service of a configured name from a
  urlencoded or multipart form and answers ``{"_id": "<uuid>", "_access_number": ...,
  "_access_code": ...}``; a name that is not configured gets a 404.
* ``POST /genesys/1/service/{id}/{request}``: the ``status`` request answers
  ``{"status": "waiting-for-agent", "dialog": "/waitingforagent.html"}`` and the like;
  an unknown id gets a 404, another request name a 400. Service requests are "only to be
  used for request-inbound-... or request-outbound-... based services otherwise it will be
  rejected" (spec 003): one on a service of any other name (``request-interaction``,
  ``request-callback``) gets a 400 too.

Each created service has a status that moves with the contact center's "weather", a
random walk over :data:`STATUSES` every ``tick`` seconds: new services mostly wait for an
agent, waiting ones get connected now and then, and sometimes services fail.

Control routes:

* ``GET /-/sim/gms/services``: configured service names and how many of each were created.
* ``PUT /-/sim/gms/services/{name}`` / ``DELETE /-/sim/gms/services/{name}``: configure a
  service name / remove it (creating it then answers 404).
* ``PUT /-/sim/gms/status`` ``{"status": "failed"}``: every status request answers that
  status (any string) until ``DELETE /-/sim/gms/status``.
* ``PUT /-/sim/gms/config`` ``{"id_key": "_id" | "id", "spec_body": bool}``: the key of the
  created id, and whether the create answer is the spec's example byte for byte in shape
  (``{ "_id":"...","_access_number":"...", _access_code="..." }``, not valid JSON).
* ``GET /-/sim/gms/requests``: the last requests to the Service API (method, path,
  Content-Type, form fields).
"""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from .common import CONTROL_PREFIX, add_ticker, json_body, json_error

__all__ = [
    "DEFAULT_SERVICES",
    "GMS_KEY",
    "NAME",
    "OPTIONS",
    "REQUEST_PREFIXES",
    "STATUSES",
    "GmsModel",
    "setup",
    "snapshot",
    "takes_requests",
]

NAME = "gms"
#: The options ``build_app`` takes for this vendor, as ``gms_<option>``.
OPTIONS: tuple[str, ...] = ("services",)
PREFIX: Final = "/genesys/1/service"
DEFAULT_SERVICES: Final = ("request-interaction", "request-inbound-poll", "request-callback")
#: status -> the dialog GMS names with it
STATUSES: Final[Mapping[str, str]] = {
    "waiting-for-agent": "/waitingforagent.html",
    "connected": "/connected.html",
    "failed": "/failed.html",
}
#: The services that take service requests (spec 003, "Service specific Request").
REQUEST_PREFIXES: Final = ("request-inbound-", "request-outbound-")
MAX_CREATED: Final = 10_000  # created services kept, oldest dropped first
MAX_LOG: Final = 100
_CONTROL: Final = f"{CONTROL_PREFIX}/{NAME}"


@dataclass(slots=True)
class _Service:
    id: str
    name: str
    status: str


class GmsModel:
    """Configured service names, created services and the status weather."""

    def __init__(self, services: tuple[str, ...], rng: random.Random) -> None:
        self.rng = rng
        self.services: dict[str, int] = dict.fromkeys(services, 0)
        self.created: OrderedDict[str, _Service] = OrderedDict()
        self.created_total = 0
        self.forced_status: str | None = None
        # probability that a new service fails at once, and that a waiting one connects
        self.failure_rate = 0.05
        self.connect_rate = 0.2
        self.id_key = "_id"
        self.spec_body = False
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self.ticks = 0

    def new_status(self) -> str:
        return "failed" if self.rng.random() < self.failure_rate else "waiting-for-agent"

    def create(self, name: str) -> _Service:
        self.created_total += 1
        self.services[name] = self.services.get(name, 0) + 1
        service = _Service(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), name, "")
        service.status = self.new_status()
        self.created[service.id] = service
        while len(self.created) > MAX_CREATED:
            self.created.popitem(last=False)
        return service

    def status_of(self, service: _Service) -> str:
        return self.forced_status if self.forced_status is not None else service.status

    async def step(self) -> None:
        """One tick: the weather moves, waiting services get connected now and then."""
        self.ticks += 1
        rng = self.rng
        self.failure_rate = min(0.5, max(0.0, self.failure_rate + rng.uniform(-0.05, 0.05)))
        self.connect_rate = min(0.9, max(0.05, self.connect_rate + rng.uniform(-0.1, 0.1)))
        for service in self.created.values():
            if service.status == "waiting-for-agent" and rng.random() < self.connect_rate:
                service.status = "connected"

    def snapshot(self) -> dict[str, Any]:
        return {
            "services": dict(self.services),
            "created": self.created_total,
            "forced_status": self.forced_status,
            "failure_rate": round(self.failure_rate, 3),
            "connect_rate": round(self.connect_rate, 3),
            "id_key": self.id_key,
            "spec_body": self.spec_body,
        }


GMS_KEY: Final = web.AppKey("ccwatch_sim_gms", GmsModel)

# --------------------------------------------------------------------------- Service API


async def _log(model: GmsModel, request: web.Request) -> None:
    form = await request.post()
    model.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "content_type": request.content_type,
            "form": {k: v if isinstance(v, str) else "<file>" for k, v in form.items()},
        }
    )


def _create_body(model: GmsModel, service: _Service) -> bytes:
    code = 7000 + model.created_total % 1000
    if model.spec_body:  # the spec's example, quirk included
        return (
            f'{{ "{model.id_key}":"{service.id}","_access_number":"8003449999", '
            f'_access_code="{code}" }}'
        ).encode()
    return orjson.dumps(
        {model.id_key: service.id, "_access_number": "8003449999", "_access_code": str(code)}
    )


async def _create(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    await _log(model, request)
    name = request.match_info["service"]
    if name not in model.services:
        return web.Response(status=404, text="404 Not Found")
    service = model.create(name)
    return web.Response(body=_create_body(model, service), content_type="application/json")


def takes_requests(name: str) -> bool:
    """Whether a service of this name takes service requests (spec 003)."""
    return any(name.startswith(p) and len(name) > len(p) for p in REQUEST_PREFIXES)


async def _service_request(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    await _log(model, request)
    service = model.created.get(request.match_info["id"])
    if service is None:
        return web.Response(status=404, text="404 Not Found")
    if not takes_requests(service.name):
        return web.json_response(
            {"message": f"service requests are not supported by {service.name!r} services"},
            status=400,
        )
    if request.match_info["request"] != "status":
        return web.json_response({"message": "request not supported by the service"}, status=400)
    status = model.status_of(service)
    return web.json_response({"status": status, "dialog": STATUSES.get(status, "/status.html")})


# --------------------------------------------------------------------------- control


async def _get_services(request: web.Request) -> web.Response:
    return web.json_response(dict(request.app[GMS_KEY].services))


async def _put_service(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    model.services.setdefault(request.match_info["name"], 0)
    return web.json_response(dict(model.services))


async def _delete_service(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    if model.services.pop(request.match_info["name"], None) is None:
        return json_error(404, "no such service")
    return web.json_response(dict(model.services))


async def _put_status(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    status = (await json_body(request)).get("status")
    if not isinstance(status, str) or not status:
        return json_error(400, "status must be a non-empty string")
    model.forced_status = status
    return web.json_response(model.snapshot())


async def _delete_status(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    model.forced_status = None
    return web.json_response(model.snapshot())


async def _put_config(request: web.Request) -> web.Response:
    model = request.app[GMS_KEY]
    data = await json_body(request)
    unknown = sorted(set(data) - {"id_key", "spec_body"})
    if unknown:
        return json_error(400, f"unknown fields {unknown}")
    id_key = data.get("id_key", model.id_key)
    spec_body = data.get("spec_body", model.spec_body)
    if id_key not in ("_id", "id"):
        return json_error(400, "id_key must be _id or id")
    if not isinstance(spec_body, bool):
        return json_error(400, "spec_body must be a boolean")
    model.id_key = id_key
    model.spec_body = spec_body
    return web.json_response(model.snapshot())


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[GMS_KEY].requests))


# --------------------------------------------------------------------------- vendor API


def setup(
    app: web.Application,
    *,
    tick: float,
    rng: random.Random,
    options: Mapping[str, Any],
) -> None:
    """Add the GMS Service API routes. Option: ``services`` (the configured names)."""
    services = tuple(options.get("services", DEFAULT_SERVICES))
    if not all(isinstance(s, str) and s for s in services):
        raise TypeError("GMS service names must be non-empty strings")
    model = GmsModel(services, rng)
    app[GMS_KEY] = model
    app.router.add_post(f"{PREFIX}/{{service}}", _create)
    app.router.add_post(f"{PREFIX}/{{id}}/{{request}}", _service_request)
    app.router.add_get(f"{_CONTROL}/services", _get_services)
    app.router.add_put(f"{_CONTROL}/services/{{name}}", _put_service)
    app.router.add_delete(f"{_CONTROL}/services/{{name}}", _delete_service)
    app.router.add_put(f"{_CONTROL}/status", _put_status)
    app.router.add_delete(f"{_CONTROL}/status", _delete_status)
    app.router.add_put(f"{_CONTROL}/config", _put_config)
    app.router.add_get(f"{_CONTROL}/requests", _get_requests)
    add_ticker(app, NAME, tick, model.step)


def snapshot(app: web.Application) -> dict[str, Any]:
    return app[GMS_KEY].snapshot()
