"""Outage scenarios for the shipped rules: a model of one ECE entry point, polled by ccwatch
every 15 s and scraped by Prometheus every 15 s, turned into promtool input series; the
alerts promtool's evaluation fires, minute by minute; and the pages they make once the
shipped Alertmanager's inhibit rules have been applied.

A *page* is a critical alert for the SRE (the example Alertmanager's ``sre-pager`` route:
``severity="critical"``, ``audience="sre"``) that is delivered, that is firing and not
inhibited, at a minute where it was not delivered the minute before. A resolved
notification is not a page.

The model follows what ccwatch exports (docs/metrics.md):

* every poll job (the five ECE endpoints) exports ``ccwatch_poll_success``,
  ``ccwatch_poll_interval_seconds``, and once it has succeeded
  ``ccwatch_poll_last_success_timestamp_seconds``; its errors by reason once it has failed;
* a failed poll drops the job's vendor series at once (Prometheus records them stale);
  ccwatch waits 1, 2 and 4 intervals after 1, 2 and 3 or more failures in a row;
* a restarted ccwatch starts with no job state: nothing until its first polls, which run
  at start, and a new ``process_start_time_seconds``;
* a scrape that fails makes ``up`` 0 and every series of ccwatch stale; before Prometheus
  starts there is no sample at all.

Times are seconds since the scenario's midnight. Prometheus (promtool's clock) starts at
the scenario's ``start``: a scenario that starts at 07:00 has Prometheus running from then
on, one that starts at 08:10 is a Prometheus cold start at 08:10.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ccwatch.sources.ece import ENDPOINTS

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"

STEP = 15  # seconds: ccwatch's poll interval and Prometheus' scrape interval
EVALUATION = 60  # seconds: the rules' evaluation interval in these scenarios
JOB = "ccwatch"
INSTANCE = "ccwatch:9865"
TARGET = "ece-munich"
ENTRY_POINT = "1000"
STATIC = {"team": "sales"}
REASONS = (
    "service_not_running",
    "entry_point_inactive",
    "invalid_entry_point",
    "agent_not_available",
    "queue_depth_reached",
    "other",
)
#: the thresholds every target exports (the shipped defaults)
THRESHOLDS = {
    "ece_queue_depth": 10,
    "ece_wait_time_seconds": 300,
    "ece_availability_objective": 0.99,
    "ece_staffed_availability_objective": 0.98,
    "poll_failing_ratio": 0.2,
    "stale_intervals": 3,
}
OPENING_GRACE = 300


def hm(clock: str) -> int:
    """``"10:05"`` or ``"10:05:30"`` as seconds since midnight."""
    parts = [int(p) for p in clock.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


@dataclass
class World:
    """What is true at one moment: the calendar, ECE, ccwatch and Prometheus."""

    #: Prometheus is running (a cold start: no sample at all before)
    prometheus: bool = True
    #: ccwatch is running (a restart: down for a while, then a new process)
    ccwatch: bool = True
    #: Prometheus can scrape ccwatch
    scraped: bool = True
    #: the calendar says open
    open: bool = True
    #: ECE allows new chats; else ``reason`` says why not
    allowed: bool = True
    reason: str = "entry_point_inactive"
    agents: bool = True
    queue: int = 0
    wait: float = 10.0
    #: the endpoints whose polls fail now (ECE answers 500)
    failing: frozenset[str] = frozenset()


@dataclass
class Scenario:
    name: str
    start: int
    end: int
    world: Callable[[int], World]
    #: opening times of the calendar (for the grace), seconds since midnight
    openings: tuple[int, ...] = (hm("08:00"),)


@dataclass
class _Job:
    endpoint: str
    next_poll: float = 0.0
    failures: int = 0
    #: in promtool's clock, as Prometheus' timestamp() reads it
    last_success: float | None = None
    errors: int = 0
    polled: bool = False
    ok: bool = False


@dataclass
class _Series:
    values: list[str] = field(default_factory=list)

    def add(self, value: float | None) -> None:
        if value is None:
            if self.values and self.values[-1] not in ("_", "stale"):
                self.values.append("stale")
            else:
                self.values.append("_")
        else:
            self.values.append(repr(float(value)) if value != int(value) else str(int(value)))


def _labels(**extra: str) -> str:
    pairs = {"job": JOB, "instance": INSTANCE, **extra}
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def series(scenario: Scenario) -> dict[str, list[str]]:
    """promtool input series (name+labels -> values every STEP seconds from the
    scenario's start)."""
    out: dict[str, _Series] = {}

    def put(key: str, value: float | None, *, raw: bool = False) -> None:
        """One sample of a series of ccwatch's (absent while not scraped), or ``raw``."""
        if not (raw or visible):
            value = None
        out.setdefault(key, _Series(["_"] * tick)).add(value)

    jobs: dict[str, _Job] = {}
    process_start: float | None = None
    running_before = False
    for tick, t in enumerate(range(scenario.start, scenario.end + STEP, STEP)):
        w = scenario.world(t)
        # ccwatch: a new process has no job state; it polls every job at start
        if w.ccwatch and not running_before:
            process_start = float(t - scenario.start)  # promtool's clock
            jobs = {e: _Job(e, next_poll=t) for e in ENDPOINTS}
        running_before = w.ccwatch
        if w.ccwatch:
            for job in jobs.values():
                if t >= job.next_poll:
                    job.polled = True
                    if job.endpoint in w.failing:
                        job.failures += 1
                        job.errors += 1
                        job.ok = False
                        job.next_poll = t + STEP * {1: 1, 2: 2}.get(job.failures, 4)
                    else:
                        job.failures = 0
                        job.ok = True
                        job.last_success = t - scenario.start  # promtool's clock
                        job.next_poll = t + STEP
        visible = w.prometheus and w.ccwatch and w.scraped
        grace = w.open and any(0 <= t - o < OPENING_GRACE for o in scenario.openings)
        put("up" + _labels(), (1 if visible else 0) if w.prometheus else None, raw=True)
        put("ccwatch_build_info" + _labels(version="0.1.0"), (1))
        put("process_start_time_seconds" + _labels(), (process_start or 0))
        for name, value in THRESHOLDS.items():
            put("ccwatch_threshold" + _labels(target=TARGET, **STATIC, name=name), (value))
        subject = {"target": TARGET, "entry_point": ENTRY_POINT, **STATIC}
        put("ccwatch_open" + _labels(**subject), (1 if w.open else 0))
        put("ccwatch_opening_grace" + _labels(**subject), (1 if grace else 0))
        for job in jobs.values():
            poll = {
                "target": TARGET,
                "endpoint": job.endpoint,
                "entry_point": ENTRY_POINT,
                **STATIC,
            }
            known = job.polled and w.ccwatch
            put("ccwatch_poll_success" + _labels(**poll), (int(job.ok) if known else None))
            put(
                "ccwatch_poll_interval_seconds" + _labels(**poll),
                (STEP if w.ccwatch else None),
            )
            put(
                "ccwatch_poll_last_success_timestamp_seconds" + _labels(**poll),
                (job.last_success if known else None),
            )
            put(
                "ccwatch_poll_errors_total" + _labels(**poll, reason="http_status"),
                (job.errors if known and job.errors else None),
            )
        ok = (
            {e: jobs[e].ok and w.ccwatch for e in jobs} if jobs else dict.fromkeys(ENDPOINTS, False)
        )
        put(
            "ccwatch_ece_chat_allowed" + _labels(**subject),
            (int(w.allowed) if ok["chatAllowed"] else None),
        )
        for reason in REASONS:
            blocked = int(not w.allowed and w.reason == reason)
            put(
                "ccwatch_ece_chat_blocked" + _labels(**subject, reason=reason),
                (blocked if ok["chatAllowed"] else None),
            )
        put(
            "ccwatch_ece_agent_available" + _labels(**subject),
            (int(w.agents) if ok["agentAvailability"] else None),
        )
        put(
            "ccwatch_ece_queue_depth" + _labels(**subject),
            (w.queue if ok["liveSessionStatus"] else None),
        )
        put(
            "ccwatch_ece_wait_time_seconds" + _labels(**subject),
            (w.wait if ok["liveSessionStatus"] else None),
        )
        for s in out.values():
            if len(s.values) <= tick:
                s.add(None)
    return {key: s.values for key, s in out.items()}


def _duration(text: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    return int(sum(int(n) * units[u] for n, u in parts))


_GOT = re.compile(r"\{([^{}]*)\}")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def firing(scenario: Scenario, rules: Path = RULES) -> dict[int, list[dict[str, str]]]:
    """The alerts firing at each evaluation (seconds -> label sets), from promtool's own
    evaluation of ``rules`` over the scenario's series."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise AssertionError("promtool is not on PATH (Debian: apt-get install prometheus)")
    groups = [g["name"] for g in yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]]
    minutes = range(scenario.start, scenario.end + 1, EVALUATION)
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": f"{EVALUATION}s",
        "group_eval_order": groups,
        "tests": [
            {
                "name": scenario.name,
                "interval": f"{STEP}s",
                "input_series": [
                    {"series": key, "values": " ".join(values)}
                    for key, values in series(scenario).items()
                ],
                "promql_expr_test": [
                    {
                        "expr": 'ALERTS{alertstate="firing"}',
                        "eval_time": f"{m - scenario.start}s",
                        "exp_samples": [],
                    }
                    for m in minutes
                ],
            }
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.test.yml"
        path.write_text(yaml.safe_dump(test, width=1 << 30), encoding="utf-8")
        result = subprocess.run(
            [promtool, "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    out = result.stdout + result.stderr
    if result.returncode != 0 and "FAILED:" not in out:
        raise AssertionError(f"promtool failed: {out}")
    alerts: dict[int, list[dict[str, str]]] = {m: [] for m in minutes}
    current: int | None = None
    for line in out.splitlines():
        head = re.match(r'\s*expr: "ALERTS\{alertstate=\\?"firing\\?"\}", time: (\S+),', line)
        if head:
            current = scenario.start + _duration(head.group(1))
            continue
        got = re.match(r"\s*got: (.*)$", line)
        if got and current is not None:
            for match in _GOT.finditer(got.group(1)):
                labels = dict(_LABEL.findall(match.group(1)))
                labels.pop("__name__", None)
                labels.pop("alertstate", None)
                alerts[current].append(labels)
            current = None
    return alerts


# --------------------------------------------------------------------------- Alertmanager


def _matcher(text: str) -> Callable[[dict[str, str]], bool]:
    m = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*', text)
    if m is None:
        raise AssertionError(f"cannot read the matcher {text!r}")
    name, op, value = m.group(1), m.group(2), m.group(3).encode().decode("unicode_escape")
    if op == "=":
        return lambda labels: labels.get(name, "") == value
    if op == "!=":
        return lambda labels: labels.get(name, "") != value
    pattern = re.compile(value)
    if op == "=~":
        return lambda labels: pattern.fullmatch(labels.get(name, "")) is not None
    return lambda labels: pattern.fullmatch(labels.get(name, "")) is None


@dataclass(frozen=True)
class Inhibition:
    source: tuple[Callable[[dict[str, str]], bool], ...]
    target: tuple[Callable[[dict[str, str]], bool], ...]
    equal: tuple[str, ...]

    def mutes(self, alert: dict[str, str], active: Iterable[dict[str, str]]) -> bool:
        """As Alertmanager does: a firing source with the same ``equal`` labels; when the
        alert also matches the source side, sources that match the target side too (the
        alert itself among them) do not count."""
        if not all(m(alert) for m in self.target):
            return False
        two_sided = all(m(alert) for m in self.source)
        return any(
            all(m(source) for m in self.source)
            and all(source.get(k, "") == alert.get(k, "") for k in self.equal)
            and not (two_sided and all(m(source) for m in self.target))
            for source in active
        )


def inhibitions(config: Path = ALERTMANAGER) -> list[Inhibition]:
    data: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    return [
        Inhibition(
            tuple(_matcher(m) for m in rule.get("source_matchers", [])),
            tuple(_matcher(m) for m in rule.get("target_matchers", [])),
            tuple(rule.get("equal", [])),
        )
        for rule in data.get("inhibit_rules", [])
    ]


def delivered(alerts: list[dict[str, str]], rules: list[Inhibition]) -> list[dict[str, str]]:
    """The alerts that no inhibit rule mutes, given every firing alert."""
    return [a for a in alerts if not any(r.mutes(a, alerts) for r in rules)]


def _key(alert: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert.items()))


@dataclass(frozen=True)
class Page:
    at: int
    alertname: str

    def __str__(self) -> str:
        return f"{self.alertname} at {clock(self.at)}"


@dataclass
class Outcome:
    pages: list[Page]
    #: alertname -> first minute the supervisors were notified of it (not inhibited)
    supervisors: dict[str, int]
    firing: dict[int, list[dict[str, str]]]


def pages(scenario: Scenario, rules: Path = RULES, config: Path = ALERTMANAGER) -> Outcome:
    alerts = firing(scenario, rules)
    inhibit = inhibitions(config)
    result: list[Page] = []
    supervisors: dict[str, int] = {}
    before: set[tuple[tuple[str, str], ...]] = set()
    for minute in sorted(alerts):
        out = delivered(alerts[minute], inhibit)
        now = {
            _key(a) for a in out if a.get("severity") == "critical" and a.get("audience") == "sre"
        }
        for a in out:
            if _key(a) in now - before:
                result.append(Page(minute, a["alertname"]))
            if a.get("audience") == "supervisors":
                supervisors.setdefault(a["alertname"], minute)
        before = now
    return Outcome(result, supervisors, alerts)
