"""The Grafana dashboards as data: their panel queries, with template variables filled in.

Used by tests/deploy/test_dashboards.py (the queries parse as PromQL) and by
tests/e2e/test_prometheus_e2e.py (the queries return data from a real Prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
#: The dashboards' data source variable: every Prometheus reference (panels, targets,
#: annotations, template variables) is ``{"type": "prometheus", "uid": "${datasource}"}``,
#: so the dashboards work with any Prometheus data source, whatever its uid.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE_UID = "${" + DATASOURCE_VARIABLE + "}"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}

#: Grafana's built-in interval variables, as it would fill them in.
BUILTIN_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

# $name, ${name} and ${name:format}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.S)


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard: a panel target or a template variable's selector."""

    dashboard: str
    panel_id: int | None  # None for a template variable
    title: str
    ref: str
    expr: str

    @property
    def where(self) -> str:
        if self.panel_id is None:
            return f"{self.dashboard}: variable {self.title}"
        return f"{self.dashboard}: panel {self.panel_id} ({self.title}) target {self.ref}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    templating: list[dict[str, Any]] = dashboard.get("templating", {}).get("list", [])
    return templating


def variable_query(variable: Mapping[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        return str(query.get("query", ""))
    return str(query or "")


def queries(path: Path) -> list[Query]:
    """The panel targets' expressions and the variables' label_values() selectors."""
    dashboard = load(path)
    out: list[Query] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            out.append(
                Query(
                    path.name, panel["id"], panel.get("title", ""), target["refId"], target["expr"]
                )
            )
    for variable in variables(dashboard):
        if variable.get("type") != "query":
            continue
        match = _LABEL_VALUES.match(variable_query(variable))
        if match and match.group(1):
            out.append(Query(path.name, None, variable["name"], "", match.group(1)))
    return out


def all_values() -> dict[str, str]:
    """Each multi-value variable of every dashboard at "All": its allValue (``.*``)."""
    found: dict[str, str] = {}
    for path in dashboard_files():
        for variable in variables(load(path)):
            if variable.get("includeAll"):
                found[variable["name"]] = variable.get("allValue") or ".*"
    return found


def variable_names(expr: str) -> set[str]:
    """The template variables ``expr`` uses, Grafana's own (``$__interval``) included."""
    return {match.group(1) or match.group(2) for match in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every template variable replaced; an unknown variable is an error.

    ``values`` wins; a dashboard variable not in it (``$team``, say, when only target and
    entry_point are given) is filled in at "All", as Grafana does by default.
    """
    known = {**BUILTIN_VARIABLES, **all_values(), **values}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return known[name]

    return _VARIABLE.sub(replace, expr)
