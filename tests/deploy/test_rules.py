"""The Prometheus rules, their unit tests and the runbook: promtool and consistency checks.

Needs ``promtool`` on PATH (Debian: ``apt-get install prometheus``; ``.ci/run`` does it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_dashboards import unaggregated_target_joins

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "ccwatch.rules.yml"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
RULE_TESTS = RULE_TESTS_DIR / "ccwatch.rules.test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/ccwatch/ccwatch/blob/main/docs/runbook.md"
SEVERITIES = {"critical", "warning"}
#: Who acts on an alert: its ``audience`` label, for routing next to ``severity``.
AUDIENCES = {"sre", "supervisors"}
#: The staffing alerts, for the contact-center supervisors; every other alert is the SRE's.
SUPERVISOR_ALERTS = {
    "CcwatchEceEntryPointClosedStaffing",
    "CcwatchEceNoAgentsAvailable",
    "CcwatchEceQueueDepthHigh",
    "CcwatchEceWaitTimeHigh",
    "CcwatchEceStaffedAvailabilityBudgetBurnFast",
    "CcwatchEceStaffedAvailabilityBudgetBurnSlow",
}
#: The thresholds ccwatch exports per target as ``ccwatch_threshold{target, name}`` (its
#: config's ``defaults.thresholds`` and each target's ``thresholds``).
THRESHOLD_NAMES = {
    "ece_queue_depth",
    "ece_wait_time_seconds",
    "ece_availability_objective",
    "ece_staffed_availability_objective",
    "genesys_oldest_active_service_age_seconds",
    "poll_failing_ratio",
    "stale_intervals",
}
#: The per-target thresholds as the rules read them: one series per (job, target, name).
THRESHOLD_RECORD = "target:ccwatch_threshold:max"
#: The group of the availability (SLO) recording rules.
SLO_GROUP = "ccwatch-ece-slo"
#: At most this many evaluations per promtool test group (its last eval_time over the
#: file's evaluation_interval): long windows belong in a file that evaluates every hour.
MAX_EVALUATIONS = 1000


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)"
        )
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load_yaml(RULES)["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerts()]


def records() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "record" in rule]


def rule_test_files() -> list[Path]:
    """Every promtool test file: each is run, and together they cover every alert."""
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``, ``59m59s999ms``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?) *$", text, re.M)}


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config_loads_the_rules() -> None:
    result = promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(RULES.relative_to(PROMETHEUS_DIR)) in result.stdout, result.stdout


def test_example_config_scrapes_ccwatch() -> None:
    config = load_yaml(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "ccwatch" in jobs
    assert jobs["ccwatch"].get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    targets = [t for sc in jobs["ccwatch"]["static_configs"] for t in sc["targets"]]
    assert targets
    assert all(t.endswith(":9865") for t in targets)


def test_the_rule_test_files() -> None:
    names = [path.name for path in rule_test_files()]
    assert RULE_TESTS.name in names
    assert all(name.endswith(".test.yml") for name in names), names


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(path: Path) -> None:
    result = promtool("test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_rule_tests_stay_cheap(path: Path) -> None:
    """promtool evaluates every rule at every evaluation_interval up to a test group's
    last eval_time: a 30-day window at one minute is 43,200 evaluations of everything.
    Long windows go in a file of their own with a long evaluation_interval."""
    data = load_yaml(path)
    interval = seconds(data.get("evaluation_interval", "1m"))
    for test in data["tests"]:
        cases = (test.get("alert_rule_test") or []) + (test.get("promql_expr_test") or [])
        last = max(seconds(case["eval_time"]) for case in cases)
        assert last / interval <= MAX_EVALUATIONS, (path.name, test["name"])


# --------------------------------------------------------------------------- coverage


def _assertions(test: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """(alert name, expects it firing) per alert_rule_test of one test group."""
    for case in test.get("alert_rule_test") or []:
        yield case["alertname"], bool(case.get("exp_alerts"))


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    """Per alert: a test group where it fires, and another where it must never fire (in
    any of the test files)."""
    tests = [test for path in rule_test_files() for test in load_yaml(path)["tests"]]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        expected: dict[str, list[bool]] = {}
        for name, firing in _assertions(test):
            expected.setdefault(name, []).append(firing)
        for name, outcomes in expected.items():
            if any(outcomes):
                fires.add(name)
            else:
                quiet.add(name)
    names = set(alert_names())
    assert names - fires == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they must not fire"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_rule_tests_load_the_shipped_rules(path: Path) -> None:
    tests = load_yaml(path)
    files = [(path.parent / f).resolve() for f in tests["rule_files"]]
    assert files == [RULES.resolve()]
    groups = [g["name"] for g in rule_groups()]
    assert tests["group_eval_order"] == groups


# --------------------------------------------------------------------------- alerts


def test_alert_names_are_unique() -> None:
    names = alert_names()
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"Ccwatch[A-Z][A-Za-z]+", name) for name in names), names


def test_every_alert_has_an_audience() -> None:
    """``audience``: ``supervisors`` for the staffing alerts, ``sre`` for all others."""
    audiences = {rule["alert"]: rule.get("labels", {}).get("audience") for rule in alerts()}
    assert set(audiences.values()) <= AUDIENCES, audiences
    expected = {name: "supervisors" if name in SUPERVISOR_ALERTS else "sre" for name in audiences}
    assert audiences == expected
    assert set(audiences) >= SUPERVISOR_ALERTS, SUPERVISOR_ALERTS - set(audiences)


def test_runbook_sections_name_an_escalation() -> None:
    """Every alert's runbook section says who to escalate to, and when."""
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    for section in sections:
        name = section.split("\n", 1)[0].strip()
        if name in alert_names():
            assert "**Escalation.**" in section, f"{name} has no **Escalation.** line"


@pytest.mark.parametrize("alert", alert_names())
def test_alert_annotations_and_runbook_section(alert: str) -> None:
    rule = next(r for r in alerts() if r["alert"] == alert)
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{alert} has no {key}"
    anchor = alert.lower()
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{anchor}"
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section '## {alert}'"
    assert rule["labels"]["severity"] in SEVERITIES
    assert "for" in rule, f"{alert} has no for: duration"


def test_runbook_sections_are_alerts() -> None:
    """No runbook section for an alert that does not exist (renamed or removed)."""
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = re.findall(r"^## (Ccwatch\w+) *$", text, re.M)
    assert sorted(sections) == sorted(alert_names())


# --------------------------------------------------------------------------- thresholds


def _threshold_names(text: str) -> list[str]:
    """The names of the thresholds that ``text`` selects (``ccwatch_threshold{...}`` or
    ``target:ccwatch_threshold:max{...}``); a selector without a name is ``""``."""
    names = []
    for selector in re.findall(r"ccwatch_threshold(?::max)?\s*(\{[^}]*\})?", text):
        name = re.search(r'\bname\s*=\s*\\?"(\w+)\\?"', selector)
        names.append(name.group(1) if name else "")
    return names


def test_thresholds_come_from_ccwatch() -> None:
    """No constant thresholds in the rules: ccwatch exports them per target, and one
    recording rule takes them over the shards (every shard exports every target's)."""
    text = RULES.read_text(encoding="utf-8")
    assert "ccwatch:threshold:" not in text, "constant thresholds are gone: ccwatch_threshold"
    [record] = [r for r in records() if r["record"] == THRESHOLD_RECORD]
    assert " ".join(record["expr"].split()) == "max by (job, target, name) (ccwatch_threshold)"
    raw = [
        rule.get("alert") or rule["record"]
        for rule in alerts() + records()
        if rule.get("record") != THRESHOLD_RECORD
        and re.search(r"(?<![:\w])ccwatch_threshold(?![:\w])", rule["expr"])
    ]
    assert raw == [], f"read {THRESHOLD_RECORD} (one per target), not ccwatch_threshold"


def test_thresholds_used_are_ccwatchs_and_all_are_used() -> None:
    used: list[str] = []
    for rule in alerts():
        used += _threshold_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            used += _threshold_names(text)
    assert set(used) <= THRESHOLD_NAMES, set(used) - THRESHOLD_NAMES
    assert set(used) == THRESHOLD_NAMES, f"never used: {THRESHOLD_NAMES - set(used)}"
    header = RULES.read_text(encoding="utf-8").split("groups:")[0]
    assert all(name in header for name in THRESHOLD_NAMES), "HOW TO TUNE lists every name"


def test_alerts_join_thresholds_per_target() -> None:
    """Every comparison with a threshold takes the alert's own target's:
    ``on(job, target) group_left()`` right before the threshold (or ``(1 - threshold)``),
    and annotations that quote one select the alert's job and target."""
    join = re.compile(
        r"on\(job, target\)\s+group_left\(\)\s*(?:\(\s*1\s*-\s*)?"
        + re.escape(THRESHOLD_RECORD)
        + r'\{name="\w+"\}'
    )
    for rule in alerts():
        expr = rule["expr"]
        assert len(join.findall(expr)) == expr.count(THRESHOLD_RECORD), rule["alert"]
        for text in rule.get("annotations", {}).values():
            for selector in re.findall(re.escape(THRESHOLD_RECORD) + r"\{[^}]*\}", text):
                assert re.fullmatch(
                    r'\{job=%q,target=%q,name="\w+"\}', selector[len(THRESHOLD_RECORD) :]
                ), (
                    rule["alert"],
                    selector,
                )


def test_runbook_table_names_each_alerts_thresholds() -> None:
    """The runbook's alert table lists, per alert, the thresholds its expression uses."""
    rows = re.findall(
        r"^\| \[(Ccwatch\w+)\]\(#\w+\) \| \S+ \| \w+ \| \w+ \| (.*) \|$",
        RUNBOOK.read_text(encoding="utf-8"),
        re.M,
    )
    table = {name: set(re.findall(r"`(\w+)`", cell)) for name, cell in rows}
    expected = {rule["alert"]: set(_threshold_names(rule["expr"])) for rule in alerts()}
    assert table == expected


# --------------------------------------------------------------------------- availability


def test_slo_windows_hold_whole_evaluations() -> None:
    """The availability ratios' ranges are 1ms short of whole minutes (``[59m59s999ms]``):
    Prometheus 2 selects [t-W, t] and 3 (t-W, t], and 1ms short both select the
    W/interval evaluations of (t-W, t], so that consecutive hours do not overlap."""
    [group] = [g for g in rule_groups() if g["name"] == SLO_GROUP]
    ranges = [r for rule in group["rules"] for r in re.findall(r"\[(\w+)(?::\w+)?\]", rule["expr"])]
    assert ranges
    for window in ranges:
        assert window.endswith("59s999ms"), window
        assert round(seconds(window) + 0.001, 3) % 60 == 0, window


#: Labels the availability series may aggregate away: the shard, a state set's reason, and
#: what ALERTS adds to an alert's labels.
SLO_AGGREGATED = {"instance", "reason", "alertname", "alertstate", "severity", "audience"}


def test_slo_rules_drop_only_the_instance() -> None:
    """The per-entry-point availability series aggregate the shards away (an entry point
    moving between shards keeps one series) and keep every other label of the entry
    point: static labels, for routing the burn-rate alerts."""
    [group] = [g for g in rule_groups() if g["name"] == SLO_GROUP]
    for rule in group["rules"]:
        assert not re.search(r"\bby\s*\(", rule["expr"]), rule.get("record") or rule["alert"]
        for labels in re.findall(r"\bwithout\s*\(([^)]*)\)", rule["expr"]):
            names = {label.strip() for label in labels.split(",")}
            assert "instance" in names, rule.get("record") or rule["alert"]
            assert names <= SLO_AGGREGATED, rule.get("record") or rule["alert"]


def test_slo_group_evaluates_every_minute() -> None:
    """The burn-rate alerts' minimum evidence counts minutes: their group evaluates every
    minute whatever the global evaluation_interval."""
    [group] = [g for g in rule_groups() if g["name"] == SLO_GROUP]
    assert group.get("interval") == "1m"
    names = {rule.get("alert") for rule in group["rules"]}
    assert {
        "CcwatchEceAvailabilityBudgetBurnFast",
        "CcwatchEceStaffedAvailabilityBudgetBurnFast",
    } <= names


# --------------------------------------------------------------------------- tables


def test_alert_tables_match_the_rules() -> None:
    """The header table of the rules file and the runbook's table: every alert, its
    ``for:``, severity and audience, in the order of the rules file."""
    expected = [
        (r["alert"], r["for"], r["labels"]["severity"], r["labels"]["audience"]) for r in alerts()
    ]
    header = re.findall(
        r"^#\s+(Ccwatch\w+)\s+(\S+)\s+(\w+)\s+(\w+)\s*$",
        RULES.read_text(encoding="utf-8"),
        re.M,
    )
    assert header == expected, "the header table of the rules file is out of date"
    runbook = re.findall(
        r"^\| \[(Ccwatch\w+)\]\(#(\w+)\) \| (\S+) \| (\w+) \| (\w+) \|",
        RUNBOOK.read_text(encoding="utf-8"),
        re.M,
    )
    assert [(name, for_, sev, aud) for name, _, for_, sev, aud in runbook] == expected, (
        "the alert table of docs/runbook.md is out of date"
    )
    assert all(anchor == name.lower() for name, anchor, *_ in runbook)


# --------------------------------------------------------------------------- shards


def test_rules_aggregate_shards_before_joining_on_target() -> None:
    """Shards: a target's series come from several instances; no rule joins them
    ``on(target)`` unaggregated (see ``unaggregated_target_joins``)."""
    bad = {
        rule.get("alert") or rule["record"]: joins
        for group in rule_groups()
        for rule in group["rules"]
        if (joins := unaggregated_target_joins(rule["expr"]))
    }
    assert bad == {}


def test_per_target_rules_keep_the_job() -> None:
    """Per-target aggregations keep ``job``, so that several ccwatch deployments (scrape
    jobs) can share one Prometheus without adding up each other's targets."""
    for group in rule_groups():
        for rule in group["rules"]:
            for labels in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
                names = {label.strip() for label in labels.split(",")}
                if "target" in names:
                    assert "job" in names, (rule.get("alert") or rule["record"], labels)
