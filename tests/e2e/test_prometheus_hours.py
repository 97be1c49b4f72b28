"""End to end with a real Prometheus: opening hours decide which closures page.

ccwatch watches four entry points of the simulator under two calendars: ``ece-open``
(1000, 1001) under a calendar that is open now, ``ece-closed`` (1002, 1003) under one
that is closed today (its ``closed`` dates cover yesterday, today and tomorrow, so the
test holds at any hour). Prometheus runs the shipped rules with ``for:`` scaled down as
in ``test_prometheus_e2e``. Then:

- closing 1001 (open calendar) fires ``CcwatchEceEntryPointClosed``;
- closing 1003 (closed calendar) stays quiet;
- 1002 keeps accepting chats under the closed calendar: ``CcwatchEceOpenOutsideHours``;
- per-target thresholds: a queue of 5 is over ``ece-open``'s threshold (4) and under
  ``ece-closed``'s (the default 10), so only ``ece-open`` gets ``CcwatchEceQueueDepthHigh``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from tests.e2e.test_prometheus_e2e import (
    HEALTHY_ENTRY_POINT,
    Prometheus,
    describe,
    eventually,
    matches,
    prometheus,
)
from tests.harness import Scrape, daemon, simulator

OPEN, CLOSED = "ece-open", "ece-closed"


def config(sim_url: str) -> dict[str, Any]:
    today = datetime.datetime.now(datetime.UTC).date()
    around = [str(today + datetime.timedelta(days=d)) for d in (-1, 0, 1)]
    always = {"hours": {"mon-sun": ["00:00-24:00"]}}
    return {
        "defaults": {"interval": "1s", "timeout": "1s"},
        "calendars": {
            "always": always,
            "holiday": {**always, "closed": around},
        },
        "targets": [
            {
                "name": OPEN,
                "source": "ece",
                "url": f"{sim_url}/system",
                "entry_points": [1000, 1001],
                "calendar": "always",
                "labels": {"team": "support"},
                "thresholds": {"ece_queue_depth": 4},
            },
            {
                "name": CLOSED,
                "source": "ece",
                "url": f"{sim_url}/system",
                "entry_points": [1002, 1003],
                "calendar": "holiday",
                "labels": {"team": "sales"},
            },
        ],
    }


async def firing(prom: Prometheus) -> list[dict[str, Any]]:
    return [a for a in await prom.alerts() if a["state"] == "firing"]


async def test_closures_page_only_within_opening_hours(tmp_path: Path) -> None:
    async with simulator(tick=0, seed=1) as sim:
        for entry_point in (1000, 1001, 1002, 1003):
            await sim.put(
                f"ece/entry_points/{entry_point}", {**HEALTHY_ENTRY_POINT, "queue_depth": 5}
            )
        async with daemon(config(sim.url)) as ccwatch:

            def polled(scrape: Scrape) -> bool:
                success = scrape.series("ccwatch_poll_success")
                return len(success) == 20 and all(s.value == 1 for s in success)

            scrape = await ccwatch.wait_for(polled, within=30, what="every job to poll")
            assert scrape.value("ccwatch_open", target=OPEN, entry_point="1001") == 1
            assert scrape.value("ccwatch_open", target=CLOSED, entry_point="1003") == 0

            await sim.put("ece/entry_points/1001", {"active": False})
            await sim.put("ece/entry_points/1003", {"active": False})
            address = ccwatch.url.removeprefix("http://")
            async with prometheus(tmp_path, address) as prom:
                expected = [
                    ("CcwatchEceEntryPointClosed", {"target": OPEN, "entry_point": "1001"}),
                    ("CcwatchEceOpenOutsideHours", {"target": CLOSED, "entry_point": "1002"}),
                    ("CcwatchEceQueueDepthHigh", {"target": OPEN, "entry_point": "1000"}),
                ]

                async def all_fire() -> list[dict[str, Any]] | None:
                    alerts = await firing(prom)
                    ok = all(any(matches(a, n, lbl) for a in alerts) for n, lbl in expected)
                    return alerts if ok else None

                try:
                    alerts = await eventually(all_fire, within=90, what="the expected alerts")
                except AssertionError as exc:
                    raise AssertionError(
                        f"{exc}\n{describe(await prom.alerts())}\n{prom.log_tail()}"
                    ) from None
                # the static labels travel with the alerts
                for alert in alerts:
                    team = "support" if alert["labels"].get("target") == OPEN else "sales"
                    assert alert["labels"].get("team") == team, alert

                # and nothing else about ece-closed: not the closure of 1003 (closed
                # calendar), not its queues (5 is under its default threshold of 10)
                outside = ("CcwatchEceOpenOutsideHours", {"target": CLOSED, "entry_point": "1002"})
                quiet = [
                    a
                    for a in await prom.alerts()
                    if a["labels"].get("target") == CLOSED and not matches(a, *outside)
                ]
                assert quiet == [], describe(quiet)
