"""OAuth2 client credentials in the HTTP layer, against a small token server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from ccwatch.config import OAuth2
from ccwatch.errors import PollError, StatusFailure
from ccwatch.http import HttpClient, TargetClient
from ccwatch.oauth2 import (
    OAuth2Client,
    TokenFailure,
    TokenSource,
    parse_token_response,
)
from tests.harness import local_app

SECRET = "s3cr3t-client-secret"


@dataclass
class Server:
    """A token endpoint and an API; each test changes their behaviour."""

    url: str = ""
    token_forms: list[dict[str, str]] = field(default_factory=list)
    token_status: int = 200
    token_body: bytes | None = None
    token_headers: dict[str, str] = field(default_factory=dict)
    token_delay: float = 0.0
    token_gate: asyncio.Event | None = None
    token_seen: asyncio.Event = field(default_factory=asyncio.Event)
    #: answer the token request with this (body, content type) after recording it
    token_answer: tuple[bytes, str] | None = None
    expires_in: Any = 3600
    issued: list[str] = field(default_factory=list)
    #: tokens the API accepts; None: the last issued one
    accepted: set[str] | None = None
    api_status: int | None = None  # force this status on the API
    api_auth: list[str] = field(default_factory=list)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_forms.append({k: str(v) for k, v in form.items()})
        self.token_seen.set()
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_gate is not None:
            await self.token_gate.wait()
        if self.token_answer is not None:
            return web.Response(body=self.token_answer[0], content_type=self.token_answer[1])
        if self.token_body is not None or self.token_status != 200:
            return web.Response(
                status=self.token_status,
                body=self.token_body or b'{"error": "server_error"}',
                content_type="application/json",
                headers=self.token_headers,
            )
        value = f"token-{len(self.issued) + 1}"
        self.issued.append(value)
        body: dict[str, Any] = {"access_token": value, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    async def api(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.api_auth.append(auth)
        if self.api_status is not None:
            return web.Response(status=self.api_status)
        accepted = self.accepted if self.accepted is not None else set(self.issued[-1:])
        if auth.removeprefix("Bearer ") not in accepted:
            return web.Response(status=401)
        return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/oauth2/token", srv.token)
    app.router.add_get("/api", srv.api)
    async with local_app(app) as url:
        srv.url = url
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    try:
        yield client
    finally:
        await client.close()


def plain(http: HttpClient, base_url: str, max_response_size: int = 1 << 20) -> TargetClient:
    return TargetClient(
        http,
        base_url=base_url,
        ssl_context=True,
        server_name=None,
        proxy=None,
        headers={"Accept": "application/json"},
        max_response_size=max_response_size,
    )


def oauth2(server: Server, **overrides: Any) -> OAuth2:
    data: dict[str, Any] = {
        "token_url": f"{server.url}/oauth2/token",
        "client_id": "ccwatch",
        "client_secret": SECRET,
        "scopes": ["customerexperienceapi.contextcookies", "other.scope"],
        **overrides,
    }
    return OAuth2.model_validate(data)


def make(server: Server, http: HttpClient, **overrides: Any) -> OAuth2Client:
    return OAuth2Client(plain(http, server.url), TokenSource(oauth2(server, **overrides)))


async def test_token_is_requested_once_and_cached(server: Server, http: HttpClient) -> None:
    client = make(server, http, endpoint_params={"audience": "cx", "grant_type": "nope"})
    for _ in range(5):
        response = await client.request("GET", client.url("/api"))
        assert response.status == 200
    assert len(server.token_forms) == 1
    assert server.token_forms[0] == {
        "audience": "cx",
        "grant_type": "client_credentials",  # endpoint_params cannot override the grant
        "client_id": "ccwatch",
        "client_secret": SECRET,
        "scope": "customerexperienceapi.contextcookies other.scope",
    }
    assert server.api_auth == ["Bearer token-1"] * 5
    assert client.tokens.requests == 1
    assert client.tokens.failures == 0


async def test_one_token_request_in_flight(server: Server, http: HttpClient) -> None:
    server.token_delay = 0.1
    client = make(server, http)
    results = await asyncio.gather(*(client.request("GET", client.url("/api")) for _ in range(20)))
    assert all(r.status == 200 for r in results)
    assert len(server.token_forms) == 1


async def test_token_renewed_shortly_before_it_expires(server: Server, http: HttpClient) -> None:
    now = [1000.0]
    server.expires_in = 100
    client = OAuth2Client(
        plain(http, server.url), TokenSource(oauth2(server), clock=lambda: now[0])
    )
    await client.request("GET", client.url("/api"))
    now[0] += 89.0  # 10% of the lifetime before expiry: still fine
    await client.request("GET", client.url("/api"))
    assert len(server.token_forms) == 1
    now[0] += 2.0
    await client.request("GET", client.url("/api"))
    assert len(server.token_forms) == 2
    assert server.api_auth[-1] == "Bearer token-2"


def test_refresh_margin_is_at_most_a_minute() -> None:
    token = parse_token_response(b'{"access_token": "a", "expires_in": 86400}', now=0.0)
    assert token.renew_at == 86400 - 60
    token = parse_token_response(b'{"access_token": "a", "expires_in": "20"}', now=5.0)
    assert token.renew_at == 5 + 20 - 2
    token = parse_token_response(b'{"access_token": "a", "token_type": "bearer"}', now=0.0)
    assert token.renew_at is None  # kept until the API rejects it
    assert token.value.get_secret_value() == "a"


async def test_401_refreshes_once_and_retries_once(server: Server, http: HttpClient) -> None:
    client = make(server, http)
    await client.request("GET", client.url("/api"))
    server.accepted = {"token-2"}  # the server forgets token-1
    response = await client.request("GET", client.url("/api"))
    assert response.status == 200
    assert server.api_auth == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    assert len(server.token_forms) == 2
    assert client.tokens.failures == 0


async def test_401_with_a_new_token_fails_with_auth(server: Server, http: HttpClient) -> None:
    server.api_status = 401
    client = make(server, http)
    with pytest.raises(StatusFailure) as info:
        await client.request("GET", client.url("/api"))
    assert info.value.reason == "auth"
    assert "new access token" in info.value.detail
    assert len(server.api_auth) == 2  # the request and one retry
    assert len(server.token_forms) == 2  # the token and one refresh


async def test_concurrent_401s_share_one_refresh(server: Server, http: HttpClient) -> None:
    client = make(server, http)
    await client.request("GET", client.url("/api"))
    server.accepted = {"token-2"}
    await asyncio.gather(*(client.request("GET", client.url("/api")) for _ in range(10)))
    assert len(server.token_forms) == 2


async def test_403_is_auth_without_refresh(server: Server, http: HttpClient) -> None:
    server.api_status = 403
    client = make(server, http)
    with pytest.raises(StatusFailure) as info:
        await client.request("GET", client.url("/api"))
    assert info.value.reason == "auth"
    assert len(server.token_forms) == 1
    assert len(server.api_auth) == 1


async def test_token_endpoint_down_is_auth(server: Server, http: HttpClient) -> None:
    server.token_status = 503
    client = make(server, http)
    with pytest.raises(TokenFailure) as info:
        await client.request("GET", client.url("/api"))
    error = info.value
    assert error.reason == "auth"
    assert error.detail.startswith("token request failed: unexpected HTTP status 503")
    assert "127.0.0.1" in error.detail
    assert SECRET not in str(error)
    assert server.api_auth == []  # no API request without a token
    assert client.tokens.failures == 1
    # the next poll asks again (and may succeed)
    server.token_status = 200
    assert (await client.request("GET", client.url("/api"))).status == 200
    assert client.tokens.failures == 1


async def test_token_endpoint_refusing_connections_is_auth(
    server: Server, http: HttpClient
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make(server, http, token_url=f"http://127.0.0.1:{port}/token")
    with pytest.raises(TokenFailure) as info:
        await client.request("GET", client.url("/api"))
    assert info.value.reason == "auth"
    assert "token request failed" in info.value.detail
    assert client.tokens.failures == 1


async def test_rate_limited_token_endpoint_keeps_retry_after(
    server: Server, http: HttpClient
) -> None:
    server.token_status = 429
    server.token_headers = {"Retry-After": "7"}
    client = make(server, http)
    with pytest.raises(TokenFailure) as info:
        await client.request("GET", client.url("/api"))
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after == 7.0


async def test_waiters_share_a_failed_token_request(server: Server, http: HttpClient) -> None:
    server.token_status = 500
    server.token_delay = 0.1
    client = make(server, http)
    results = await asyncio.gather(
        *(client.request("GET", client.url("/api")) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, TokenFailure) and r.reason == "auth" for r in results)
    assert len(server.token_forms) == 1
    assert client.tokens.failures == 1


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (b'{"token_type": "Bearer"}', "application/json", "no access_token"),
        (b'{"access_token": "x", "token_type": "mac"}', "application/json", "not bearer"),
        (b'{"access_token": "x", "expires_in": -5}', "application/json", "expires_in"),
        (b'{"access_token": "x", "expires_in": true}', "application/json", "expires_in"),
        (b"<html>login</html>", "text/html", "unexpected content type"),
    ],
)
async def test_unreadable_token_answers_are_auth(
    server: Server, http: HttpClient, body: bytes, content_type: str, message: str
) -> None:
    server.token_answer = (body, content_type)
    client = make(server, http)
    with pytest.raises(TokenFailure, match=message) as info:
        await client.tokens.token(client.inner)
    assert info.value.reason == "auth"
    assert client.tokens.failures == 1


async def test_oversized_token_answer_is_auth(server: Server, http: HttpClient) -> None:
    # a 200 whose body is over the cap (an error status decides by itself, unread)
    server.token_status = 200
    server.token_body = b"x" * 5000
    client = OAuth2Client(
        plain(http, server.url, max_response_size=1000), TokenSource(oauth2(server))
    )
    with pytest.raises(TokenFailure, match="exceeds the 1000-byte cap") as info:
        await client.request("GET", client.url("/api"))
    assert info.value.reason == "auth"


async def test_cancelled_token_request_counts_and_lets_the_next_try(
    server: Server, http: HttpClient
) -> None:
    server.token_gate = asyncio.Event()
    client = make(server, http)
    task = asyncio.create_task(client.request("GET", client.url("/api")))
    await server.token_seen.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.tokens.failures == 1
    server.token_gate.set()
    assert (await client.request("GET", client.url("/api"))).status == 200


def test_secrets_stay_out_of_reprs() -> None:
    config = OAuth2.model_validate(
        {"token_url": "https://id.example.com/token", "client_id": "c", "client_secret": SECRET}
    )
    tokens = TokenSource(config)
    assert SECRET not in repr(tokens)
    assert SECRET not in repr(config)
    token = parse_token_response(b'{"access_token": "tok-value-123"}', now=0.0)
    assert "tok-value-123" not in repr(token)


def test_a_token_source_reconfigured_keeps_its_token_only_for_the_same_credentials() -> None:
    first = OAuth2.model_validate(
        {"token_url": "https://id.example.com/token", "client_id": "c", "client_secret": "a"}
    )
    second = first.model_copy(update={"client_secret": SecretStr("b")})
    source = TokenSource(first)
    source.failures = 3
    source._token = parse_token_response(b'{"access_token": "t"}', now=0.0)
    source.reconfigure(first)
    assert source._token is not None  # same credentials: the token stays
    source.reconfigure(second)
    assert source.config == second
    assert source._token is None  # new credentials: a new token
    assert source.failures == 3  # the counter outlives reloads


def test_token_failure_is_a_poll_error() -> None:
    failure = TokenFailure("token request failed: x", reason="auth")
    assert isinstance(failure, PollError)
    assert failure.reason == "auth"
