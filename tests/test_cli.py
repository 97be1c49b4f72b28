"""The command line, run as a real process: flags, exit codes, JSON logs, signals, demo."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccwatch import __version__
from ccwatch.timeintervals import MONTHS

CCWATCH = [sys.executable, "-m", "ccwatch"]
TESTDATA = Path(__file__).parent / "testdata" / "config"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until_up(url: str, proc: subprocess.Popen[str], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process exited early: {proc.returncode}"
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line must be one JSON object."""
    out = []
    for line in text.splitlines():
        parsed = json.loads(line)
        assert isinstance(parsed, dict), line
        out.append(parsed)
    return out


def test_version() -> None:
    result = subprocess.run([*CCWATCH, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"ccwatch {__version__}"


def test_check_config_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text(
        "targets:\n  - {name: a, source: ece, url: 'http://127.0.0.1:1/system',"
        " entry_points: [1, 2]}\n"
    )
    result = subprocess.run([*CCWATCH, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0
    assert "OK (1 targets, 10 poll jobs)" in result.stdout
    assert "warning" not in result.stdout


def test_check_config_warns_about_an_interval_below_the_floor(tmp_path: Path) -> None:
    path = tmp_path / "fast.yml"
    path.write_text(
        "targets:\n  - {name: a, source: ece, url: 'http://127.0.0.1:1/system',"
        " entry_points: [1], interval: 1s}\n"
    )
    result = subprocess.run([*CCWATCH, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0  # allowed: labs and tests need it
    assert (
        "  warning: targets[0].interval: 1s for ece target 'a' is below the floor of 5s: "
        "300 requests a minute to ECE (1 entry points x 5 endpoints)\n"
    ) in result.stdout


def test_check_config_invalid_exits_1_with_readable_errors() -> None:
    path = TESTDATA / "invalid" / "duration_bad_unit.yml"
    result = subprocess.run([*CCWATCH, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "defaults.interval: invalid duration '10x'" in result.stderr


def test_run_with_bad_config_exits_non_zero_with_a_json_error() -> None:
    path = TESTDATA / "invalid" / "unknown_top_level_key.yml"
    result = subprocess.run(
        [*CCWATCH, "run", "--config.file", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    (event,) = json_lines(result.stderr)
    assert event["event"] == "config_invalid"
    assert event["level"] == "error"
    assert "bogus: unknown key" in str(event["errors"])


def test_run_with_missing_config_file() -> None:
    result = subprocess.run(
        [*CCWATCH, "run", "--config.file", "/nonexistent/ccwatch.yml"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot read" in result.stderr


@pytest.fixture
def simulator_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [*CCWATCH, "simulate", "--listen", f"127.0.0.1:{port}", "--tick", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/-/sim/state", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.parametrize(
    ("flags", "event_loop"), [((), "uvloop"), (("--event-loop", "asyncio"), "asyncio")]
)
def test_run_serves_logs_json_reloads_and_stops_gracefully(
    simulator_process: str, tmp_path: Path, flags: tuple[str, ...], event_loop: str
) -> None:
    port = free_port()
    config = tmp_path / "ccwatch.yml"
    config.write_text(
        "defaults: {interval: 500ms, timeout: 400ms}\n"
        f"targets:\n  - {{name: a, source: ece, url: '{simulator_process}/system',"
        " entry_points: [1000]}\n"
    )
    proc = subprocess.Popen(
        [
            *CCWATCH,
            "run",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/-/healthy", proc)
        deadline = time.monotonic() + 20
        while get(f"{base}/-/ready")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert 'ccwatch_ece_chat_allowed{target="a",entry_point="1000"}' in text
        # SIGHUP reloads the file
        config.write_text(config.read_text().replace("[1000]", "[1000, 1001]"))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while 'entry_point="1001"' not in get(f"{base}/metrics")[1]:
            assert time.monotonic() < deadline, "reload did not add 1001"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert stdout == ""
    events = json_lines(stderr)
    names = [e["event"] for e in events]
    assert names[0] == "starting"
    assert events[0]["event_loop"] == event_loop  # uvloop unless asked otherwise
    assert "listening" in names
    assert "config_reloaded" in names
    assert names[-1] == "stopped"
    assert all("timestamp" in e and "level" in e for e in events)


def test_library_warnings_and_stdlib_logs_are_json_too() -> None:
    code = (
        "import logging, warnings\n"
        "from ccwatch import logs\n"
        "logs.configure('info', 'json')\n"
        "warnings.warn('something deprecated', DeprecationWarning)\n"
        "logging.getLogger('aiohttp.client').warning('from a library %s', 'x')\n"
        "import structlog\n"
        "structlog.get_logger('t').info('ours', password='hunter2', target='a')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    events = json_lines(result.stderr)
    assert len(events) == 3
    assert "something deprecated" in str(events[0]["event"])
    assert events[1]["event"] == "from a library x"
    assert events[1]["logger"] == "aiohttp.client"
    assert events[2]["event"] == "ours"
    assert events[2]["password"] == "[redacted]"
    assert "hunter2" not in result.stderr


def test_demo_shows_every_vendor_with_values_that_change() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CCWATCH, "demo", "--web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    vendors = (
        "ccwatch_ece_",
        "ccwatch_context_service_",
        "ccwatch_genesys_",
        "ccwatch_gms_",
        "ccwatch_alvaria_",
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until_up(url, proc)
        first: dict[str, str] = {}
        changed = False
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (changed and len(seen) == len(vendors)):
            text = get(url)[1]
            seen |= {v for v in vendors if f"\n{v}" in text}
            lines = [ln for ln in text.splitlines() if ln.startswith("ccwatch_ece_")]
            current = dict(ln.rsplit(" ", 1) for ln in lines)
            for key, value in current.items():
                first.setdefault(key, value)
                if first[key] != value:
                    changed = True
            time.sleep(1)
        assert first, "the demo exported no ECE metrics"
        assert changed, "no ECE value changed within a minute"
        assert seen == set(vendors)
        # the demo's calendars: entry point 1003 is open around the clock
        labels = 'target="ece-demo",entry_point="1003",site="munich",team="sales"'
        assert f"ccwatch_open{{{labels}}} 1\n" in text
        assert 'ccwatch_open{target="ece-demo",entry_point="1000"' in text
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}/metrics" in stderr


def test_a_crash_is_one_json_event_without_locals() -> None:
    code = (
        "from ccwatch import logs\n"
        "logs.configure('info', 'json')\n"
        "secret = 'hunter2'\n"
        "raise RuntimeError('boom')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    (event,) = json_lines(result.stderr)
    assert event["event"] == "uncaught_exception"
    assert "boom" in json.dumps(event["exception"])
    assert "hunter2" not in result.stderr


# --------------------------------------------------------------------------- time-intervals

CALENDARS = TESTDATA / "valid" / "calendars.yml"


def time_intervals(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CCWATCH, "time-intervals", *args], capture_output=True, text=True, timeout=30
    )


def generated(*args: str) -> dict[str, Any]:
    """The one interval ``ccwatch time-intervals`` prints, parsed."""
    result = time_intervals("--config.file", str(CALENDARS), *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = yaml.safe_load(result.stdout)
    assert list(data) == ["time_intervals"]
    (interval,) = data["time_intervals"]
    assert isinstance(interval, dict)
    return interval


def days(interval: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(year, month, day) of each time range; each range is exactly one day."""
    months = list(MONTHS)
    out = []
    for spec in interval["time_intervals"]:
        assert set(spec) == {"years", "months", "days_of_month", "location"}, spec
        [year], [month], [day] = spec["years"], spec["months"], spec["days_of_month"]
        out.append((int(year), months.index(month) + 1, int(day)))
    return out


def test_time_intervals_prints_the_holidays_and_closed_dates_of_a_calendar() -> None:
    interval = generated("--calendar", "munich-chat", "--years", "2027")
    assert interval["name"] == "munich-chat-holidays"
    assert {spec["location"] for spec in interval["time_intervals"]} == {"Europe/Berlin"}
    listed = days(interval)
    assert listed == sorted(listed)
    assert (2027, 1, 6) in listed  # Epiphany, a Bavarian public holiday
    assert (2027, 8, 15) in listed  # Assumption Day: categories [public, catholic]
    assert (2027, 12, 24) in listed  # closed:
    assert (2027, 12, 31) in listed
    assert (2028, 12, 24) not in listed  # another year
    assert (2027, 12, 23) not in listed
    assert len(listed) == 15  # 13 holidays and 2 closed dates


def test_time_intervals_follows_the_categories() -> None:
    default = days(generated("--calendar", "munich-default", "--years", "2027"))
    assert (2027, 1, 6) in default
    assert (2027, 8, 15) not in default  # catholic: not in the default categories
    assert len(default) == 12


def test_time_intervals_years_name_and_location() -> None:
    interval = generated(
        "--calendar", "new-york", "--years", "2027-2028,2030", "--name", "nyc holidays"
    )
    assert interval["name"] == "nyc holidays"
    assert {spec["location"] for spec in interval["time_intervals"]} == {"America/New_York"}
    listed = days(interval)
    assert {year for year, _, _ in listed} == {2027, 2028, 2030}
    assert (2027, 7, 5) in listed  # Independence Day on a Sunday: observed on Monday
    assert (2028, 11, 23) in listed  # Thanksgiving
    # no holidays: only the closed dates, in UTC (the calendar's default zone)
    shutdowns = generated("--calendar", "shutdowns", "--years", "2027")
    assert shutdowns["time_intervals"] == [
        {"years": ["2027"], "months": ["june"], "days_of_month": ["30"], "location": "UTC"}
    ]


def test_time_intervals_defaults_to_this_year_and_the_next() -> None:
    this_year = datetime.datetime.now(datetime.UTC).year
    listed = days(generated("--calendar", "munich-chat"))
    assert {year for year, _, _ in listed} == {this_year, this_year + 1}


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ["--calendar", "munich"],
            2,
            "--calendar: no calendar 'munich' in "
            f"{CALENDARS}; its calendars: always, munich-chat, munich-default, new-york, "
            "shutdowns",
        ),
        (
            ["--calendar", "always", "--years", "2027"],
            1,
            "calendar always has no closed day in 2027: give it holidays: or closed: dates",
        ),
        (
            ["--calendar", "shutdowns", "--years", "2028"],
            1,
            "calendar shutdowns has no closed day in 2028",
        ),
        (["--calendar", "munich-chat", "--years", "27"], 2, "argument --years: bad year '27'"),
        (
            ["--calendar", "munich-chat", "--years", "2028-2027"],
            2,
            "argument --years: bad year range '2028-2027'",
        ),
        (["--calendar", "munich-chat", "--years", "2000-2100"], 2, "101 years: at most 50"),
        (["--calendar", "munich-chat", "--name", " "], 2, "expected a time interval name"),
        ([], 2, "the following arguments are required: --calendar"),
    ],
    ids=[
        "unknown-calendar",
        "no-holidays",
        "no-closed-day-that-year",
        "bad-year",
        "reversed-range",
        "too-many-years",
        "blank-name",
        "no-calendar",
    ],
)
def test_time_intervals_errors(args: list[str], status: int, message: str) -> None:
    result = time_intervals("--config.file", str(CALENDARS), *args)
    assert result.returncode == status
    assert message in result.stderr
    assert result.stdout == ""


def test_time_intervals_with_an_invalid_config_names_the_key_path() -> None:
    path = TESTDATA / "invalid" / "calendar_unknown_holiday_category.yml"
    result = time_intervals("--config.file", str(path), "--calendar", "munich-chat")
    assert result.returncode == 1
    assert f"{path}: invalid configuration" in result.stderr
    assert "calendars.munich-chat.holidays.categories: unknown holiday category" in result.stderr
    assert result.stdout == ""
