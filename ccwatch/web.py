"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready, /-/reload, /logs, the status
page at / and /api/v1/targets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from typing import Any, Final, Protocol, TypeVar, cast

import orjson
from aiohttp import web

from ccwatch import page
from ccwatch.collector import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from ccwatch.status import Status, api_chunks, parse_health
from ccwatch.webauth import REALM, WebSecurity, peer_names


class Exporter(Protocol):
    """What the web layer needs from the daemon."""

    @property
    def ready(self) -> bool: ...

    def readiness(self) -> str: ...

    def metric_chunks(self, *, openmetrics: bool) -> Iterator[bytes]: ...

    def recent_events(self) -> list[dict[str, Any]]: ...

    def status(self) -> Status:
        """A snapshot of the targets and jobs for the status page and the targets API."""
        ...

    async def reload(self) -> str | None:
        """Reload the configuration; return None on success, else the error text."""
        ...


try:  # igzip (ISA-L): gzip-compatible, about 5x faster than zlib at level 1 on /metrics
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover - a platform without an isal wheel
    import zlib as _deflate  # type: ignore[no-redef]

#: The deflate implementation of gzip answers (``isal.isal_zlib``, else ``zlib``).
DEFLATE: Final = _deflate


def gzip_compressor() -> Any:
    """A gzip stream compressor at level 1 (Prometheus's own choice for its answers)."""
    return DEFLATE.compressobj(1, DEFLATE.DEFLATED, 16 + DEFLATE.MAX_WBITS)


#: Headers of the status page: it loads nothing but itself (see ccwatch.page).
PAGE_HEADERS: Final = {
    "Content-Security-Policy": page.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
API_HEADERS: Final = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
#: The highest ``page`` accepted (a page number beyond the last shows an empty page).
MAX_PAGE: Final = 1_000_000

T = TypeVar("T")


#: The longest a page or an API answer holds the event loop before letting polls run.
STEP_SECONDS: Final = 0.005
#: The same for /metrics: longer, since each pause lets a batch of polls run and the
#: scrape's latency grows with the number of pauses (one or two at 300,000 series gzipped);
#: a poll waits at most this long for a scrape.
SCRAPE_STEP_SECONDS: Final = 0.05


async def stepped(steps: Generator[None, None, T], budget: float = STEP_SECONDS) -> T:
    """Run a rendering generator, letting the event loop run polls whenever it has held
    the loop for ``budget`` seconds (checked at each of its steps)."""
    started = time.perf_counter()
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return cast(T, stop.value)
        if time.perf_counter() - started >= budget:
            await asyncio.sleep(0)
            started = time.perf_counter()


async def write_stepped(
    response: web.StreamResponse, chunks: Iterable[bytes], budget: float = STEP_SECONDS
) -> None:
    """Write ``chunks`` and end the answer: what was made while the loop was held for
    ``budget`` seconds goes out in one write, then polls run."""
    pending: list[bytes] = []
    started = time.perf_counter()
    for chunk in chunks:
        pending.append(chunk)
        if time.perf_counter() - started >= budget:
            await response.write(b"".join(pending))
            pending = []
            await asyncio.sleep(0)
            started = time.perf_counter()
    await response.write(b"".join(pending))
    await response.write_eof()


def gzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` as one gzip stream, a piece per chunk (see :func:`gzip_compressor`)."""
    compressor = gzip_compressor()
    for chunk in chunks:
        yield compressor.compress(chunk)
    yield compressor.flush()


def parse_page(value: str | None) -> int:
    """``page``: a whole number from 1; ValueError otherwise."""
    if value is None or value == "":
        return 1
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value[:8]) <= MAX_PAGE:
        raise ValueError(f"page must be a whole number from 1 to {MAX_PAGE}, not {value[:40]!r}")
    return int(value)


def wants_openmetrics(accept: str) -> bool:
    return "application/openmetrics-text" in accept


def _refusal(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


def guard_middleware(security: WebSecurity) -> Any:
    """Rate limit, client certificate names and basic auth, before any handler runs."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        limit = security.rate_limit
        if limit is not None and not limit.allow():
            return _refusal(429, "Too Many Requests")
        if security.allowed_sans:
            transport = request.transport
            cert = transport.get_extra_info("peercert") if transport is not None else None
            if not peer_names(cert) & security.allowed_sans:
                response = _refusal(403, "Forbidden: client certificate name not allowed")
                response.force_close()
                return response
        auth = security.auth
        if (
            auth is not None
            and request.path not in security.public_paths
            and not await auth.check(request.headers.get("Authorization"))
        ):
            return _refusal(401, "Unauthorized", {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        return await handler(request)

    return guard


def build_app(exporter: Exporter, security: WebSecurity | None = None) -> web.Application:
    """The app; ``security`` (kept by the caller, changed in place on reload) adds the web
    config's basic auth, rate limit, allowed client names and headers."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        response = web.StreamResponse()
        response.headers["Content-Type"] = (
            OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        )
        gzip = "gzip" in request.headers.get("Accept-Encoding", "")
        if gzip:
            response.headers["Content-Encoding"] = "gzip"
        await response.prepare(request)
        # A chunk of a family at a time: memory stays bounded by a chunk (plain) or by
        # what one step compresses to (gzip). Plain chunks are written as they come, and
        # polls run while the client reads them; gzip output is written, and polls run,
        # every SCRAPE_STEP_SECONDS.
        chunks = exporter.metric_chunks(openmetrics=openmetrics)
        if gzip:
            await write_stepped(response, gzipped(chunks), SCRAPE_STEP_SECONDS)
            return response
        for chunk in chunks:
            await response.write(chunk)
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

    async def index(request: web.Request) -> web.Response:
        """The status page: the overview, one target's jobs, or the jobs of one health."""
        status = exporter.status()
        query = request.query
        try:
            health = parse_health(query.get("health"))
            number = parse_page(query.get("page"))
        except ValueError as exc:
            return _html(page.not_found(status, str(exc)), 400)
        target = query.get("target")
        if target is None and health is None:
            return _html(await stepped(page.overview(status)))
        text = await stepped(
            page.jobs_page(status, target=target, health_filter=health, page=number)
        )
        if text is None:
            return _html(page.not_found(status, f"No target is named {target!r}."), 404)
        return _html(text)

    async def targets_api(request: web.Request) -> web.StreamResponse:
        """``/api/v1/targets``, as Prometheus words its own; streamed a chunk at a time."""
        query = request.query
        try:
            health = parse_health(query.get("health"))
        except ValueError as exc:
            body = {"status": "error", "errorType": "bad_data", "error": str(exc)}
            return web.Response(
                status=400,
                body=orjson.dumps(body),
                content_type="application/json",
                headers=API_HEADERS,
            )
        status = exporter.status()
        response = web.StreamResponse(headers=API_HEADERS)
        response.content_type = "application/json"
        await response.prepare(request)
        await write_stepped(
            response, api_chunks(status, target=query.get("target"), health_filter=health)
        )
        return response

    async def no_icon(_: web.Request) -> web.Response:
        return web.Response(status=204)

    def _html(text: str, status: int = 200) -> web.Response:
        return web.Response(
            text=text, status=status, content_type="text/html", headers=PAGE_HEADERS
        )

    app = web.Application(middlewares=[guard_middleware(security)] if security else [])
    if security is not None:

        async def configured_headers(_: web.Request, response: web.StreamResponse) -> None:
            # every response, 401s and streamed ones included; configured ones win
            for name, value in security.headers.items():
                response.headers[name] = value

        app.on_response_prepare.append(configured_headers)
    handlers: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("GET", "/metrics", metrics),
        ("GET", "/-/healthy", healthy),
        ("GET", "/-/ready", ready),
        ("POST", "/-/reload", reload),
        ("PUT", "/-/reload", reload),
        ("GET", "/logs", recent),
        ("GET", "/", index),
        ("GET", "/api/v1/targets", targets_api),
        ("GET", "/favicon.ico", no_icon),
    ]
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler)
    return app
