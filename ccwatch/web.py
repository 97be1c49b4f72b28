"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready, /-/reload and a landing page."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import orjson
from aiohttp import web

from ccwatch import __version__
from ccwatch.collector import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE


class Exporter(Protocol):
    """What the web layer needs from the daemon."""

    @property
    def ready(self) -> bool: ...

    def readiness(self) -> str: ...

    def metric_chunks(self, *, openmetrics: bool) -> Iterator[bytes]: ...

    def recent_events(self) -> list[dict[str, Any]]: ...

    async def reload(self) -> str | None:
        """Reload the configuration; return None on success, else the error text."""
        ...


_THREAD_COMPRESS_MIN = 256 * 1024

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>ccwatch</title></head>
<body>
<h1>ccwatch</h1>
<p>Contact-center availability exporter, version {version}.</p>
<ul>
<li><a href="metrics">Metrics</a></li>
<li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li>
<li><a href="logs">Recent events</a> (polls failing and recovering, state changes)</li>
</ul>
<p>POST <code>/-/reload</code> (or send SIGHUP) to reload the configuration.</p>
</body></html>
"""


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def build_app(exporter: Exporter) -> web.Application:
    async def metrics(request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        response = web.StreamResponse()
        response.headers["Content-Type"] = (
            OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        )
        compressor = None
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            response.headers["Content-Encoding"] = "gzip"
        await response.prepare(request)
        # One family at a time: memory stays bounded by the largest family, and the
        # event loop runs polls between chunks.
        for chunk in exporter.metric_chunks(openmetrics=openmetrics):
            if compressor is not None:
                if len(chunk) > _THREAD_COMPRESS_MIN:
                    # zlib releases the GIL: compress big chunks off the event loop
                    chunk = await asyncio.to_thread(compressor.compress, chunk)
                else:
                    chunk = compressor.compress(chunk)
            if chunk:
                await response.write(chunk)
        if compressor is not None:
            await response.write(compressor.flush())
        await response.write_eof()
        return response

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ccwatch is Healthy.\n")

    async def ready(_: web.Request) -> web.Response:
        if exporter.ready:
            return web.Response(text="ccwatch is Ready.\n")
        return web.Response(status=503, text=exporter.readiness() + "\n")

    async def reload(_: web.Request) -> web.Response:
        error = await exporter.reload()
        if error is None:
            return web.Response(text="configuration reloaded\n")
        return web.Response(status=500, text=f"failed to reload config: {error}\n")

    async def recent(request: web.Request) -> web.Response:
        """Recent transitions (failing, recovered, state changes), newest last, as JSON lines.

        ``?target=NAME`` keeps one target's.
        """
        target = request.query.get("target")
        events = [
            e for e in exporter.recent_events() if target is None or e.get("target") == target
        ]
        body = b"".join(orjson.dumps(e, default=str) + b"\n" for e in events)
        return web.Response(body=body, content_type="application/x-ndjson")

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=_LANDING.format(version=__version__), content_type="text/html")

    app = web.Application()
    handlers: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("GET", "/metrics", metrics),
        ("GET", "/-/healthy", healthy),
        ("GET", "/-/ready", ready),
        ("POST", "/-/reload", reload),
        ("PUT", "/-/reload", reload),
        ("GET", "/logs", recent),
        ("GET", "/", landing),
    ]
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
    return app
