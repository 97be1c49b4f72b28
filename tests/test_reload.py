"""Reloads without a polling gap, over real sockets: the daemon against the simulator.

A reload never stops the scheduler. Unchanged targets go on as they are (a poll in
flight completes into the new state), changed jobs keep their state and phase, removed
jobs are cancelled and their series dropped, new jobs start, and Retry-After holds and
backoff survive unless the target's URL changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from ccwatch.daemon import build_groups
from ccwatch.http import HttpClient
from ccwatch.sources import load_config, parse_config
from tests.harness import (
    Running,
    Scrape,
    Sim,
    events,
    gms_probe_target,
    reload,
    reloadable_daemon,
    simulator,
    write_config,
)

SLOW = "/entrypoint/capacity/1002"


def config(sim: Sim, *extra: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """A fast target (two entry points) and a slow one whose poll takes seconds."""
    return {
        "defaults": {"interval": "200ms", "timeout": "200ms", **defaults},
        "targets": [
            {
                "name": "fast",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1000, 1001],
                "endpoints": ["capacity", "chatAllowed"],
            },
            {
                "name": "slow",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1002],
                "endpoints": ["capacity"],
                "interval": "30s",
                "timeout": "20s",
            },
            *extra,
        ],
    }


def stamps(s: Scrape, target: str) -> dict[tuple[str, str], float]:
    return {
        (x.labels["endpoint"], x.labels["entry_point"]): x.value
        for x in s.series("ccwatch_poll_last_success_timestamp_seconds", target=target)
    }


def all_newer(before: dict[tuple[str, str], float]) -> Any:
    def check(s: Scrape) -> bool:
        now = stamps(s, "fast")
        return set(now) == set(before) and all(now[k] > v for k, v in before.items())

    return check


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator() as running:
        yield running


async def slow_poll_in_flight(d: Running, sim: Sim) -> asyncio.Task[None]:
    """Wait until the fast target polls and the slow target's poll hangs in flight."""
    await d.wait_for(lambda s: len(stamps(s, "fast")) == 4, what="fast target polled")
    group = d.daemon.scheduler.groups["slow"]
    (job,) = group.jobs
    deadline = asyncio.get_running_loop().time() + 15
    while job.task is None:
        assert asyncio.get_running_loop().time() < deadline, "slow poll never started"
        await asyncio.sleep(0.02)
    return job.task


async def test_reload_with_a_slow_poll_in_flight_keeps_polling_the_others(
    sim: Sim, tmp_path: Path
) -> None:
    await sim.fault(SLOW, "slow", delay=2.5, count=1)
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, config(sim)) as d:
        in_flight = await slow_poll_in_flight(d, sim)
        fast_group = d.daemon.scheduler.groups["fast"]
        before = stamps(await d.scrape(), "fast")
        # add a target: the running ones are unchanged
        added = {
            "name": "added",
            "source": "ece",
            "url": f"{sim.url}/system",
            "entry_points": [1003],
            "endpoints": ["chatAllowed"],
        }
        write_config(path, config(sim, added))
        await reload(d)
        # the reload did not wait for the slow poll, which is still the same task
        assert not in_flight.done()
        assert d.daemon.scheduler.groups["slow"].jobs[0].task is in_flight
        assert d.daemon.scheduler.groups["fast"] is fast_group
        # every job of the fast target polled again while the slow poll was in flight
        await d.wait_for(all_newer(before), what="fast jobs polled after the reload")
        assert not in_flight.done()
        # the new target starts; the slow poll completes into the running state
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_poll_success", target="added") == 1.0
                and s.value("ccwatch_poll_success", target="slow") == 1.0
            ),
            what="added target polled and slow poll completed",
        )
        assert s.value("ccwatch_ece_available_slots", target="slow", entry_point="1002") is not None
        assert s.value("ccwatch_jobs", source="ece") == 6.0
        assert s.value("ccwatch_config_last_reload_successful") == 1.0


async def test_changed_jobs_keep_their_state_phase_and_backoff(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    first = config(sim)
    first["defaults"]["interval"] = "1s"
    failing = {"endpoint": "chatAllowed", "entry_point": "1001"}
    async with reloadable_daemon(path, first) as d:
        await sim.fault("/entrypoint/chatAllowed/1001", "status", status=500)
        await d.wait_for(
            lambda s: (
                (s.value("ccwatch_poll_errors_total", reason="http_status", **failing) or 0) >= 2
            ),
            what="two failures: the job backs off",
        )
        scheduler = d.daemon.scheduler
        jobs = {job.key: job for job in scheduler.groups["fast"].jobs}
        changed = config(sim, timeout="900ms")
        changed["defaults"]["interval"] = "1s"
        write_config(path, changed)
        new_config = load_config(path)
        # apply() does not await: nothing polls between the snapshot and the reload
        dues = {key: job.due for key, job in jobs.items() if job.task is None}
        await d.daemon.apply(new_config)
        after = {job.key: job for job in scheduler.groups["fast"].jobs}
        # the same job objects, with the new timeout, ids and counters kept
        assert all(after[key] is job for key, job in jobs.items())
        assert {job.timeout for job in after.values()} == {0.9}
        # not re-spread, and the backed-off job still waits out its backoff
        assert {key: after[key].due for key in dues} == dues
        backed_off = next(
            job for job in after.values() if job.log_fields == {"target": "fast", **failing}
        )
        assert backed_off.failures >= 2
        s = await d.scrape()
        assert (s.value("ccwatch_poll_errors_total", reason="http_status", **failing) or 0) >= 2


async def test_interval_change_takes_effect_and_is_exported(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, config(sim)) as d:
        await d.wait_for(lambda s: len(stamps(s, "fast")) == 4)
        changed = config(sim)
        changed["targets"][1]["interval"] = "1s"
        changed["targets"][1]["timeout"] = "500ms"
        write_config(path, changed)
        await reload(d)
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_poll_interval_seconds", target="slow") == 1.0
                and s.value("ccwatch_poll_success", target="slow") == 1.0
            )
        )
        assert s.value("ccwatch_poll_interval_seconds", target="fast", endpoint="capacity",
                       entry_point="1000") == 0.2  # fmt: skip


async def test_removed_jobs_are_cancelled_and_their_series_dropped(
    sim: Sim, tmp_path: Path
) -> None:
    await sim.fault(SLOW, "slow", delay=5.0)
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, config(sim)) as d:
        in_flight = await slow_poll_in_flight(d, sim)
        only_fast = config(sim)
        del only_fast["targets"][1]
        only_fast["targets"][0]["entry_points"] = [1000]
        write_config(path, only_fast)
        await reload(d)
        await asyncio.sleep(0)  # let the cancellation land
        assert in_flight.cancelled() or in_flight.done()
        s = await d.scrape()
        assert s.series("ccwatch_poll_success", target="slow") == []
        assert s.series("ccwatch_poll_success", entry_point="1001") == []
        assert s.series("ccwatch_poll_interval_seconds", target="slow") == []
        assert s.value("ccwatch_jobs", source="ece") == 2.0
        # nothing of the removed jobs comes back while the kept ones poll on
        stamp = s.value("ccwatch_poll_last_success_timestamp_seconds", endpoint="capacity")
        s = await d.wait_for(
            lambda s: (
                (s.value("ccwatch_poll_last_success_timestamp_seconds", endpoint="capacity") or 0)
                > (stamp or 0)
            ),
            what="the kept job polled again",
        )
        assert s.series("ccwatch_poll_success", target="slow") == []
        assert s.series("ccwatch_poll_success", entry_point="1001") == []
        assert d.daemon.scheduler.groups.keys() == {"fast"}


async def test_ready_stays_ready_when_a_reload_adds_targets(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "ccwatch.yml"
    first = config(sim)
    del first["targets"][1]
    async with reloadable_daemon(path, first) as d:
        await d.wait_for(lambda s: len(stamps(s, "fast")) == 4)
        assert (await d.get("/-/ready"))[0] == 200
        write_config(path, config(sim))
        await reload(d)
        assert (await d.get("/-/ready"))[0] == 200


@pytest.mark.parametrize("url_changes", [False, True])
async def test_holds_and_backoff_carry_over_unless_the_url_changes(
    sim: Sim, tmp_path: Path, url_changes: bool
) -> None:
    path = tmp_path / "ccwatch.yml"
    first = config(sim)
    del first["targets"][1]
    async with reloadable_daemon(path, first) as d:
        await d.wait_for(lambda s: len(stamps(s, "fast")) == 4)
        await sim.fault(
            "/entrypoint/capacity/1000", "status", status=429, headers={"Retry-After": "60"}
        )
        s = await d.wait_for(
            lambda s: (
                s.value("ccwatch_target_hold_until_timestamp_seconds", target="fast") is not None
            )
        )
        held_until = s.value("ccwatch_target_hold_until_timestamp_seconds", target="fast")
        changed = config(sim, timeout="150ms")
        del changed["targets"][1]
        if url_changes:
            # the same simulator under another spelling of its address
            changed["targets"][0]["url"] = changed["targets"][0]["url"].replace(
                "127.0.0.1", "localhost"
            )
        write_config(path, changed)
        await sim.clear_faults()
        await reload(d)
        s = await d.scrape()
        hold = s.value("ccwatch_target_hold_until_timestamp_seconds", target="fast")
        if url_changes:
            assert hold is None
            assert "fast" not in d.daemon.scheduler.holds
            await d.wait_for(
                lambda s: (
                    s.value("ccwatch_poll_success", entry_point="1000", endpoint="capacity") == 1.0
                ),
                what="the new URL polled at once",
            )
        else:
            assert hold == held_until
            assert "fast" in d.daemon.scheduler.holds
            failing = [
                e
                for e in await events(d)
                if e["event"] == "poll_failing" and e["endpoint"] == "capacity"
            ]
            assert failing[0]["reason"] == "rate_limited"
            # held: the target's jobs are not polled while the hold lasts
            before = stamps(s, "fast")
            await asyncio.sleep(1.0)  # five intervals
            assert stamps(await d.scrape(), "fast") == before


async def test_removed_targets_take_their_scrape_time_series_with_them(
    sim: Sim, tmp_path: Path
) -> None:
    path = tmp_path / "ccwatch.yml"
    probe = gms_probe_target(sim, interval="1s")
    first = config(sim, probe)
    del first["targets"][1]
    async with reloadable_daemon(path, first) as d:
        await d.wait_for(
            lambda s: s.value("ccwatch_gms_probe_success", target="probe") is not None,
            what="a probe verdict",
        )
        only_fast = config(sim)
        del only_fast["targets"][1]
        write_config(path, only_fast)
        await reload(d)
        s = await d.scrape()
        assert s.series("ccwatch_gms_probe_success") == []
        assert s.series("ccwatch_poll_success", target="probe") == []


def test_a_changed_tls_file_rebuilds_its_target(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    data = {
        "targets": [
            {
                "name": "tls",
                "source": "ece",
                "url": "https://127.0.0.1:1/system",
                "entry_points": [1],
                "tls_config": {"ca_file": str(ca), "insecure_skip_verify": True},
            }
        ]
    }
    http = HttpClient()
    config = parse_config(data)
    (group,) = build_groups(config, http)
    assert build_groups(config, http, {"tls": group}) == [group]  # nothing changed
    # a rotated CA: same path, new contents (two CAs, two sizes: even a coarse mtime tells)
    trustme.CA(organization_name="ccwatch rotated CA").cert_pem.write_to_path(str(ca))
    (rebuilt,) = build_groups(parse_config(data), http, {"tls": group})
    assert rebuilt is not group
    assert rebuilt.jobs is not group.jobs
