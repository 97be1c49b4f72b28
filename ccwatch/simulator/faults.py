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
* ``number``: ``value`` (str, default 400 nines): the normal answer (same status and
  Content-Type) with every number replaced by ``value``, as it is, so that an invalid
  number (``٤``, ``1e400``, 400 digits) ends up in the body. In XML: the text of every
  element whose whole text is a number (``<ns2:count>4</ns2:count>``) and every attribute
  value that is a number, quoted or not (``responseType=0`` stays unquoted). In JSON:
  every number value (written raw, unquoted) and every string value of digits only
  (``"totalItems": "5"``, written quoted); keys are left alone.
* ``gzip_bomb``: ``size`` (bytes of the decoded body, default 200 MiB), ``chunked`` (bool,
  default false), ``encoding`` (``gzip`` or ``deflate``, i.e. the zlib format; default
  ``gzip``): a 200 answer with ``Content-Encoding`` whose decoded body is the normal
  answer padded to ``size`` bytes as ``oversized`` pads it, but with blanks (which
  compress best), so that a client without a cap on the decoded size would read it and
  export its values. 200 MiB compress to about 200 KB; with ``chunked`` that is
  streamed without Content-Length. The compressed body is built incrementally (the
  decoded body never exists in memory) in a worker thread, and cached per store.

The middleware is vendor-agnostic: it only looks at the request path and at the normal
response (its body and Content-Type), so it works for XML and JSON vendors alike.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
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
DEFAULT_BOMB: Final = 200 * 1024 * 1024
#: 400 nines: an integer no float holds (float() overflows), the ``number`` default.
DEFAULT_NUMBER: Final = "9" * 400
#: How many compressed ``gzip_bomb`` bodies a store keeps.
BOMB_CACHE_SIZE: Final = 8
BOMB_ENCODINGS: Final = ("gzip", "deflate")
_STREAM_CHUNK: Final = 64 * 1024
#: The decoded body of a ``gzip_bomb`` is fed to the compressor in pieces of about this.
_BOMB_PIECE: Final = 1024 * 1024
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


def _encoding(name: str, value: object) -> str:
    if value not in BOMB_ENCODINGS:
        raise FaultError(f"{name} must be one of {list(BOMB_ENCODINGS)}")
    return _str(name, value)


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
    "number": {"value": (_str, DEFAULT_NUMBER)},
    "gzip_bomb": {
        "size": (_size, DEFAULT_BOMB),
        "chunked": (_bool, False),
        "encoding": (_encoding, "gzip"),
    },
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
        # (normal body, content type, size, encoding) -> its compressed gzip_bomb body
        self._bombs: OrderedDict[tuple[bytes, str, int, str], asyncio.Future[bytes]] = OrderedDict()

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

    async def compressed_padding(
        self, body: bytes, content_type: str, size: int, encoding: str
    ) -> bytes:
        """``body`` padded to ``size`` bytes and compressed, built once per store and kept
        for the last :data:`BOMB_CACHE_SIZE` keys. The build runs in a worker thread; a
        request arriving meanwhile waits for the same build."""
        key = (body, content_type, size, encoding)
        built = self._bombs.get(key)
        if built is None:
            built = asyncio.ensure_future(
                asyncio.to_thread(compress_padded, body, content_type, size, encoding)
            )
            self._bombs[key] = built
            while len(self._bombs) > BOMB_CACHE_SIZE:
                self._bombs.popitem(last=False)
        else:
            self._bombs.move_to_end(key)
        try:
            # shielded: a client that goes away does not cancel the others' build
            return await asyncio.shield(built)
        except Exception:
            if self._bombs.get(key) is built:
                del self._bombs[key]
            raise

    def middleware(self) -> Middleware:
        faults = self.faults
        take = self.take
        store = self

        @web.middleware
        async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not faults:  # fast path: one truthiness test per request
                return await handler(request)
            fault = take(request.path)
            if fault is None:
                return await handler(request)
            return await _apply(store, fault, request, handler)

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


def _pad_parts(
    body: bytes, content_type: str, size: int, unit: bytes | None = None
) -> tuple[bytes, bytes, int, bytes]:
    """How :func:`_pad` grows ``body``: (head, filler unit, filler length, tail).

    ``unit`` replaces the default filler unit (the filler of a JSON array is always
    blanks: leading whitespace).
    """
    filler_unit = unit or b"ccwatch-simulator-padding-"
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
    return head, filler_unit, max(0, size - len(head) - len(tail)), tail


def _filler(unit: bytes, length: int) -> bytes:
    return (unit * (length // len(unit) + 1))[:length]


def _pad(body: bytes, content_type: str, size: int) -> bytes:
    """Grow ``body`` to ``size`` bytes while keeping it valid-looking for its type."""
    head, unit, need, tail = _pad_parts(body, content_type, size)
    return head + _filler(unit, need) + tail


def _padded_pieces(body: bytes, content_type: str, size: int) -> Iterator[bytes]:
    """The bytes of ``_pad(body, content_type, size)`` with blanks as the filler, in
    pieces of at most about :data:`_BOMB_PIECE` bytes: never all at once."""
    # Blanks: deflate's best ratio (about 1032:1) needs matches at a distance of 1 to 4
    # bytes; the default filler's 26-byte period would compress 2.5 times worse.
    head, unit, need, tail = _pad_parts(body, content_type, size, unit=b" ")
    yield head
    block = unit * (_BOMB_PIECE // len(unit))  # whole units: the pattern runs on
    for _ in range(need // len(block)):
        yield block
    yield _filler(unit, need % len(block))
    yield tail


def compress_padded(body: bytes, content_type: str, size: int, encoding: str) -> bytes:
    """The ``gzip_bomb`` body: ``body`` padded to ``size`` bytes, gzip- or zlib-compressed
    (``Content-Encoding: deflate`` is the zlib format), built piece by piece."""
    wbits = 31 if encoding == "gzip" else 15
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = [compressor.compress(piece) for piece in _padded_pieces(body, content_type, size)]
    out.append(compressor.flush())
    return b"".join(out)


# an XML element whose whole text is a number (the number is group 2)
_XML_TEXT_NUMBER_RE: Final = re.compile(rb"(>\s*)(-?[0-9]+(?:\.[0-9]+)?)(?=\s*<)")
_XML_START_TAG_RE: Final = re.compile(rb"<[A-Za-z_][^<>]*>")
# name=value in a start tag, the value a number: "4", '4' or 4 (unquoted, as ECE writes)
_XML_NUMBER_ATTR_RE: Final = re.compile(
    rb"(\s[A-Za-z_][\w.:-]*\s*=\s*)"
    rb"(?:\"(-?[0-9]+(?:\.[0-9]+)?)\"|'(-?[0-9]+(?:\.[0-9]+)?)'|(-?[0-9]+(?:\.[0-9]+)?)(?=[\s/>]))"
)
# JSON tokens: a key (kept), a string value (group 1), a number value (group 2)
_JSON_TOKEN_RE: Final = re.compile(
    rb'"(?:[^"\\]|\\.)*"(?=\s*:)'
    rb'|("(?:[^"\\]|\\.)*")'
    rb"|(?<![\w.])(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)",
    re.DOTALL,
)
_DIGITS_RE: Final = re.compile(rb'"[0-9]+"')


def _replace_numbers(body: bytes, content_type: str, value: str) -> bytes:
    """``body`` with every number replaced by ``value``, as it is (see ``number``)."""
    if "xml" in content_type or body.lstrip().startswith(b"<"):
        text = _xml_escape(value).encode()
        attr = _xml_escape(value, quotes=True).encode()

        def attribute(m: re.Match[bytes]) -> bytes:
            if m.group(2) is not None:
                return m.group(1) + b'"' + attr + b'"'
            if m.group(3) is not None:
                return m.group(1) + b"'" + attr + b"'"
            return m.group(1) + attr  # unquoted stays unquoted

        def start_tag(m: re.Match[bytes]) -> bytes:
            return _XML_NUMBER_ATTR_RE.sub(attribute, m.group(0))

        body = _XML_TEXT_NUMBER_RE.sub(lambda m: m.group(1) + text, body)
        return _XML_START_TAG_RE.sub(start_tag, body)
    raw = value.encode()
    quoted = json.dumps(value, ensure_ascii=False).encode()

    def token(m: re.Match[bytes]) -> bytes:
        if m.group(2) is not None:
            return raw
        if m.group(1) is not None and _DIGITS_RE.fullmatch(m.group(1)):
            return quoted
        return m.group(0)

    return _JSON_TOKEN_RE.sub(token, body)


def _xml_escape(value: str, *, quotes: bool = False) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quotes:
        value = value.replace('"', "&quot;").replace("'", "&apos;")
    return value


async def _apply(
    store: FaultStore, fault: Fault, request: web.Request, handler: Handler
) -> web.StreamResponse:
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
    if kind == "gzip_bomb":
        content_type = resp.content_type if body is not None else "application/octet-stream"
        encoding: str = params["encoding"]
        compressed = await store.compressed_padding(
            body or b"", content_type, params["size"], encoding
        )
        # The header is ours and aiohttp leaves the bytes alone: it compresses only
        # when enable_compression() is called, which it never is here.
        headers = {"Content-Encoding": encoding}
        if params["chunked"]:
            return await _stream(request, compressed, content_type, headers)
        return web.Response(status=200, body=compressed, content_type=content_type, headers=headers)
    if body is None:  # a streamed answer: leave it alone
        return resp
    assert isinstance(resp, web.Response)
    if kind == "malformed":
        resp.body = body[: len(body) // 2]
    elif kind == "content_type":
        resp.headers[hdrs.CONTENT_TYPE] = params["content_type"]
    elif kind == "number":
        resp.body = _replace_numbers(body, resp.content_type, params["value"])
    return resp


async def _stream(
    request: web.Request,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers=headers)
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
