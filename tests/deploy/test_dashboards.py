"""The Grafana dashboards and provisioning: a valid model, and every query valid PromQL.

The PromQL check puts every panel query (template variables filled in) into a temporary
rules file as a recording rule and runs ``promtool check rules`` on it, which parses it.
Needs ``promtool`` on PATH (Debian: ``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.grafana import (
    BUILTIN_VARIABLES,
    DATASOURCE,
    DATASOURCE_VARIABLE,
    GRAFANA,
    dashboard_files,
    load,
    panels,
    queries,
    substitute,
    variable_names,
    variable_query,
    variables,
)

RULES = (
    Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "ccwatch.rules.yml"
)
CONTACT_CENTER = "contact-center.json"
CCWATCH = "ccwatch.json"
REQUIRED_VARIABLES = {
    CONTACT_CENTER: {DATASOURCE_VARIABLE, "team", "target", "entry_point"},
    CCWATCH: {DATASOURCE_VARIABLE, "target"},
}
#: The uid of the provisioned data source. Only the provisioning file names it: the
#: dashboards refer to their ``datasource`` variable.
PROVISIONED_UID = "prometheus"
GRID_WIDTH = 24
#: Values for the dashboards' own variables as Grafana writes them into a query: "All"
#: (the variables' allValue), one value, and several values (regex-escaped with a double
#: backslash, as Grafana does for a multi-value variable).
SELECTIONS = [
    {"target": ".*", "entry_point": ".*", "team": ".*"},
    {"target": "ece-a", "entry_point": "1000", "team": "sales"},
    {"target": "(ece-a|cs\\\\.b)", "entry_point": "(1000|1001)", "team": "(sales|support)"},
]
#: Vendor series that disappear while their poll fails (unlike the GMS probe's success).
VANISHING = re.compile(r"\bccwatch_(?:ece|context_service)_\w+")
UNKNOWN = "unknown"


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
        assert panel["datasource"] == DATASOURCE, where
        targets = panel.get("targets")
        assert targets, f"{where}: no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
        for target in targets:
            assert target["datasource"] == DATASOURCE, where
            assert target["expr"].strip(), where


def _datasource_refs(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``datasource`` value in a dashboard model, with the path to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from _datasource_refs(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _datasource_refs(item, f"{where}[{index}]")


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_datasource_reference_is_the_variable(path: Path) -> None:
    """No hard-coded data source uid: panels, targets, annotations and template variables
    all use ``${datasource}``, a variable of type datasource (Prometheus) that defaults to
    Grafana's default data source. Only Grafana's built-in annotation uses Grafana's own."""
    dashboard = load(path)
    [variable] = [v for v in variables(dashboard) if v["name"] == DATASOURCE_VARIABLE]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert not variable.get("includeAll")
    assert not variable.get("multi")
    assert PROVISIONED_UID not in json.dumps(variable.get("current", {}))

    builtin = [a for a in dashboard["annotations"]["list"] if a.get("builtIn")]
    assert all(a["datasource"] == {"type": "grafana", "uid": "-- Grafana --"} for a in builtin)
    others = {id(a["datasource"]) for a in builtin}
    refs = [
        (where, ref)
        for where, ref in _datasource_refs(dashboard)
        if id(ref) not in others and ref is not variable.get("datasource")
    ]
    assert refs, path.name
    assert {where: ref for where, ref in refs if ref != DATASOURCE} == {}
    text = path.read_text(encoding="utf-8")
    assert not re.search(rf'"uid":\s*"{PROVISIONED_UID}"', text), "a hard-coded data source uid"


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
    assert variables(dashboard)[0]["name"] == DATASOURCE_VARIABLE, "the data source comes first"
    for variable in found.values():
        if variable["name"] == DATASOURCE_VARIABLE:
            continue
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable_query(variable).startswith("label_values("), variable["name"]
        assert variable_query(variable).rstrip(")").endswith(variable["name"])
        assert variable["includeAll"], variable["name"]
        assert variable["allValue"] == ".*", variable["name"]
    # every variable a query uses exists in this dashboard (or is one of Grafana's own)
    own = set(found) | set(BUILTIN_VARIABLES)
    for query in queries(path):
        assert variable_names(query.expr) <= own, query.where


def test_substitute_fills_in_the_other_variables_at_all() -> None:
    """The e2e tests give target and entry_point only: $team is "All" (``.*``)."""
    assert substitute('x{team=~"$team",target=~"$target"}', {"target": "a"}) == (
        'x{team=~".*",target=~"a"}'
    )
    with pytest.raises(KeyError):
        substitute('x{a=~"$no_such_variable"}', {})


def test_variables_follow_each_other() -> None:
    """target is offered for the selected teams, entry_point for the selected targets, and
    from the chatAllowed poll jobs: an entry point whose polls fail (its vendor series gone,
    its state unknown) stays selectable."""
    found = {v["name"]: v for v in variables(by_name()[CONTACT_CENTER])}
    assert '"$team"' in variable_query(found["target"])
    assert "$target" in variable_query(found["entry_point"])
    assert variable_query(found["entry_point"]).startswith(
        'label_values(ccwatch_poll_success{endpoint="chatAllowed",'
    )
    assert variable_query(found["team"]) == "label_values(ccwatch_open, team)"


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


def test_queries_follow_the_team_variable() -> None:
    """In a dashboard with a team variable, every selector of a ccwatch series that follows
    the target variable follows the team variable too (``target:`` series, aggregated by
    target, carry no static labels)."""
    for path in dashboard_files():
        if "team" not in {v["name"] for v in variables(load(path))}:
            continue
        for query in queries(path):
            for name, matchers in re.findall(r"\b([a-zA-Z_][\w:]*)\{([^}]*)\}", query.expr):
                if name.startswith("target:") or 'target=~"$target"' not in matchers:
                    continue
                assert 'team=~"$team"' in matchers, f"{query.where}: {name}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_friendly_names(path: Path) -> None:
    """Legends naming a target name its static labels too (team, site: empty where a target
    has none), and the query keeps them: an aggregation ``by`` target keeps team and site."""
    for panel in panels(load(path)):
        for target in panel.get("targets", []):
            where = f"{path.name} panel {panel['id']} ({panel['title']}) {target['refId']}"
            if "{{target}}" not in target.get("legendFormat", ""):
                continue
            assert "{{team}}" in target["legendFormat"], where
            assert "{{site}}" in target["legendFormat"], where
            for labels in re.findall(r"\bby\s*\(([^)]*)\)", target["expr"]):
                assert {"team", "site"} <= {label.strip() for label in labels.split(",")}, where


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_stats_never_show_a_value_from_before_an_outage(path: Path) -> None:
    """No panel reduces with ``lastNotNull`` (it shows the last value before the data
    stopped, e.g. green during a full outage). Stats read instant queries, reduce with
    ``last`` and show "unknown" when there is no value."""
    assert "lastNotNull" not in path.read_text(encoding="utf-8")
    for panel in panels(load(path)):
        if panel["type"] != "stat":
            continue
        where = f"{path.name} panel {panel['id']} ({panel['title']})"
        assert panel["options"]["reduceOptions"]["calcs"] == ["last"], where
        for target in panel["targets"]:
            assert target["instant"] is True, where
            assert target["range"] is False, where
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["noValue"] == UNKNOWN, where
        assert any(
            m["type"] == "special"
            and m["options"]["match"] == "null+nan"
            and m["options"]["result"]["text"] == UNKNOWN
            for m in defaults["mappings"]
        ), where


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_status_panels_show_unknown(path: Path) -> None:
    """State timelines show "unknown" without data; those of vendor series that disappear
    when their poll fails compute it: -1 for each subject whose poll fails (its
    ``ccwatch_poll_success`` is 0), mapped to "unknown", never a green state."""
    timelines = [p for p in panels(load(path)) if p["type"] == "state-timeline"]
    for panel in timelines:
        where = f"{path.name} panel {panel['id']} ({panel['title']})"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["noValue"] == UNKNOWN, where
        exprs = [t["expr"] for t in panel["targets"]]
        if not any(VANISHING.search(e) for e in exprs):
            continue
        mapped = {k: v for m in defaults["mappings"] for k, v in m["options"].items()}
        assert mapped["-1"]["text"] == UNKNOWN, where
        assert mapped["-1"]["color"] not in {"green", "semi-dark-green", "dark-green"}, where
        for expr in exprs:
            assert re.search(
                r"\bor on\([^)]*\)\s*group without \(instance, endpoint\) "
                r'\(ccwatch_poll_success\{endpoint="\w+",[^}]*\} == 0\) \* -1$',
                expr,
            ), where


def test_the_unknown_count() -> None:
    """The overview counts entry points whose state is unknown: polled in the last hour, no
    current chatAllowed result; 0 (not empty) when all are known, so that a healthy setup
    shows a green 0; empty ("unknown") only when no entry point has been polled at all."""
    title = "Entry points in unknown state"
    [panel] = [p for p in panels(by_name()[CONTACT_CENTER]) if p["title"] == title]
    [target] = panel["targets"]
    assert 'last_over_time(ccwatch_poll_success{endpoint="chatAllowed",' in target["expr"]
    assert "unless on(job, target, entry_point) ccwatch_ece_chat_allowed{" in target["expr"]
    assert re.search(r"\nor 0 \* count\(ccwatch_ece_chat_allowed\{[^}]*\}\)$", target["expr"])
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["color"] == "green"
    assert steps[1] == {"color": "red", "value": 1}


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
    budgets = [e for e in exprs if "ece_availability_objective" in e and e.startswith("1 - ")]
    assert budgets
    for budget in budgets:
        assert "ccwatch:ece_availability:ratio30d" in budget
        assert "on(job, target) group_left()" in budget
    # the table: every window per entry point
    for window in ("1h", "1d", "7d", "30d"):
        assert any(e.startswith(f"ccwatch:ece_availability:ratio{window}{{") for e in exprs)
    # one panel per owner: the supervisors' staffed availability and budget beside the
    # SRE's technical ones
    assert any(e.startswith("ccwatch:ece_staffed_availability:ratio30d{") for e in exprs)
    staffed = [
        e for e in exprs if "ece_staffed_availability_objective" in e and e.startswith("1 - ")
    ]
    assert staffed
    for budget in staffed:
        assert "ccwatch:ece_staffed_availability:ratio30d" in budget
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
    # the dashboards do not depend on this uid (they use their datasource variable, whose
    # default is Grafana's default data source: this one)
    assert source["uid"] == PROVISIONED_UID
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"


def test_dashboard_provisioning() -> None:
    data = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ccwatch.yml").read_text())
    assert data["apiVersion"] == 1
    [provider] = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
