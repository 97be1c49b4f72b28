"""The one HTTP layer: a shared aiohttp session, per-target settings, and failure mapping.

Every request ccwatch makes goes through :meth:`TargetClient.request`, which
- caps the response body (``too_large``),
- maps every transport error to exactly one poll failure reason
  (``connect``, ``tls``, ``timeout``),
- never follows a redirect: a 3xx is an unexpected status like any other, its
  ``Location`` (without userinfo) named in the detail,
- maps unexpected statuses to ``http_status`` (``auth`` for 401/403,
  ``rate_limited`` for 429, with the server's ``Retry-After``),
- checks the content type when the caller names the ones it accepts (``parse``).

It never sleeps or retries: time and failure are the scheduler's.

Tracing (``ccwatch probe``): while :data:`TRACE` holds a list in the current context,
every request appends one :class:`Exchange` to it, failed ones included, and the body of
an unexpected status is read (under the cap) so that the error page can be shown. The
daemon never sets it; unset, it costs a request one ``ContextVar.get()`` and a branch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ssl
import time
import zlib
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from multidict import CIMultiDictProxy
from yarl import URL

from ccwatch import __version__
from ccwatch.config import TargetConfig, TLSConfig
from ccwatch.errors import (
    ConnectFailure,
    ParseFailure,
    PollError,
    StatusFailure,
    TimeoutFailure,
    TLSFailure,
    TooLargeFailure,
)
from ccwatch.redact import PUBLIC, Redactor, redact_url, secrets_in

USER_AGENT = f"ccwatch/{__version__}"
#: Characters a configured base URL keeps as they are: reserved ones, and ``%`` so that
#: escapes the operator wrote are sent as written.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One traced request and what came of it (see :data:`TRACE`).

    ``url`` is the URL requested, without userinfo. ``request_headers`` are the headers
    sent (the session's defaults included) when an answer came, else those passed.
    ``request_body`` is the body passed (a form as urlencoded text, whatever its
    encoding on the wire), ``None`` for none. ``status`` is ``None`` when no answer
    came. ``body`` is the decoded body, under the target's cap; empty when it could not
    be read. ``duration`` is in seconds. ``error`` is why the request failed (``reason:
    detail`` for a poll failure), ``None`` when it returned a response.
    """

    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]
    request_body: bytes | None
    status: int | None
    response_headers: tuple[tuple[str, str], ...]
    body: bytes
    duration: float
    error: str | None


#: While it holds a list, :meth:`TargetClient.request` appends an :class:`Exchange` to
#: it for every request. Context variables are per task: set it in the task that polls.
TRACE: ContextVar[list[Exchange] | None] = ContextVar("ccwatch_http_trace", default=None)


def _shown_url(url: str | URL, params: Mapping[str, str] | None) -> str:
    """``url`` (with ``params``) as requested, without userinfo."""
    shown = url if isinstance(url, URL) else URL(url)
    if params:
        shown = shown.update_query(params)
    return redact_url(str(shown))


def _shown_body(data: Any) -> bytes | None:
    """The request body passed to :meth:`TargetClient.request`, for a trace."""
    if data is None:
        return None
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, Mapping):
        return urlencode([(str(k), str(v)) for k, v in data.items()]).encode()
    if isinstance(data, aiohttp.FormData):
        fields = [
            (str(options.get("name", "")), value if isinstance(value, str) else "...")
            for options, _, value in data._fields
        ]
        return urlencode(fields).encode()
    return f"({type(data).__name__})".encode()


#: A ``Retry-After`` is honoured on these statuses only; on any other it is ignored.
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Delta-seconds longer than this are read as this (every caller caps them far lower).
_RETRY_AFTER_CEILING = 10**9


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: ASCII delta-seconds or an HTTP date.

    ``None`` when absent or anything else (``²``, ``-5``, ``1.5``, a date without a zone):
    a value a server cannot have meant is ignored rather than guessed at.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        if len(digits) > 9:
            return float(_RETRY_AFTER_CEILING)
        return float(int(digits))
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except Exception:  # any malformed date: TypeError, ValueError, OverflowError, ...
        return None


def transport_failure(exc: BaseException, redactor: Redactor = PUBLIC) -> PollError:
    """The one poll failure of a transport error (``tls``, ``timeout`` or ``connect``).

    The library's text is redacted here, before anything stores or shows it: aiohttp's
    names the proxy URL with its userinfo (a proxy answering 407 to ``CONNECT``), and
    ``redactor`` (the target's) knows the target's secrets.
    """
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return TLSFailure(redactor.text(f"TLS error: {exc}"))
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return TimeoutFailure(redactor.text(f"timed out: {exc}"))
    return ConnectFailure(redactor.text(f"{type(exc).__name__}: {exc}".rstrip(": ")))


def status_failure(status: int, headers: Mapping[str, str]) -> StatusFailure:
    """The poll failure of an unexpected status, with the server's Retry-After on a 429
    or 503, and the (redacted) ``Location`` of a redirect."""
    retry_after = None
    detail = f"unexpected HTTP status {status}"
    if 300 <= status < 400:  # a redirect, never followed (see TargetClient.request)
        location = headers.get("Location")
        if location is not None:
            detail += f", redirect to {redact_url(location)!r} not followed"
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if retry_after is not None:
            detail += f", Retry-After {retry_after:g}s"
    return StatusFailure(status, detail, retry_after=retry_after)


def check_content_type(response: Response, content_types: Collection[str]) -> None:
    """``parse`` unless the Content-Type contains one of ``content_types`` (or is absent)."""
    ctype = response.content_type.lower()
    if ctype and not any(want in ctype for want in content_types):
        raise ParseFailure(f"unexpected content type {ctype!r}")


def make_ssl_context(tls: TLSConfig | None) -> ssl.SSLContext | bool:
    """An SSL context for a target's ``tls_config``; ``True`` means the default context."""
    if tls is None:
        return True
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HttpClient:
    """Owns the one aiohttp session (keep-alive, shared connection pool) of the process."""

    def __init__(self, *, max_connections: int = 256) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                # Bodies are decoded here, under the cap (see _read_capped), never by
                # aiohttp: it would inflate a whole network chunk before anyone counts it.
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def for_target(
        self,
        target: TargetConfig,
        *,
        max_response_size: int,
        headers: Mapping[str, str] | None = None,
        proxy_from_environment: bool = False,
    ) -> TargetClient:
        """The target's client. Its proxy is its ``proxy_url``; without one and with
        ``proxy_from_environment``, the one ``HTTPS_PROXY``/``HTTP_PROXY`` name for its
        URL unless ``NO_PROXY`` excludes its host (read now, as curl would)."""
        all_headers = dict(headers or {})
        proxy: str | None = target.proxy_url
        proxy_auth: aiohttp.BasicAuth | None = None
        if proxy is None and proxy_from_environment:
            with contextlib.suppress(LookupError):
                env_proxy, proxy_auth = get_env_proxy_for_url(URL(target.url))
                proxy = str(env_proxy)
        # every secret of the target's configuration, and those sent that it does not hold
        redactor = Redactor(secrets_in(target))
        if proxy_auth is not None:
            redactor.add([proxy_auth.password])
        if target.basic_auth is not None:
            password = (
                target.basic_auth.password.get_secret_value() if target.basic_auth.password else ""
            )
            token = base64.b64encode(f"{target.basic_auth.username}:{password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
            redactor.add([token])
        return TargetClient(
            self,
            base_url=target.url,
            ssl_context=make_ssl_context(target.tls_config),
            server_name=target.tls_config.server_name if target.tls_config else None,
            proxy=proxy,
            proxy_auth=proxy_auth,
            headers=all_headers,
            max_response_size=max_response_size,
            redactor=redactor,
        )


class TargetClient:
    """One target's view of the shared session: its base URL, TLS, auth, proxy and body cap."""

    #: the target's secrets: every failure detail this client makes is redacted with it
    #: (a client that delegates its requests, as OAuth2Client, keeps this default)
    redactor: Redactor = PUBLIC

    def __init__(
        self,
        http: HttpClient,
        *,
        base_url: str,
        ssl_context: ssl.SSLContext | bool,
        server_name: str | None,
        proxy: str | None,
        headers: Mapping[str, str],
        max_response_size: int,
        proxy_auth: aiohttp.BasicAuth | None = None,
        redactor: Redactor = PUBLIC,
    ) -> None:
        self.http = http
        self.redactor = redactor
        self.base_url = base_url
        # percent-encode what must be (spaces, non-ASCII); escapes already there stay
        self._encoded_base = quote(base_url, safe=_URL_SAFE)
        self.max_response_size = max_response_size
        self._ssl = ssl_context
        self._server_hostname = server_name
        self._proxy = proxy
        self._headers = dict(headers)
        self._kwargs: dict[str, Any] = {"headers": self._headers, "ssl": ssl_context}
        if proxy is not None:
            self._kwargs["proxy"] = proxy
            if proxy_auth is not None:
                self._kwargs["proxy_auth"] = proxy_auth
        if server_name is not None:
            self._kwargs["server_hostname"] = server_name

    def url(self, path: str) -> str:
        """The base URL, percent-encoded where it needs to be, and ``path`` (which the
        source has encoded) appended: ready for ``URL(..., encoded=True)``."""
        return self._encoded_base + path

    def with_cap(self, max_response_size: int) -> TargetClient:
        """The same client with another body cap (for one endpoint with larger answers)."""
        other = copy.copy(self)
        other.max_response_size = max_response_size
        return other

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        ok: Collection[int] = (200,),
        content_types: Collection[str] | None = None,
    ) -> Response:
        """Make one request; return the response if its status is in ``ok``.

        ``content_types``: substrings one of which the Content-Type must contain
        (e.g. ``("xml",)``); a response without a Content-Type passes.
        """
        trace = TRACE.get()
        if trace is not None:  # ccwatch probe: the same request, recorded (see _traced)
            return await self._traced(trace, method, url, headers, data, params, ok, content_types)
        kwargs = self._kwargs
        if headers is not None or data is not None or params is not None:
            kwargs = dict(kwargs)
            if headers is not None:
                kwargs["headers"] = {**self._headers, **headers}
            if data is not None:
                kwargs["data"] = data
            if params is not None:
                kwargs["params"] = params
        try:
            # never follow a redirect: aiohttp would send our headers (x-api-key, a
            # re-POSTed client secret) to whatever host the Location names
            async with self.http.session.request(
                method, url, allow_redirects=False, **kwargs
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                # an unexpected status decides the reason whatever its body holds (an
                # error page in an odd encoding must not hide a 429's Retry-After): the
                # body is not read, and the connection is closed rather than reused
                body = await self._read_capped(resp) if status in ok else b""
        except PollError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise transport_failure(exc, self.redactor) from None
        if status not in ok:
            raise status_failure(status, resp_headers)
        response = Response(status, resp_headers, body)
        if content_types is not None:
            check_content_type(response, content_types)
        return response

    async def _traced(
        self,
        trace: list[Exchange],
        method: str,
        url: str | URL,
        headers: Mapping[str, str] | None,
        data: Any,
        params: Mapping[str, str] | None,
        ok: Collection[int],
        content_types: Collection[str] | None,
    ) -> Response:
        """:meth:`request` that appends an :class:`Exchange` to ``trace``, whatever happens.

        The same request, the same failures (the same mapping functions) as
        :meth:`request`, except that the body of an unexpected status is read too, under
        the cap, for the trace only: the status still decides the reason.
        """
        kwargs = dict(self._kwargs)
        sent: Mapping[str, str] = self._headers
        if headers is not None:
            sent = kwargs["headers"] = {**self._headers, **headers}
        if data is not None:
            kwargs["data"] = data
        if params is not None:
            kwargs["params"] = params
        shown_url: str | None = None
        status: int | None = None
        resp_headers: Mapping[str, str] = {}
        body = b""
        error: str | None = None
        started = time.perf_counter()
        try:
            try:
                async with self.http.session.request(
                    method, url, allow_redirects=False, **kwargs
                ) as resp:
                    shown_url = _shown_url(resp.request_info.url, None)
                    sent = resp.request_info.headers
                    status = resp.status
                    resp_headers = resp.headers
                    if status in ok:
                        body = await self._read_capped(resp)
                    else:
                        try:  # the error page, for the trace: it decides nothing
                            body = await self._read_capped(resp)
                        except (PollError, aiohttp.ClientError, OSError):
                            body = b""
            except PollError:
                raise
            except (aiohttp.ClientError, OSError) as exc:
                raise transport_failure(exc, self.redactor) from None
            if status not in ok:
                raise status_failure(status, resp.headers)
            response = Response(status, resp.headers, body)
            if content_types is not None:
                check_content_type(response, content_types)
            return response
        except PollError as exc:
            error = f"{exc.reason}: {exc.detail}"
            raise
        except asyncio.CancelledError:
            error = "cancelled before it was complete (the poll timed out or was stopped)"
            raise
        except Exception as exc:
            error = self.redactor.text(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            trace.append(
                Exchange(
                    method=method,
                    url=shown_url if shown_url is not None else _shown_url(url, params),
                    request_headers=tuple(sent.items()),
                    request_body=_shown_body(data),
                    status=status,
                    response_headers=tuple(resp_headers.items()),
                    body=body,
                    duration=time.perf_counter() - started,
                    error=error,
                )
            )

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, decoded, held to the cap on the wire and after decoding.

        ``too_large`` means: the Content-Length, the bytes received or the decoded bytes
        exceed ``max_response_size``. Decoding inflates at most cap + 1 bytes at a time, so
        a gzip bomb costs about the cap in memory, whatever its ratio or framing.
        """
        cap = self.max_response_size
        length = resp.content_length
        if length is not None and length > cap:
            raise TooLargeFailure(f"body of {length} bytes exceeds the {cap}-byte cap")
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        decoder = None if encoding in ("", "identity") else Decoder(encoding, cap)
        if decoder is None and length is not None:
            return await resp.read()  # at most the cap, checked above
        chunks: list[bytes] = []
        received = 0
        async for chunk in resp.content.iter_any():
            received += len(chunk)
            if received > cap:
                what = "body" if decoder is None else "compressed body"
                raise TooLargeFailure(f"{what} exceeds the {cap}-byte cap")
            if decoder is None:
                chunks.append(chunk)
            else:
                decoder.feed(chunk)
        return b"".join(chunks) if decoder is None else decoder.finish()


#: What ccwatch asks servers for; anything else a server sends fails as ``parse``.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class Decoder:
    """Incremental gzip/deflate decoding that never holds more than ``cap`` + 1 bytes out.

    Every ``decompress`` call is bounded by the room left under the cap, and the input
    it could not consume yet (``unconsumed_tail``) is fed again: one network chunk of a
    1000:1 bomb is never inflated whole. Concatenated gzip members are decoded in turn.
    """

    def __init__(self, encoding: str, cap: int) -> None:
        if encoding in ("gzip", "x-gzip"):
            self._gzip = True
        elif encoding == "deflate":
            self._gzip = False
        else:
            raise ParseFailure(f"unsupported Content-Encoding {encoding[:40]!r}")
        self._cap = cap
        self._size = 0
        self._out: list[bytes] = []
        self._obj: Any = None  # zlib's Decompress object (no public type)
        self._head = b""
        self._done = False

    def _new_stream(self, first: bytes) -> None:
        if self._gzip:
            wbits = _GZIP_WBITS
        elif len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0:
            wbits = _ZLIB_WBITS  # deflate as RFC 9110 says: zlib-wrapped
        else:
            wbits = _RAW_DEFLATE_WBITS  # bare deflate, as some servers send it
        self._obj = zlib.decompressobj(wbits)
        self._done = False

    def _take(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise TooLargeFailure(f"decoded body exceeds the {self._cap}-byte cap")
        if data:
            self._out.append(data)

    def feed(self, data: bytes) -> None:
        if self._obj is None and not self._gzip:
            # a zlib header or bare deflate: the first two bytes tell
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = b""
        try:
            while data:
                if self._obj is None or self._done:
                    if self._done and not self._gzip:
                        raise ParseFailure("data after the end of the deflate stream")
                    self._new_stream(data)
                obj = self._obj
                self._take(obj.decompress(data, self._cap - self._size + 1))
                if obj.eof:
                    self._done = True
                    data = obj.unused_data
                else:
                    data = obj.unconsumed_tail
        except zlib.error as exc:
            raise ParseFailure(
                f"invalid {'gzip' if self._gzip else 'deflate'} body: {exc}"
            ) from None

    def finish(self) -> bytes:
        obj = self._obj
        if obj is None:
            if self._head:
                raise ParseFailure("compressed body ends before its stream does")
            return b""
        try:
            while not obj.eof:
                out = obj.decompress(b"", self._cap - self._size + 1)
                if not out:
                    break
                self._take(out)
        except zlib.error as exc:
            raise ParseFailure(f"invalid compressed body: {exc}") from None
        if not obj.eof:
            raise ParseFailure("compressed body ends before its stream does")
        return b"".join(self._out)


__all__ = [
    "RETRY_AFTER_STATUSES",
    "TRACE",
    "Decoder",
    "Exchange",
    "HttpClient",
    "Response",
    "TargetClient",
    "make_ssl_context",
    "parse_retry_after",
    "redact_url",
]
