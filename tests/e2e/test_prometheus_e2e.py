"""End to end: the vendor simulator, ccwatch and a real Prometheus with the shipped rules.

The simulator and ccwatch run in-process (``tests/harness.py``); Prometheus runs as a
subprocess on 127.0.0.1 with a temporary configuration derived from
``deploy/prometheus/prometheus.yml`` (scrape and evaluation every second) and a copy of
``deploy/prometheus/rules/ccwatch.rules.yml`` in which only the alerts' ``for:``
durations are scaled down, minutes to seconds (``5m`` becomes ``5s``): expressions,
thresholds and annotations are the shipped ones.

The test

1. configures every source against the simulator, with known vendor states;
2. checks ccwatch's exposition with ``promtool check metrics``;
3. checks that Prometheus loads every rule, evaluates it without error, and that every
   dashboard query (template variables at "All") returns data;
4. closes an ECE entry point and drops the Context Service registration, and follows
   ``CcwatchEceEntryPointClosed`` and ``CcwatchContextServiceNotRegistered`` from pending
   to firing (with the reason and state in their summaries) while no other alert goes
   pending or fires;
5. reopens and re-registers, and sees both alerts resolve.

Needs ``prometheus`` and ``promtool`` on PATH (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from ccwatch.config import parse_duration
from tests.e2e.grafana import dashboard_files, queries, substitute
from tests.harness import Running, Scrape, Sim, daemon, simulator

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RULES = REPO / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml"

#: ``for:`` durations are divided by this (minutes become seconds) ...
FOR_SCALE = 60
#: ... but kept at least this long, so that "pending" lasts a few evaluations.
MIN_FOR_SECONDS = 3

ECE = "ece-e2e"
CONTEXT_SERVICE = "cs-e2e"
GENESYS = "genesys-e2e"
GMS = "gms-e2e"
ALVARIA = "alvaria-e2e"
ENTRY_POINTS = (1000, 1001, 1002, 1003)
CLOSED_ENTRY_POINT = "1002"
CUSTOMER = "ABC1234"
CONTACT_KEY = "408-832-7799"
#: The contact key's label value: a phone number is never one.
CONTACT_KEY_NAME = "hotline-e2e"
GMS_SERVICE = "request-inbound-poll"

#: The alerts the test provokes, and the labels they must carry.
CLOSED_ALERT = ("CcwatchEceEntryPointClosed", {"target": ECE, "entry_point": CLOSED_ENTRY_POINT})
NOT_REGISTERED_ALERT = ("CcwatchContextServiceNotRegistered", {"target": CONTEXT_SERVICE})
#: The closed entry point has no calendar, so it should be open: its closure is an outage
#: that CcwatchEceEntryPointClosed pages for, and only it. The burn-rate alerts must stay
#: quiet before, during and after it (one outage, one page; recovery never pages).
#: The vendor states the simulator is frozen in: nothing here is worth an alert.
HEALTHY_ENTRY_POINT = {
    "agents_available": 3,
    "slots": 5,
    "queue_depth": 2,
    "max_queue_depth": 20,
    "wait_time": 30.0,
    "active": True,
    "service_running": True,
}
GENESYS_SERVICES = {
    "active": [{"service_type": 400, "age": 120}, {"service_type": 401, "age": 600}],
    "completed": [{"service_type": 400, "age": 900, "completed_ago": 60}],
}

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not on PATH: install Prometheus (Debian: apt-get install prometheus)"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.25
) -> T:
    """The first non-None result of ``probe``; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


def ccwatch_config(sim_url: str) -> dict[str, Any]:
    """Every source against the simulator, each polled every second."""
    return {
        "defaults": {"interval": "1s", "timeout": "1s"},
        "targets": [
            {
                "name": ECE,
                "source": "ece",
                "url": f"{sim_url}/system",
                "entry_points": list(ENTRY_POINTS),
            },
            {
                "name": CONTEXT_SERVICE,
                "source": "context_service",
                "url": sim_url,
                "basic_auth": {"username": "administrator", "password": "ccwatch-demo"},
            },
            {
                "name": GENESYS,
                "source": "genesys_services",
                "url": sim_url,
                "customer_ids": [CUSTOMER],
                "contact_keys": [{"key": CONTACT_KEY, "name": CONTACT_KEY_NAME}],
                "service_types": [400, 401, 402, 403],
            },
            {
                "name": GMS,
                "source": "gms_probe",
                "url": sim_url,
                "gms_service": GMS_SERVICE,
                "form": {"_phone_number": "6504669999"},
                "status_request": "status",
                "expected_statuses": ["waiting-for-agent", "connected"],
                "interval": "1s",  # not the source's 5-minute default
            },
            {
                "name": ALVARIA,
                "source": "alvaria_context_cookies",
                "url": sim_url,
                "org_id": "orgId",
                "oauth2": {
                    "token_url": f"{sim_url}/tokenservice/oauth2/access_token",
                    "client_id": "ccwatch-demo",
                    "client_secret": "demo-client-secret",
                    "scopes": ["customerexperienceapi.contextcookies"],
                },
                "api_key": "demo-api-key",
                "interval": "1s",  # not the source's 1-minute default
            },
        ],
    }


async def freeze_healthy(sim: Sim) -> None:
    for entry_point in ENTRY_POINTS:
        await sim.put(f"ece/entry_points/{entry_point}", HEALTHY_ENTRY_POINT)
    await sim.put("context_service", {"state": "registered"})
    await sim.put(f"genesys/customers/{CUSTOMER}", GENESYS_SERVICES)
    await sim.put(f"genesys/contact_keys/{CONTACT_KEY}", GENESYS_SERVICES)
    await sim.put("gms/status", {"status": "waiting-for-agent"})


def scaled_rules() -> dict[str, Any]:
    """The shipped rules with every ``for:`` and ``keep_firing_for:`` divided by
    :data:`FOR_SCALE` (a ``for: 0m`` stays 0), and a group's own ``interval:`` (the
    availability group's minute) too, so that it evaluates as often as the others."""
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        if "interval" in group:
            seconds = parse_duration(group["interval"]) / FOR_SCALE
            group["interval"] = f"{max(1, round(seconds))}s"
        for rule in group["rules"]:
            for key in ("for", "keep_firing_for"):
                if key in rule and not re.fullmatch(r"0+[a-z]+", str(rule[key])):
                    seconds = parse_duration(rule[key]) / FOR_SCALE
                    rule[key] = f"{max(MIN_FOR_SECONDS, round(seconds))}s"
    return rules


def alert_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def prometheus_config(ccwatch_address: str, rules_file: Path) -> dict[str, Any]:
    """The shipped example config, scraping the test's ccwatch every second."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules_file)]
    config.pop("alerting", None)  # the compose stack's alertmanager:9093: not here
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "ccwatch"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [ccwatch_address]}]
    return config


@dataclass
class Prometheus:
    url: str
    session: aiohttp.ClientSession
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def api(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["status"] == "success", body
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        data = await self.api("alerts")
        result: list[dict[str, Any]] = data["alerts"]
        return result


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, ccwatch_address: str) -> AsyncIterator[Prometheus]:
    """A real Prometheus on a free port of 127.0.0.1; stopped (or killed) on exit."""
    rules_file = tmp_path / "rules" / "ccwatch.rules.yml"
    rules_file.parent.mkdir()
    rules_file.write_text(yaml.safe_dump(scaled_rules(), sort_keys=False))
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus_config(ccwatch_address, rules_file)))
    check = await asyncio.create_subprocess_exec(
        tool("promtool"),
        "check",
        "config",
        str(config_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()

    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            prom = Prometheus(f"http://127.0.0.1:{port}", session, log)

            async def ready() -> bool | None:
                if process.returncode is not None:
                    raise AssertionError(f"prometheus exited:\n{prom.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{prom.url}/-/ready") as resp:
                        return True if resp.status == 200 else None
                return None

            await eventually(ready, within=30, what="Prometheus to be ready")
            yield prom
    finally:
        await stop(process)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def matches(alert: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> bool:
    found: Mapping[str, str] = alert["labels"]
    return found.get("alertname") == name and all(found.get(k) == v for k, v in labels.items())


def describe(alerts: list[dict[str, Any]]) -> str:
    return "\n".join(f"  {a['state']}: {a['labels']}" for a in alerts) or "  (none)"


# --------------------------------------------------------------------------- the test


async def test_prometheus_end_to_end(tmp_path: Path) -> None:
    resolving = [CLOSED_ALERT, NOT_REGISTERED_ALERT]
    expected = list(resolving)
    assert {name for name, _ in expected} <= alert_names()

    async with simulator(tick=0, seed=1) as sim:
        await freeze_healthy(sim)
        async with daemon(ccwatch_config(sim.url)) as ccwatch:
            await polls_settle_with_errors_recorded(sim, ccwatch)
            await promtool_check_metrics(ccwatch)
            address = ccwatch.url.removeprefix("http://")
            async with prometheus(tmp_path, address) as prom:
                try:
                    await rules_load_and_evaluate(prom)
                    await dashboard_queries_return_data(prom)

                    # close an entry point and drop the Context Service registration
                    await sim.put(f"ece/entry_points/{CLOSED_ENTRY_POINT}", {"active": False})
                    await sim.put("context_service", {"state": "notRegistered"})
                    firing = await alerts_go_pending_then_firing(prom, expected)
                    check_annotations(firing)

                    # and back: both resolve
                    await sim.put(f"ece/entry_points/{CLOSED_ENTRY_POINT}", {"active": True})
                    await sim.put("context_service", {"state": "registered"})
                    await alerts_resolve(prom, resolving)
                    await no_burn_after_recovery(prom)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n--- prometheus log:\n{prom.log_tail()}") from None


async def no_burn_after_recovery(prom: Prometheus) -> None:
    """For a while after the recovery (the burn-rate alerts' short windows, scaled), no
    alert goes pending or fires: the closure's unavailability stays in the ratios, but a
    recovered entry point never pages."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alerts = await prom.alerts()
        assert alerts == [], f"alerts after the recovery:\n{describe(alerts)}"
        await asyncio.sleep(0.5)


async def polls_settle_with_errors_recorded(sim: Sim, ccwatch: Running) -> None:
    """Every job polls successfully, after a few failed polls of one job (so that
    ccwatch_poll_errors_total, which appears at the first error, has a series)."""
    await sim.fault("/egain/chat/entrypoint/capacity/1003", "status", status=503, count=2)

    def settled(scrape: Scrape) -> bool:
        success = scrape.series("ccwatch_poll_success")
        return (
            bool(success)
            and all(s.value == 1 for s in success)
            and bool(scrape.series("ccwatch_poll_errors_total", target=ECE))
            and scrape.value("ccwatch_gms_probe_success", target=GMS) == 1
        )

    scrape = await ccwatch.wait_for(settled, within=30, what="every job to poll successfully")
    jobs = {s.labels["source"]: s.value for s in scrape.series("ccwatch_jobs")}
    assert jobs == {
        "ece": 20,
        "context_service": 1,
        "genesys_services": 4,
        "gms_probe": 1,
        "alvaria_context_cookies": 4,
    }


async def promtool_check_metrics(ccwatch: Running) -> None:
    """ccwatch's exposition passes promtool's lint (no output, exit 0), plain and gzip."""
    for encoding in ("identity", "gzip"):
        async with ccwatch.session.get(
            f"{ccwatch.url}/metrics", headers={"Accept-Encoding": encoding}, auto_decompress=False
        ) as resp:
            assert resp.status == 200
            body = await resp.read()
            if encoding == "gzip":
                assert resp.headers["Content-Encoding"] == "gzip"
                body = gzip.decompress(body)
        check = await asyncio.create_subprocess_exec(
            tool("promtool"),
            "check",
            "metrics",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await check.communicate(body)
        assert (check.returncode, out.decode()) == (0, ""), f"promtool check metrics ({encoding})"


async def rules_load_and_evaluate(prom: Prometheus) -> None:
    """Every shipped rule is loaded and has been evaluated without error."""

    async def evaluated() -> list[dict[str, Any]] | None:
        groups = (await prom.api("rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if not rules or any(rule.get("health") == "unknown" for rule in rules):
            return None
        up = await prom.query('up{job="ccwatch"} == 1')
        ages = await prom.query("ccwatch:poll_age_intervals")
        return rules if up and ages else None

    rules = await eventually(evaluated, within=30, what="the rules to be evaluated")
    loaded = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    assert loaded == alert_names()
    broken = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
    assert broken == [], f"rules failing to evaluate: {broken}"

    # CcwatchDataStale's input on real scrapes: every job's age in its own intervals,
    # about one here, far below the threshold
    ages = await prom.query("ccwatch:poll_age_intervals")
    assert len(ages) == 30, ages
    oldest = max(float(sample["value"][1]) for sample in ages)
    assert 0 <= oldest < 3, ages


async def dashboard_queries_return_data(prom: Prometheus) -> None:
    """Every panel query of every dashboard returns data (variables at "All")."""
    all_queries = [q for path in dashboard_files() for q in queries(path)]
    exprs = {
        q.where: substitute(q.expr, {"target": ".*", "entry_point": ".*"}) for q in all_queries
    }
    assert len(exprs) == len(all_queries)
    empty: dict[str, str] = dict(exprs)

    async def all_have_data() -> bool | None:
        for where, expr in list(empty.items()):
            if await prom.query(expr):
                del empty[where]
        return True if not empty else None

    try:
        await eventually(all_have_data, within=30, what="every dashboard query to return data")
    except AssertionError:
        lines = "\n".join(f"  {where}: {expr}" for where, expr in empty.items())
        raise AssertionError(f"dashboard queries without data:\n{lines}") from None

    # the variables list what ccwatch watches
    points = await prom.query(f'ccwatch_ece_chat_allowed{{target="{ECE}"}}')
    assert sorted(int(p["metric"]["entry_point"]) for p in points) == list(ENTRY_POINTS)


async def alerts_go_pending_then_firing(
    prom: Prometheus, expected: list[tuple[str, dict[str, str]]]
) -> dict[str, dict[str, Any]]:
    """Each expected alert is seen pending, then firing; nothing else goes pending."""
    seen: dict[str, list[str]] = {name: [] for name, _ in expected}
    firing: dict[str, dict[str, Any]] = {}

    async def all_firing() -> bool | None:
        alerts = await prom.alerts()
        unexpected = [a for a in alerts if not any(matches(a, n, lb) for n, lb in expected)]
        assert unexpected == [], f"unexpected alerts:\n{describe(unexpected)}"
        for name, labels in expected:
            for alert in alerts:
                if matches(alert, name, labels):
                    states = seen[name]
                    if not states or states[-1] != alert["state"]:
                        states.append(alert["state"])
                    if alert["state"] == "firing":
                        firing[name] = alert
        return True if len(firing) == len(expected) else None

    try:
        await eventually(all_firing, within=60, what="the alerts to fire", every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; states seen: {seen}") from None
    for name, states in seen.items():
        assert states == ["pending", "firing"], f"{name}: {states}"
    return firing


def check_annotations(firing: Mapping[str, dict[str, Any]]) -> None:
    closed = firing[CLOSED_ALERT[0]]["annotations"]
    assert closed["summary"] == (
        f"Chat entry point {CLOSED_ENTRY_POINT} on {ECE} is closed: entry_point_inactive"
    )
    assert "chatAllowed reason: entry_point_inactive" in closed["description"]
    registration = firing[NOT_REGISTERED_ALERT[0]]["annotations"]
    assert registration["summary"] == (
        f"{CONTEXT_SERVICE} is not registered with Context Service (notRegistered)"
    )
    for name, alert in firing.items():
        annotations = alert["annotations"]
        assert annotations["runbook_url"].endswith(f"#{name.lower()}")
        assert not any("error expanding template" in v for v in annotations.values())


async def alerts_resolve(
    prom: Prometheus,
    expected: list[tuple[str, dict[str, str]]],
    still: Sequence[tuple[str, dict[str, str]]] = (),
) -> None:
    """The ``expected`` alerts resolve; only the ``still`` ones may stay."""

    async def resolved() -> bool | None:
        alerts = await prom.alerts()
        known = [*expected, *still]
        unexpected = [a for a in alerts if not any(matches(a, n, lb) for n, lb in known)]
        assert unexpected == [], f"unexpected alerts:\n{describe(unexpected)}"
        pending = [a for a in alerts if any(matches(a, n, lb) for n, lb in expected)]
        return True if not pending else None

    await eventually(resolved, within=30, what="the alerts to resolve")
