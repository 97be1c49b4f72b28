"""Benchmark: how long from an ECE fault to a page, through the real alerting chain.

The chain, every piece of it real and on 127.0.0.1:

    vendor simulator -> ccwatch -> Prometheus (the shipped rules) -> Alertmanager (the
    shipped routes) -> a webhook receiver run by this script

- the ECE simulator (``ccwatch.simulator``, in this process, ``tick`` 0: no random walk;
  every entry point frozen in a healthy state before the run);
- ccwatch (``ccwatch run``, a child process) with one ECE target per scenario and poll
  interval, one entry point each, no calendar: every entry point is open around the
  clock and has no opening grace (``ccwatch_open`` 1, ``ccwatch_opening_grace`` 0), so
  nothing is waited out before the alerts can fire;
- Prometheus (a child process) with ``deploy/prometheus/prometheus.yml`` as shipped
  (scrape and evaluation intervals, the ccwatch job's settings, the rule files, read
  from the file at every run) except where it must point: the rule files are the
  shipped ones by absolute path, the ccwatch job scrapes this run's ccwatch, alerts go
  to this run's Alertmanager;
- Alertmanager (``prometheus-alertmanager``, a child process, no clustering) with
  ``deploy/alertmanager/alertmanager.yml`` as shipped except that every receiver's
  notifications go to the webhook receiver: webhook URLs rewritten to
  ``http://127.0.0.1:PORT/<receiver name>`` (other integrations of a receiver, which
  would leave this machine, are replaced by that webhook). Routes, grouping, timings,
  inhibit rules and time intervals stay as shipped (``--drop-time-intervals`` removes
  ``active_time_intervals`` / ``mute_time_intervals`` from the routes of the bench's
  copy);
- the webhook receiver (aiohttp, in this process), which records the wall-clock time of
  every notification and its alerts (name, status, labels), per receiver path.

Scenarios, each on its own entry point and its own ccwatch target (Alertmanager groups
by alertname, job and target, so scenarios never share a notification), all injected
at the same moment on one stack, once per ``--interval``:

- ``closure``: the entry point set inactive (ECE's chatAllowed: ``entry_point_inactive``)
  until the expected page, ``CcwatchEceEntryPointClosed`` on ``sre-pager``, arrives
  (plus ``--hold-after-page``), then active again;
- ``ece-down``: ECE answers 500 on all five endpoints of the entry point (one simulator
  fault per endpoint path) until ``CcwatchEceEntryPointStateUnknown`` pages, then the
  faults are removed;
- ``staffing``: no agent available (chatAllowed: ``agent_not_available``) for
  ``--blip-seconds``, then agents are back; ``sre-pager`` must receive nothing for it
  over ``--observe-minutes`` from the injection;
- ``healthy``: a control entry point that is never touched: nothing may page for it.

After a fault is removed every scenario is watched for ``--after-recovery-minutes`` (the
staffing and healthy scenarios for ``--observe-minutes`` in all): a firing alert of the
scenario's target that reaches ``sre-pager`` after the removal is a page after recovery
(resolved notifications are not pages). The time to page is measured from the moment the
simulator's control API confirmed the fault to the webhook's receipt (both
``time.time()`` in this process). Prometheus's ``/api/v1/alerts`` is polled every few
seconds to break that time down: when the alert went pending, when it fired (the
``startsAt`` Prometheus sends), when the page arrived.

Prometheus starts empty: windows longer than the run (the availability burn-rate
alerts' 1h window) hold only the minutes since its start, so the run also shows what a
fresh Prometheus (or a new entry point) pages; the report lists every page, whichever
alert sent it.

Usage: python bench/time_to_page.py [--interval 15s] [--interval 60s] [--max-minutes 18]
           [--blip-seconds 120] [--observe-minutes 10] [--after-recovery-minutes 6]
           [--hold-after-page 0] [--drop-time-intervals] [--json PATH] [--keep-dir]

Needs ``prometheus``, ``promtool``, ``prometheus-alertmanager`` (or ``alertmanager``) and
``amtool`` on PATH (Debian: apt-get install prometheus prometheus-alertmanager). Only
127.0.0.1 is used; every wait is bounded (``--max-minutes`` for the whole run), and every
process the script starts is stopped when it ends, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import yaml
from _common import ROOT, free_port
from aiohttp import web

from ccwatch.config import parse_duration
from ccwatch.simulator import serve as serve_simulator
from ccwatch.timeintervals import MONTHS

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
CCWATCH_JOB = "ccwatch"
PAGER = "sre-pager"
#: the alert each fault should page with; the names are the rules' contract
CLOSED_ALERT = "CcwatchEceEntryPointClosed"
UNKNOWN_ALERT = "CcwatchEceEntryPointStateUnknown"
#: what each scenario does: (expected page or None, description)
SCENARIOS: dict[str, tuple[str | None, str]] = {
    "closure": (CLOSED_ALERT, "entry point inactive until paged"),
    "ece-down": (UNKNOWN_ALERT, "ECE 500 on all 5 endpoints until paged"),
    "staffing": (None, "no agents for --blip-seconds"),
    "healthy": (None, "untouched control"),
}
ECE_ENDPOINTS = ("agentAvailability", "capacity", "liveSessionStatus", "checkEligibility")
ECE_ENDPOINTS_ALL = (*ECE_ENDPOINTS, "chatAllowed")
ECE_PATH = "/system/egain/chat/entrypoint"
FIRST_ENTRY_POINT = 1000
#: the simulator state every entry point is frozen in: nothing here is worth an alert
HEALTHY: dict[str, Any] = {
    "agents_available": 3,
    "slots": 5,
    "queue_depth": 2,
    "max_queue_depth": 20,
    "wait_time": 30.0,
    "active": True,
    "service_running": True,
}
#: how often Prometheus's /api/v1/alerts is read for the pending/firing breakdown
ALERTS_POLL_SECONDS = 5.0
STARTUP_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0

T = TypeVar("T")


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def parse_time(text: str) -> float | None:
    """An RFC 3339 time of Prometheus or Alertmanager as epoch seconds (None for the
    zero time, ``0001-01-01T00:00:00Z``)."""
    if not text or text.startswith("0001-"):
        return None
    head, dot, tail = text.partition(".")
    if dot:  # nanoseconds: fromisoformat takes at most microseconds
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"{' or '.join(names)} is not on PATH "
        "(Debian: apt-get install prometheus prometheus-alertmanager)"
    )


def ccwatch_command() -> list[str]:
    """``ccwatch`` of this interpreter's environment (the venv), else ``python -m``."""
    script = Path(sys.executable).with_name("ccwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccwatch"]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.5
) -> T:
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


# --------------------------------------------------------------------------- processes


class Child:
    """A child process in its own session, its output in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL to its process group (ours alone: its own session)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)


async def run_tool(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish in 60s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.decode(errors='replace')}")
    return out.decode(errors="replace")


# --------------------------------------------------------------------------- webhook


@dataclass
class AlertNote:
    alertname: str
    status: str
    labels: dict[str, str]
    starts_at: float | None
    ends_at: float | None


@dataclass
class Notification:
    receiver: str  # the URL path: the receiver's name
    received: float
    status: str
    alerts: list[AlertNote]


class Webhook:
    """Alertmanager's webhook receiver: POST /<receiver> records the notification."""

    def __init__(self, on_notification: Callable[[Notification], None]) -> None:
        self.notifications: list[Notification] = []
        self._on_notification = on_notification
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        received = time.time()
        payload = await request.json()
        alerts = [
            AlertNote(
                alertname=str(a.get("labels", {}).get("alertname", "")),
                status=str(a.get("status", "")),
                labels={str(k): str(v) for k, v in a.get("labels", {}).items()},
                starts_at=parse_time(str(a.get("startsAt", ""))),
                ends_at=parse_time(str(a.get("endsAt", ""))),
            )
            for a in payload.get("alerts", [])
        ]
        note = Notification(
            receiver=request.match_info["receiver"],
            received=received,
            status=str(payload.get("status", "")),
            alerts=alerts,
        )
        self.notifications.append(note)
        self._on_notification(note)
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{receiver}", self._receive)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    kind: str
    interval: str
    entry_point: int
    expected: str | None
    injected: float | None = None
    cleared: float | None = None
    paged: float | None = None  # the expected alert's first firing page
    done_at: float | None = None  # wall clock: observation ends
    fault_ids: list[int] = field(default_factory=list)
    #: alertname -> pending since (Prometheus's activeAt), first seen firing
    pending: dict[str, float] = field(default_factory=dict)
    firing_seen: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"ttp-{self.kind}-{self.interval}"

    @property
    def name(self) -> str:
        return f"{self.kind}@{self.interval}"


class Simulator:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def _call(self, method: str, path: str, data: Any = None) -> Any:
        async with self.session.request(method, f"{self.url}/-/sim/{path}", json=data) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{method} /-/sim/{path}: HTTP {resp.status}: {body}")
            return body

    async def put_entry_point(self, entry_point: int, state: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", f"ece/entry_points/{entry_point}", state)
        return result

    async def add_fault(self, fault: dict[str, Any]) -> int:
        return int((await self._call("POST", "faults", fault))["id"])

    async def remove_fault(self, fault_id: int) -> None:
        await self._call("DELETE", f"faults/{fault_id}")


async def inject(sim: Simulator, sc: Scenario) -> None:
    if sc.kind == "closure":
        state = await sim.put_entry_point(sc.entry_point, {"active": False})
        expect_reason(sc, state, "entry_point_inactive")
    elif sc.kind == "ece-down":
        for endpoint in ECE_ENDPOINTS_ALL:
            fault = {
                "path": f"{ECE_PATH}/{endpoint}/{sc.entry_point}",
                "kind": "status",
                "status": 500,
                "body": "Internal Server Error",
            }
            sc.fault_ids.append(await sim.add_fault(fault))
    elif sc.kind == "staffing":
        state = await sim.put_entry_point(sc.entry_point, {"agents_available": 0, "slots": 0})
        expect_reason(sc, state, "agent_not_available")
    sc.injected = time.time()


async def clear(sim: Simulator, sc: Scenario) -> None:
    if sc.kind in ("closure", "staffing"):
        state = await sim.put_entry_point(sc.entry_point, HEALTHY)
        expect_reason(sc, state, None)
    elif sc.kind == "ece-down":
        for fault_id in sc.fault_ids:
            await sim.remove_fault(fault_id)
        sc.fault_ids.clear()
    sc.cleared = time.time()


def expect_reason(sc: Scenario, state: dict[str, Any], reason: str | None) -> None:
    got = state.get("derived", {}).get("reason")
    if got != reason:
        raise RuntimeError(f"{sc.name}: the simulator derives reason {got!r}, not {reason!r}")


# --------------------------------------------------------------------------- configs


def ccwatch_config(sim_url: str, scenarios: Sequence[Scenario]) -> dict[str, Any]:
    return {
        "defaults": {"timeout": "5s"},
        "log": {"level": "warning", "format": "json"},
        "targets": [
            {
                "name": sc.target,
                "source": "ece",
                "url": f"{sim_url}/system",
                "entry_points": [sc.entry_point],
                "interval": sc.interval,
            }
            for sc in scenarios
        ],
    }


def prometheus_config(
    shipped: dict[str, Any], ccwatch_address: str, alertmanager_address: str
) -> tuple[dict[str, Any], list[Path]]:
    """The shipped config pointed at this run's processes, and its rule files."""
    config = copy.deepcopy(shipped)
    base = PROMETHEUS_CONFIG.parent
    rule_files: list[Path] = []
    for pattern in shipped.get("rule_files", []):
        matched = sorted(base.glob(pattern)) if not Path(pattern).is_absolute() else []
        rule_files.extend(matched or [Path(pattern)])
    config["rule_files"] = [str(p.resolve()) for p in rule_files]
    config["alerting"] = {
        "alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]
    }
    jobs = [j for j in shipped.get("scrape_configs", []) if j.get("job_name") == CCWATCH_JOB]
    if not jobs:
        raise RuntimeError(f"{PROMETHEUS_CONFIG} has no scrape job {CCWATCH_JOB!r}")
    job = copy.deepcopy(jobs[0])
    for key in list(job):
        if key.endswith("_sd_configs"):
            del job[key]  # service discovery of the shipped environment: not here
    job["static_configs"] = [{"targets": [ccwatch_address]}]
    config["scrape_configs"] = [job]
    return config, rule_files


def alertmanager_config(
    shipped: dict[str, Any], webhook_port: int, drop_time_intervals: bool
) -> tuple[dict[str, Any], list[str]]:
    """The shipped config with every receiver notifying the webhook; what was changed."""
    config = copy.deepcopy(shipped)
    changes: list[str] = []
    for receiver in config.get("receivers", []):
        name = receiver["name"]
        url = f"http://127.0.0.1:{webhook_port}/{name}"
        for key in [k for k in receiver if k.endswith("_configs") and k != "webhook_configs"]:
            changes.append(f"receiver {name}: {key} replaced by the webhook")
            del receiver[key]
        hooks = receiver.get("webhook_configs") or [{"send_resolved": True}]
        for hook in hooks:
            hook.pop("url_file", None)
            hook["url"] = url
        receiver["webhook_configs"] = hooks
    if drop_time_intervals:

        def strip(route: dict[str, Any]) -> None:
            for key in ("active_time_intervals", "mute_time_intervals"):
                if route.pop(key, None) is not None:
                    changes.append(f"route {route.get('receiver', '(root)')}: {key} dropped")
            for child in route.get("routes", []):
                strip(child)

        strip(config["route"])
    return config, changes


# ------------------------------------------------------------- time intervals (reporting)

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _ranges(specs: list[Any], value: int, names: Sequence[str] = (), last: int = 0) -> bool:
    def number(text: str) -> int:
        text = text.strip().lower()
        if text in names:
            return names.index(text) + 1
        n = int(text)
        return last + n + 1 if n < 0 else n

    for spec in specs:
        start, _, end = str(spec).partition(":")
        if number(start) <= value <= number(end or start):
            return True
    return False


def interval_active(interval: dict[str, Any], now: datetime) -> bool | None:
    """Whether Alertmanager's time interval contains ``now`` (None: cannot tell)."""
    location = interval.get("location")
    if location and location != "Local":
        try:
            now = now.astimezone(ZoneInfo(location))
        except (ZoneInfoNotFoundError, ValueError):
            return None
    elif location == "Local":
        now = now.astimezone()
    if "weekdays" in interval and not _ranges(interval["weekdays"], now.weekday() + 1, _WEEKDAYS):
        return False
    if "months" in interval and not _ranges(interval["months"], now.month, MONTHS):
        return False
    if "years" in interval and not _ranges(interval["years"], now.year):
        return False
    if "days_of_month" in interval:
        next_month = now.replace(day=28).toordinal() + 4
        days = datetime.fromordinal(next_month).replace(day=1).toordinal() - 1
        last = days - now.replace(day=1).toordinal() + 1
        if not _ranges(interval["days_of_month"], now.day, last=last):
            return False
    if "times" in interval:
        minute = now.hour * 60 + now.minute

        def minutes(text: str) -> int:
            h, _, m = text.partition(":")
            return int(h) * 60 + int(m)

        if not any(
            minutes(t["start_time"]) <= minute < minutes(t["end_time"]) for t in interval["times"]
        ):
            return False
    return True


def route_notifies(am: dict[str, Any], receiver: str, now: datetime) -> str:
    """Whether the routes to ``receiver`` notify at ``now``, as a sentence."""
    named: dict[str, list[dict[str, Any]]] = {}
    for key in ("time_intervals", "mute_time_intervals"):
        for entry in am.get(key, []) or []:
            named[entry["name"]] = entry.get("time_intervals", [])

    def state(names: list[str]) -> bool | None:
        results = [interval_active(i, now) for n in names for i in named.get(n, [])]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False

    parts: list[str] = []

    def walk(route: dict[str, Any]) -> None:
        if route.get("receiver") == receiver:
            active = route.get("active_time_intervals")
            mute = route.get("mute_time_intervals")
            if active:
                s = state(active)
                verdict = {True: "inside", False: "OUTSIDE", None: "unknown for"}[s]
                parts.append(f"{verdict} active_time_intervals {active}")
            if mute:
                s = state(mute)
                verdict = {True: "INSIDE", False: "outside", None: "unknown for"}[s]
                parts.append(f"{verdict} mute_time_intervals {mute}")
        for child in route.get("routes", []):
            walk(child)

    walk(am["route"])
    return "; ".join(parts) or "no time intervals"


# --------------------------------------------------------------------------- the run


@dataclass
class Options:
    intervals: list[str]
    max_minutes: float
    blip_seconds: float
    observe_minutes: float
    after_recovery_minutes: float
    hold_after_page: float
    drop_time_intervals: bool
    json_path: Path | None
    keep_dir: bool


@dataclass
class Result:
    options: dict[str, Any]
    started: float
    baseline_at: float | None = None
    finished: float | None = None
    stack: dict[str, Any] = field(default_factory=dict)
    scenarios: list[Scenario] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Run:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.result = Result(options={**asdict(opts), "json_path": str(opts.json_path)}, started=0)
        scenarios: list[Scenario] = []
        ep = FIRST_ENTRY_POINT
        for interval in opts.intervals:
            for kind, (expected, _) in SCENARIOS.items():
                scenarios.append(Scenario(kind, interval, ep, expected))
                ep += 1
        self.scenarios = scenarios
        self.by_target = {sc.target: sc for sc in scenarios}
        self.t0: float | None = None

    # ---- progress

    def rel(self, ts: float | None) -> str:
        if ts is None or self.t0 is None:
            return "-"
        return f"{ts - self.t0:+.1f}s"

    def on_notification(self, note: Notification) -> None:
        for a in note.alerts:
            target = a.labels.get("target", "")
            log(
                f"{self.rel(note.received)} webhook /{note.receiver}: {a.status} {a.alertname}"
                f" target={target or '-'} entry_point={a.labels.get('entry_point', '-')}"
            )
            sc = self.by_target.get(target)
            if (
                sc is not None
                and note.receiver == PAGER
                and a.status == "firing"
                and a.alertname == sc.expected
                and sc.paged is None
                and sc.injected is not None
            ):
                sc.paged = note.received

    # ---- the stack

    async def main(self) -> Result:
        res = self.result
        res.started = time.time()
        deadline = time.monotonic() + self.opts.max_minutes * 60
        async with contextlib.AsyncExitStack() as stack:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
            )
            webhook = Webhook(self.on_notification)
            stack.push_async_callback(webhook.stop)
            await webhook.start()
            res.notifications = webhook.notifications

            sim_port = free_port()
            runner = await serve_simulator(
                "127.0.0.1",
                sim_port,
                ece_entry_points=[sc.entry_point for sc in self.scenarios],
                tick=0,
                seed=1,
            )
            stack.push_async_callback(runner.cleanup)
            sim = Simulator(f"http://127.0.0.1:{sim_port}", session)
            for sc in self.scenarios:
                expect_reason(sc, await sim.put_entry_point(sc.entry_point, HEALTHY), None)

            children: list[Child] = []

            async def stop_children() -> None:
                for child in reversed(children):
                    await child.stop()

            stack.push_async_callback(stop_children)

            # ccwatch
            cc_port = free_port()
            cc_file = self.workdir / "ccwatch.yml"
            cc_file.write_text(
                yaml.safe_dump(ccwatch_config(sim.url, self.scenarios), sort_keys=False)
            )
            cc_cmd = ccwatch_command()
            await run_tool(*cc_cmd, "check-config", str(cc_file))
            cc = Child(
                "ccwatch",
                [
                    *cc_cmd,
                    "run",
                    "--config.file",
                    str(cc_file),
                    "--web.listen-address",
                    f"127.0.0.1:{cc_port}",
                ],
                self.workdir,
            )
            children.append(cc)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
            cc.start(env)

            # Alertmanager
            am_text = ALERTMANAGER_CONFIG.read_bytes()
            am_sha = hashlib.sha256(am_text).hexdigest()[:16]
            am_shipped = yaml.safe_load(am_text)
            am_conf, am_changes = alertmanager_config(
                am_shipped, webhook.port, self.opts.drop_time_intervals
            )
            am_file = self.workdir / "alertmanager.yml"
            am_file.write_text(yaml.safe_dump(am_conf, sort_keys=False))
            await run_tool(tool("amtool"), "check-config", str(am_file))
            am_port = free_port()
            am = Child(
                "alertmanager",
                [
                    tool("prometheus-alertmanager", "alertmanager"),
                    f"--config.file={am_file}",
                    f"--storage.path={self.workdir / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                self.workdir,
            )
            children.append(am)
            am.start()

            # Prometheus
            prom_shipped = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
            prom_conf, rule_files = prometheus_config(
                prom_shipped, f"127.0.0.1:{cc_port}", f"127.0.0.1:{am_port}"
            )
            prom_file = self.workdir / "prometheus.yml"
            prom_file.write_text(yaml.safe_dump(prom_conf, sort_keys=False))
            await run_tool(tool("promtool"), "check", "config", str(prom_file))
            prom_port = free_port()
            prom = Child(
                "prometheus",
                [
                    tool("prometheus"),
                    f"--config.file={prom_file}",
                    f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--storage.tsdb.retention.time=1d",
                ],
                self.workdir,
            )
            children.append(prom)
            rule_hashes = {str(p): sha256(p) for p in rule_files}
            prom.start()
            prom_url = f"http://127.0.0.1:{prom_port}"

            glob = prom_conf.get("global", {})
            job = prom_conf["scrape_configs"][0]
            eval_interval = parse_duration(str(glob.get("evaluation_interval", "1m")))
            now = datetime.now(UTC)
            res.stack = {
                "prometheus_config": str(PROMETHEUS_CONFIG),
                "scrape_interval": job.get("scrape_interval", glob.get("scrape_interval", "1m")),
                "scrape_timeout": job.get("scrape_timeout", glob.get("scrape_timeout", "10s")),
                "evaluation_interval": glob.get("evaluation_interval", "1m"),
                "rule_files": rule_hashes,
                "alertmanager_config": str(ALERTMANAGER_CONFIG),
                "alertmanager_sha256": am_sha,
                "alertmanager_changes": [
                    "every receiver's webhook URL -> this run's receiver",
                    *am_changes,
                ],
                "supervisors_at_start": route_notifies(am_conf, "supervisors", now),
                "ccwatch": " ".join(cc.argv),
            }
            log(
                f"stack: scrape {res.stack['scrape_interval']}, evaluation "
                f"{res.stack['evaluation_interval']}, rules {list(res.stack['rule_files'])}"
            )
            log(f"supervisors route at start: {res.stack['supervisors_at_start']}")

            await self.wait_baseline(session, prom_url, children, am_port, cc_port, eval_interval)
            res.baseline_at = time.time()
            await self.scenario_loop(session, sim, prom_url, children, deadline)
            res.stack["supervisors_at_end"] = route_notifies(
                am_conf, "supervisors", datetime.now(UTC)
            )
            res.stack["prometheus_alerts_at_end"] = await self.prometheus_alerts(session, prom_url)
            # Prometheus and Alertmanager read their files once, at their start
            changed = [str(p) for p, h in res.stack["rule_files"].items() if sha256(Path(p)) != h]
            if sha256(ALERTMANAGER_CONFIG) != res.stack["alertmanager_sha256"]:
                changed.append(str(ALERTMANAGER_CONFIG))
            if changed:
                res.stack["changed_during_run"] = changed
                log(f"changed on disk during the run (the run used the old version): {changed}")
        res.finished = time.time()
        res.scenarios = self.scenarios
        return res

    async def wait_baseline(
        self,
        session: aiohttp.ClientSession,
        prom_url: str,
        children: list[Child],
        am_port: int,
        cc_port: int,
        eval_interval: float,
    ) -> None:
        """Until every process is ready, Prometheus sees every entry point allowing chats,
        knows its Alertmanager, and has evaluated the rules on that data."""

        def ready(url: str) -> Callable[[], Awaitable[bool | None]]:
            async def probe() -> bool | None:
                for child in children:
                    child.check()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as resp:
                        return True if resp.status == 200 else None
                return None

            return probe

        for url in (
            f"http://127.0.0.1:{cc_port}/-/ready",
            f"http://127.0.0.1:{am_port}/-/ready",
            f"{prom_url}/-/ready",
        ):
            await eventually(ready(url), within=STARTUP_TIMEOUT, what=url)

        targets = {sc.target for sc in self.scenarios}

        async def healthy() -> bool | None:
            for child in children:
                child.check()
            try:
                allowed = await self.query(
                    session, prom_url, f'ccwatch_ece_chat_allowed{{job="{CCWATCH_JOB}"}} == 1'
                )
                ams = await self.api(session, prom_url, "alertmanagers")
            except (aiohttp.ClientError, TimeoutError, RuntimeError):
                return None
            seen = {r["metric"].get("target") for r in allowed}
            return True if targets <= seen and ams.get("activeAlertmanagers") else None

        await eventually(
            healthy, within=STARTUP_TIMEOUT, what="every entry point in Prometheus", every=2
        )
        # one evaluation of the rules on that data, and a little more
        await asyncio.sleep(eval_interval + 2)
        log("baseline: every entry point allows chats in Prometheus; injecting")

    async def api(
        self, session: aiohttp.ClientSession, prom_url: str, path: str, **params: str
    ) -> Any:
        async with session.get(f"{prom_url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
            if resp.status != 200 or body.get("status") != "success":
                raise RuntimeError(f"Prometheus /api/v1/{path}: {body}")
            return body["data"]

    async def query(
        self, session: aiohttp.ClientSession, prom_url: str, expr: str
    ) -> list[dict[str, Any]]:
        data = await self.api(session, prom_url, "query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def prometheus_alerts(
        self, session: aiohttp.ClientSession, prom_url: str
    ) -> list[dict[str, Any]]:
        data = await self.api(session, prom_url, "alerts")
        return [
            {
                "alertname": a["labels"].get("alertname"),
                "target": a["labels"].get("target"),
                "state": a["state"],
                "activeAt": a.get("activeAt"),
            }
            for a in data["alerts"]
        ]

    async def observe_alerts(self, session: aiohttp.ClientSession, prom_url: str) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, RuntimeError):
            data = await self.api(session, prom_url, "alerts")
            now = time.time()
            for a in data["alerts"]:
                sc = self.by_target.get(a["labels"].get("target", ""))
                if sc is None or sc.injected is None:
                    continue
                name = a["labels"].get("alertname", "")
                active = parse_time(a.get("activeAt", ""))
                if name not in sc.pending and active is not None:
                    sc.pending[name] = active
                    log(f"{self.rel(active)} prometheus: {name} pending for {sc.target}")
                if a["state"] == "firing" and name not in sc.firing_seen:
                    sc.firing_seen[name] = now
                    log(f"{self.rel(now)} prometheus: {name} firing for {sc.target}")

    async def scenario_loop(
        self,
        session: aiohttp.ClientSession,
        sim: Simulator,
        prom_url: str,
        children: list[Child],
        deadline: float,
    ) -> None:
        opts = self.opts
        for sc in self.scenarios:
            await inject(sim, sc)
            log(f"injected {sc.name} ({SCENARIOS[sc.kind][1]}) on entry point {sc.entry_point}")
        self.t0 = min(sc.injected or time.time() for sc in self.scenarios)
        # the wall-clock end of the whole run, for the page timeouts
        wall_deadline = time.time() + (deadline - time.monotonic())
        recovery = opts.after_recovery_minutes * 60
        next_alerts = 0.0
        while True:
            now = time.time()
            for child in children:
                child.check()
            if time.monotonic() >= next_alerts:
                next_alerts = time.monotonic() + ALERTS_POLL_SECONDS
                await self.observe_alerts(session, prom_url)
            for sc in self.scenarios:
                assert sc.injected is not None
                if sc.done_at is not None:
                    continue
                if sc.kind in ("closure", "ece-down"):
                    if sc.cleared is None:
                        give_up = sc.injected + max(60.0, wall_deadline - recovery - sc.injected)
                        if sc.paged is not None and now >= sc.paged + opts.hold_after_page:
                            await clear(sim, sc)
                            log(f"{self.rel(sc.cleared)} cleared {sc.name} after its page")
                        elif now >= give_up:
                            await clear(sim, sc)
                            sc.notes.append("no page before the deadline: fault removed anyway")
                            log(f"{self.rel(sc.cleared)} cleared {sc.name}: no page, giving up")
                    if sc.cleared is not None:
                        sc.done_at = sc.cleared + recovery
                elif sc.kind == "staffing":
                    if sc.cleared is None and now >= sc.injected + opts.blip_seconds:
                        await clear(sim, sc)
                        log(f"{self.rel(sc.cleared)} cleared {sc.name} (agents back)")
                    if sc.cleared is not None:
                        sc.done_at = sc.injected + opts.observe_minutes * 60
                else:  # healthy: nothing to remove
                    sc.done_at = sc.injected + opts.observe_minutes * 60
            pending = [sc for sc in self.scenarios if sc.done_at is None or now < sc.done_at]
            if not pending:
                log("every scenario observed to its end")
                return
            if time.monotonic() >= deadline:
                for sc in pending:
                    if sc.cleared is None and sc.kind != "healthy":
                        await clear(sim, sc)
                    sc.notes.append(
                        f"--max-minutes reached at {now - (sc.injected or now):.0f}s, "
                        "before the end of its observation window"
                    )
                self.result.errors.append("--max-minutes reached before every scenario ended")
                log("--max-minutes reached; stopping")
                return
            await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- report


def scenario_report(sc: Scenario, notes: list[Notification]) -> dict[str, Any]:
    assert sc.injected is not None
    t0 = sc.injected
    cleared = sc.cleared
    received: dict[str, list[dict[str, Any]]] = {}
    pages: list[dict[str, Any]] = []
    for note in notes:
        for a in note.alerts:
            if a.labels.get("target") != sc.target:
                continue
            entry = {
                "at_s": round(note.received - t0, 1),
                "alertname": a.alertname,
                "status": a.status,
                "starts_at_s": None if a.starts_at is None else round(a.starts_at - t0, 1),
                "labels": a.labels,
            }
            received.setdefault(note.receiver, []).append(entry)
            if note.receiver == PAGER and a.status == "firing" and note.received >= t0:
                late = cleared is not None and note.received >= cleared
                pages.append({**entry, "after_recovery": late})
    expected = sc.expected
    first_expected = next((p for p in pages if p["alertname"] == expected), None)
    breakdown: dict[str, float | None] = {}
    if expected is not None:
        pend = sc.pending.get(expected)
        breakdown = {
            "pending_s": None if pend is None else round(pend - t0, 1),
            "fired_s": None if first_expected is None else first_expected["starts_at_s"],
            "paged_s": None if first_expected is None else first_expected["at_s"],
        }
    during = [p for p in pages if not p["after_recovery"]]
    after = [p for p in pages if p["after_recovery"]]
    ok = not pages if expected is None else first_expected is not None and not after
    return {
        "scenario": sc.kind,
        "interval": sc.interval,
        "target": sc.target,
        "entry_point": sc.entry_point,
        "description": SCENARIOS[sc.kind][1],
        "expected_page": expected,
        "injected": iso(sc.injected),
        "cleared_s": None if cleared is None else round(cleared - t0, 1),
        "observed_until_s": None if sc.done_at is None else round(sc.done_at - t0, 1),
        "time_to_page_s": None if first_expected is None else first_expected["at_s"],
        "breakdown": breakdown,
        "first_page": pages[0] if pages else None,
        "pages_during_fault": during,
        "pages_after_recovery": after,
        "received": received,
        "prometheus_pending_s": {k: round(v - t0, 1) for k, v in sc.pending.items()},
        "as_expected": ok,
        "notes": sc.notes,
    }


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_report(result: Result, reports: list[dict[str, Any]]) -> None:
    stack = result.stack
    print()
    print(
        f"time to page: scrape {stack.get('scrape_interval')}, evaluation "
        f"{stack.get('evaluation_interval')}, rules "
        + ", ".join(f"{Path(p).name} ({h})" for p, h in stack.get("rule_files", {}).items())
        + f", alertmanager.yml ({stack.get('alertmanager_sha256')})"
    )
    header = (
        f"{'scenario':<19} {'expected page':<33} {'page s':>6} {'pend s':>6} {'fire s':>6} "
        f"{'clear s':>7} {'pages':>5} {'after':>5}  first page (s)"
    )
    print(header)
    print("-" * len(header))
    for r in reports:
        first = r["first_page"]
        first_text = f"{first['alertname']} @ {first['at_s']:.0f}" if first else "none"
        b = r["breakdown"]
        print(
            f"{r['scenario'] + '@' + r['interval']:<19} {r['expected_page'] or '(none)':<33} "
            f"{fmt_s(r['time_to_page_s']):>6} {fmt_s(b.get('pending_s')):>6} "
            f"{fmt_s(b.get('fired_s')):>6} {fmt_s(r['cleared_s']):>7} "
            f"{len(r['pages_during_fault']):>5} {len(r['pages_after_recovery']):>5}  "
            f"{first_text}{'' if r['as_expected'] else '   <- not as expected'}"
        )
    print()
    print(
        "page s: fault injected -> the expected alert's firing notification at /sre-pager; "
        "pend s / fire s: the alert pending in Prometheus / its startsAt; pages: firing "
        "notifications at /sre-pager for the scenario's target before the fault was "
        "removed, after: after it was removed"
    )
    for r in reports:
        lines = []
        for receiver, entries in sorted(r["received"].items()):
            items = ", ".join(f"{e['status']} {e['alertname']} @ {e['at_s']:.0f}" for e in entries)
            lines.append(f"    /{receiver}: {items}")
        if r["notes"]:
            lines.extend(f"    note: {n}" for n in r["notes"])
        print(f"  {r['scenario']}@{r['interval']} ({r['target']}, entry point {r['entry_point']}):")
        print("\n".join(lines) if lines else "    nothing received")
    others = [
        (n.receiver, a)
        for n in result.notifications
        for a in n.alerts
        if a.labels.get("target") not in {r["target"] for r in reports}
    ]
    if others:
        print("  not about a scenario's target:")
        for receiver, a in others:
            print(f"    /{receiver}: {a.status} {a.alertname} {a.labels}")
    for path in stack.get("changed_during_run", []):
        print(f"  note: {path} changed during the run; the run used its version at the start")
    print(f"  supervisors route: at start {stack.get('supervisors_at_start')}")
    print(f"                     at end   {stack.get('supervisors_at_end')}")
    if result.finished is not None:
        print(f"  total run time: {result.finished - result.started:.0f}s")
    for error in result.errors:
        print(f"  ERROR: {error}")


def to_json(result: Result, reports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "started": iso(result.started),
        "baseline_at": iso(result.baseline_at),
        "finished": iso(result.finished),
        "total_seconds": None
        if result.finished is None
        else round(result.finished - result.started, 1),
        "options": result.options,
        "stack": result.stack,
        "scenarios": reports,
        "notifications": [
            {
                "receiver": n.receiver,
                "received": iso(n.received),
                "status": n.status,
                "alerts": [
                    {"alertname": a.alertname, "status": a.status, "labels": a.labels}
                    for a in n.alerts
                ],
            }
            for n in result.notifications
        ],
        "errors": result.errors,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--interval",
        action="append",
        dest="intervals",
        help="ccwatch's poll interval of the ECE targets; repeat for several (default 15s)",
    )
    p.add_argument("--max-minutes", type=float, default=18.0, help="bound of the whole run")
    p.add_argument(
        "--blip-seconds", type=float, default=120.0, help="how long the staffing blip lasts"
    )
    p.add_argument(
        "--observe-minutes",
        type=float,
        default=10.0,
        help="observation of the staffing and healthy scenarios from the injection",
    )
    p.add_argument(
        "--after-recovery-minutes",
        type=float,
        default=6.0,
        help="observation of the closure and ECE-down scenarios after the fault is removed",
    )
    p.add_argument(
        "--hold-after-page",
        type=float,
        default=0.0,
        help="seconds the closure / ECE-down fault lasts after its page",
    )
    p.add_argument(
        "--drop-time-intervals",
        action="store_true",
        help="drop active/mute_time_intervals from the routes of the bench's Alertmanager copy",
    )
    p.add_argument("--json", type=Path, dest="json_path", help="write the results as JSON here")
    p.add_argument("--keep-dir", action="store_true", help="keep the scratch dir (configs, logs)")
    a = p.parse_args(argv)
    intervals = a.intervals or ["15s"]
    for interval in intervals:
        parse_duration(interval)
    if len(set(intervals)) != len(intervals):
        p.error("--interval given twice with the same value")
    return Options(
        intervals=intervals,
        max_minutes=a.max_minutes,
        blip_seconds=a.blip_seconds,
        observe_minutes=a.observe_minutes,
        after_recovery_minutes=a.after_recovery_minutes,
        hold_after_page=a.hold_after_page,
        drop_time_intervals=a.drop_time_intervals,
        json_path=a.json_path,
        keep_dir=a.keep_dir,
    )


async def amain(opts: Options, workdir: Path) -> Result:
    run = Run(opts, workdir)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run.main()
    except Exception as exc:
        run.result.errors.append(f"{type(exc).__name__}: {exc}")
        run.result.finished = time.time()
        run.result.scenarios = run.scenarios
        return run.result
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ccwatch-time-to-page-"))
    try:
        try:
            result = asyncio.run(amain(opts, workdir))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted: every process stopped", file=sys.stderr)
            return 130
        reports = [
            scenario_report(sc, result.notifications) for sc in result.scenarios if sc.injected
        ]
        print_report(result, reports)
        if opts.json_path is not None:
            opts.json_path.write_text(json.dumps(to_json(result, reports), indent=2) + "\n")
            print(f"  JSON: {opts.json_path}")
        if result.errors:
            for name in ("ccwatch", "alertmanager", "prometheus"):
                log_file = workdir / f"{name}.log"
                if log_file.exists():
                    tail = log_file.read_text(errors="replace").splitlines()[-10:]
                    print(f"--- {name}.log (last lines)\n" + "\n".join(tail), file=sys.stderr)
        return 1 if result.errors else 0
    finally:
        if opts.keep_dir:
            print(f"  scratch dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
