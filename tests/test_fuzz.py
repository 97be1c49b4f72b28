"""Fuzz: whatever a vendor sends, a poll ends in a reading or one documented reason.

A raw TCP server on 127.0.0.1 answers every request with a generated HTTP response:
status lines (valid, odd and broken), headers (Content-Type, Content-Encoding,
Retry-After, framing), and bodies made from the specs' samples (numbers swapped for
huge, non-ASCII or malformed ones, truncated, compressed or not, with junk inserted)
or plain random bytes. Each source's real jobs poll it through the real HTTP layer and
parsers; a reading must render to finite, exactly representable values. Any exception
other than a :class:`~ccwatch.errors.PollError` with a documented reason, and the reason
``internal``, fail the test.

The example budget is fixed and the examples derandomized, so CI time stays bounded and
every run checks the same inputs.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccwatch.errors import REASON_INTERNAL, REASONS, PollError
from ccwatch.exposition import format_value
from ccwatch.http import HttpClient
from ccwatch.sources import SOURCES, parse_config
from ccwatch.sources.base import JobSpec, Reading

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = 400
POLL_TIMEOUT = 5.0
T = TypeVar("T")

_TOKEN = b'{"access_token": "fuzz-token", "token_type": "Bearer", "expires_in": 3600}'


def _json_of_jsonc(body: bytes) -> bytes:
    without_comments = re.sub(rb"//[^\n]*", b"", body)
    return re.sub(rb",(\s*[}\]])", rb"\1", without_comments)


def _samples(source: str) -> list[bytes]:
    bodies = [path.read_bytes() for path in sorted((FIXTURES / source).iterdir())]
    return bodies + [_json_of_jsonc(b) for b in bodies if b.lstrip().startswith(b"[")]


def _targets(url: str) -> dict[str, dict[str, Any]]:
    return {
        "ece": {"source": "ece", "url": url, "entry_points": [1000]},
        "context_service": {
            "source": "context_service",
            "url": url,
            "basic_auth": {"username": "admin", "password": "pw"},
        },
        "genesys_services": {
            "source": "genesys_services",
            "url": url,
            "customer_ids": ["ABC1234"],
            "service_types": ["8"],
        },
        "gms_probe": {
            "source": "gms_probe",
            "url": url,
            "gms_service": "request-inbound-poll",
            "form": {"_phone_number": "6504669999"},
            "status_request": "status",
            "expected_statuses": ["waiting-for-agent"],
        },
        "alvaria_context_cookies": {
            "source": "alvaria_context_cookies",
            "url": url,
            "org_id": "orgId",
            "api_key": "the-api-key",
            "oauth2": {
                "token_url": f"{url}/token",
                "client_id": "ccwatch",
                "client_secret": "the-client-secret",
            },
        },
    }


# --------------------------------------------------------------------------- the server


class RawServer:
    """Answers the requests of one poll with :attr:`responses` in turn (raw bytes; the
    last one again for any further request), closing the connection after each.

    Token requests (a path ending in ``/token``) get a valid token, so OAuth2 sources
    reach their parsers.
    """

    def __init__(self) -> None:
        self.responses: list[bytes] = []
        self.served = 0
        self.port = 0

    def answer(self, *responses: bytes) -> None:
        self.responses = list(responses)
        self.served = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            path = head.split(b" ", 2)[1]
            if path.endswith(b"/token"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(_TOKEN)}\r\nConnection: close\r\n\r\n".encode()
                    + _TOKEN
                )
            else:
                writer.write(self.responses[min(self.served, len(self.responses) - 1)])
                self.served += 1
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


class Loop:
    """An event loop in a thread of its own, with the server and the HTTP client on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = RawServer()
        self.http = self.run(self._make_http)
        self._listener = self.run(self._listen)

    async def _make_http(self) -> HttpClient:
        return HttpClient()

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self.server.handle, "127.0.0.1", 0)
        self.server.port = server.sockets[0].getsockname()[1]
        return server

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def wrapped() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=60)

    def close(self) -> None:
        self.run(self.http.close)
        self._listener.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    try:
        yield running
    finally:
        running.close()


def jobs_of(loop: Loop, source_name: str) -> list[JobSpec]:
    url = f"http://127.0.0.1:{loop.server.port}"
    data = {"name": f"fuzz-{source_name}", **_targets(url)[source_name]}
    config = parse_config({"targets": [data]})
    target = config.targets[0]
    source = SOURCES[source_name]
    client = loop.http.for_target(target, max_response_size=64 * 1024, headers=source.headers)
    state = source.state(target) if source.state is not None else None
    if source.client_factory is not None:
        client = source.client_factory(target, client, state)
    return source.jobs(target, client, state)


# --------------------------------------------------------------------------- strategies

NASTY_NUMBERS = [
    "9" * 400,
    "-" + "9" * 30,
    "1_000",
    "+4",
    "\u0664",  # ARABIC-INDIC DIGIT FOUR
    "\u00b2",  # SUPERSCRIPT TWO
    "\uff14",  # FULLWIDTH DIGIT FOUR
    "1e400",
    "1e3",
    "NaN",
    "Infinity",
    "-0",
    "0x10",
    "9007199254740993",
    "3.00000000000000000001",
    "",
    " ",
    "true",
]
STATUS_LINES = st.one_of(
    st.sampled_from([200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 503]).map(
        lambda code: f"HTTP/1.1 {code} Whatever".encode()
    ),
    st.integers(100, 999).map(lambda code: f"HTTP/1.1 {code} X".encode()),
    st.binary(max_size=40),
    st.sampled_from([b"HTTP/1.0 200 OK", b"HTTP/2 200", b"ICY 200 OK", b"HTTP/1.1 200"]),
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/xml",
        "application/json",
        "text/xml; charset=utf-8",
        "application/json;charset=UTF-8",
        "text/html",
        "text/plain",
        "",
        "\u00ff\u0100/xml",
    ]
)
ENCODINGS = st.sampled_from(
    [None, None, "identity", "gzip", "x-gzip", "deflate", "raw-deflate", "br", "gzip, gzip", "zz"]
)
RETRY_AFTER = st.one_of(
    st.none(),
    st.integers(0, 10**12).map(str),
    st.sampled_from(["\u00b2", "1.5", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "9" * 400]),
    st.text(max_size=30),
)
FRAMINGS = st.sampled_from(["length", "length", "close", "chunked", "bad_length", "bad_chunk"])


@st.composite
def bodies(draw: st.DrawFn, samples: list[bytes], plausible: bool = False) -> bytes:
    body = draw(st.sampled_from(samples))
    hows = ["as_is", "number"] if plausible else ["number", "truncate", "insert", "random"]
    how = draw(st.sampled_from(hows))
    if how == "number":
        spots = list(re.finditer(rb"-?\d+(?:\.\d+)?", body))
        if spots:
            spot = draw(st.sampled_from(spots))
            value = draw(
                st.one_of(
                    st.sampled_from(NASTY_NUMBERS), st.text("0123456789.-+_e\u0664", max_size=25)
                )
            )
            body = body[: spot.start()] + value.encode() + body[spot.end() :]
    elif how == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif how == "insert":
        at = draw(st.integers(0, len(body)))
        junk = draw(st.one_of(st.binary(max_size=20), st.text(max_size=20).map(str.encode)))
        body = body[:at] + junk + body[at:]
    elif how == "random":
        body = draw(st.binary(max_size=300))
    return body


@dataclass(frozen=True)
class Exchange:
    status_line: bytes
    content_type: str | None
    encoding: str | None
    retry_after: str | None
    framing: str
    body: bytes

    def raw(self) -> bytes:
        body = self.body
        encoding = self.encoding
        if encoding in ("gzip", "x-gzip"):
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        elif encoding == "raw-deflate":
            compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            body = compressor.compress(body) + compressor.flush()
            encoding = "deflate"
        headers = [b"Connection: close"]
        if self.content_type is not None:
            headers.append(b"Content-Type: " + self.content_type.encode())
        if encoding is not None:
            headers.append(b"Content-Encoding: " + encoding.encode())
        if self.retry_after is not None:
            headers.append(b"Retry-After: " + self.retry_after.encode())
        if self.framing == "length":
            headers.append(f"Content-Length: {len(body)}".encode())
        elif self.framing == "bad_length":
            headers.append(f"Content-Length: {len(body) + 7}".encode())
        elif self.framing in ("chunked", "bad_chunk"):
            headers.append(b"Transfer-Encoding: chunked")
            size = b"zz" if self.framing == "bad_chunk" else f"{len(body):x}".encode()
            body = size + b"\r\n" + body + b"\r\n0\r\n\r\n" if body else b"0\r\n\r\n"
        return self.status_line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body


def exchanges(samples: list[bytes]) -> st.SearchStrategy[Exchange]:
    """Half plausible answers (the spec's samples, numbers swapped, clean framing), half
    anything at all, so that both the parsers and the HTTP layer's edges are reached."""
    plausible = st.builds(
        Exchange,
        status_line=st.just(b"HTTP/1.1 200 OK"),
        content_type=st.sampled_from([None, "application/xml", "application/json"]),
        encoding=st.sampled_from([None, None, "gzip", "deflate"]),
        retry_after=st.none(),
        framing=st.sampled_from(["length", "close", "chunked"]),
        body=bodies(samples, plausible=True),
    )
    wild = st.builds(
        Exchange,
        status_line=STATUS_LINES,
        content_type=CONTENT_TYPES,
        encoding=ENCODINGS,
        retry_after=RETRY_AFTER,
        framing=FRAMINGS,
        body=bodies(samples),
    )
    return st.one_of(plausible, wild)


# --------------------------------------------------------------------------- the test


def check_reading(reading: Reading, families: set[str]) -> None:
    """What the scheduler does with a reading: render every sample, read watched state."""
    for family, extra, value in reading.samples():
        assert family in families, family
        assert isinstance(value, float | int)
        assert math.isfinite(value), (family, value)
        assert abs(value) <= 2**53, (family, value)
        line = f'{family}{{target="t"{extra}}} {format_value(value)}\n'
        assert "\n" not in line[:-1]
    reading.watched()


async def poll_once(spec: JobSpec) -> str:
    error: PollError | None = None
    try:
        async with asyncio.timeout(POLL_TIMEOUT):
            reading = await spec.poll()
    except PollError as exc:
        error = exc
    except TimeoutError:
        return "timeout"
    if error is not None:
        assert error.reason in REASONS, error.reason
        assert error.reason != REASON_INTERNAL, error
        assert error.retry_after is None or math.isfinite(error.retry_after)
        return error.reason
    families = {f.name for source in SOURCES.values() for f in source.families}
    check_reading(reading, families)
    return "reading"


@pytest.mark.parametrize("source_name", sorted(SOURCES))
def test_any_answer_is_a_reading_or_one_documented_reason(loop: Loop, source_name: str) -> None:
    jobs = jobs_of(loop, source_name)
    outcomes: dict[str, int] = {}
    samples = _samples(source_name)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        first=exchanges(samples),
        second=exchanges(samples),  # for a poll of two requests (GMS: create, status)
        which=st.integers(0, len(jobs) - 1),
    )
    def run(first: Exchange, second: Exchange, which: int) -> None:
        loop.server.answer(first.raw(), second.raw())
        outcome = loop.run(lambda: poll_once(jobs[which]))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    # every answer ends within the poll: the server closes each connection, so nothing
    # may wait for more
    assert "timeout" not in outcomes, outcomes
    # the generator reached both sides: answers that parse, and failures
    assert outcomes.get("reading", 0) > 0, outcomes
    assert sum(n for name, n in outcomes.items() if name != "reading") > 0, outcomes


# --------------------------------------------------------------------------- every number


def _sequences(source_name: str, endpoint: str) -> list[list[bytes]]:
    """The spec samples a job's requests are answered with, in request order."""
    folder = FIXTURES / source_name
    if source_name == "gms_probe":
        return [[(folder / "create.json").read_bytes(), (folder / "status.json").read_bytes()]]
    if source_name == "context_service":
        return [[(folder / "get_registered.xml").read_bytes()]]
    if source_name == "genesys_services":
        sample = (folder / "customer_services_active.jsonc").read_bytes()
        return [[_json_of_jsonc(sample)]]
    matching = sorted(folder.glob(f"{endpoint}*")) or sorted(folder.iterdir())
    return [[path.read_bytes()] for path in matching]


def _ok(body: bytes) -> bytes:
    kind = "xml" if body.lstrip().startswith(b"<") else "json"
    return Exchange(b"HTTP/1.1 200 OK", f"application/{kind}", None, None, "length", body).raw()


@pytest.mark.parametrize("source_name", sorted(SOURCES))
def test_every_number_of_every_sample_swapped_for_a_bad_one(loop: Loop, source_name: str) -> None:
    """Each number of each spec sample, one at a time, replaced by each value in
    :data:`NASTY_NUMBERS`: the poll reads (a value that is still a fine number, or a
    number the parser does not use) or fails as ``parse``, and never renders a value that
    is not finite and exact."""
    polls = 0
    for job in jobs_of(loop, source_name):
        for sequence in _sequences(source_name, job.endpoint):
            loop.server.answer(*(_ok(body) for body in sequence))
            polls += 1
            assert loop.run(lambda job=job: poll_once(job)) == "reading", job.endpoint  # type: ignore[misc]
            for i, body in enumerate(sequence):
                for spot in re.finditer(rb"-?\d+(?:\.\d+)?", body):
                    for value in NASTY_NUMBERS:
                        bad = body[: spot.start()] + value.encode() + body[spot.end() :]
                        answers = [_ok(b) for b in sequence]
                        answers[i] = _ok(bad)
                        loop.server.answer(*answers)
                        outcome = loop.run(lambda job=job: poll_once(job))  # type: ignore[misc]
                        assert outcome in ("reading", "parse"), (job.endpoint, value, outcome)
                        polls += 1
    assert polls > 0
