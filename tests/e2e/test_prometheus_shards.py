"""End to end with shards: a real Prometheus scrapes three ccwatch shards of one config.

As ``test_prometheus_e2e.py`` (whose helpers this reuses: the simulator and ccwatch run
in-process, Prometheus as a subprocess with the shipped rules and ``for:`` durations
scaled down, minutes to seconds), but with three ccwatch daemons, shards 0, 1 and 2 of 3,
as three static targets of the one ``ccwatch`` scrape job (the single-process case is
``test_prometheus_e2e.py``). The test

1. checks that Prometheus scrapes every shard, that each reports 3 total shards, and that
   their jobs add up to the whole configuration;
2. checks that every rule evaluates without error on series of one target coming from
   several instances, and that every dashboard query returns data, with no two series per
   instance unless the panel's legend tells the instances apart;
3. sees ``CcwatchShardsMissing`` and ``CcwatchShardCountMismatch`` stay quiet over
   several evaluations;
4. stops shard 2 and follows ``CcwatchShardsMissing`` from pending to firing.

Needs ``prometheus`` and ``promtool`` on PATH (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_prometheus_e2e as e2e
from tests.e2e.grafana import dashboard_files, load, panels, substitute
from tests.harness import Running, daemon, simulator

TOTAL_SHARDS = 3
#: The jobs of ``e2e.ccwatch_config``: all of them, over all shards.
ALL_JOBS = 30
SHARD_ALERTS = ("CcwatchShardsMissing", "CcwatchShardCountMismatch")
#: How long the shard alerts must stay quiet: past their scaled-down ``for:``.
QUIET_SECONDS = 8.0


def shard_config(sim_url: str, shard: int) -> dict[str, Any]:
    return {
        **e2e.ccwatch_config(sim_url),
        "sharding": {"shard": shard, "total_shards": TOTAL_SHARDS},
    }


def address(running: Running) -> str:
    return running.url.removeprefix("http://")


async def test_three_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(SHARD_ALERTS) <= e2e.alert_names()
    async with simulator(tick=0, seed=1) as sim:
        await e2e.freeze_healthy(sim)
        # a few failed polls, so that ccwatch_poll_errors_total (which appears at a job's
        # first error) has a series for the dashboards
        await sim.fault("/egain/chat/entrypoint/capacity/1003", "status", status=503, count=2)
        # shard 2 in a stack of its own, so that the test can stop it before the end
        async with (
            daemon(shard_config(sim.url, 0)) as shard0,
            daemon(shard_config(sim.url, 1)) as shard1,
            contextlib.AsyncExitStack() as stack,
        ):
            shard2 = await stack.enter_async_context(daemon(shard_config(sim.url, 2)))
            addresses = [address(shard0), address(shard1), address(shard2)]
            scrape_all(monkeypatch, addresses)
            async with e2e.prometheus(tmp_path, addresses[0]) as prom:
                try:
                    await all_shards_scraped(prom, addresses)
                    await e2e.rules_load_and_evaluate(prom)
                    await e2e.dashboard_queries_return_data(prom)
                    await dashboards_aggregate_instances(prom)
                    await shard_alerts_stay_quiet(prom)

                    await stack.aclose()  # shard 2 stops
                    firing = await shards_missing_fires(prom)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n--- prometheus log:\n{prom.log_tail()}") from None
    annotations = firing["annotations"]
    assert annotations["summary"] == "ccwatch job ccwatch runs 2 of its 3 shards"
    assert "(ordinals 0, 1)" in annotations["description"], annotations
    assert annotations["runbook_url"].endswith("#ccwatchshardsmissing")


def scrape_all(monkeypatch: pytest.MonkeyPatch, addresses: list[str]) -> None:
    """Make ``e2e.prometheus`` scrape every one of ``addresses`` in the ccwatch job."""
    shipped = e2e.prometheus_config

    def config(ccwatch_address: str, rules_file: Path) -> dict[str, Any]:
        result = shipped(ccwatch_address, rules_file)
        [job] = [j for j in result["scrape_configs"] if j["job_name"] == "ccwatch"]
        job["static_configs"] = [{"targets": list(addresses)}]
        return result

    monkeypatch.setattr(e2e, "prometheus_config", config)


def by_instance(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"]["instance"]: float(s["value"][1]) for s in samples}


async def all_shards_scraped(prom: e2e.Prometheus, addresses: list[str]) -> None:
    """Every shard up, each saying 3 shards, their ordinals 0, 1 and 2, and their jobs
    (each shard some) adding up to the whole configuration."""

    async def scraped() -> dict[str, dict[str, float]] | None:
        found = {
            "up": by_instance(await prom.query('up{job="ccwatch"} == 1')),
            "total": by_instance(await prom.query('ccwatch_total_shards{job="ccwatch"}')),
            "ordinal": by_instance(await prom.query('ccwatch_shard_ordinal{job="ccwatch"}')),
            "jobs": by_instance(
                await prom.query('sum by (instance) (ccwatch_jobs{job="ccwatch"})')
            ),
        }
        errors = await prom.query('ccwatch_poll_errors_total{job="ccwatch"}')
        every = all(len(v) == len(addresses) for v in found.values())
        return found if every and errors else None

    found = await e2e.eventually(scraped, within=30, what="Prometheus to scrape every shard")
    assert found["up"] == dict.fromkeys(addresses, 1.0)
    assert found["total"] == dict.fromkeys(addresses, float(TOTAL_SHARDS))
    assert found["ordinal"] == {a: float(i) for i, a in enumerate(addresses)}
    assert all(jobs > 0 for jobs in found["jobs"].values()), found["jobs"]
    assert sum(found["jobs"].values()) == ALL_JOBS, found["jobs"]

    # and the recording rules have seen every job of every shard
    async def recorded() -> bool | None:
        ages = await prom.query("ccwatch:poll_age_intervals")
        return True if len(ages) == ALL_JOBS else None

    await e2e.eventually(recorded, within=10, what="the rules to record every shard's jobs")


async def dashboards_aggregate_instances(prom: e2e.Prometheus) -> None:
    """No panel shows two series that differ only in ``instance`` unless its legend
    names the instance: per-target and per-subject panels aggregate the shards away."""
    duplicated: list[str] = []
    for path in dashboard_files():
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                if "{{instance}}" in target.get("legendFormat", ""):
                    continue
                expr = substitute(target["expr"], {"target": ".*", "entry_point": ".*"})
                keys = Counter(
                    tuple(sorted((k, v) for k, v in s["metric"].items() if k != "instance"))
                    for s in await prom.query(expr)
                )
                if any(n > 1 for n in keys.values()):
                    duplicated.append(f"{path.name}: panel {panel['id']} ({panel['title']})")
    assert duplicated == [], "panels with a series per shard: " + ", ".join(duplicated)


async def shard_alerts_stay_quiet(prom: e2e.Prometheus) -> None:
    """Neither shard alert goes pending over several evaluations, beyond their ``for:``.

    An evaluation of the rules made before Prometheus's first scrape of the last shard
    (its scrapes are spread over the interval) may have left CcwatchShardsMissing pending
    from the start-up; the first evaluation after every shard was scraped clears it, and
    from then on nothing may go pending."""

    async def cleared() -> bool | None:
        alerts = [a for a in await prom.alerts() if a["labels"]["alertname"] in SHARD_ALERTS]
        return True if alerts == [] else None

    await e2e.eventually(cleared, within=10, what="the start-up's shard alerts to clear")
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        alerts = [a for a in await prom.alerts() if a["labels"]["alertname"] in SHARD_ALERTS]
        assert alerts == [], f"shard alerts with both shards up:\n{e2e.describe(alerts)}"
        await asyncio.sleep(0.5)
    groups = (await prom.api("rules"))["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"] if r["name"] in SHARD_ALERTS}
    assert set(rules) == set(SHARD_ALERTS)
    assert all(r["health"] == "ok" and r["state"] == "inactive" for r in rules.values()), rules


async def shards_missing_fires(prom: e2e.Prometheus) -> dict[str, Any]:
    """With shard 1 stopped, CcwatchShardsMissing goes pending, then firing."""
    states: list[str] = []

    async def firing() -> dict[str, Any] | None:
        for alert in await prom.alerts():
            if e2e.matches(alert, "CcwatchShardsMissing", {"job": "ccwatch"}):
                if not states or states[-1] != alert["state"]:
                    states.append(alert["state"])
                if alert["state"] == "firing":
                    return alert
        return None

    try:
        alert = await e2e.eventually(
            firing, within=30, what="CcwatchShardsMissing to fire", every=0.2
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; states seen: {states}") from None
    assert states == ["pending", "firing"], states
    return alert
