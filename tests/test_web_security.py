"""ccwatch's own endpoint behind the web config file: TLS, client certificates, basic auth
and headers, over real sockets with real certificates (trustme).

The file's validation and the TLS context's certificate reloading are tested in
tests/test_webconfig.py; a real Prometheus scraping over HTTPS in
tests/e2e/test_prometheus_tls.py.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from ccwatch import healthcheck
from ccwatch.daemon import Daemon, load_web
from ccwatch.sources import load_config
from ccwatch.webauth import MAX_WAITING, BasicAuth
from tests.harness import Running, Sim, ece_config, running

PASSWORD = "scrape-me-please"
#: cost 4: the tests check behaviour, bench/web_auth.py measures cost 10
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
HSTS = "max-age=31536000"


@dataclass
class Certs:
    ca: trustme.CA
    dir: Path

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    def client(self, name: str = "prometheus.monitoring.svc") -> ssl.SSLContext:
        """A client context trusting the CA, with a client certificate for ``name``."""
        context = self.trusting()
        self.ca.issue_cert(name).configure_cert(context)
        return context

    def trusting(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return Certs(ca, tmp_path)


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def basic(user: str, password: str | bytes) -> dict[str, str]:
    raw = password if isinstance(password, bytes) else password.encode()
    token = base64.b64encode(user.encode() + b":" + raw).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic("prometheus", PASSWORD)


@asynccontextmanager
async def secured(
    sim: Sim,
    tmp_path: Path,
    web: dict[str, Any],
    *,
    public_paths: list[str] | None = None,
) -> AsyncIterator[Running]:
    """A daemon on 127.0.0.1 whose main config names the web config file ``web``."""
    write(tmp_path / "web.yml", web)
    config = ece_config(sim, endpoints=["capacity"])
    config["web"] = {
        "listen_address": "127.0.0.1:0",
        "config_file": "web.yml",
        "public_paths": public_paths or [],
    }
    path = write(tmp_path / "ccwatch.yml", config)
    loaded = load_config(path)
    instance = Daemon(loaded, config_path=path, web_config=load_web(loaded, path, None))
    async with running(instance) as d:
        yield d


def https(d: Running) -> str:
    return d.url.replace("http://", "https://")


def tls_web(**extra: Any) -> dict[str, Any]:
    return {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **extra},
        "basic_auth_users": {"prometheus": HASH},
        "http_server_config": {
            "headers": {"Strict-Transport-Security": HSTS, "Content-Security-Policy": "sandbox"}
        },
    }


async def get(
    url: str, *, context: ssl.SSLContext | bool | None = None, **kwargs: Any
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context if context is not None else True, **kwargs) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.text()


# --------------------------------------------------------------------------- HTTPS + basic auth


async def test_https_with_the_right_ca_and_password(sim: Sim, certs: Certs) -> None:
    async with secured(sim, certs.dir, tls_web(), public_paths=["/-/healthy"]) as d:
        status, headers, text = await get(
            f"{https(d)}/metrics", context=certs.trusting(), headers=AUTH
        )
        assert status == 200
        assert "ccwatch_build_info" in text
        assert headers["Strict-Transport-Security"] == HSTS
        # a public path needs no password, but still TLS
        status, _, _ = await get(f"{https(d)}/-/healthy", context=certs.trusting())
        assert status == 200
        # the configured CSP wins over the status page's own
        status, headers, _ = await get(f"{https(d)}/", context=certs.trusting(), headers=AUTH)
        assert status == 200
        assert headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("no password", {}),
        ("a wrong password", basic("prometheus", "wrong")),
        ("an unknown user", basic("mallory", PASSWORD)),
        ("the stored hash as the password", basic("prometheus", HASH)),
        ("a password over 72 bytes", basic("prometheus", PASSWORD + "x" * 80)),
        ("a malformed header", {"Authorization": "Basic !!!not-base64"}),
        ("no colon", {"Authorization": "Basic " + base64.b64encode(b"prometheus").decode()}),
        ("another scheme", {"Authorization": f"Bearer {PASSWORD}"}),
        (
            "bad UTF-8 in the user",
            {
                "Authorization": "Basic "
                + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode()
            },
        ),
    ],
)
async def test_refused_with_401_and_the_realm(
    sim: Sim, certs: Certs, name: str, headers: dict[str, str]
) -> None:
    async with secured(sim, certs.dir, tls_web()) as d:
        # the right password first: it is cached, and must not open the door to others
        assert (await get(f"{https(d)}/metrics", context=certs.trusting(), headers=AUTH))[0] == 200
        status, answer, _ = await get(
            f"{https(d)}/metrics", context=certs.trusting(), headers=headers
        )
    assert status == 401, name
    assert answer["WWW-Authenticate"] == 'Basic realm="ccwatch"'
    assert answer["Strict-Transport-Security"] == HSTS  # configured headers on 401s too


async def test_plain_http_to_the_tls_port_gets_no_metrics(sim: Sim, certs: Certs) -> None:
    async with secured(sim, certs.dir, tls_web()) as d:
        with pytest.raises(aiohttp.ClientError):
            await get(f"{d.url}/metrics", headers=AUTH)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_a_tls11_client_is_refused_at_the_handshake(sim: Sim, certs: Certs) -> None:
    async with secured(sim, certs.dir, tls_web()) as d:
        old = certs.trusting()
        # Debian's OpenSSL refuses TLS 1.1 on the client side unless told otherwise: lower
        # the client's own level, so that the refusal can only be the server's
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(aiohttp.ClientError) as caught:
            await get(f"{https(d)}/metrics", context=old, headers=AUTH)
    text = repr(caught.value).lower()
    assert "alert protocol version" in text or "unsupported protocol" in text, text


async def test_a_client_certificate_when_required(sim: Sim, certs: Certs) -> None:
    web = tls_web(
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file="ca.pem",
        client_allowed_sans=["prometheus.monitoring.svc"],
    )
    async with secured(sim, certs.dir, web) as d:
        url = f"{https(d)}/metrics"
        assert (await get(url, context=certs.client(), headers=AUTH))[0] == 200
        with pytest.raises(aiohttp.ClientError):  # no certificate: refused
            await get(url, context=certs.trusting(), headers=AUTH)
        other = certs.client("someone-else.example")  # signed, but not an allowed name
        assert (await get(url, context=other, headers=AUTH))[0] == 403
        stranger = trustme.CA().issue_cert("prometheus.monitoring.svc")
        context = certs.trusting()
        stranger.configure_cert(context)  # a certificate from another CA
        with pytest.raises(aiohttp.ClientError):
            await get(url, context=context, headers=AUTH)


# --------------------------------------------------------------------------- the cache


async def test_verified_credentials_are_cached_and_wrong_ones_never_pass() -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    try:
        for _ in range(50):
            assert await auth.check(AUTH["Authorization"])
        assert auth.stats.bcrypt_runs == 1
        assert auth.stats.cached == 49
        # the stored hash itself, the user name glued to the password, and such: refused
        for attempt in (
            basic("prometheus", HASH),
            basic("prometheus" + HASH, PASSWORD),
            basic("prometheus", PASSWORD + HASH),
            basic("prometheus:" + PASSWORD, ""),
        ):
            assert not await auth.check(attempt["Authorization"])
        # an unknown user costs a bcrypt check as a known one does (the dummy hash)
        runs = auth.stats.bcrypt_runs
        assert not await auth.check(basic("mallory", "x")["Authorization"])
        assert auth.stats.bcrypt_runs == runs + 1
    finally:
        auth.close()


async def test_a_flood_of_wrong_passwords_is_refused_at_once_beyond_the_queue() -> None:
    slow = bcrypt.hashpw(b"x", bcrypt.gensalt(12)).decode()  # ~250 ms a check
    auth = BasicAuth({"prometheus": slow.encode()})
    try:
        attempts = [
            auth.check(basic("prometheus", f"guess-{i}")["Authorization"]) for i in range(100)
        ]
        results = await asyncio.gather(*attempts[: MAX_WAITING + 20])
        assert not any(results)
        assert auth.stats.refused_busy >= 20
        assert auth.stats.bcrypt_runs <= MAX_WAITING
    finally:
        for attempt in attempts[MAX_WAITING + 20 :]:
            attempt.close()
        auth.close()


# --------------------------------------------------------------------------- reload


async def test_reload_rereads_the_web_config_and_keeps_it_when_invalid(
    sim: Sim, certs: Certs
) -> None:
    async with secured(sim, certs.dir, tls_web()) as d:
        url = f"{https(d)}/metrics"
        new_password = "rotated-password"
        web = tls_web()
        web["basic_auth_users"]["grafana"] = bcrypt.hashpw(
            new_password.encode(), bcrypt.gensalt(4)
        ).decode()
        write(certs.dir / "web.yml", web)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{https(d)}/-/reload", ssl=certs.trusting(), headers=AUTH) as r,
        ):
            assert r.status == 200, await r.text()
        assert (await get(url, context=certs.trusting(), headers=basic("grafana", new_password)))[
            0
        ] == 200
        # an invalid web config is refused, and the running one stays
        web["basic_auth_users"]["grafana"] = "plain-text"
        write(certs.dir / "web.yml", web)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{https(d)}/-/reload", ssl=certs.trusting(), headers=AUTH) as r,
        ):
            assert r.status == 500
            assert "basic_auth_users.grafana" in await r.text()
        assert (await get(url, context=certs.trusting(), headers=basic("grafana", new_password)))[
            0
        ] == 200
        # dropping TLS takes a restart
        del web["tls_server_config"]
        web["basic_auth_users"]["grafana"] = HASH
        write(certs.dir / "web.yml", web)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{https(d)}/-/reload", ssl=certs.trusting(), headers=AUTH) as r,
        ):
            assert r.status == 500
            assert "takes a restart" in await r.text()


async def test_basic_auth_alone_on_plain_http(sim: Sim, tmp_path: Path) -> None:
    async with secured(
        sim, tmp_path, {"basic_auth_users": {"prometheus": HASH}}, public_paths=["/-/ready"]
    ) as d:
        assert (await get(f"{d.url}/metrics"))[0] == 401
        assert (await get(f"{d.url}/metrics", headers=AUTH))[0] == 200
        assert (await get(f"{d.url}/-/healthy"))[0] == 401  # not public here
        assert (await get(f"{d.url}/-/ready"))[0] in (200, 503)  # public: readiness
        assert (await get(f"{d.url}/api/v1/targets"))[0] == 401
        assert (await get(f"{d.url}/logs"))[0] == 401


# --------------------------------------------------------------------------- floods


#: about 60 ms a check: a flood keeps the bcrypt queue full
SLOW_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
GUESSERS = MAX_WAITING + 8
#: at most this many guesses per connection: the flood ends by itself
GUESSES_EACH = 60


async def until(condition: Any, what: str, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def raw_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, headers: dict[str, str]
) -> tuple[int, bool] | None:
    """One GET on an open connection: the answer's status and whether the server keeps
    the connection; None if it closed the connection without an answer. (Over raw
    sockets: aiohttp's client silently retries a GET the server dropped.)"""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    fields = dict(
        line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
    )
    await reader.readexactly(int(fields.get("Content-Length", "0")))
    return int(head.split(b" ", 2)[1]), fields.get("Connection", "").lower() != "close"


@pytest.mark.both_loops
async def test_a_password_flood_across_a_reload_never_locks_out_a_cached_scrape(
    sim: Sim, tmp_path: Path
) -> None:
    """Defects 4 and 12: a reload emptied the bcrypt cache, so a scrape whose password had
    been verified waited behind the flood again (401 while the queue was full), and the
    checks queued at the reload were cancelled, their connections closed unanswered."""
    web = {"basic_auth_users": {"prometheus": SLOW_HASH}}
    async with secured(sim, tmp_path, web) as d, asyncio.timeout(120):
        url = f"{d.url}/metrics"
        host, port = d.daemon.bound[0]
        assert (await get(url, headers=AUTH))[0] == 200  # verified once: cached
        before = d.daemon.security.auth
        assert before is not None
        stop = asyncio.Event()
        answers: list[int] = []
        dropped: list[int] = []

        async def guesser() -> None:
            # one keep-alive connection each, a random password each time
            reader, writer = await asyncio.open_connection(host, port)
            try:
                for _ in range(GUESSES_EACH):
                    if stop.is_set():
                        return
                    guess = basic("prometheus", secrets.token_urlsafe(12))
                    answer = await raw_get(reader, writer, "/metrics", guess)
                    if answer is not None:
                        answers.append(answer[0])
                    else:
                        dropped.append(1)
                    if answer is None or not answer[1]:
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                    await asyncio.sleep(0.02)
            finally:
                writer.close()

        flood = [asyncio.create_task(guesser()) for _ in range(GUESSERS)]
        try:
            await until(lambda: before.stats.refused_busy > 0, "a full bcrypt queue")
            # the reload (another user, so the web config changes) while checks are queued
            web["basic_auth_users"]["grafana"] = HASH
            write(tmp_path / "web.yml", web)
            async with d.session.post(f"{d.url}/-/reload", headers=AUTH) as resp:
                assert resp.status == 200, await resp.text()
            after = d.daemon.security.auth
            assert after is not None
            assert after is not before
            # the flood has filled the queue again since the reload
            busy = after.stats.refused_busy
            await until(lambda: after.stats.refused_busy > busy, "a full queue after the reload")
            legit = []
            for _ in range(10):
                legit.append((await get(url, headers=AUTH))[0])
                await asyncio.sleep(0.05)  # a guess every 20 ms per connection meanwhile
            assert after.stats.refused_busy > busy + 1, "the flood was over too soon"
        finally:
            stop.set()
            await asyncio.gather(*flood)
    assert legit == [200] * 10
    assert not dropped  # every guess answered, those queued at the reload included
    assert answers
    assert set(answers) == {401}


@pytest.mark.both_loops
async def test_an_unauthenticated_flood_never_rate_limits_authenticated_scrapes(
    sim: Sim, tmp_path: Path
) -> None:
    """Defect 5: one global bucket, checked before auth, let five clients without the
    password make Prometheus's scrapes 429, and limited /-/healthy too."""
    web = {
        "basic_auth_users": {"prometheus": HASH},
        "rate_limit": {"interval": "1h", "burst": 20},  # no refill during the test
    }
    async with (
        secured(sim, tmp_path, web, public_paths=["/-/healthy", "/-/ready"]) as d,
        asyncio.timeout(60),
    ):
        url = f"{d.url}/metrics"
        assert (await get(url, headers=AUTH))[0] == 200  # checked, then charged to the user

        async def stranger(n: int) -> list[int]:
            statuses = []
            async with aiohttp.ClientSession() as session:
                for i in range(10):
                    headers = basic("prometheus", f"guess-{n}-{i}") if i % 2 else {}
                    async with session.get(url, headers=headers) as resp:
                        statuses.append(resp.status)
            return statuses

        async def prometheus() -> list[int]:
            statuses = []
            for _ in range(10):
                statuses.append((await get(url, headers=AUTH))[0])
                await asyncio.sleep(0.01)
            return statuses

        legit, *strangers = await asyncio.gather(prometheus(), *(stranger(n) for n in range(5)))
        assert legit == [200] * 10
        # the strangers share 127.0.0.1's bucket of 20: 20 answers, then 429s
        assert Counter(s for statuses in strangers for s in statuses) == {401: 20, 429: 30}
        # the probes are never limited, though the address's bucket is empty
        for _ in range(10):
            assert (await get(f"{d.url}/-/healthy"))[0] == 200
            assert (await get(f"{d.url}/-/ready"))[0] in (200, 503)
        assert (await get(f"{d.url}/metrics"))[0] == 429  # 127.0.0.1 without credentials
        # another address has a bucket of its own
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url) as resp,
        ):
            assert resp.status == 401
        # and Prometheus still scrapes
        assert (await get(url, headers=AUTH))[0] == 200


async def raw_exchange(d: Running, head: str, body: bytes = b"") -> list[str]:
    """Send ``head``; the status line of the first answer; then, if it is a 100 Continue,
    send ``body`` and add the final answer's status line."""
    host, port = d.daemon.bound[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head.replace("\n", "\r\n").encode())
        await writer.drain()
        lines = [(await asyncio.wait_for(reader.readline(), 10)).decode().strip()]
        if lines[0].startswith("HTTP/1.1 100"):
            assert (await asyncio.wait_for(reader.readline(), 10)) == b"\r\n"
            writer.write(body)
            await writer.drain()
            lines.append((await asyncio.wait_for(reader.readline(), 10)).decode().strip())
        return lines
    finally:
        writer.close()
        await writer.wait_closed()


def expecting(path: str, headers: dict[str, str], *, method: str = "POST") -> str:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 2"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\n".join(lines) + "\n\n"


@pytest.mark.both_loops
async def test_100_continue_only_after_auth(sim: Sim, tmp_path: Path) -> None:
    """No ``100 Continue`` (an invitation to send the body) before basic auth is checked."""
    web = {"basic_auth_users": {"prometheus": HASH}}
    async with secured(sim, tmp_path, web, public_paths=["/-/healthy"]) as d:
        cont = {"Expect": "100-continue"}
        for refused in ({}, basic("prometheus", "wrong"), basic("mallory", PASSWORD)):
            first = await raw_exchange(d, expecting("/-/reload", {**cont, **refused}), b"{}")
            assert first == ["HTTP/1.1 401 Unauthorized"], refused
        # the right password: 100 Continue, then the answer
        assert await raw_exchange(d, expecting("/-/reload", {**cont, **AUTH}), b"{}") == [
            "HTTP/1.1 100 Continue",
            "HTTP/1.1 200 OK",
        ]
        # a public path needs no password for it
        assert await raw_exchange(d, expecting("/-/healthy", cont, method="GET"), b"{}") == [
            "HTTP/1.1 100 Continue",
            "HTTP/1.1 200 OK",
        ]
        # an expectation ccwatch cannot meet, once admitted
        weird = {"Expect": "something-else", **AUTH}
        assert await raw_exchange(d, expecting("/-/reload", weird), b"{}") == [
            "HTTP/1.1 417 Expectation Failed"
        ]
        assert await raw_exchange(d, expecting("/-/reload", {"Expect": "x"}), b"{}") == [
            "HTTP/1.1 401 Unauthorized"
        ]


async def test_an_unknown_user_costs_what_most_known_users_cost(sim: Sim, tmp_path: Path) -> None:
    """Defect 10: the dummy hash had the highest configured cost, so with mixed costs an
    unknown user took longer than the cost-4 users, and could be told from them."""
    cost6 = bcrypt.hashpw(b"admin-password", bcrypt.gensalt(6)).decode()
    users = {"prometheus": HASH, "grafana": HASH, "admin": cost6}
    async with secured(sim, tmp_path, {"basic_auth_users": users}) as d:
        auth = d.daemon.security.auth
        assert auth is not None
        assert (await get(f"{d.url}/metrics", headers=basic("mallory", "guess")))[0] == 401
        assert auth.dummy_cost == 4
        assert auth.stats.runs_by_cost == {4: 1}  # the unknown user, at cost 4
        assert (await get(f"{d.url}/metrics", headers=AUTH))[0] == 200
        assert auth.stats.runs_by_cost == {4: 2}


# --------------------------------------------------------------------------- healthcheck


async def test_healthcheck_counts_any_http_answer(sim: Sim, certs: Certs) -> None:
    async with secured(sim, certs.dir, tls_web()) as d:
        where = healthcheck.endpoint(
            str(certs.dir / "ccwatch.yml"), None, d.url.removeprefix("http://")
        )
        assert where.tls
        outcome = await asyncio.to_thread(healthcheck.check, where)
        assert outcome.alive, outcome.detail
        assert "HTTP 401" in outcome.detail  # /-/healthy is not public here
    outcome = await asyncio.to_thread(healthcheck.check, where, 2.0)
    assert not outcome.alive  # nothing listens any more


async def test_healthcheck_with_client_certificates_required(sim: Sim, certs: Certs) -> None:
    web = tls_web(client_auth_type="RequireAndVerifyClientCert", client_ca_file="ca.pem")
    async with secured(sim, certs.dir, web) as d:
        where = healthcheck.endpoint(
            str(certs.dir / "ccwatch.yml"), None, d.url.removeprefix("http://")
        )
        assert where.client_cert_required
        outcome = await asyncio.to_thread(healthcheck.check, where)
    assert outcome.alive, outcome.detail
    assert "client certificate" in outcome.detail


async def test_healthcheck_on_plain_http(sim: Sim, tmp_path: Path) -> None:
    async with secured(sim, tmp_path, {"http_server_config": {"headers": {}}}) as d:
        where = healthcheck.endpoint(
            str(tmp_path / "ccwatch.yml"), None, d.url.removeprefix("http://")
        )
        outcome = await asyncio.to_thread(healthcheck.check, where)
    assert not where.tls
    assert outcome.alive
    assert "HTTP 200" in outcome.detail


def test_healthcheck_defaults_are_the_daemons() -> None:
    # ccwatch.healthcheck keeps its own copies so as not to import pydantic
    from ccwatch import config

    assert healthcheck.DEFAULT_LISTEN_ADDRESS == config.DEFAULT_LISTEN_ADDRESS
    assert healthcheck.DEFAULT_CONFIG_PATH == config.DEFAULT_CONFIG_PATH
