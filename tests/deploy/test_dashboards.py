"""The Grafana dashboards and provisioning: a valid model, and every query valid PromQL.

The PromQL check puts every panel query (template variables filled in) into a temporary
rules file as a recording rule and runs ``promtool check rules`` on it, which parses it.
Needs ``promtool`` on PATH (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.grafana import (
    DATASOURCE_UID,
    GRAFANA,
    dashboard_files,
    load,
    panels,
    queries,
    substitute,
    variable_query,
    variables,
)

RULES = (
    Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml"
)
CONTACT_CENTER = "contact-center.json"
CCWATCH = "ccwatch.json"
REQUIRED_VARIABLES = {CONTACT_CENTER: {"target", "entry_point"}, CCWATCH: {"target"}}
GRID_WIDTH = 24
#: Values for the dashboards' own variables as Grafana writes them into a query: "All"
#: (the variables' allValue), one value, and several values (regex-escaped with a double
#: backslash, as Grafana does for a multi-value variable).
SELECTIONS = [
    {"target": ".*", "entry_point": ".*"},
    {"target": "ece-a", "entry_point": "1000"},
    {"target": "(ece-a|cs\\\\.b)", "entry_point": "(1000|1001)"},
]


#: A vector match: its operator, then ``on(...)``, its labels and its group modifier.
_ON_MATCH = re.compile(
    r"(?P<op>\b(?:and|or|unless)\b|==|!=|>=|<=|[-+*/%^<>])\s*(?:bool\s+)?"
    r"on\s*\((?P<labels>[^)]*)\)\s*"
    r"(?:(?P<group>group_(?:left|right))\s*(?:\([^)]*\))?)?\s*"
)
#: An aggregation by some labels, or a series recorded per target.
_AGGREGATED = (
    r"(?:(?:sum|min|max|avg|count|group|count_values|stddev|stdvar|topk|bottomk|quantile)"
    r"\s*(?:by|without)\s*\(|\btarget(?:_\w+)?:)"
)


def _right_operand_aggregated(right: str) -> bool:
    """Whether the text after a match starts with a per-target operand: an aggregation
    or ``target:`` series, or a parenthesized expression holding one (``(1 - target:x)``).
    """
    text = right.lstrip()
    if not text.startswith("("):
        return re.match(_AGGREGATED, text) is not None
    depth = 0
    for end, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return re.search(_AGGREGATED, text[: end + 1]) is not None
    return re.search(_AGGREGATED, text) is not None


def unaggregated_target_joins(expr: str) -> list[str]:
    """The ``on(...)`` matches of ``expr`` that join per-target series of several shards.

    With sharding, one target's series come from several instances (one per shard), so
    an arithmetic or comparison match ``on(target)`` (``instance`` not among its labels)
    between raw series is many-to-many: the side that must be unique per target has to
    be aggregated by target first (``sum by (target) (...)``, or a ``target:`` recorded
    series). That is both sides of a one-to-one match, the right side of a
    ``group_left`` (many-to-one: ``last_over_time(x[2m]) > on(job, target) group_left()
    target:threshold``) and the left side of a ``group_right``. The set operators
    (``and``, ``or``, ``unless``) never fail that way. A lint, not a parser: it looks at
    the operand right after the match and at the whole left-hand side.
    """
    found = []
    for match in _ON_MATCH.finditer(expr):
        labels = {label.strip() for label in match.group("labels").split(",")}
        if match.group("op") in {"and", "or", "unless"} or "instance" in labels:
            continue
        if "target" not in labels:
            continue
        left, right = expr[: match.start()], expr[match.end() :]
        left_ok = re.search(_AGGREGATED, left) is not None
        right_ok = _right_operand_aggregated(right)
        group = match.group("group")
        if group == "group_left":
            ok = right_ok
        elif group == "group_right":
            ok = left_ok
        else:
            ok = left_ok and right_ok
        if not ok:
            found.append(match.group(0).strip())
    return found


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)"
        )
    return subprocess.run(
        [path, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def by_name() -> dict[str, dict[str, Any]]:
    return {path.name: load(path) for path in dashboard_files()}


def test_both_dashboards_exist() -> None:
    assert set(by_name()) >= {CONTACT_CENTER, CCWATCH}
    titles = {name: d["title"] for name, d in by_name().items()}
    assert titles[CONTACT_CENTER] == "Contact center availability"
    assert titles[CCWATCH] == "ccwatch itself"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_model(path: Path) -> None:
    dashboard = load(path)
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time", "tags"):
        assert key in dashboard, f"{path.name}: no {key}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None, "provisioned dashboards carry no database id"

    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"

    for panel in panels(dashboard):
        where = f"{path.name} panel {panel['id']} ({panel.get('title')})"
        assert panel.get("title"), where
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in "hwxy"), where
        assert grid["w"] > 0, where
        assert grid["h"] > 0, where
        assert grid["x"] + grid["w"] <= GRID_WIDTH, where
        if panel["type"] == "row":
            assert not panel.get("targets"), f"{where}: a row has no queries"
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        targets = panel.get("targets")
        assert targets, f"{where}: no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
        for target in targets:
            assert target["datasource"]["uid"] == DATASOURCE_UID, where
            assert target["datasource"]["type"] == "prometheus", where
            assert target["expr"].strip(), where


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_panels_do_not_overlap(path: Path) -> None:
    taken: dict[tuple[int, int], int] = {}
    for panel in panels(load(path)):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = taken.setdefault((x, y), panel["id"])
                assert other == panel["id"], f"panels {other} and {panel['id']} overlap"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_template_variables(path: Path) -> None:
    dashboard = load(path)
    found = {v["name"]: v for v in variables(dashboard)}
    assert set(found) >= REQUIRED_VARIABLES.get(path.name, set())
    for variable in found.values():
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        assert variable_query(variable).startswith("label_values("), variable["name"]
        assert variable_query(variable).rstrip(")").endswith(variable["name"])
    # every variable a query uses exists (or is one of Grafana's own)
    own = {v["name"]: ".*" for v in variables(dashboard)}
    for query in queries(path):
        substitute(query.expr, own)


def test_variables_follow_each_other() -> None:
    """entry_point is offered for the selected targets only."""
    found = {v["name"]: v for v in variables(by_name()[CONTACT_CENTER])}
    assert "$target" in variable_query(found["entry_point"])
    assert variable_query(found["entry_point"]).startswith("label_values(ccwatch_ece_")


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_queries_filter_by_the_selected_target(path: Path) -> None:
    """Vendor and poll-health panels follow the target variable."""
    for query in queries(path):
        if query.panel_id is None:
            continue
        expr = query.expr
        if re.search(r"\bccwatch_(ece|context_service|genesys|alvaria|gms|poll)_", expr):
            assert 'target=~"$target"' in expr, query.where
        if "ccwatch_ece_" in expr:
            assert 'entry_point=~"$entry_point"' in expr, query.where


@pytest.mark.parametrize(
    ("expr", "flagged"),
    [
        ("ccwatch_poll_success / on(target) ccwatch_poll_interval_seconds", True),
        ("x * on(target) group_left(source) ccwatch_poll_success", True),
        ("sum by (target) (a) / on(target) sum by (target) (b)", False),
        ("target:ccwatch_poll_failing_jobs:count > on(target) target:x:count", False),
        ("a > on(job, instance, target) b", False),
        ("a unless on(target) b", False),
        ("a and on(job, target) b", False),
        ("a > on() group_left() ccwatch:threshold:x", False),
        # many-to-one: only the "one" side must be per target
        ("last_over_time(x[2m]) > on(job, target) group_left() target:threshold:max", False),
        ("x / on(job, target) group_left() (1 - target:threshold:max{name='a'})", False),
        ("x / on(job, target) group_left() (1 - threshold)", True),
        ("target:x:count / on(job, target) group_right() ccwatch_poll_success", False),
        ("ccwatch_poll_success / on(job, target) group_right() target:x:count", True),
    ],
)
def test_the_target_join_lint(expr: str, flagged: bool) -> None:
    assert bool(unaggregated_target_joins(expr)) is flagged


def test_queries_aggregate_shards_before_joining_on_target() -> None:
    """No panel joins per-target series of several shards without aggregating them."""
    bad = {
        query.where: joins
        for path in dashboard_files()
        for query in queries(path)
        if (joins := unaggregated_target_joins(query.expr))
    }
    assert bad == {}


def test_recorded_series_in_queries_are_recorded_by_the_rules() -> None:
    """A panel reading ``level:metric:operation`` series reads ones the rules record."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    used = {
        name: query.where
        for path in dashboard_files()
        for query in queries(path)
        for name in re.findall(r"\b[a-zA-Z_]\w*:[\w:]*\w\b", query.expr)
    }
    assert {n: w for n, w in used.items() if n not in recorded} == {}


def test_the_availability_row() -> None:
    """Availability during opening hours over 30 days, and the error budget left against
    each target's own objective."""
    exprs = [
        target["expr"]
        for panel in panels(by_name()[CONTACT_CENTER])
        for target in panel.get("targets", [])
    ]
    assert any(e.startswith("ccwatch:ece_availability:ratio30d{") for e in exprs)
    [budget] = [e for e in exprs if "ece_availability_objective" in e]
    assert "ccwatch:ece_availability:ratio30d" in budget
    assert "on(job, target) group_left()" in budget


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules: list[dict[str, str]] = []
    where: dict[str, str] = {}
    for path in dashboard_files():
        for query in queries(path):
            for values in SELECTIONS:
                record = f"dashboard_query:{len(rules)}"
                where[record] = f"{query.where} with {values}"
                rules.append({"record": record, "expr": substitute(query.expr, values)})
    assert rules
    rules_file = tmp_path / "dashboard-queries.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", rules_file)
    output = result.stdout + result.stderr
    # name the panel of the first broken query, if promtool names a rule
    for record, what in where.items():
        if re.search(rf"\b{re.escape(record)}\b", output):
            output += f"\n{record}: {what}"
            break
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, output


# --------------------------------------------------------------------------- provisioning


def test_datasource_provisioning() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert data["apiVersion"] == 1
    [source] = data["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090"


def test_dashboard_provisioning() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ccwatch.yml").read_text())
    assert data["apiVersion"] == 1
    [provider] = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
