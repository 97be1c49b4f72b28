"""The daemon over real sockets, polling the ECE simulator (the simplest vendor):
readiness, jobs that do not wait for each other, reloads that keep unchanged jobs or
fail without harm, and each target's TLS settings.

Elsewhere: reloads without a polling gap in test_reload.py; Retry-After holds and
freshness in test_freshness.py (and across reloads in test_reload.py); signals in
test_cli.py (a real process); the HTTP answers themselves in test_web.py.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests import harness
from tests.harness import (
    Scrape,
    Sim,
    daemon,
    ece_config,
    reload,
    reloadable_daemon,
    simulator,
    write_config,
)

POLL_ERRORS = "ccwatch_poll_errors_total"
LAST_SUCCESS = "ccwatch_poll_last_success_timestamp_seconds"
RELOAD_OK = "ccwatch_config_last_reload_successful"
RELOAD_TIME = "ccwatch_config_last_reload_success_timestamp_seconds"


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        yield running


def down_target(port: int) -> dict[str, object]:
    """An ECE target nothing listens for."""
    return {
        "name": "down",
        "source": "ece",
        "url": f"http://127.0.0.1:{port}/system",
        "entry_points": [1],
        "endpoints": ["chatAllowed"],
    }


# --------------------------------------------------------------------------- readiness


async def test_not_ready_until_every_job_has_made_its_first_attempt(sim: Sim) -> None:
    await sim.fault("/entrypoint/", "slow", delay=30.0)
    async with daemon(ece_config(sim, interval="3s", timeout="2s")) as d:
        # no first poll can end before its 2 s timeout
        status, text = await d.get("/-/ready")
        assert status == 503
        assert text == "ccwatch is not ready: 10 of 10 jobs not polled yet\n"
        assert not d.daemon.ready
        await sim.clear_faults()
        await d.wait_for(lambda s: len(s.series("ccwatch_poll_success")) == 10, within=20)
        assert await d.get("/-/ready") == (200, "ccwatch is Ready.\n")


async def test_a_failed_first_attempt_counts_toward_readiness(
    sim: Sim, unused_tcp_port: int
) -> None:
    config = ece_config(sim, endpoints=["chatAllowed"], entry_points=[1000])
    config["targets"].append(down_target(unused_tcp_port))
    async with daemon(config) as d:
        await d.wait_for(
            lambda s: (
                s.value(POLL_ERRORS, target="down", reason="connect") is not None
                and s.value("ccwatch_poll_success", target="ece") == 1.0
            ),
            what="one target polled, the other down",
        )
        # a vendor that is down does not keep ccwatch unready
        assert (await d.get("/-/ready"))[0] == 200
        assert (await d.scrape()).value("ccwatch_poll_success", target="down") == 0.0


# --------------------------------------------------------------------------- jobs


async def test_a_slow_job_does_not_delay_the_others(sim: Sim) -> None:
    config = ece_config(sim, endpoints=["capacity"], entry_points=[1000, 1001, 1002])
    async with daemon(config) as d:
        await d.wait_for(lambda s: len(s.series("ccwatch_ece_available_slots")) == 3)
        await sim.fault("/entrypoint/capacity/1000", "slow", delay=30.0)
        await d.wait_for(
            lambda s: s.value("ccwatch_poll_success", entry_point="1000") == 0.0, what="timeout"
        )
        seen: set[float] = set()

        def others_progress(s: Scrape) -> bool:
            stamp = s.value(LAST_SUCCESS, entry_point="1001")
            assert s.value("ccwatch_poll_success", entry_point="1000") == 0.0
            if stamp is not None:
                seen.add(stamp)
            return len(seen) >= 4

        s = await d.wait_for(others_progress, what="1001 polled repeatedly while 1000 hangs")
        assert s.value("ccwatch_poll_success", entry_point="1002") == 1.0
        assert (s.value(POLL_ERRORS, entry_point="1000", reason="timeout") or 0) >= 1


# --------------------------------------------------------------------------- reload


async def test_reload_keeps_unchanged_jobs(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    config = ece_config(sim, endpoints=["capacity"])
    async with reloadable_daemon(path, config) as d:
        await sim.fault("/entrypoint/capacity/1001", "status", status=500, count=1)
        await d.wait_for(lambda s: s.value(POLL_ERRORS, entry_point="1001") == 1)
        # another entry point list: the target is rebuilt
        config["targets"][0]["entry_points"] = [1001, 1002]
        write_config(path, config)
        await reload(d)
        s = await d.wait_for(
            lambda s: s.value("ccwatch_ece_available_slots", entry_point="1002") is not None
        )
        # 1000 is gone, 1001 kept its counter
        assert s.value("ccwatch_poll_success", entry_point="1000") is None
        assert s.value(POLL_ERRORS, entry_point="1001") == 1.0
        assert s.value(RELOAD_OK) == 1.0
        assert s.value("ccwatch_jobs", source="ece") == 2.0


async def test_a_failed_reload_keeps_the_running_config(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    config = ece_config(sim, endpoints=["capacity"])
    jobs = [{"entry_point": "1000"}, {"entry_point": "1001"}]
    async with reloadable_daemon(path, config) as d:
        before = await d.wait_for(lambda s: all(s.value(LAST_SUCCESS, **j) for j in jobs))
        reloaded_at = before.value(RELOAD_TIME)
        assert reloaded_at is not None
        path.write_text("targets: []\n")
        async with d.session.post(f"{d.url}/-/reload") as resp:
            assert resp.status == 500
        s = await d.scrape()
        assert s.value(RELOAD_OK) == 0.0
        assert s.value(RELOAD_TIME) == reloaded_at
        assert s.value("ccwatch_jobs", source="ece") == 2.0
        # the running jobs go on
        await harness.wait_polled_again(d, before, jobs, what="polls after the failed reload")
        # and the next good reload says so
        write_config(path, config)
        await reload(d)
        s = await d.scrape()
        assert s.value(RELOAD_OK) == 1.0


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA, fixtures: Path) -> AsyncIterator[str]:
    body = (fixtures / "ece" / "capacity.xml").read_bytes()

    async def capacity(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/xml")

    app = web.Application()
    app.router.add_get("/system/egain/chat/entrypoint/capacity/{id}", capacity)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    yield f"https://127.0.0.1:{port}/system"
    await runner.cleanup()


async def test_each_target_has_its_own_tls_config(
    tls_server: str, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    base = {"source": "ece", "url": tls_server, "entry_points": [7], "endpoints": ["capacity"]}
    config = {
        "defaults": {"interval": "500ms", "timeout": "400ms"},
        "targets": [
            {"name": "untrusted", **base},
            {"name": "trusted", **base, "tls_config": {"ca_file": str(ca_file)}},
            {"name": "skip", **base, "tls_config": {"insecure_skip_verify": True}},
        ],
    }
    async with daemon(config) as d:
        s = await d.wait_for(
            lambda s: (
                s.value(POLL_ERRORS, target="untrusted", reason="tls") == 1
                and s.value("ccwatch_poll_success", target="trusted") == 1.0
                and s.value("ccwatch_poll_success", target="skip") == 1.0
            )
        )
        assert s.value("ccwatch_ece_available_slots", target="trusted") == 4.0
        assert s.value("ccwatch_ece_available_slots", target="untrusted") is None


async def test_a_listen_address_flag_is_no_reason_to_warn_at_every_reload(
    tmp_path: Path,
) -> None:
    import structlog
    import yaml

    from ccwatch.daemon import Daemon
    from ccwatch.sources import load_config
    from tests.harness import running, simulator

    async with simulator() as sim:
        path = tmp_path / "ccwatch.yml"
        data = {**ece_config(sim), "web": {"listen_address": "127.0.0.1:1"}}
        path.write_text(yaml.safe_dump(data))
        daemon_ = Daemon(load_config(path), config_path=path, listen_address="127.0.0.1:0")
        async with running(daemon_) as d:
            with structlog.testing.capture_logs() as logs:
                assert await d.daemon.reload() is None
            assert "listen_address_unchanged" not in [e["event"] for e in logs]
            data["web"] = {"listen_address": "127.0.0.1:2"}
            path.write_text(yaml.safe_dump(data))
            with structlog.testing.capture_logs() as logs:
                assert await d.daemon.reload() is None
            assert "listen_address_unchanged" in [e["event"] for e in logs]
