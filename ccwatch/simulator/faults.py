"""Generic fault injection for the vendor simulator.

A fault is a rule ``{"path": <substring>, "kind": <kind>, "count": <n or null>, ...params}``.
Every request whose path contains ``path`` (control routes under ``/-/sim/`` excepted) is
answered according to the first matching fault. With ``count`` set the fault removes itself
after affecting that many requests.

Kinds and their parameters:

* ``status``: ``status`` (int, required), ``body`` (str), ``headers`` (object of str).
* ``slow``: ``delay`` (seconds, float, default 1.0), then the normal answer.
* ``oversized``: ``size`` (bytes, default 2 MiB), ``chunked`` (bool, default false): a 200
  answer padded to ``size`` bytes that still looks like the normal content; with
  ``chunked`` it is streamed without Content-Length.
* ``malformed``: the normal answer with its body cut in the middle.
* ``html``: ``status`` (int, default 200): an HTML error page, ``Content-Type: text/html``.
* ``content_type``: ``content_type`` (str, default ``text/plain``): the normal body with
  another Content-Type.
* ``reset``: the connection is dropped without an answer.
* ``unknown_entry_point``: the vendor handler answers as if the id in the path were not
  configured (only for handlers registered with :func:`set_unknown_id_handler`).

The middleware is vendor-agnostic: it only looks at the request path and at the normal
response (its body and Content-Type), so it works for XML and JSON vendors alike.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from .common import CONTROL_PREFIX

__all__ = [
    "CONTROL_PREFIX",
    "FAULTS_KEY",
    "KINDS",
    "Fault",
    "FaultError",
    "FaultStore",
    "set_unknown_id_handler",
    "setup",
]

DEFAULT_OVERSIZED: Final = 2 * 1024 * 1024
_STREAM_CHUNK: Final = 64 * 1024
_UNKNOWN_ID_ATTR: Final = "_ccwatch_sim_unknown_id"

_HTML_PAGE: Final = (
    "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
    "<body><h1>Service Unavailable</h1>\n"
    "<p>The server is temporarily unable to service your request due to maintenance "
    "downtime or capacity problems. Please try again later.</p>\n"
    "<hr><address>Apache Server</address></body></html>\n"
)


class FaultError(ValueError):
    """A fault definition is invalid."""


def set_unknown_id_handler(handler: Handler, unknown: Handler) -> None:
    """Tell the ``unknown_entry_point`` fault how ``handler`` answers an unknown id."""
    setattr(handler, _UNKNOWN_ID_ATTR, unknown)


# --------------------------------------------------------------------------- validation


def _int(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultError(f"{name} must be an integer")
    if value < minimum:
        raise FaultError(f"{name} must be >= {minimum}")
    return value


def _float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{name} must be a number")
    result = float(value)
    if not math.isfinite(result) or result < 0:
        raise FaultError(f"{name} must be a finite number >= 0")
    return result


def _str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise FaultError(f"{name} must be a string")
    return value


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{name} must be a boolean")
    return value


def _status(name: str, value: object) -> int:
    status = _int(name, value)
    if not 200 <= status <= 599:
        raise FaultError(f"{name} must be an HTTP status between 200 and 599")
    return status


def _headers(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FaultError(f"{name} must be an object of strings")
    return dict(value)


def _size(name: str, value: object) -> int:
    return _int(name, value, minimum=1)


_Validator = Callable[[str, object], object]

# kind -> {param: (validator, default or _REQUIRED)}
_REQUIRED: Final = object()
KINDS: Final[Mapping[str, Mapping[str, tuple[_Validator, object]]]] = {
    "status": {"status": (_status, _REQUIRED), "body": (_str, None), "headers": (_headers, {})},
    "slow": {"delay": (_float, 1.0)},
    "oversized": {"size": (_size, DEFAULT_OVERSIZED), "chunked": (_bool, False)},
    "malformed": {},
    "html": {"status": (_status, 200)},
    "content_type": {"content_type": (_str, "text/plain")},
    "reset": {},
    "unknown_entry_point": {},
}


@dataclass(slots=True)
class Fault:
    """One active fault rule."""

    id: int
    path: str
    kind: str
    count: int | None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "kind": self.kind,
            "count": self.count,
            "hits": self.hits,
            **self.params,
        }


def parse_fault(data: object, fault_id: int) -> Fault:
    """Validate a fault definition (the JSON body of ``POST /-/sim/faults``)."""
    if not isinstance(data, dict):
        raise FaultError("fault must be a JSON object")
    spec = dict(data)
    kind = spec.pop("kind", None)
    if not isinstance(kind, str) or kind not in KINDS:
        raise FaultError(f"kind must be one of {sorted(KINDS)}")
    path = _str("path", spec.pop("path", ""))
    raw_count = spec.pop("count", None)
    count = None if raw_count is None else _int("count", raw_count, minimum=1)
    schema = KINDS[kind]
    unknown = sorted(set(spec) - set(schema))
    if unknown:
        raise FaultError(f"unknown parameters for kind {kind!r}: {unknown}")
    params: dict[str, Any] = {}
    for name, (validator, default) in schema.items():
        if name in spec:
            params[name] = validator(name, spec[name])
        elif default is _REQUIRED:
            raise FaultError(f"kind {kind!r} needs parameter {name!r}")
        else:
            params[name] = default
    return Fault(id=fault_id, path=path, kind=kind, count=count, params=params)


# --------------------------------------------------------------------------- store


class FaultStore:
    """The active faults of one simulator app, and the middleware applying them."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, data: object) -> Fault:
        fault = parse_fault(data, self._next_id)
        self._next_id += 1
        self.faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        for i, fault in enumerate(self.faults):
            if fault.id == fault_id:
                del self.faults[i]
                return True
        return False

    def clear(self) -> int:
        n = len(self.faults)
        self.faults.clear()
        return n

    def take(self, path: str) -> Fault | None:
        """The first fault matching ``path``, counting the hit (and expiring it)."""
        if path.startswith(CONTROL_PREFIX):
            return None
        for fault in self.faults:
            if fault.path in path:
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def middleware(self) -> Middleware:
        faults = self.faults
        take = self.take

        @web.middleware
        async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not faults:  # fast path: one truthiness test per request
                return await handler(request)
            fault = take(request.path)
            if fault is None:
                return await handler(request)
            return await _apply(fault, request, handler)

        return fault_middleware


# --------------------------------------------------------------------------- applying


async def _normal(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return exc


def _body_of(resp: web.StreamResponse) -> bytes | None:
    if isinstance(resp, web.Response) and isinstance(resp.body, bytes | bytearray):
        return bytes(resp.body)
    return None


def _pad(body: bytes, content_type: str, size: int) -> bytes:
    """Grow ``body`` to ``size`` bytes while keeping it valid-looking for its type."""
    filler_unit = b"ccwatch-simulator-padding-"
    stripped = body.lstrip()
    if "xml" in content_type or stripped.startswith(b"<"):
        decl_end = body.find(b"?>") + 2 if body.startswith(b"<?xml") else 0
        head = body[:decl_end] + b"\n<!-- "
        tail = b" -->\n" + body[decl_end:].lstrip(b"\n")
    elif "json" in content_type or stripped.startswith((b"{", b"[")):
        if stripped.startswith(b"{"):
            rest = stripped[1:].lstrip()
            head = b'{"padding": "'
            tail = b'"}' if rest.startswith(b"}") else b'", ' + rest
        else:  # leading whitespace keeps any JSON document valid
            head, tail = b"", body
            filler_unit = b" "
    else:
        head, tail = body, b"\n"
    need = max(0, size - len(head) - len(tail))
    filler = (filler_unit * (need // len(filler_unit) + 1))[:need]
    return head + filler + tail


async def _apply(fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
    kind = fault.kind
    params = fault.params
    if kind == "status":
        status: int = params["status"]
        text: str | None = params["body"]
        if status in (204, 304):  # no body allowed
            return web.Response(status=status, headers=params["headers"])
        if text is None:
            text = f"{status} {_reason(status)}"
        return web.Response(status=status, text=text, headers=params["headers"])
    if kind == "slow":
        await asyncio.sleep(params["delay"])
        return await handler(request)
    if kind == "html":
        return web.Response(status=params["status"], text=_HTML_PAGE, content_type="text/html")
    if kind == "reset":
        return _reset(request)
    if kind == "unknown_entry_point":
        unknown: Handler | None = getattr(handler, _UNKNOWN_ID_ATTR, None)
        return await (unknown or handler)(request)

    resp = await _normal(request, handler)
    body = _body_of(resp)
    if kind == "oversized":
        content_type = resp.content_type if body is not None else "application/octet-stream"
        padded = _pad(body or b"", content_type, params["size"])
        if params["chunked"]:
            return await _stream(request, padded, content_type)
        return web.Response(status=200, body=padded, content_type=content_type)
    if body is None:  # a streamed answer: leave it alone
        return resp
    assert isinstance(resp, web.Response)
    if kind == "malformed":
        resp.body = body[: len(body) // 2]
    elif kind == "content_type":
        resp.headers[hdrs.CONTENT_TYPE] = params["content_type"]
    return resp


async def _stream(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    resp.content_type = content_type
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(0, len(body), _STREAM_CHUNK):
        await resp.write(body[i : i + _STREAM_CHUNK])
    await resp.write_eof()
    return resp


def _reset(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # linger 0: the close sends a TCP RST, like a crashing server or a firewall
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # aiohttp fails to write this to the closed transport and drops it quietly
    return web.Response(status=500)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --------------------------------------------------------------------------- control API

FAULTS_KEY: Final = web.AppKey("ccwatch_sim_faults", FaultStore)


async def _list(request: web.Request) -> web.Response:
    store = request.app[FAULTS_KEY]
    return web.json_response({"faults": [f.to_json() for f in store.faults]})


async def _add(request: web.Request) -> web.Response:
    store = request.app[FAULTS_KEY]
    try:
        data = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    try:
        fault = store.add(data)
    except FaultError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"id": fault.id})


async def _clear(request: web.Request) -> web.Response:
    return web.json_response({"deleted": request.app[FAULTS_KEY].clear()})


async def _delete(request: web.Request) -> web.Response:
    try:
        fault_id = int(request.match_info["id"])
    except ValueError:
        fault_id = -1
    if not request.app[FAULTS_KEY].remove(fault_id):
        return web.json_response({"error": "no such fault"}, status=404)
    return web.json_response({"deleted": 1})


def setup(app: web.Application) -> FaultStore:
    """Install the fault middleware and the ``/-/sim/faults`` control routes."""
    store = FaultStore()
    app[FAULTS_KEY] = store
    app.middlewares.append(store.middleware())
    app.router.add_get(f"{CONTROL_PREFIX}/faults", _list)
    app.router.add_post(f"{CONTROL_PREFIX}/faults", _add)
    app.router.add_delete(f"{CONTROL_PREFIX}/faults", _clear)
    app.router.add_delete(f"{CONTROL_PREFIX}/faults/{{id}}", _delete)
    return store
