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
RULE_TESTS = PROMETHEUS_DIR / "tests" / "ccwatch.rules.test.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/ccwatch/ccwatch/blob/main/docs/runbook.md"
THRESHOLD_GROUP = "ccwatch-thresholds"
THRESHOLD_PREFIX = "ccwatch:threshold:"
SEVERITIES = {"critical", "warning"}


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


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --------------------------------------------------------------------------- coverage


def _assertions(test: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """(alert name, expects it firing) per alert_rule_test of one test group."""
    for case in test.get("alert_rule_test") or []:
        yield case["alertname"], bool(case.get("exp_alerts"))


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    """Per alert: a test group where it fires, and another where it must never fire."""
    tests = load_yaml(RULE_TESTS)["tests"]
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


def test_rule_tests_load_the_shipped_rules() -> None:
    tests = load_yaml(RULE_TESTS)
    files = [(RULE_TESTS.parent / f).resolve() for f in tests["rule_files"]]
    assert files == [RULES.resolve()]
    groups = [g["name"] for g in rule_groups()]
    assert tests["group_eval_order"] == groups


# --------------------------------------------------------------------------- alerts


def test_alert_names_are_unique() -> None:
    names = alert_names()
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"Ccwatch[A-Z][A-Za-z]+", name) for name in names), names


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


def test_thresholds_live_in_one_group_and_are_all_used() -> None:
    groups = rule_groups()
    defined: dict[str, str] = {}
    used: set[str] = set()
    for group in groups:
        for rule in group["rules"]:
            record = rule.get("record", "")
            if record.startswith(THRESHOLD_PREFIX):
                assert group["name"] == THRESHOLD_GROUP, f"{record} outside {THRESHOLD_GROUP}"
                assert re.fullmatch(r"vector\(\d+(\.\d+)?\)", rule["expr"].strip()), record
                defined[record] = rule["expr"]
            else:
                used.update(re.findall(r"ccwatch:threshold:\w+", rule["expr"]))
                for text in rule.get("annotations", {}).values():
                    used.update(re.findall(r"ccwatch:threshold:\w+", text))
    assert groups[0]["name"] == THRESHOLD_GROUP
    assert used - set(defined) == set(), "thresholds used but not defined"
    assert set(defined) - used == set(), "thresholds defined but never used"


# --------------------------------------------------------------------------- tables


def test_alert_tables_match_the_rules() -> None:
    """The header table of the rules file and the runbook's table: every alert, its
    ``for:`` and severity, in the order of the rules file."""
    expected = [(r["alert"], r["for"], r["labels"]["severity"]) for r in alerts()]
    header = re.findall(
        r"^#\s+(Ccwatch\w+)\s+(\S+)\s+(\w+)\s*$", RULES.read_text(encoding="utf-8"), re.M
    )
    assert header == expected, "the header table of the rules file is out of date"
    runbook = re.findall(
        r"^\| \[(Ccwatch\w+)\]\(#(\w+)\) \| (\S+) \| (\w+) \|",
        RUNBOOK.read_text(encoding="utf-8"),
        re.M,
    )
    assert [(name, for_, sev) for name, _, for_, sev in runbook] == expected, (
        "the alert table of docs/runbook.md is out of date"
    )
    assert all(anchor == name.lower() for name, anchor, _, _ in runbook)


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
