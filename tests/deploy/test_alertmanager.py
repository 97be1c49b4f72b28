"""deploy/alertmanager/alertmanager.yml: amtool checks, routing of every alert, inhibitions.

Needs ``amtool`` and ``alertmanager`` on PATH (Debian: ``apt-get install
prometheus-alertmanager``, whose server binary is ``prometheus-alertmanager``; ``.ci/run``
installs it). A missing tool is a failure, not a skip.

* ``amtool check-config`` accepts the file.
* ``amtool config routes test --verify.receivers`` sends each ccwatch alert, with the labels
  its rule gives it, to the expected receiver. ``ROUTES`` below is the one list of
  alerts and receivers; every alert of deploy/prometheus/rules/ccwatch.rules.yml must be in
  it, with the rule's severity and audience, so a new alert needs a routing case.
* The inhibit rules run in a real Alertmanager on a free port of 127.0.0.1: alerts are
  posted through its v2 API, and /api/v2/alerts shows which are suppressed, by what.
* The time intervals follow the README's example calendar ``munich-chat``: every one names
  its ``location``; the supervisors are notified exactly while the calendar is open, every
  15 minutes of the years the holidays interval covers (Alertmanager's time interval rules
  are evaluated here, and a real Alertmanager checks them at the current time); and the
  holidays interval is what ``ccwatch time-intervals`` prints for that calendar.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from ccwatch.calendars import Calendar
from ccwatch.sources import parse_config
from ccwatch.timeintervals import MONTHS

from .helpers import DEPLOY, REPO

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RULES = DEPLOY / "prometheus" / "rules" / "ccwatch.rules.yml"
INSTALL_HINT = "(Debian: apt-get install prometheus-alertmanager; .ci/run does it)"

JOB = "ccwatch"
INSTANCE = "ccwatch:9865"
TARGET = "ece-prod"
ENTRY_POINT = "sales-chat"
#: a static label from ccwatch's configuration, carried by the subject's alerts
TEAM = {"team": "sales"}

SELF = {"job": JOB, "instance": INSTANCE}
PER_TARGET = {"job": JOB, "target": TARGET}
PER_SUBJECT = {**SELF, "target": TARGET}
PER_ENTRY_POINT = {**PER_SUBJECT, "entry_point": ENTRY_POINT}


@dataclass(frozen=True)
class Route:
    receiver: str
    severity: str
    audience: str
    labels: dict[str, str] = field(default_factory=dict)

    def alert(self, name: str, **overrides: str) -> dict[str, str]:
        """The alert's full label set, as Prometheus sends it."""
        return {
            "alertname": name,
            "severity": self.severity,
            "audience": self.audience,
            **self.labels,
            **overrides,
        }


#: Every ccwatch alert: where it goes, and the labels its rule gives it. The single list:
#: test_every_alert_of_the_rules_has_a_route fails for an alert of the rules missing here.
ROUTES: dict[str, Route] = {
    # SRE, pages
    "CcwatchScrapeDown": Route("sre-pager", "critical", "sre", SELF),
    "CcwatchAbsent": Route("sre-pager", "critical", "sre", {}),
    "CcwatchShardsMissing": Route("sre-pager", "critical", "sre", {"job": JOB}),
    "CcwatchEceEntryPointClosed": Route(
        "sre-pager", "critical", "sre", {**PER_ENTRY_POINT, **TEAM}
    ),
    "CcwatchEceEntryPointStateUnknown": Route("sre-pager", "critical", "sre", PER_ENTRY_POINT),
    "CcwatchContextServiceNotRegistered": Route(
        "sre-pager", "critical", "sre", {**PER_SUBJECT, "target": "context-service"}
    ),
    "CcwatchGmsProbeFailing": Route(
        "sre-pager",
        "critical",
        "sre",
        {**PER_SUBJECT, "target": "gms-prod", "gms_service": "callback", **TEAM},
    ),
    "CcwatchEceAvailabilityBudgetBurnFast": Route(
        "sre-pager", "critical", "sre", {**PER_TARGET, "entry_point": ENTRY_POINT}
    ),
    # SRE, tickets
    "CcwatchConfigReloadFailed": Route("sre-tickets", "warning", "sre", SELF),
    "CcwatchShardCountMismatch": Route("sre-tickets", "warning", "sre", {"job": JOB}),
    "CcwatchTargetPollsFailing": Route("sre-tickets", "warning", "sre", PER_TARGET),
    "CcwatchSubjectPollsFailing": Route(
        "sre-tickets", "warning", "sre", {**PER_ENTRY_POINT, **TEAM}
    ),
    "CcwatchDataStale": Route("sre-tickets", "warning", "sre", PER_TARGET),
    "CcwatchTargetHeld": Route("sre-tickets", "warning", "sre", PER_TARGET),
    "CcwatchEceOpenOutsideHours": Route("sre-tickets", "warning", "sre", PER_ENTRY_POINT),
    "CcwatchEceAvailabilityBudgetBurnSlow": Route(
        "sre-tickets", "warning", "sre", {**PER_TARGET, "entry_point": ENTRY_POINT}
    ),
    "CcwatchGenesysServicesStuck": Route(
        "sre-tickets", "warning", "sre", {**PER_SUBJECT, "target": "genesys-prod"}
    ),
    "CcwatchAlvariaAuthFailing": Route(
        "sre-tickets", "warning", "sre", {**PER_SUBJECT, "target": "alvaria-prod"}
    ),
    "CcwatchAlvariaRateLimited": Route(
        "sre-tickets", "warning", "sre", {**PER_SUBJECT, "target": "alvaria-prod"}
    ),
    # supervisors
    "CcwatchEceEntryPointClosedStaffing": Route(
        "supervisors", "warning", "supervisors", {**PER_ENTRY_POINT, **TEAM}
    ),
    "CcwatchEceNoAgentsAvailable": Route(
        "supervisors", "warning", "supervisors", {**PER_ENTRY_POINT, **TEAM}
    ),
    "CcwatchEceQueueDepthHigh": Route("supervisors", "warning", "supervisors", PER_ENTRY_POINT),
    "CcwatchEceStaffedAvailabilityBudgetBurnFast": Route(
        "supervisors", "warning", "supervisors", {**PER_TARGET, "entry_point": ENTRY_POINT}
    ),
    "CcwatchEceStaffedAvailabilityBudgetBurnSlow": Route(
        "supervisors", "warning", "supervisors", {**PER_TARGET, "entry_point": ENTRY_POINT}
    ),
    "CcwatchEceWaitTimeHigh": Route("supervisors", "warning", "supervisors", PER_ENTRY_POINT),
}


def _tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{' or '.join(names)} is not on PATH: install Alertmanager {INSTALL_HINT}")


def amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("amtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- amtool


def test_amtool_checks_the_config() -> None:
    result = amtool("check-config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def _routes_test(expected: str, labels: dict[str, str]) -> None:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={expected}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()}, not {expected}"
    assert result.stdout.strip() == expected, labels


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_alert_goes_to_its_receiver(name: str) -> None:
    route = ROUTES[name]
    _routes_test(route.receiver, route.alert(name))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # an alert of some other rules file, without audience: tickets rather than nowhere
        ({"alertname": "SomethingElse", "severity": "critical"}, "sre-tickets"),
        # severity, not the alert's name, decides between pager and tickets
        (ROUTES["CcwatchEceEntryPointClosed"].alert("X", severity="warning"), "sre-tickets"),
        # supervisors alerts go to the supervisors, whatever their severity
        (ROUTES["CcwatchEceWaitTimeHigh"].alert("X", severity="critical"), "supervisors"),
    ],
    ids=["no-audience", "sre-warning", "supervisors-critical"],
)
def test_fallbacks(labels: dict[str, str], expected: str) -> None:
    _routes_test(expected, labels)


def test_every_alert_of_the_rules_has_a_route() -> None:
    """The rules file is read as it is now: a new alert needs a case in ROUTES."""
    rules = _alerting_rules()
    missing = sorted(set(rules) - set(ROUTES))
    assert not missing, f"add routing cases to ROUTES for {missing}"
    stale = sorted(set(ROUTES) - set(rules))
    assert not stale, f"ROUTES has alerts that {RULES.name} no longer has: {stale}"


def test_routing_cases_have_the_rules_severity_and_audience() -> None:
    rules = _alerting_rules()
    wrong = {
        name: {
            "rule": (labels.get("severity"), labels.get("audience")),
            "test": (r.severity, r.audience),
        }
        for name, labels in rules.items()
        if (r := ROUTES.get(name))
        and (labels.get("severity"), labels.get("audience")) != (r.severity, r.audience)
    }
    assert not wrong, f"ROUTES and {RULES.name} disagree: {wrong}"


def _alerting_rules() -> dict[str, dict[str, str]]:
    """alert name -> its static labels, from the rules file as it is."""
    result: dict[str, dict[str, str]] = {}
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                result[rule["alert"]] = rule.get("labels", {})
    assert result, f"no alerts in {RULES}"
    return result


def test_pages_are_never_muted_and_supervisors_only_in_hours() -> None:
    config = load(CONFIG)
    routes = {r["receiver"]: r for r in config["route"]["routes"]}
    for name in ("sre-pager", "sre-tickets"):
        assert "active_time_intervals" not in routes[name], name
        assert "mute_time_intervals" not in routes[name], name
    [interval] = routes["supervisors"]["active_time_intervals"]
    assert interval in {i["name"] for i in config["time_intervals"]}
    assert routes["supervisors"]["mute_time_intervals"] == [HOLIDAYS]
    assert HOLIDAYS in {i["name"] for i in config["time_intervals"]}
    assert "entry_point" in routes["supervisors"]["group_by"]


# --------------------------------------------------------------------------- a real Alertmanager


@dataclass
class Alertmanager:
    url: str
    log: Path

    def post(self, alerts: list[dict[str, str]]) -> None:
        now = datetime.now(UTC)
        body = [
            {
                "labels": labels,
                "startsAt": (now - timedelta(minutes=1)).isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
            for labels in alerts
        ]
        status, _ = _http(f"{self.url}/api/v2/alerts", body)
        assert status == 200

    def alerts(self) -> list[dict[str, Any]]:
        status, result = _http(f"{self.url}/api/v2/alerts")
        assert status == 200
        assert isinstance(result, list)
        return result

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def _http(url: str, body: Any = None) -> tuple[int, Any]:
    """GET ``url``, or POST ``body`` as JSON; the status and the JSON (or None) answer."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url)  # noqa: S310 (checked above)
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (checked above)
        raw = response.read()
        content_type = response.headers.get("Content-Type", "")
        return response.status, json.loads(raw) if "json" in content_type and raw else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def alertmanager(tmp_path: Path, config: Path = CONFIG) -> Iterator[Alertmanager]:
    binary = _tool("alertmanager", "prometheus-alertmanager")
    port = _free_port()
    log = tmp_path / "alertmanager.log"
    (tmp_path / "data").mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no clustering, no port 9094
                "--log.level=debug",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        running = Alertmanager(f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"alertmanager exited:\n{running.log_tail()}"
            with contextlib.suppress(OSError):
                if _http(f"{running.url}/-/ready")[0] == 200:
                    break
            assert time.monotonic() < deadline, f"alertmanager not ready:\n{running.log_tail()}"
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def check_inhibitions(
    am: Alertmanager,
    sources: list[dict[str, str]],
    expected: list[tuple[dict[str, str], bool]],
) -> None:
    """Post the sources and targets; wait until every target expected to be inhibited is,
    then check that each is suppressed by exactly a source, or not at all."""
    am.post([*sources, *(labels for labels, _ in expected)])
    wanted = {_key(labels): inhibited for labels, inhibited in expected}
    deadline = time.monotonic() + 15
    while True:
        state = {_key(a["labels"]): a for a in am.alerts()}
        inhibited = {k: bool(state[k]["status"]["inhibitedBy"]) for k in wanted if k in state}
        if len(inhibited) == len(wanted) and all(
            inhibited[k] for k, expect in wanted.items() if expect
        ):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    source_fingerprints = {state[_key(s)]["fingerprint"] for s in sources}
    wrong = []
    for labels, expect in expected:
        status = state[_key(labels)]["status"]
        by = set(status["inhibitedBy"])
        if bool(by) != expect or not by <= source_fingerprints:
            wrong.append(f"{'should' if expect else 'should NOT'} be inhibited: {labels} {status}")
        if expect:
            assert status["state"] == "suppressed", labels
    assert not wrong, "\n".join(wrong) + f"\nsources: {sources}\n{am.log_tail()}"


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    with alertmanager(tmp_path_factory.mktemp("alertmanager")) as running:
        yield running


def alert(name: str, **overrides: str) -> dict[str, str]:
    return ROUTES[name].alert(name, **overrides)


# Each case has its own job (every rule compares it), so the cases of one
# Alertmanager do not inhibit each other's alerts.
INHIBITION_CASES: dict[str, tuple[list[dict[str, str]], list[tuple[dict[str, str], bool]]]] = {
    "closed": (
        [alert("CcwatchEceEntryPointClosed", job="closed")],
        [
            # same entry point: inhibited, even from another shard (instance)
            (alert("CcwatchEceNoAgentsAvailable", job="closed", instance="ccwatch-1:9865"), True),
            (alert("CcwatchEceQueueDepthHigh", job="closed"), True),
            (alert("CcwatchEceWaitTimeHigh", job="closed"), True),
            (alert("CcwatchEceAvailabilityBudgetBurnFast", job="closed"), True),
            (alert("CcwatchEceAvailabilityBudgetBurnSlow", job="closed"), True),
            # technical trouble is not the supervisors'
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnFast", job="closed"), True),
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnSlow", job="closed"), True),
            # another entry point, another target: not
            (alert("CcwatchEceNoAgentsAvailable", job="closed", entry_point="support"), False),
            (alert("CcwatchEceQueueDepthHigh", job="closed", target="ece-dr"), False),
            # not a load alert
            (alert("CcwatchEceOpenOutsideHours", job="closed"), False),
        ],
    ),
    "closed-staffing": (
        [alert("CcwatchEceEntryPointClosedStaffing", job="staffing")],
        [
            (alert("CcwatchEceNoAgentsAvailable", job="staffing"), True),
            (alert("CcwatchEceWaitTimeHigh", job="staffing"), True),
            (alert("CcwatchEceWaitTimeHigh", job="staffing", entry_point="support"), False),
            # the supervisors' own budget alerts add nothing to the closure ...
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnFast", job="staffing"), True),
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnSlow", job="staffing"), True),
        ],
    ),
    "closed-staffing-sre": (
        [alert("CcwatchEceEntryPointClosedStaffing", job="staffing-sre")],
        [
            # the SRE's technical objective still hears of technical trouble
            (alert("CcwatchEceAvailabilityBudgetBurnFast", job="staffing-sre"), False),
            (alert("CcwatchEceAvailabilityBudgetBurnSlow", job="staffing-sre"), False),
        ],
    ),
    "burn-fast": (
        [alert("CcwatchEceAvailabilityBudgetBurnFast", job="burn")],
        [
            # an entry point flapping for technical reasons: the SRE's page, not the
            # supervisors' notice
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnFast", job="burn"), True),
            (alert("CcwatchEceStaffedAvailabilityBudgetBurnSlow", job="burn"), True),
            (
                alert("CcwatchEceStaffedAvailabilityBudgetBurnFast", job="burn", entry_point="b"),
                False,
            ),
            # the SRE's own ticket is not inhibited by the page (the rules keep it quiet)
            (alert("CcwatchEceAvailabilityBudgetBurnSlow", job="burn"), False),
        ],
    ),
    "state-unknown-closures": (
        [alert("CcwatchEceEntryPointStateUnknown", job="unknown-closures")],
        [
            # the closures bridged over the failure from the last known state
            (alert("CcwatchEceEntryPointClosed", job="unknown-closures"), True),
            (alert("CcwatchEceEntryPointClosedStaffing", job="unknown-closures"), True),
            (
                alert("CcwatchEceEntryPointClosed", job="unknown-closures", entry_point="b"),
                False,
            ),
        ],
    ),
    "state-unknown": (
        [alert("CcwatchEceEntryPointStateUnknown", job="unknown")],
        [
            (alert("CcwatchEceQueueDepthHigh", job="unknown"), True),
            (alert("CcwatchEceAvailabilityBudgetBurnSlow", job="unknown"), True),
            (alert("CcwatchEceAvailabilityBudgetBurnSlow", job="unknown", target="ece-dr"), False),
        ],
    ),
    "scrape-down": (
        [alert("CcwatchScrapeDown", job="down")],
        [
            (alert("CcwatchEceEntryPointClosed", job="down"), True),
            (alert("CcwatchGmsProbeFailing", job="down"), True),
            (alert("CcwatchConfigReloadFailed", job="down"), True),
            # (another entry point than the Closed above, which would inhibit it too)
            (alert("CcwatchEceNoAgentsAvailable", job="down", entry_point="support"), True),
            # another shard of the job is up: its alerts are real
            (alert("CcwatchEceEntryPointClosed", job="down", instance="ccwatch-1:9865"), False),
            # per-job and per-target alerts have no instance
            (alert("CcwatchShardsMissing", job="down"), False),
            (alert("CcwatchTargetPollsFailing", job="down"), False),
            # the same instance name in another job
            (alert("CcwatchEceEntryPointClosed", job="other"), False),
        ],
    ),
    "target-polls-failing": (
        [alert("CcwatchTargetPollsFailing", job="polls")],
        [
            (alert("CcwatchSubjectPollsFailing", job="polls"), True),
            (alert("CcwatchSubjectPollsFailing", job="polls", target="ece-dr"), False),
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(INHIBITION_CASES))
def test_inhibitions(am: Alertmanager, case: str) -> None:
    sources, expected = INHIBITION_CASES[case]
    check_inhibitions(am, sources, expected)


def test_absent_inhibits_the_alerts_of_its_own_job_only(tmp_path: Path) -> None:
    """CcwatchAbsent of a job (its targets left service discovery) inhibits the leftovers
    of that job; the label-less one (no ccwatch at all in some Prometheus, e.g. a staging
    one that loads the rules but scrapes nothing) inhibits nothing, so that it can never
    mute another Prometheus's pages. Its own Alertmanager: it would inhibit the other
    cases' alerts."""
    with alertmanager(tmp_path) as fresh:
        check_inhibitions(
            fresh,
            [alert("CcwatchAbsent", job="gone"), alert("CcwatchAbsent")],
            [
                # (other instances and entry points, so that they do not inhibit each other)
                (alert("CcwatchScrapeDown", job="gone"), True),
                (alert("CcwatchEceEntryPointClosed", job="gone", instance="b:9865"), True),
                (
                    alert(
                        "CcwatchEceNoAgentsAvailable",
                        job="gone",
                        instance="c:9865",
                        entry_point="c",
                    ),
                    True,
                ),
                # other jobs: neither the job's nor the label-less CcwatchAbsent mutes them
                (alert("CcwatchShardsMissing", job="b"), False),
                (alert("CcwatchEceEntryPointClosed", job="c"), False),
                (alert("CcwatchEceAvailabilityBudgetBurnFast", job="d"), False),
                # not a ccwatch alert
                ({"alertname": "NodeDown", "severity": "critical", **SELF, "job": "gone"}, False),
            ],
        )


# --------------------------------------------------------------------------- time intervals

README = REPO / "README.md"
#: the README's example calendar, which the example's time intervals follow
CALENDAR = "munich-chat"
HOURS = "contact-center-hours"
HOLIDAYS = "contact-center-holidays"

# Go's time.Weekday numbering (Sunday 0), as Alertmanager's weekday ranges use it
_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_FIELDS = {"times", "weekdays", "days_of_month", "months", "years", "location"}


def readme_config() -> dict[str, Any]:
    """The configuration of the README's "Your first alert" example."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Your first alert", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    assert CALENDAR in data["calendars"], f"the README's example has no calendar {CALENDAR}"
    assert isinstance(data, dict)
    return data


def readme_calendar() -> Calendar:
    return parse_config(readme_config()).calendars[CALENDAR].build(CALENDAR)


def _bounds(text: str, names: Sequence[str] = (), first: int = 0) -> tuple[int, int]:
    """An Alertmanager range ``begin:end`` or a single value, of numbers or names."""

    def value(part: str) -> int:
        part = part.strip().lower()
        return names.index(part) + first if part in names else int(part)

    begin, _, end = str(text).partition(":")
    low, high = value(begin), value(end or begin)
    assert 0 < low <= high or names is _WEEKDAYS, f"range {text!r}: only plain ranges here"
    return low, high


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def interval_contains(spec: dict[str, Any], t: datetime) -> bool:
    """Alertmanager's rule for one entry of a named interval's ``time_intervals``: at ``t``
    in its ``location`` (UTC without one), every field it has matches one of its ranges;
    ``end_time`` is exclusive, the other ranges inclusive. Only the forms the example uses
    (no negative days of the month)."""
    assert set(spec) <= _FIELDS, f"unknown fields {set(spec) - _FIELDS}"
    local = t.astimezone(ZoneInfo(spec.get("location", "UTC")))
    minute = local.hour * 60 + local.minute
    weekday = (local.weekday() + 1) % 7
    checks = {
        "times": lambda r: _minutes(r["start_time"]) <= minute < _minutes(r["end_time"]),
        "weekdays": lambda r: _in(weekday, _bounds(r, _WEEKDAYS)),
        "days_of_month": lambda r: _in(local.day, _bounds(r)),
        "months": lambda r: _in(local.month, _bounds(r, MONTHS, 1)),
        "years": lambda r: _in(local.year, _bounds(r)),
    }
    return all(any(map(check, spec[key])) for key, check in checks.items() if key in spec)


def _in(value: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def notified(config: dict[str, Any], route: dict[str, Any], t: datetime) -> bool:
    """Whether Alertmanager notifies the route's receiver at ``t``: inside one of its
    ``active_time_intervals`` (if it has any) and outside all its ``mute_time_intervals``."""
    named = {i["name"]: i["time_intervals"] for i in config["time_intervals"]}

    def inside(names: list[str]) -> bool:
        return any(interval_contains(spec, t) for name in names for spec in named[name])

    active = route.get("active_time_intervals", [])
    return (not active or inside(active)) and not inside(route.get("mute_time_intervals", []))


def supervisors_route(config: dict[str, Any]) -> dict[str, Any]:
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "supervisors"]
    assert isinstance(route, dict)
    return route


def holiday_years(config: dict[str, Any]) -> list[int]:
    [holidays] = [i for i in config["time_intervals"] if i["name"] == HOLIDAYS]
    return sorted({int(year) for spec in holidays["time_intervals"] for year in spec["years"]})


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))


def test_every_time_interval_names_the_calendars_location() -> None:
    config = load(CONFIG)
    zone = readme_calendar().timezone
    assert zone == "Europe/Berlin"
    assert {i["name"] for i in config["time_intervals"]} == {HOURS, HOLIDAYS}
    for named in config["time_intervals"]:
        assert named["time_intervals"], named["name"]
        for spec in named["time_intervals"]:
            assert spec.get("location") == zone, f"{named['name']}: {spec} without location"


def test_the_supervisors_are_notified_while_the_readme_calendar_is_open() -> None:
    """Every 15 minutes of the years the holidays interval covers: notified (in
    contact-center-hours and not in contact-center-holidays) exactly while the README's
    calendar is open, daylight saving and public holidays included."""
    config = load(CONFIG)
    route = supervisors_route(config)
    calendar = readme_calendar()
    years = holiday_years(config)
    assert years, "the holidays interval covers no year"
    wrong = []
    for year in years:
        t, end = berlin(year, 1, 1), berlin(year + 1, 1, 1)
        while t < end:
            if notified(config, route, t) != calendar.is_open(t.timestamp()):
                wrong.append(t.isoformat())
            t += timedelta(minutes=15)
    assert not wrong, f"{len(wrong)} times disagree, the first: {wrong[:8]}"
    # the UTC hours of old muted 08:00-09:00 Berlin and notified until 21:00 in summer
    assert notified(config, route, berlin(2027, 7, 6, 8, 0))  # a Tuesday
    assert not notified(config, route, berlin(2027, 7, 6, 7, 59))
    assert not notified(config, route, berlin(2027, 7, 6, 18, 0))
    assert notified(config, route, berlin(2027, 7, 10, 12, 59))  # Saturday
    assert not notified(config, route, berlin(2027, 7, 10, 13, 0))
    assert not notified(config, route, berlin(2027, 7, 11, 12, 0))  # Sunday
    assert not notified(config, route, berlin(2027, 1, 6, 10, 0))  # Epiphany, a Wednesday
    assert notified(config, route, berlin(2027, 1, 7, 10, 0))


def test_the_shipped_holidays_are_what_ccwatch_time_intervals_prints(tmp_path: Path) -> None:
    config = load(CONFIG)
    years = ",".join(map(str, holiday_years(config)))
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump(readme_config()), encoding="utf-8")
    command = [
        "time-intervals",
        "--config.file",
        str(path),
        "--calendar",
        CALENDAR,
        "--years",
        years,
        "--name",
        HOLIDAYS,
    ]
    result = subprocess.run(
        [sys.executable, "-m", "ccwatch", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [printed] = yaml.safe_load(result.stdout)["time_intervals"]
    [shipped] = [i for i in config["time_intervals"] if i["name"] == HOLIDAYS]
    assert shipped == printed, f"regenerate {HOLIDAYS} in {CONFIG.name} with ccwatch {command}"
    # and the file says how
    assert f"--years {years} --name {HOLIDAYS}" in CONFIG.read_text(encoding="utf-8")


def _generate(calendar: str, years: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccwatch",
            "time-intervals",
            "--config.file",
            str(REPO / "tests" / "testdata" / "config" / "valid" / "calendars.yml"),
            "--calendar",
            calendar,
            "--years",
            years,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_amtool_accepts_generated_intervals_as_mute_time_intervals(tmp_path: Path) -> None:
    """The output of ``ccwatch time-intervals``, as it is, makes a valid Alertmanager
    configuration with the routes that mute on it; with an unknown zone it would not."""
    new_york = _generate("new-york", "2027-2028")
    munich = _generate("munich-chat", "2027")
    munich_entry = munich[munich.index("  - name: ") :]  # pasted under the same key
    routes = """\
route:
  receiver: default
  routes:
    - receiver: default
      matchers: [site="new-york"]
      mute_time_intervals: [new-york-holidays]
    - receiver: default
      matchers: [site="munich"]
      mute_time_intervals: [munich-chat-holidays]
receivers:
  - name: default
"""
    path = tmp_path / "alertmanager.yml"
    path.write_text(routes + new_york + munich_entry, encoding="utf-8")
    result = amtool("check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    path.write_text(routes + new_york.replace("America/New_York", "America/New_Yrok"))
    result = amtool("check-config", path)
    assert result.returncode != 0
    assert "unknown time zone America/New_Yrok" in result.stdout + result.stderr
    # the mute interval must exist: the route names it
    path.write_text(routes + new_york)
    result = amtool("check-config", path)
    assert result.returncode != 0


class _Webhook(http.server.BaseHTTPRequestHandler):
    """Records the path of every POST (one per notification)."""

    paths: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def webhook() -> Iterator[tuple[str, list[str]]]:
    """A webhook receiver on 127.0.0.1: its URL and the paths posted to it."""
    paths: list[str] = []
    handler = type("Webhook", (_Webhook,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_real_alertmanager_notifies_the_supervisors_only_while_open(tmp_path: Path) -> None:
    """The shipped file, with its receivers pointed at a local webhook and a short
    group_wait, in a real Alertmanager: a supervisors alert notifies now exactly if the time
    intervals say so now (checked above against the calendar for whole years), so the
    Alertmanager reads the intervals in Berlin time. A ticket alert shows that the
    notifications were flushed. Which case this run checks depends on the time of day."""
    config = load(CONFIG)
    route = supervisors_route(config)
    now = datetime.now(UTC)
    if notified(config, route, now) != notified(config, route, now + timedelta(minutes=2)):
        time.sleep(150)  # an interval begins or ends within 2 minutes: wait until it has
        now = datetime.now(UTC)
    expected = notified(config, route, now)
    in_hours = notified(config, {"active_time_intervals": route["active_time_intervals"]}, now)
    with webhook() as (url, paths):
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = f"{url}/{receiver['name']}"
        config["route"]["group_wait"] = "1s"
        for child in config["route"]["routes"]:
            child.pop("group_wait", None)
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        with alertmanager(tmp_path, path) as am:
            am.post([alert("CcwatchEceWaitTimeHigh"), alert("CcwatchDataStale")])
            not_sent = (
                "route is within mute time" if in_hours else "route is not within active time"
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                log = am.log.read_text(errors="replace")
                if "/sre-tickets" in paths and ("/supervisors" in paths or not_sent in log):
                    break
                time.sleep(0.1)
            assert "/sre-tickets" in paths, f"no notification at all:\n{am.log_tail()}"
            when = now.astimezone(ZoneInfo("Europe/Berlin")).isoformat()
            if expected:
                assert "/supervisors" in paths, f"{when}: not notified\n{am.log_tail()}"
            else:
                assert not_sent in log, f"{when}: not muted ({not_sent})\n{am.log_tail()}"
                assert "/supervisors" not in paths, f"{when}: notified"
