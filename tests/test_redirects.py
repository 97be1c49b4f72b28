"""Redirects are never followed: to a token endpoint, an API, or from ``ccwatch probe``.

Two servers on 127.0.0.1 over real sockets: ``origin`` (A, the configured vendor) and
``elsewhere`` (B, the host a redirect names), which logs every request it gets and answers
each with a token or a reading of its own. The daemon, the HTTP layer and ``ccwatch
probe`` are the real ones; whatever A answers, B must receive nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ccwatch.errors import PollError
from ccwatch.http import HttpClient, TargetClient
from ccwatch.sources.alvaria_context_cookies import KINDS
from tests import harness
from tests.harness import local_app
from tests.test_probe import probe

TOKEN_PATH = "/oauth2/token"
API_PATH = "/via/v2/organizations/orgR/customerexperience/contextCookies/customers"
INTERNAL_PATH = "/internal/admin"
CLIENT_ID = "redirect-client"
SECRET = "redirect-client-secret-5a7e"
API_KEY = "redirect-api-key-c41d"
ORIGIN_TOKEN = "token-from-origin"
ELSEWHERE_TOKEN = "token-from-elsewhere"
ORIGIN_ITEMS = 7
ELSEWHERE_ITEMS = 4242
INTERNAL_BODY = "internal-only-body-9f3c: root=/etc/shadow"
ITEMS = "ccwatch_alvaria_context_cookies_items"
TOKEN_FAILURES = "ccwatch_alvaria_token_failures_total"
POLL_ERRORS = "ccwatch_poll_errors_total"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """An HTTP server on 127.0.0.1 that logs every request and answers from ``routes``
    (path to handler; 404 for any other path)."""

    url: str = ""
    log: list[Seen] = field(default_factory=list)
    routes: dict[str, Handler] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.log.append(Seen(request.method, request.path, dict(request.headers), body))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404)
        return await handler(request)


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    async with local_app(app) as url:
        server.url = url
        yield server


def collection(total: int) -> web.Response:
    data = {"kind": KINDS["customers"], "totalItems": str(total), "customers": []}
    return web.json_response(data)


def token(value: str) -> web.Response:
    return web.json_response({"access_token": value, "token_type": "Bearer", "expires_in": 3600})


def redirect(status: int, location: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location}, text="moved")

    return answer


async def origin_token(request: web.Request) -> web.Response:
    return token(ORIGIN_TOKEN)


async def origin_api(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {ORIGIN_TOKEN}":
        return web.Response(status=401)
    if request.headers.get("x-api-key") != API_KEY:
        return web.Response(status=403)
    return collection(ORIGIN_ITEMS)


@pytest.fixture
async def origin() -> AsyncIterator[Server]:
    """A: the configured vendor, a working token endpoint and API until a test says."""
    async with serving() as server:
        server.routes = {TOKEN_PATH: origin_token, API_PATH: origin_api}
        yield server


@pytest.fixture
async def elsewhere() -> AsyncIterator[Server]:
    """B: answers a token, a reading, and an internal page, to anyone who asks."""

    async def any_token(request: web.Request) -> web.Response:
        return token(ELSEWHERE_TOKEN)

    async def any_api(request: web.Request) -> web.Response:
        return collection(ELSEWHERE_ITEMS)

    async def internal(request: web.Request) -> web.Response:
        return web.Response(text=INTERNAL_BODY, content_type="text/plain")

    async with serving() as server:
        server.routes = {TOKEN_PATH: any_token, API_PATH: any_api, INTERNAL_PATH: internal}
        yield server


def alvaria(origin: Server, name: str, **extra: Any) -> dict[str, Any]:
    """An Alvaria target on ``origin`` (token sources live per target name for the whole
    process: every test uses a name of its own)."""
    return {
        "name": name,
        "source": "alvaria_context_cookies",
        "url": origin.url,
        "org_id": "orgR",
        "oauth2": {
            "token_url": origin.url + TOKEN_PATH,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        },
        "api_key": API_KEY,
        "collections": ["customers"],
        "interval": "250ms",
        "timeout": "200ms",
        **extra,
    }


async def last_error(d: harness.Running, target: str) -> tuple[str, str]:
    """The one job of ``target`` as ``/api/v1/targets`` shows it: (lastReason, lastError)."""
    status, text = await d.get("/api/v1/targets")
    assert status == 200
    [job] = [
        j for t in json.loads(text)["data"]["targets"] if t["name"] == target for j in t["jobs"]
    ]
    return job["lastReason"], job["lastError"]


def settled(job: dict[str, str]) -> Callable[[harness.Scrape], bool]:
    """``job`` has failed twice, or succeeded (as it did when redirects were followed)."""

    def check(s: harness.Scrape) -> bool:
        failures = sum(x.value for x in s.series(POLL_ERRORS, **job))
        return failures >= 2 or s.value("ccwatch_poll_success", **job) == 1.0

    return check


def assert_nothing_sent(elsewhere: Server) -> None:
    """B got no request: no client secret, no API key, no token went there."""
    assert elsewhere.log == []


# --------------------------------------------------------------------------- the daemon


@pytest.mark.parametrize("status", [307, 308, 302])
async def test_a_token_endpoint_redirect_is_not_followed(
    origin: Server, elsewhere: Server, status: int
) -> None:
    """The token endpoint answers a redirect to B's: the client secret is not re-POSTed
    there, no token of B's is used, and the poll fails as a token failure that names
    where the redirect pointed."""
    origin.routes[TOKEN_PATH] = redirect(status, elsewhere.url + TOKEN_PATH)
    name = f"redirect-token-{status}"
    job = {"target": name, "endpoint": "customers"}
    async with harness.daemon({"targets": [alvaria(origin, name)]}) as d:
        s = await d.wait_for(settled(job), what="two failures or a success")
        reason, error = await last_error(d, name)
        page = (await d.get("/"))[1]
    assert_nothing_sent(elsewhere)
    assert (s.value(TOKEN_FAILURES, target=name) or 0) >= 2  # each failed poll's request
    # A's token endpoint was asked, its API never: no token came from anywhere
    assert origin.log
    assert {x.path for x in origin.log} == {TOKEN_PATH}
    assert s.value("ccwatch_poll_success", **job) == 0.0
    assert s.series(ITEMS, target=name) == []
    assert {x.labels["reason"] for x in s.series(POLL_ERRORS, **job)} == {"auth"}
    assert reason == "auth"
    assert error.startswith("token request failed: ")
    assert f"HTTP status {status}" in error
    assert elsewhere.url + TOKEN_PATH in error
    for shown in (error, page, s.text):
        assert SECRET not in shown


@pytest.mark.parametrize("status", [307, 301, 303])
async def test_an_api_redirect_is_not_followed(
    origin: Server, elsewhere: Server, status: int
) -> None:
    """The API answers a redirect to B: B gets no request (so no ``x-api-key``, no
    bearer token), B's value is exported nowhere, and the poll fails as ``http_status``
    with the Location in its detail."""
    origin.routes[API_PATH] = redirect(status, elsewhere.url + API_PATH)
    name = f"redirect-api-{status}"
    job = {"target": name, "endpoint": "customers"}
    async with harness.daemon({"targets": [alvaria(origin, name)]}) as d:
        s = await d.wait_for(settled(job), what="two failures or a success")
        reason, error = await last_error(d, name)
    assert_nothing_sent(elsewhere)
    assert {x.path for x in origin.log} == {TOKEN_PATH, API_PATH}
    assert s.value("ccwatch_poll_success", **job) == 0.0
    assert {x.labels["reason"] for x in s.series(POLL_ERRORS, **job)} == {"http_status"}
    assert s.series(ITEMS, target=name) == []
    assert str(ELSEWHERE_ITEMS) not in s.text
    assert s.value(TOKEN_FAILURES, target=name) == 0.0  # the token was fine
    assert reason == "http_status"
    assert f"unexpected HTTP status {status}" in error
    assert elsewhere.url + API_PATH in error


async def test_the_api_answers_again_after_a_redirect(origin: Server, elsewhere: Server) -> None:
    """A redirect is a failed poll like any other: when the API answers again, the job
    recovers with A's value."""
    origin.routes[API_PATH] = redirect(307, elsewhere.url + API_PATH)
    name = "redirect-recovers"
    job = {"target": name, "endpoint": "customers"}
    async with harness.daemon({"targets": [alvaria(origin, name)]}) as d:
        s = await d.wait_for(settled(job), what="two failures or a success")
        assert_nothing_sent(elsewhere)
        assert s.value("ccwatch_poll_success", **job) == 0.0
        origin.routes[API_PATH] = origin_api
        s = await d.wait_for(lambda s: s.value("ccwatch_poll_success", **job) == 1.0)
    assert s.value(ITEMS, target=name, collection="customers") == float(ORIGIN_ITEMS)
    assert_nothing_sent(elsewhere)


# --------------------------------------------------------------------------- the HTTP layer


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    try:
        yield client
    finally:
        await client.close()


def plain(http: HttpClient, base_url: str) -> TargetClient:
    return TargetClient(
        http,
        base_url=base_url,
        ssl_context=True,
        server_name=None,
        proxy=None,
        headers={"x-api-key": API_KEY},
        max_response_size=1 << 20,
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_every_redirect_status_fails_the_request(
    origin: Server, elsewhere: Server, http: HttpClient, status: int, method: str
) -> None:
    origin.routes["/moved"] = redirect(status, elsewhere.url + API_PATH)
    client = plain(http, origin.url)
    with pytest.raises(PollError) as info:
        await client.request(method, client.url("/moved"), data=b"form=1")
    assert info.value.reason == "http_status"
    assert info.value.detail == (
        f"unexpected HTTP status {status}, redirect to '{elsewhere.url}{API_PATH}' not followed"
    )
    assert_nothing_sent(elsewhere)
    assert len(origin.log) == 1


async def test_a_redirect_may_be_accepted_but_is_still_not_followed(
    origin: Server, elsewhere: Server, http: HttpClient
) -> None:
    """A caller that accepts a 3xx gets the 3xx itself, never the page it points to."""
    origin.routes["/moved"] = redirect(302, elsewhere.url + INTERNAL_PATH)
    client = plain(http, origin.url)
    response = await client.request("GET", client.url("/moved"), ok=(302,))
    assert response.status == 302
    assert response.headers["Location"] == elsewhere.url + INTERNAL_PATH
    assert response.body == b"moved"
    assert_nothing_sent(elsewhere)


async def test_the_location_in_the_detail_has_no_userinfo(
    origin: Server, elsewhere: Server, http: HttpClient
) -> None:
    host = elsewhere.url.removeprefix("http://")
    origin.routes["/moved"] = redirect(302, f"http://someone:hunter2-pw@{host}/x?y=1")
    client = plain(http, origin.url)
    with pytest.raises(PollError) as info:
        await client.request("GET", client.url("/moved"))
    assert info.value.detail == (
        f"unexpected HTTP status 302, redirect to 'http://{host}/x?y=1' not followed"
    )
    assert_nothing_sent(elsewhere)


async def test_a_redirect_without_a_location_fails_too(origin: Server, http: HttpClient) -> None:
    async def bare(request: web.Request) -> web.Response:
        return web.Response(status=302)

    origin.routes["/moved"] = bare
    client = plain(http, origin.url)
    with pytest.raises(PollError) as info:
        await client.request("GET", client.url("/moved"))
    assert (info.value.reason, info.value.detail) == ("http_status", "unexpected HTTP status 302")


# --------------------------------------------------------------------------- ccwatch probe


@pytest.mark.parametrize("output", ["text", "json"])
async def test_probe_shows_the_redirect_and_stops(
    origin: Server, elsewhere: Server, tmp_path: Path, output: str
) -> None:
    """A 302 to an internal URL: probe shows the 302 and its Location, and neither fetches
    the internal page nor shows its body."""
    internal = elsewhere.url + INTERNAL_PATH
    origin.routes[API_PATH] = redirect(302, internal)
    path = tmp_path / "ccwatch.yml"
    harness.write_config(path, {"targets": [alvaria(origin, f"redirect-probe-{output}")]})
    code, out, err = astuple(await probe(path, "--format", output))
    assert code == 1, err  # the job failed
    assert_nothing_sent(elsewhere)
    assert INTERNAL_BODY not in out
    assert INTERNAL_BODY not in err
    detail = f"unexpected HTTP status 302, redirect to '{internal}' not followed"
    if output == "text":
        assert f"FAILED http_status: {detail}" in out
        assert "  < 302 Found " in out
        assert f"  < Location: {internal}\n" in out
        assert "  < moved\n" in out  # the redirect's own body, from A
        # the token request and the API request, and no third one to the Location
        assert out.count("  > GET ") == 1
        assert out.count("  > POST ") == 1
    else:
        [job] = [json.loads(line) for line in out.splitlines()]
        assert (job["reason"], job["detail"]) == ("http_status", detail)
        token_request, api = job["exchanges"]
        assert token_request["status"] == 200
        assert api["status"] == 302
        assert ["Location", internal] in api["response_headers"]
        assert api["body"] == "moved"
        assert api["error"] == f"http_status: {detail}"
