"""A small HTTP server on 127.0.0.1 for the source tests' jobs, and real clients to reach it.

Every request goes through the real :class:`~ccwatch.http.TargetClient`, built as the
daemon builds it (see :func:`ccwatch.daemon.build_jobs`), over a real socket. The server
records what arrived (:class:`Seen`) and answers from a queue of :class:`Answer`\\ s, or
with one answer to everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from ccwatch.config import ConfigBase, TargetConfig
from ccwatch.http import HttpClient, TargetClient
from ccwatch.sources import SOURCES
from ccwatch.sources.base import SourceState


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as it arrived at the server."""

    method: str
    #: scheme, host and port, the path as sent (percent-encoded) and the query
    url: str
    #: the decoded path
    path: str
    #: the path as sent, percent-encoded, without the query
    raw_path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    content_type: str
    #: the fields of a url-encoded or multipart form, else None
    form: dict[str, str] | None
    #: the body unless it is a form
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server answers to one request; ``hang``: never answer (until teardown)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    hang: bool = False


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Server:
    """Records every request and answers from :attr:`answers` (in order) or :attr:`default`."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.url = ""
        self.requests: list[Seen] = []
        self.answers: list[Answer] = []
        self.default: Answer | None = None
        #: requests that found no answer (answered 500); the fixture fails the test on them
        self.unanswered: list[Seen] = []
        #: set when a request with a hanging answer has arrived
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()

    def answer(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order."""
        self.answers.extend(answers)

    def always(self, answer: Answer) -> None:
        """Answer every request (once the queue is empty) with ``answer``."""
        self.default = answer

    def client(
        self, target: TargetConfig, config: ConfigBase, state: SourceState | None = None
    ) -> TargetClient:
        """The target's client, made as the daemon makes it (with the target's ``state``,
        for a source that keeps one: see :func:`state_of`)."""
        source = SOURCES[target.source]
        client = self.http.for_target(
            target,
            max_response_size=config.max_response_size_of(target),
            headers=source.headers,
        )
        if source.client_factory is not None:
            client = source.client_factory(target, client, state)
        return client

    async def handle(self, request: web.Request) -> web.StreamResponse:
        content_type = request.headers.get("Content-Type", "")
        form: dict[str, str] | None = None
        body = b""
        if content_type.startswith(_FORM_TYPES):
            form = {key: str(value) for key, value in (await request.post()).items()}
        else:
            body = await request.read()
        seen = Seen(
            method=request.method,
            url=f"{request.scheme}://{request.host}{request.raw_path}",
            path=request.path,
            raw_path=request.rel_url.raw_path,
            query=dict(request.query),
            headers=request.headers,
            content_type=content_type,
            form=form,
            body=body,
        )
        self.requests.append(seen)
        if self.answers:
            answer = self.answers.pop(0)
        elif self.default is not None:
            answer = self.default
        else:
            self.unanswered.append(seen)
            return web.Response(status=500, text="the test queued no answer for this request")
        if answer.hang:
            self.hanging.set()
            await self.release.wait()
        return web.Response(
            status=answer.status, body=answer.body, headers={"Content-Type": answer.content_type}
        )


def state_of(target: TargetConfig) -> SourceState | None:
    """A new state for ``target``, as the daemon makes one, if its source keeps state."""
    source = SOURCES[target.source]
    return source.state(target) if source.state is not None else None


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A :class:`Server` on a free port of 127.0.0.1 and an HTTP client, both closed after."""
    http = HttpClient()
    srv = Server(http)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        srv.url = f"http://127.0.0.1:{port}"
        yield srv
    finally:
        await http.close()
        srv.release.set()
        await runner.cleanup()
    assert not srv.unanswered, f"requests without a queued answer: {srv.unanswered}"
