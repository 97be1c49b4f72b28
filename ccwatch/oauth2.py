"""OAuth2 client credentials for the HTTP layer: a :class:`TargetClient` that adds a token.

:class:`OAuth2Client` wraps a target's :class:`~ccwatch.http.TargetClient` (use it from a
source's ``client_factory``, with the target's :class:`TokenSource`, which the daemon
keeps in the target's state) and

- gets an access token from the config's ``token_url`` with the client credentials grant
  (``grant_type=client_credentials``, ``client_id`` and ``client_secret`` in the form body,
  ``scope`` space-separated, plus ``endpoint_params``), through the same capped,
  error-mapped :meth:`TargetClient.request` as every other request (the target's TLS
  settings, proxy and body cap apply to it too, and a redirect is never followed: a
  token endpoint answering 3xx fails the token request, and the client secret is never
  sent to the host its ``Location`` names);
- caches the token until shortly before it expires (``expires_in``, minus a tenth of
  its lifetime, at most a minute); a token without ``expires_in`` is kept until the API
  rejects it;
- makes at most one token request per target at a time: jobs that need a token while one
  is being fetched wait for it, and share its failure rather than each asking again;
- sends ``Authorization: Bearer <token>`` and, on a 401 from the API, refreshes the token
  once and retries that request once;
- counts failed token requests per target (:attr:`TokenSource.failures`).

A failed token request fails the poll with reason ``auth`` (``rate_limited`` for a 429,
with the server's ``Retry-After``) and a detail that starts with ``token request
failed`` (a redirect's detail names its ``Location``, without userinfo), and counts in
:attr:`TokenSource.failures`; nothing is logged here: the scheduler logs the failed poll
once.

Secrets (the client secret and the tokens) are kept in ``SecretStr`` and never appear in
an exception message, a ``repr``, a log line or a metric.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from pydantic import SecretStr
from yarl import URL

from ccwatch.config import OAuth2
from ccwatch.errors import (
    REASON_AUTH,
    REASON_RATE_LIMITED,
    ParseFailure,
    PollError,
    StatusFailure,
)
from ccwatch.http import Response, TargetClient
from ccwatch.numbers import check_json_number, parse_decimal

__all__ = ["OAuth2Client", "TokenFailure", "TokenSource"]

#: A token is renewed this fraction of its lifetime before it expires ...
REFRESH_FRACTION: Final = 0.1
#: ... but at most this many seconds before.
MAX_REFRESH_MARGIN: Final = 60.0
JSON_TYPES: Final = ("json",)


class TokenFailure(PollError):
    """The token request failed: reason ``auth``, or ``rate_limited`` for a 429."""

    reason = REASON_AUTH

    def __init__(self, detail: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Token:
    value: SecretStr
    #: ``clock()`` time after which the token is renewed; ``None``: until rejected.
    renew_at: float | None


def _positive_number(value: object) -> float | None:
    """``expires_in``: a number or a numeric string (some servers quote it).

    A plain ASCII decimal, finite and exactly representable (:mod:`ccwatch.numbers`):
    ``"٤"``, ``"1e3"`` or ``"1_000"`` are not numbers, nor is anything beyond 2**53.
    """
    try:
        if isinstance(value, str):
            number = parse_decimal(value, "expires_in")
        else:
            number = check_json_number(value, "expires_in")
    except ParseFailure:
        return None
    return number if number > 0 else None


def parse_token_response(body: bytes, now: float) -> Token:
    """The token endpoint's JSON answer. Messages never quote the body (it holds secrets)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the answer is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        raise ValueError("the answer has no access_token")
    token_type = data.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ValueError("the token_type is not bearer")
    renew_at = None
    if data.get("expires_in") is not None:
        lifetime = _positive_number(data["expires_in"])
        if lifetime is None:
            raise ValueError("expires_in is not a positive number")
        renew_at = now + lifetime - min(MAX_REFRESH_MARGIN, lifetime * REFRESH_FRACTION)
    return Token(SecretStr(access_token.strip()), renew_at)


class TokenSource:
    """The client credentials tokens of one target: cached, fetched one at a time.

    ``failures`` counts failed token requests; ``requests`` counts every token request.
    """

    def __init__(self, config: OAuth2, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.failures = 0
        self.requests = 0
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # bumped after every token request; waiters use it to share a failure
        self._generation = 0
        self._last_failure: TokenFailure | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSource(token_url={self.config.token_url!r}, "
            f"client_id={self.config.client_id!r}, failures={self.failures})"
        )

    def reconfigure(self, config: OAuth2) -> None:
        """Use other credentials from now on (a reload); the counters carry on."""
        if config != self.config:
            self.config = config
            self._token = None
            self._last_failure = None

    def _valid(self) -> Token | None:
        token = self._token
        if token is not None and (token.renew_at is None or self.clock() < token.renew_at):
            return token
        return None

    async def token(self, client: TargetClient) -> SecretStr:
        """A valid access token, from the cache or from one token request."""
        token = self._valid()
        if token is not None:
            return token.value
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # a source outlives an event loop only in tests
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        generation = self._generation
        async with self._lock:
            token = self._valid()
            if token is not None:
                return token.value
            failure = self._last_failure
            if self._generation != generation and failure is not None:
                # the request this job waited for failed: share that, do not ask again
                raise TokenFailure(
                    failure.detail, reason=failure.reason, retry_after=failure.retry_after
                )
            token = await self._fetch(client)
            return token.value

    def invalidate(self, value: SecretStr) -> None:
        """Forget the cached token if it is ``value`` (the API rejected it)."""
        token = self._token
        if token is not None and token.value.get_secret_value() == value.get_secret_value():
            self._token = None

    def _form(self) -> dict[str, str]:
        config = self.config
        assert config.client_secret is not None  # the config model requires it
        form = dict(config.endpoint_params)
        form["grant_type"] = "client_credentials"
        form["client_id"] = config.client_id
        form["client_secret"] = config.client_secret.get_secret_value()
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        return form

    async def _fetch(self, client: TargetClient) -> Token:
        self.requests += 1
        where = f"token endpoint {urlsplit(self.config.token_url).hostname}"
        failure: TokenFailure | None = None
        try:
            response = await client.request(
                "POST",
                URL(self.config.token_url),
                data=self._form(),
                headers={"Accept": "application/json"},
                content_types=JSON_TYPES,
            )
            token = parse_token_response(response.body, self.clock())
        except asyncio.CancelledError:  # the poll timed out or the daemon stops
            self.failures += 1
            self._generation += 1
            self._last_failure = None  # waiters try for themselves
            raise
        except PollError as exc:
            rate_limited = isinstance(exc, StatusFailure) and exc.status == 429
            failure = TokenFailure(
                f"token request failed: {exc.detail} ({where})",
                reason=REASON_RATE_LIMITED if rate_limited else REASON_AUTH,
                retry_after=exc.retry_after,
            )
        except ValueError as exc:
            failure = TokenFailure(f"token request failed: {exc} ({where})", reason=REASON_AUTH)
        self._generation += 1
        if failure is not None:
            self.failures += 1
            self._last_failure = failure
            self._token = None
            raise failure
        self._last_failure = None
        self._token = token
        return token


class OAuth2Client(TargetClient):
    """A target's client that sends a bearer token from ``tokens`` with every request.

    Every request is delegated to ``inner`` (the target's plain client), so body caps,
    error mapping, TLS and proxy settings are the same as for any other source.
    """

    def __init__(self, inner: TargetClient, tokens: TokenSource) -> None:
        # No TargetClient.__init__: this client owns no connection settings of its own.
        self.inner = inner
        self.tokens = tokens
        self.http = inner.http
        self.base_url = inner.base_url
        self.max_response_size = inner.max_response_size

    def __repr__(self) -> str:
        return f"OAuth2Client(base_url={self.base_url!r}, tokens={self.tokens!r})"

    def url(self, path: str) -> str:
        return self.inner.url(path)

    def with_cap(self, max_response_size: int) -> OAuth2Client:
        return OAuth2Client(self.inner.with_cap(max_response_size), self.tokens)

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
        """As :meth:`TargetClient.request`, authorised; a 401 refreshes the token once.

        The retry sends ``data`` again, so pass bytes, a string or a mapping, not a
        single-use body.
        """
        for attempt in (1, 2):
            token = await self.tokens.token(self.inner)
            try:
                return await self.inner.request(
                    method,
                    url,
                    headers=_authorised(headers, token),
                    data=data,
                    params=params,
                    ok=ok,
                    content_types=content_types,
                )
            except StatusFailure as exc:
                if exc.status != 401:
                    raise
                if attempt == 2:
                    raise StatusFailure(
                        401,
                        "HTTP status 401 even with a new access token",
                        retry_after=exc.retry_after,
                    ) from None
                self.tokens.invalidate(token)
        raise AssertionError("unreachable")  # pragma: no cover


def _authorised(headers: Mapping[str, str] | None, token: SecretStr) -> dict[str, str]:
    return {**(headers or {}), "Authorization": f"Bearer {token.get_secret_value()}"}
