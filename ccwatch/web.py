"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready, /-/reload, /logs, the status
page at / and /api/v1/targets."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, cast

import orjson
import structlog
from aiohttp import web

from ccwatch import page
from ccwatch.collector import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from ccwatch.logs import ndjson_chunks
from ccwatch.status import Status, api_chunks, parse_health
from ccwatch.webauth import WebSecurity, peer_names


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


#: Set on a request the expect handler admitted, so that the middleware does not again.
_ADMITTED: Final = web.RequestKey("ccwatch_admitted", bool)


async def _admission(security: WebSecurity, request: web.Request) -> web.Response | None:
    """Client certificate names, basic auth, then the client's rate limit (see
    :meth:`WebSecurity.admit`): the refusal, or None to serve the request."""
    if request.get(_ADMITTED):
        return None
    if security.allowed_sans:
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if not peer_names(cert) & security.allowed_sans:
            response = _refusal(403, "Forbidden: client certificate name not allowed")
            response.force_close()
            return response
    refusal = await security.admit(
        request.path, request.headers.get("Authorization"), request.remote
    )
    if refusal is not None:
        return _refusal(refusal.status, refusal.text, dict(refusal.headers))
    request[_ADMITTED] = True
    return None


def guard_middleware(security: WebSecurity) -> Any:
    """Client certificate names, basic auth and the rate limit, before any handler runs."""

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        refused = await _admission(security, request)
        return refused if refused is not None else await handler(request)

    return guard


def guard_expect_handler(
    security: WebSecurity,
) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """The routes' ``Expect`` handler: ``100 Continue`` only once the request is admitted
    (aiohttp's own sends it before any middleware runs, so before basic auth)."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        refused = await _admission(security, request)
        if refused is not None:
            # the client may or may not send the body it announced: close after the answer
            refused.force_close()
            return refused
        value = request.headers.get("Expect", "")
        if request.version >= (1, 1):
            if value.lower() != "100-continue":
                # the body may follow or not: answer, then close
                failed = _refusal(417, "Expectation Failed: only 100-continue is known")
                failed.force_close()
                return failed
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's size counts from its head
        return None

    return expect


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

    async def recent(request: web.Request) -> web.StreamResponse:
        """Recent transitions (failing, recovered, state changes), newest last, as JSON lines.

        ``?target=NAME`` keeps one target's. Streamed a chunk at a time (see
        :func:`ccwatch.logs.ndjson_chunks`): a slow reader holds a chunk, not the answer.
        """
        target = request.query.get("target")
        events = exporter.recent_events()  # a copy: the history changes while we write
        response = web.StreamResponse()
        response.content_type = "application/x-ndjson"
        await response.prepare(request)
        for chunk in ndjson_chunks(events, target):
            await response.write(chunk)  # waits while the client is slow to read
            await asyncio.sleep(0)  # and lets polls run between chunks
        await response.write_eof()
        return response

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
    expect = guard_expect_handler(security) if security is not None else None
    for method, path, handler in handlers:
        app.router.add_route(method, path, handler, expect_handler=expect)
    return app


# --------------------------------------------------------------------------- connections

log = structlog.get_logger("ccwatch")

#: Seconds a client has to send its first request's complete head, counted from the TCP
#: accept (from the end of the TLS handshake on HTTPS). aiohttp has no such deadline.
HEADER_TIMEOUT: Final = 10.0
#: Seconds a client has to complete its TLS handshake, counted from the TCP accept.
HANDSHAKE_TIMEOUT: Final = 10.0
#: Seconds an idle keep-alive connection stays open after an answer (aiohttp closes it).
#: Also the bound on a later request's head on the same connection. Above a 1m scrape
#: interval, so that Prometheus keeps reusing its connection.
KEEPALIVE_TIMEOUT: Final = 75.0
#: Seconds a closing TLS connection waits for the client's close_notify.
TLS_SHUTDOWN_TIMEOUT: Final = 5.0
#: The most TLS bytes read on a connection before its handshake starts (a ClientHello
#: is one TLS record: at most 16 KiB and a header).
MAX_HELLO: Final = 16 * 1024 + 5
#: The most client connections ccwatch holds open at once, whatever the descriptor limit.
MAX_CONNECTIONS: Final = 512
#: The fewest, however low the descriptor limit (see :func:`connection_cap`).
MIN_CONNECTIONS: Final = 4
#: Descriptors kept for everything that is neither a poll nor a client: the listening
#: socket, the event loop's own, config, certificate and secret files, DNS lookups.
DESCRIPTOR_RESERVE: Final = 64
#: The listening socket's backlog. The event loop accepts up to this many connections at
#: once before any is refused, so the descriptor budget keeps room for them too.
ACCEPT_BACKLOG: Final = 128


@dataclass(frozen=True)
class ConnectionLimits:
    """The deadlines and the cap of the server's client connections."""

    header_timeout: float = HEADER_TIMEOUT
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    #: None: :func:`connection_cap` of the descriptor limit and the poll concurrency
    max_connections: int | None = None


def descriptor_limit() -> int | None:
    """The process's soft ``RLIMIT_NOFILE``; None where there is none (unlimited, or no
    POSIX resource limits)."""
    if sys.platform == "win32":  # pragma: no cover - no RLIMIT_NOFILE
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(descriptors: int | None, poll_connections: int) -> int:
    """How many client connections may be open at once: what the descriptor limit leaves
    after :data:`DESCRIPTOR_RESERVE`, one :data:`ACCEPT_BACKLOG` of connections accepted
    but not yet refused, and two descriptors per concurrent poll (its connection, and a
    margin for DNS lookups), at most :data:`MAX_CONNECTIONS` and at least
    :data:`MIN_CONNECTIONS`."""
    if descriptors is None:
        return MAX_CONNECTIONS
    spare = descriptors - DESCRIPTOR_RESERVE - ACCEPT_BACKLOG - 2 * poll_connections
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, spare))


class _HeadEnd:
    """Finds the end of the first request head in a byte stream: the first empty line
    after the request line. Leading empty lines are skipped, as aiohttp's parser does."""

    __slots__ = ("_started", "_tail")

    def __init__(self) -> None:
        self._started = False
        self._tail = b""

    def feed(self, data: bytes) -> bool:
        """Whether the head has ended within ``data`` (after what was fed before)."""
        if not self._started:
            data = data.lstrip(b"\r\n")
            if not data:
                return False
            self._started = True
        window = self._tail + data
        if b"\r\n\r\n" in window:
            return True
        self._tail = window[-3:]
        return False


class ConnectionGuard:
    """The listening socket's protocol factory: every accepted connection is counted,
    refused at once (closed) beyond :attr:`limit`, given :attr:`ConnectionLimits.
    handshake_timeout` for TLS and :attr:`ConnectionLimits.header_timeout` for its first
    request head, and then handed to aiohttp's request handler (``server``), which closes
    it after :attr:`ConnectionLimits.keepalive_timeout` idle.

    TLS is started per connection (``loop.start_tls``) rather than by the listening
    socket, so that a connection in its handshake is counted and refused like any other.
    """

    #: At most one warning about refused connections per this many seconds.
    warn_interval: float = 60.0

    def __init__(
        self,
        server: Callable[[], asyncio.Protocol],
        *,
        limits: ConnectionLimits,
        cap: Callable[[], int],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.limits = limits
        self.ssl_context = ssl_context
        self._cap = cap
        #: the open client connections, each counted from accept to close
        self.connections: set[_Connection] = set()
        #: connections refused at the cap since the start
        self.refused = 0
        self._refused_logged = 0
        self._warned_at = -float("inf")

    @property
    def limit(self) -> int:
        return self._cap()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def admit(self, connection: _Connection) -> bool:
        limit = self.limit
        if len(self.connections) < limit:
            self.connections.add(connection)
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._warned_at >= self.warn_interval:
            self._warned_at = now
            log.warning(
                "connections_refused",
                detail="too many open client connections: new ones are closed at once",
                max_connections=limit,
                refused=self.refused - self._refused_logged,
            )
            self._refused_logged = self.refused
        return False

    def release(self, connection: _Connection) -> None:
        self.connections.discard(connection)

    async def close(self) -> None:
        """Abort the connections still in their TLS handshake (aiohttp closes the others)."""
        pending = [c.abort_handshake() for c in list(self.connections)]
        await asyncio.gather(
            *(task for task in pending if task is not None), return_exceptions=True
        )


class _Connection(asyncio.Protocol):
    """One client connection: counted, under deadlines, and delegating to aiohttp's
    request handler once it is (for HTTPS: once its handshake is) complete."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._raw: asyncio.Transport | None = None
        self._transport: asyncio.Transport | None = None
        self._inner: asyncio.Protocol | None = None
        self._handshake: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head = _HeadEnd()
        #: TLS bytes read before start_tls took the connection over (uvloop reads once
        #: right after connection_made, whatever the protocol paused)
        self._hello = bytearray()
        self._handed_over = False
        #: plaintext read after the handshake, before start_tls returned
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False

    # the TCP connection (and, once TLS is up, the plaintext stream: start_tls hands this
    # protocol the TLS transport without calling connection_made again)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        if not self._guard.admit(self):
            raw.abort()
            return
        self._raw = raw
        context = self._guard.ssl_context
        if context is None:
            self._serve(raw)
            return
        raw.pause_reading()  # start_tls reads the ClientHello
        loop = asyncio.get_running_loop()
        self._handshake = loop.create_task(self._start_tls(raw, context))
        # runs right after the task's first step, in which start_tls has installed its
        # protocol and not yet started the handshake
        loop.call_soon(self._hand_over, raw)

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        transport: asyncio.Transport | None = None
        try:
            transport = await asyncio.get_running_loop().start_tls(
                raw,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self._guard.limits.handshake_timeout,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT,
            )
        except Exception:  # noqa: S110 - a failed or timed out handshake: asyncio closed it
            pass
        finally:
            if transport is None or self._lost:
                raw.abort()
                self._release()
        if transport is not None and not self._lost:
            self._serve(transport)

    def _hand_over(self, raw: asyncio.Transport) -> None:
        """Give the TLS protocol what this one read of the handshake before it took over."""
        self._handed_over = True
        hello, self._hello = bytes(self._hello), bytearray()
        tls = raw.get_protocol()
        if not hello or tls is self or raw.is_closing():
            return
        if hasattr(tls, "buffer_updated"):  # asyncio's and uvloop's (not a subclass)
            buffered = cast(asyncio.BufferedProtocol, tls)
            view = memoryview(hello)
            while view:
                buffer = memoryview(buffered.get_buffer(len(view)))
                n = min(len(buffer), len(view))
                buffer[:n] = view[:n]
                buffered.buffer_updated(n)
                view = view[n:]
        else:  # pragma: no cover - no such loop known
            cast(asyncio.Protocol, tls).data_received(hello)

    def _serve(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(
            self._guard.limits.header_timeout, self._too_slow
        )
        self._inner = inner = self._guard.server()
        inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._early_eof:
            inner.eof_received()

    def _too_slow(self) -> None:
        """No complete request head within the deadline: close at once (no answer)."""
        self._deadline = None
        if self._transport is not None:
            self._transport.abort()

    def abort_handshake(self) -> asyncio.Task[None] | None:
        """Abort the connection if it is still in its TLS handshake; the handshake's task."""
        task = self._handshake
        if task is None or task.done():
            return None
        if self._raw is not None:
            self._raw.abort()
        task.cancel()
        return task

    def _release(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._guard.release(self)

    # asyncio.Protocol, delegated

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            if self._handshake is None or self._handed_over:
                self._early.append(data)  # plaintext: TLS up, start_tls not yet returned
                return
            # the start of the handshake, read before start_tls took over
            self._hello += data
            if self._raw is not None:
                self._raw.pause_reading()
                if len(self._hello) > MAX_HELLO:
                    self._raw.abort()
            return
        if self._deadline is not None and self._head.feed(data):
            self._deadline.cancel()
            self._deadline = None
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            self._early_eof = True
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._release()
        if self._handshake is not None and not self._handshake.done() and self._inner is None:
            self._handshake.cancel()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard` (aiohttp's
    ``TCPSite`` has no connection cap, header deadline or handshake timeout)."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_address")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        limits: ConnectionLimits,
        cap: Callable[[], int],
        ssl_context: ssl.SSLContext | None = None,
        reuse_address: bool = True,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=ACCEPT_BACKLOG)
        server = runner.server
        if server is None:  # pragma: no cover - BaseSite checked it
            raise RuntimeError("Call runner.setup() before making a site")
        self._guard = ConnectionGuard(server, limits=limits, cap=cap, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._reuse_address = reuse_address

    @property
    def guard(self) -> ConnectionGuard:
        return self._guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._guard,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )

    async def stop(self) -> None:
        await super().stop()
        await self._guard.close()
