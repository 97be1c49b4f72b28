"""The one HTTP layer: a shared aiohttp session, per-target settings, and failure mapping.

Every request ccwatch makes goes through :meth:`TargetClient.request`, which
- caps the response body (``too_large``),
- maps every transport error to exactly one poll failure reason
  (``connect``, ``tls``, ``timeout``),
- maps unexpected statuses to ``http_status`` (``auth`` for 401/403,
  ``rate_limited`` for 429, with the server's ``Retry-After``),
- checks the content type when the caller names the ones it accepts (``parse``).

It never sleeps or retries: time and failure are the scheduler's.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
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

USER_AGENT = f"ccwatch/{__version__}"
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date. None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
                headers={"User-Agent": USER_AGENT},
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
    ) -> TargetClient:
        all_headers = dict(headers or {})
        if target.basic_auth is not None:
            password = (
                target.basic_auth.password.get_secret_value() if target.basic_auth.password else ""
            )
            token = base64.b64encode(f"{target.basic_auth.username}:{password}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        return TargetClient(
            self,
            base_url=target.url,
            ssl_context=make_ssl_context(target.tls_config),
            server_name=target.tls_config.server_name if target.tls_config else None,
            proxy=target.proxy_url,
            headers=all_headers,
            max_response_size=max_response_size,
        )


class TargetClient:
    """One target's view of the shared session: its base URL, TLS, auth, proxy and body cap."""

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
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.max_response_size = max_response_size
        self._ssl = ssl_context
        self._server_hostname = server_name
        self._proxy = proxy
        self._headers = dict(headers)
        self._kwargs: dict[str, Any] = {"headers": self._headers, "ssl": ssl_context}
        if proxy is not None:
            self._kwargs["proxy"] = proxy
        if server_name is not None:
            self._kwargs["server_hostname"] = server_name

    def url(self, path: str) -> str:
        return self.base_url + path

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
            async with self.http.session.request(method, url, **kwargs) as resp:
                body = await self._read_capped(resp)
                status = resp.status
                resp_headers = resp.headers
        except PollError:
            raise
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise TLSFailure(f"TLS error: {exc}") from None
        except aiohttp.ServerTimeoutError as exc:
            raise TimeoutFailure(f"timed out: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectFailure(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if status not in ok:
            retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            raise StatusFailure(status, f"unexpected HTTP status {status}", retry_after=retry_after)
        response = Response(status, resp_headers, body)
        if content_types is not None:
            ctype = response.content_type.lower()
            if ctype and not any(want in ctype for want in content_types):
                raise ParseFailure(f"unexpected content type {ctype!r}")
        return response

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        cap = self.max_response_size
        length = resp.content_length
        if length is not None:
            if length > cap:
                raise TooLargeFailure(f"body of {length} bytes exceeds the {cap}-byte cap")
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise TooLargeFailure(f"body exceeds the {cap}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)


__all__ = [
    "HttpClient",
    "Response",
    "TargetClient",
    "make_ssl_context",
    "parse_retry_after",
]
