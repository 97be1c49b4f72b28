"""Opening hours, static labels and thresholds in the daemon, over real sockets against the
simulator: ``ccwatch_open``/``ccwatch_opening_grace`` follow the calendars on the (fixed)
wall clock of the calendars, static labels are on every series of their target,
``ccwatch_threshold`` has the effective values, and reloads change all three."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ccwatch.daemon import Daemon
from ccwatch.sources import load_config, parse_config
from tests.harness import Running, Scrape, Sim, gms_probe_target, reload, running, simulator
from tests.harness import write_config as write_yaml

BERLIN = datetime.timezone(datetime.timedelta(hours=1))  # CET: no DST in late November


def berlin(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    """Unix time of 2026-11-<day> hh:mm:ss in Berlin (30 November 2026 is a Monday)."""
    return datetime.datetime(2026, 11, day, hour, minute, second, tzinfo=BERLIN).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(sim: Sim, **ece: Any) -> dict[str, Any]:
    return {
        "defaults": {
            "interval": "1s",
            "timeout": "1s",
            "thresholds": {"ece_wait_time": "4m", "stale_intervals": 5},
        },
        "calendars": {
            "business": {
                "timezone": "Europe/Berlin",
                "hours": {"mon-fri": ["08:00-18:00"]},
                "opening_grace": "5m",
            },
            "always": {"hours": {"mon-sun": "00:00-24:00"}},
        },
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1000, 1001],
                "endpoints": ["chatAllowed", "capacity"],
                "calendar": "business",
                "entry_point_calendars": {1001: "always"},
                "labels": {"team": "sales", "site": "munich"},
                "thresholds": {"ece_queue_depth": 8},
                **ece,
            },
            gms_probe_target(sim, interval="1s", labels={"team": "support"}),
        ],
    }


def local(data: dict[str, Any], clock: Callable[[], float] = time.time) -> Daemon:
    """A daemon of ``data`` on a free port of 127.0.0.1, its calendars on ``clock``."""
    return Daemon(parse_config({**data, "web": {"listen_address": "127.0.0.1:0"}}), clock=clock)


def open_state(scrape: Scrape, target: str, **subject: str) -> tuple[float | None, float | None]:
    return (
        scrape.value("ccwatch_open", target=target, **subject),
        scrape.value("ccwatch_opening_grace", target=target, **subject),
    )


async def polled(d: Running) -> Scrape:
    return await d.wait_for(
        lambda s: (
            s.value("ccwatch_ece_chat_allowed", target="ece", entry_point="1000") is not None
            and s.value("ccwatch_gms_probe_success", target="probe") is not None
        ),
        what="the first polls",
    )


async def test_open_and_grace_follow_the_calendars_at_the_minute() -> None:
    clock = Clock(berlin(30, 7, 59, 59))  # Monday, a second before opening
    async with simulator() as sim:
        d: Running
        async with running(local(config(sim), clock)) as d:
            scrape = await d.scrape()  # from the jobs, before any poll
            assert open_state(scrape, "ece", entry_point="1000") == (0, 0)
            assert open_state(scrape, "ece", entry_point="1001") == (1, 0)  # always open
            assert open_state(scrape, "probe") == (1, 0)  # no calendar: always open
            # one series per subject, not per job (two endpoints per entry point)
            assert len(scrape.series("ccwatch_open", target="ece")) == 2

            clock.t = berlin(30, 8, 0, 0)  # opens: in its grace for 5 minutes
            scrape = await d.scrape()
            assert open_state(scrape, "ece", entry_point="1000") == (1, 1)
            clock.t = berlin(30, 8, 4, 59)
            assert open_state(await d.scrape(), "ece", entry_point="1000") == (1, 1)
            clock.t = berlin(30, 8, 5, 0)
            assert open_state(await d.scrape(), "ece", entry_point="1000") == (1, 0)
            clock.t = berlin(30, 18, 0, 0)  # closes
            assert open_state(await d.scrape(), "ece", entry_point="1000") == (0, 0)
            clock.t = berlin(28, 12, 0, 0)  # a Saturday
            scrape = await d.scrape()
            assert open_state(scrape, "ece", entry_point="1000") == (0, 0)
            assert open_state(scrape, "ece", entry_point="1001") == (1, 0)


async def test_static_labels_are_on_every_series_of_their_target() -> None:
    async with simulator() as sim:
        d: Running
        async with running(local(config(sim))) as d:
            scrape = await polled(d)
    ece = [s for s in scrape.samples if s.labels.get("target") == "ece"]
    probe = [s for s in scrape.samples if s.labels.get("target") == "probe"]
    names = {s.name for s in ece}
    # vendor, poll health, calendar and threshold series all carry them
    assert {
        "ccwatch_ece_chat_allowed",
        "ccwatch_ece_chat_blocked",
        "ccwatch_ece_available_slots",
        "ccwatch_poll_success",
        "ccwatch_poll_duration_seconds",
        "ccwatch_poll_interval_seconds",
        "ccwatch_open",
        "ccwatch_opening_grace",
        "ccwatch_threshold",
    } <= names
    for sample in ece:
        assert (sample.labels.get("team"), sample.labels.get("site")) == ("sales", "munich"), sample
    # a source's scrape-time state (the GMS probe's verdict) too
    assert "ccwatch_gms_probe_success" in {s.name for s in probe}
    for sample in probe:
        assert sample.labels.get("team") == "support", sample
        assert "site" not in sample.labels
    # series of no target carry none
    assert all("team" not in s.labels for s in scrape.samples if "target" not in s.labels)


async def test_thresholds_are_exported_per_target_with_the_defaults_applied() -> None:
    async with simulator() as sim:
        d: Running
        async with running(local(config(sim))) as d:
            scrape = await d.scrape()
    ece = {s.labels["name"]: s.value for s in scrape.series("ccwatch_threshold", target="ece")}
    assert ece == {
        "ece_queue_depth": 8,  # the target's own
        "ece_wait_time_seconds": 240,  # defaults.thresholds, written as 4m
        "ece_availability_objective": 0.99,  # the built-in default
        "ece_staffed_availability_objective": 0.98,  # the built-in default
        "poll_failing_ratio": 0.2,
        "stale_intervals": 5,
    }
    probe = {s.labels["name"]: s.value for s in scrape.series("ccwatch_threshold", target="probe")}
    assert probe == {"poll_failing_ratio": 0.2, "stale_intervals": 5}


async def test_a_reload_changes_calendars_labels_and_thresholds_without_a_gap(
    tmp_path: Path,
) -> None:
    clock = Clock(berlin(30, 12, 0))  # Monday noon: open
    path = tmp_path / "ccwatch.yml"
    async with simulator() as sim:
        first = config(sim)
        write_yaml(path, first)
        d: Running
        async with running(Daemon(load_config(path), config_path=path, clock=clock)) as d:
            scrape = await polled(d)
            assert open_state(scrape, "ece", entry_point="1000") == (1, 0)
            polls = d.daemon.scheduler.polls_total

            # the calendar now closes at noon; the target changes team and queue threshold
            second = config(sim, labels={"team": "support"}, thresholds={"ece_queue_depth": 3})
            second["calendars"]["business"]["hours"] = {"mon-fri": ["08:00-12:00"]}
            write_yaml(path, second)
            # reloaded and rendered with no chance for a poll in between: the vendor
            # series were rewritten under the new labels from the jobs' last readings
            assert await d.daemon.reload() is None
            scrape = Scrape(b"".join(d.daemon.metric_chunks(openmetrics=False)).decode())
            assert d.daemon.scheduler.polls_total == polls
            assert open_state(scrape, "ece", entry_point="1000") == (0, 0)
            assert open_state(scrape, "ece", entry_point="1001") == (1, 0)
            thresholds = {s.labels["name"]: s.value for s in scrape.series("ccwatch_threshold")}
            assert thresholds["ece_queue_depth"] == 3
            ece = [s for s in scrape.samples if s.labels.get("target") == "ece"]
            assert "ccwatch_ece_chat_allowed" in {s.name for s in ece}
            assert "ccwatch_poll_last_success_timestamp_seconds" in {s.name for s in ece}
            for sample in ece:
                assert sample.labels.get("team") == "support", sample
                assert "site" not in sample.labels, sample

            # a calendar section change alone (no target changes) takes effect too
            third = dict(second)
            third["calendars"] = {
                **second["calendars"],
                "business": {"timezone": "Europe/Berlin", "hours": {"mon": "11:58-13:00"}},
            }
            write_yaml(path, third)
            await reload(d)
            assert open_state(await d.scrape(), "ece", entry_point="1000") == (1, 1)

            # a target's thresholds and calendars build no job: its jobs go on untouched
            group = d.daemon.scheduler.groups["ece"]
            fourth = dict(third)
            fourth["targets"] = [
                {**third["targets"][0], "thresholds": {"ece_queue_depth": 5},
                 "calendar": "always", "entry_point_calendars": {}},
                *third["targets"][1:],
            ]  # fmt: skip
            write_yaml(path, fourth)
            await reload(d)
            assert d.daemon.scheduler.groups["ece"] is group
            scrape = await d.scrape()
            assert open_state(scrape, "ece", entry_point="1000") == (1, 0)
            thresholds = {s.labels["name"]: s.value for s in scrape.series("ccwatch_threshold")}
            assert thresholds["ece_queue_depth"] == 5


def readme_example() -> tuple[dict[str, Any], list[str]]:
    """The worked example of docs/configuration.md: its config and the series it shows."""
    text = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("### Worked example", 1)[1].split("### Calendars", 1)[0]
    blocks = section.split("```")
    config_yaml, output = blocks[1].removeprefix("yaml\n"), blocks[3]
    data: dict[str, Any] = yaml.safe_load(config_yaml)
    return data, [line for line in output.splitlines() if line.strip()]


async def test_the_readme_worked_example_shows_what_ccwatch_exports() -> None:
    data, lines = readme_example()
    assert len(lines) >= 6
    async with simulator() as sim:
        data["targets"][0]["url"] = f"{sim.url}/system"
        d: Running
        async with running(local(data, Clock(berlin(30, 8, 2)))) as d:  # Monday 08:02
            text = (await d.scrape()).text
    for line in lines:
        assert line + "\n" in text, line
