"""The server's deadlines and connection cap, over real sockets: a slowloris is closed at
the header deadline while polling goes on, connections beyond the cap are closed at once
(so that polls keep their file descriptors, even under a low ``RLIMIT_NOFILE``), a TLS
client that never says hello is closed at the handshake deadline, and an idle keep-alive
connection is closed after the keep-alive timeout.

Deadlines are shortened through ``Daemon(connection_limits=...)``; the defaults are in
ccwatch/web.py and docs/security.md.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import resource
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from ccwatch.daemon import Daemon, load_web
from ccwatch.sources import load_config, parse_config
from ccwatch.web import (
    DESCRIPTOR_RESERVE,
    HANDSHAKE_TIMEOUT,
    HEADER_TIMEOUT,
    MAX_CONNECTIONS,
    MIN_CONNECTIONS,
    ConnectionGuard,
    ConnectionLimits,
    connection_cap,
)
from tests.harness import LAST_SUCCESS, POLL_ERRORS, Running, Scrape, Sim, ece_config, running

ROOT = Path(__file__).parent.parent
#: the jobs of ece_config(sim, endpoints=["capacity"])
JOBS = [{"target": "ece", "entry_point": ep, "endpoint": "capacity"} for ep in ("1000", "1001")]


@asynccontextmanager
async def serving(sim: Sim, limits: ConnectionLimits, **config: Any) -> AsyncIterator[Running]:
    """A plain HTTP daemon polling the simulator (two ECE jobs every 200ms)."""
    data = {
        **ece_config(sim, interval="200ms", timeout="150ms", endpoints=["capacity"]),
        "web": {"listen_address": "127.0.0.1:0"},
        **config,
    }
    async with running(Daemon(parse_config(data), connection_limits=limits)) as d:
        yield d


def guard(d: Running) -> ConnectionGuard:
    assert d.daemon.site is not None
    return d.daemon.site.guard


def port(d: Running) -> int:
    return d.daemon.bound[0][1]


async def closed_after(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection; fails if it has not ``within``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {within}s") from None
    return time.monotonic() - started


async def still_open(reader: asyncio.StreamReader, for_seconds: float) -> bool:
    """Whether the server keeps the connection open (and silent) for ``for_seconds``."""
    try:
        async with asyncio.timeout(for_seconds):
            data = await reader.read(4096)
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    assert data == b"", data
    return False


async def response_head(reader: asyncio.StreamReader) -> bytes:
    """One whole answer read (head and ``Content-Length`` body); its head."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), 2.0)
    return head


async def wait_until(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def scrape(d: Running) -> Scrape:
    """/metrics on a connection of its own, closed after the answer: so that the test's
    scrapes hold no keep-alive connection that the guard would count."""
    status, text = await d.get("/metrics", headers={"Connection": "close"})
    assert status == 200, text
    return Scrape(text)


async def scrape_until(
    d: Running, condition: Callable[[Scrape], bool], within: float, what: str
) -> Scrape:
    deadline = time.monotonic() + within
    while True:
        s = await scrape(d)
        if condition(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{s.text}")
        await asyncio.sleep(0.1)


def last_successes(s: Scrape) -> list[float]:
    return [s.value(LAST_SUCCESS, **job) or 0.0 for job in JOBS]


def no_poll_errors(s: Scrape) -> bool:
    return all(sample.value == 0 for sample in s.series(POLL_ERRORS))


# --------------------------------------------------------------------------- the header deadline


async def slowloris(port: int, every: float, lines: int) -> float:
    """One slowloris connection: a request line, then a header line every ``every`` s, the
    head never finished. The seconds from connecting to the server closing it."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for line in range(lines):
            if not await still_open(reader, every):
                return time.monotonic() - started
            writer.write(b"X-Slow-%d: still coming\r\n" % line)
        raise AssertionError(f"still open after {lines} header lines")
    finally:
        writer.close()


@pytest.mark.both_loops
async def test_a_slowloris_is_closed_at_the_header_deadline_while_polling_goes_on(
    sim: Sim,
) -> None:
    deadline = 3.0
    flood = 120
    async with serving(
        sim, ConnectionLimits(header_timeout=deadline, max_connections=flood + 20)
    ) as d:
        before = await scrape_until(d, lambda s: all(last_successes(s)), 15.0, "a first poll")
        tasks = [asyncio.create_task(slowloris(port(d), 0.5, 20)) for _ in range(flood)]
        await wait_until(lambda: len(guard(d).connections) >= flood, 5.0, "the flood")
        # during the flood: a scrape is answered, and both jobs have polled again
        during = await scrape_until(
            d,
            lambda s: all(
                b > a for a, b in zip(last_successes(before), last_successes(s), strict=True)
            ),
            deadline,
            "polls during the flood",
        )
        assert len(guard(d).connections) >= flood  # the scrape came while the flood held
        assert during.value("ccwatch_poll_success", **JOBS[0]) == 1.0
        closed = await asyncio.gather(*tasks)
        # each one closed by the server at its deadline, not before and not much after
        assert len(closed) == flood
        assert min(closed) >= deadline - 0.1, sorted(closed)[:5]
        assert max(closed) < deadline + 3.0, sorted(closed)[-5:]
        await wait_until(lambda: not guard(d).connections, 2.0, "every connection released")
        after = await scrape(d)
        assert no_poll_errors(after), after.text
        assert all(
            b > a for a, b in zip(last_successes(during), last_successes(after), strict=True)
        )


async def test_a_complete_head_is_answered_however_slowly_it_came(sim: Sim) -> None:
    """The deadline is on the head, not on each line: a head that ends in time is served,
    and the connection then stays for keep-alive past the header deadline."""
    async with serving(sim, ConnectionLimits(header_timeout=1.5, keepalive_timeout=30)) as d:
        reader, writer = await asyncio.open_connection("127.0.0.1", port(d))
        try:
            # empty lines first (aiohttp skips them): they do not end the head
            for part in (b"\r\n\r\n", b"GET /-/healthy HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                writer.write(part)
                await asyncio.sleep(0.3)
            head = await response_head(reader)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert await still_open(reader, 2.0)  # past the header deadline: kept alive
        finally:
            writer.close()
        # leading empty lines and then a dribble do not escape the deadline
        reader, writer = await asyncio.open_connection("127.0.0.1", port(d))
        try:
            writer.write(b"\r\n\r\nGET /-/healthy HTTP/1.1\r\n")
            assert await closed_after(reader, 1.5 + 2.0) >= 1.4
        finally:
            writer.close()


async def test_an_idle_keep_alive_connection_is_closed(sim: Sim) -> None:
    async with serving(sim, ConnectionLimits(header_timeout=30, keepalive_timeout=1.0)) as d:
        reader, writer = await asyncio.open_connection("127.0.0.1", port(d))
        try:
            writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await response_head(reader)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert b"keep-alive" in head.lower() or b"connection: close" not in head.lower()
            waited = await closed_after(reader, 1.0 + 3.0)
            assert waited >= 0.9
        finally:
            writer.close()
        await wait_until(lambda: not guard(d).connections, 2.0, "the connection released")


# --------------------------------------------------------------------------- the connection cap


async def hold(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    held = []
    for _ in range(count):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    return held


def close_all(held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in held:
        writer.close()


async def test_connections_beyond_the_cap_are_closed_at_once(sim: Sim) -> None:
    cap = 20
    async with serving(sim, ConnectionLimits(header_timeout=30, max_connections=cap)) as d:
        assert d.daemon.max_connections() == cap
        before = await scrape_until(d, lambda s: all(last_successes(s)), 15.0, "a first poll")
        held = await hold(port(d), cap)
        try:
            await wait_until(lambda: len(guard(d).connections) == cap, 5.0, "the cap reached")
            excess = await hold(port(d), 10)
            try:
                waits = await asyncio.gather(*(closed_after(r, 1.0) for r, _ in excess))
            finally:
                close_all(excess)
            assert len(waits) == 10
            assert guard(d).refused == 10
            assert len(guard(d).connections) == cap
            # at the cap a scrape is refused too, but polling goes on
            with pytest.raises(aiohttp.ClientError):
                await scrape(d)
            polls = d.daemon.scheduler.polls_total
            await wait_until(
                lambda: d.daemon.scheduler.polls_total >= polls + 4, 3.0, "polls at the cap"
            )
            assert all([await still_open(r, 0.05) for r, _ in held])  # the first ones stay
        finally:
            close_all(held)
        await wait_until(lambda: not guard(d).connections, 2.0, "the held ones released")
        after = await scrape(d)
        assert no_poll_errors(after), after.text
        assert all(
            b > a for a, b in zip(last_successes(before), last_successes(after), strict=True)
        )


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def descriptor_limit(soft: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE lowered to ``soft`` (then restored)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
async def test_under_a_descriptor_limit_a_flood_leaves_polls_their_descriptors(
    sim: Sim,
) -> None:
    """The red team's case: a flood of idle connections, more than the descriptor limit
    leaves. Without a cap the server takes every descriptor and polls fail with EMFILE."""
    cap, flood, spare = 40, 200, 60
    async with serving(sim, ConnectionLimits(header_timeout=30, max_connections=cap)) as d:
        before = await scrape_until(d, lambda s: all(last_successes(s)), 15.0, "a first poll")
        # room for: what is open, the flood's own client sockets, the cap, one listen
        # backlog of sockets accepted at once before their refusal, and ``spare`` for polls
        soft = open_descriptors() + flood + cap + 128 + spare
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        with descriptor_limit(soft):
            try:
                for _ in range(flood // 20):
                    held += await hold(port(d), 20)
                await wait_until(lambda: guard(d).refused >= flood - cap, 5.0, "the refusals")
                polls = d.daemon.scheduler.polls_total
                await wait_until(
                    lambda: d.daemon.scheduler.polls_total >= polls + 6, 3.0, "polls in the flood"
                )
                assert len(guard(d).connections) == cap
                assert guard(d).refused == flood - cap
            finally:
                close_all(held)
            await wait_until(lambda: not guard(d).connections, 3.0, "the flood released")
            after = await scrape(d)
        assert no_poll_errors(after), after.text
        assert after.value("ccwatch_poll_success", **JOBS[1]) == 1.0
        assert all(
            b > a for a, b in zip(last_successes(before), last_successes(after), strict=True)
        )


def test_the_cap_is_what_the_descriptor_limit_leaves_to_clients() -> None:
    # 1024 - 64 - 128 (one listen backlog) - 2 x 256 concurrent polls
    assert connection_cap(1024, 256) == 1024 - DESCRIPTOR_RESERVE - 128 - 512 == 320
    assert connection_cap(8192, 256) == MAX_CONNECTIONS
    assert connection_cap(8192, 4000) == MIN_CONNECTIONS
    assert connection_cap(None, 256) == MAX_CONNECTIONS


async def test_the_default_cap_follows_rlimit_nofile_and_max_concurrency(sim: Sim) -> None:
    soft = max(open_descriptors() + 600, 1024)
    with descriptor_limit(soft):
        async with serving(sim, ConnectionLimits(), scheduler={"max_concurrency": 16}) as d:
            assert d.daemon.descriptors == soft
            assert d.daemon.max_connections() == connection_cap(soft, 16)
            assert guard(d).limit == min(MAX_CONNECTIONS, soft - DESCRIPTOR_RESERVE - 128 - 32)


def test_the_defaults() -> None:
    limits = ConnectionLimits()
    assert limits.header_timeout == HEADER_TIMEOUT == 10.0
    assert limits.handshake_timeout == HANDSHAKE_TIMEOUT == 10.0
    assert 60.0 < limits.keepalive_timeout <= 120.0  # above a 1m scrape interval, bounded
    assert limits.max_connections is None


@pytest.mark.parametrize("unit", ["ccwatch.service", "ccwatch@.service"])
def test_the_systemd_units_set_a_descriptor_limit_that_leaves_room(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(ROOT / "deploy" / "systemd" / unit)
    limit = int(parser["Service"]["LimitNOFILE"])
    # the default max_concurrency (256) and every client connection fit
    assert connection_cap(limit, 256) == MAX_CONNECTIONS


# --------------------------------------------------------------------------- TLS


PASSWORD = "scrape-me-please"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@asynccontextmanager
async def tls_serving(
    sim: Sim, tmp_path: Path, limits: ConnectionLimits
) -> AsyncIterator[tuple[Running, ssl.SSLContext]]:
    """An mTLS daemon (client certificates required) and a client context for it."""
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": "server.crt",
                    "key_file": "server.key",
                    "client_auth_type": "RequireAndVerifyClientCert",
                    "client_ca_file": "ca.pem",
                }
            }
        )
    )
    config = ece_config(sim, interval="200ms", timeout="150ms", endpoints=["capacity"])
    config["web"] = {"listen_address": "127.0.0.1:0", "config_file": "web.yml"}
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    web = load_web(loaded, path, None)
    instance = Daemon(loaded, config_path=path, web_config=web, connection_limits=limits)
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    ca.issue_cert("prometheus").configure_cert(client)
    async with running(instance) as d:
        yield d, client


@pytest.mark.both_loops
async def test_tls_clients_are_held_to_the_handshake_and_header_deadlines(
    sim: Sim, tmp_path: Path
) -> None:
    limits = ConnectionLimits(handshake_timeout=1.0, header_timeout=1.5, max_connections=6)
    async with tls_serving(sim, tmp_path, limits) as (d, client):
        url = f"https://127.0.0.1:{port(d)}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url, ssl=client) as resp:
            assert resp.status == 200
            assert "ccwatch_build_info" in await resp.text()
        await wait_until(lambda: not guard(d).connections, 2.0, "the scrape's connection gone")

        # no ClientHello: closed at the handshake deadline
        reader, writer = await asyncio.open_connection("127.0.0.1", port(d))
        try:
            waited = await closed_after(reader, 1.0 + 2.0)
        finally:
            writer.close()
        assert waited >= 0.9

        # a handshake with a client certificate, then nothing: closed at the header deadline
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port(d), ssl=client, server_hostname="127.0.0.1"
        )
        try:
            waited = await closed_after(reader, 1.5 + 2.0)
        finally:
            writer.close()
        assert waited >= 1.4

        # connections still in their handshake count: beyond the cap, closed at once
        held = await hold(port(d), 6)
        try:
            await wait_until(lambda: len(guard(d).connections) == 6, 2.0, "the cap reached")
            excess, excess_writer = await asyncio.open_connection("127.0.0.1", port(d))
            try:
                assert await closed_after(excess, 0.5) < 0.5
            finally:
                excess_writer.close()
            assert guard(d).refused == 1
        finally:
            close_all(held)
        await wait_until(lambda: not guard(d).connections, 3.0, "the held ones released")
        async with aiohttp.ClientSession() as session, session.get(url, ssl=client) as resp:
            assert resp.status == 200
