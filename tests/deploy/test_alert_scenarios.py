"""Pages an on-call SRE can trust: the shipped rules and Alertmanager inhibit rules, run
through outage scenarios at a 1-minute evaluation with 15 s polls and scrapes.

Each scenario is one day of one ECE entry point, open 08:00-18:00 with a 5-minute opening
grace, modelled in :mod:`tests.deploy.scenarios`: promtool evaluates the shipped rules over
it, the shipped ``inhibit_rules`` are applied minute by minute, and a *page* is a critical
SRE alert that is delivered at a minute where it was not the minute before. Every scenario
says how many pages it may make and by when; the staffing scenarios also say which
supervisors' alerts must reach the supervisors.

Needs ``promtool`` on PATH (Debian: ``apt-get install prometheus``; ``.ci/run`` does it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from ccwatch.sources.ece import ENDPOINTS
from tests.deploy.scenarios import (
    Outcome,
    Scenario,
    World,
    clock,
    delivered,
    hm,
    inhibitions,
    pages,
)

OPEN, CLOSE = hm("08:00"), hm("18:00")


def day(t: int) -> World:
    """A healthy day: ECE opens with the calendar, agents log in within the grace, and
    ECE closes the entry point (entry_point_inactive) at closing time."""
    open_ = OPEN <= t < CLOSE
    return World(open=open_, allowed=open_, agents=OPEN + 120 <= t < CLOSE)


def between(start: str, end: str) -> Callable[[int], bool]:
    a, b = hm(start), hm(end)
    return lambda t: a <= t < b


def staffing(
    when: Callable[[int], bool], reason: str = "agent_not_available"
) -> Callable[[int], World]:
    def world(t: int) -> World:
        w = day(t)
        if when(t) and w.allowed:
            if reason == "agent_not_available":
                return replace(w, allowed=False, reason=reason, agents=False)
            return replace(w, allowed=False, reason=reason, queue=15, wait=600.0)
        return w

    return world


def technical(
    when: Callable[[int], bool], reason: str = "entry_point_inactive"
) -> Callable[[int], World]:
    def world(t: int) -> World:
        w = day(t)
        return replace(w, allowed=False, reason=reason) if when(t) and w.open else w

    return world


def every_other_minute(start: str, end: str, period: int = 60) -> Callable[[int], bool]:
    a, b = hm(start), hm(end)
    return lambda t: a <= t < b and (t - a) // period % 2 == 0


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    #: the alerts that must page, in order, each no later than its deadline
    pages: tuple[tuple[str, str], ...] = ()
    #: the supervisors' alerts that must reach them
    supervisors: frozenset[str] = frozenset()


def _ece_down(t: int) -> World:
    w = day(t)
    return replace(w, failing=frozenset(ENDPOINTS)) if hm("10:00") <= t < hm("10:40") else w


def _one_failed_poll(t: int) -> World:
    w = day(t)
    return (
        replace(w, failing=frozenset({"chatAllowed"})) if hm("10:00") <= t < hm("10:00:15") else w
    )


def _cold_start(t: int) -> World:
    w = staffing(between("08:10", "08:11"))(t)
    return replace(w, prometheus=t >= hm("08:10"))


def _unscraped(t: int) -> World:
    return replace(day(t), scraped=not hm("10:00") <= t < hm("10:20"))


def _restart(t: int) -> World:
    w = staffing(between("10:00", "10:30"))(t)
    return replace(w, ccwatch=not hm("10:10") <= t < hm("10:10:30"))


SUPERVISED_CLOSURE = frozenset({"CcwatchEceEntryPointClosedStaffing"})

CASES = [
    Case(Scenario("a healthy day through closing time", hm("07:00"), hm("19:00"), day)),
    Case(
        Scenario(
            "a 2-minute agent gap right after the grace",
            hm("07:00"),
            hm("09:30"),
            staffing(between("08:05", "08:07")),
        )
    ),
    Case(
        Scenario(
            "no agents for an hour", hm("07:00"), hm("12:00"), staffing(between("10:00", "11:00"))
        ),
        supervisors=SUPERVISED_CLOSURE,
    ),
    Case(
        Scenario(
            "the queue full for 40 minutes",
            hm("07:00"),
            hm("12:00"),
            staffing(between("10:00", "10:40"), "queue_depth_reached"),
        ),
        supervisors=SUPERVISED_CLOSURE,
    ),
    Case(
        Scenario(
            "agents flapping every 2 minutes for an hour",
            hm("07:00"),
            hm("12:00"),
            staffing(every_other_minute("10:00", "11:00", period=120)),
        ),
        supervisors=frozenset({"CcwatchEceStaffedAvailabilityBudgetBurnFast"}),
    ),
    Case(
        Scenario(
            "a 3-minute technical closure",
            hm("07:00"),
            hm("12:00"),
            technical(between("10:00", "10:03")),
        )
    ),
    Case(
        Scenario(
            "a technical closure 2 minutes before closing time",
            hm("15:00"),
            hm("19:00"),
            technical(between("17:58", "18:00")),
        )
    ),
    Case(Scenario("one failed chatAllowed poll", hm("07:00"), hm("12:00"), _one_failed_poll)),
    Case(
        Scenario(
            "a Prometheus cold start into a 1-minute staffing gap",
            hm("08:10"),
            hm("10:00"),
            _cold_start,
        )
    ),
    Case(
        Scenario("ccwatch unscraped for 20 minutes", hm("07:00"), hm("12:00"), _unscraped),
        pages=(("CcwatchScrapeDown", "10:05"),),
    ),
    Case(
        Scenario("a ccwatch restart during a staffing closure", hm("07:00"), hm("12:00"), _restart),
        supervisors=SUPERVISED_CLOSURE,
    ),
    Case(
        Scenario(
            "a technical closure of 40 minutes",
            hm("07:00"),
            hm("12:00"),
            technical(between("10:00", "10:40")),
        ),
        pages=(("CcwatchEceEntryPointClosed", "10:10"),),
    ),
    Case(
        Scenario(
            "ECE answering 500 on every endpoint for 40 minutes",
            hm("07:00"),
            hm("12:00"),
            _ece_down,
        ),
        pages=(("CcwatchEceEntryPointStateUnknown", "10:12"),),
    ),
    Case(
        Scenario(
            "flapping inactive every other minute from 10:00 to 11:00",
            hm("07:00"),
            hm("12:30"),
            technical(every_other_minute("10:00", "11:00")),
        ),
        pages=(("CcwatchEceAvailabilityBudgetBurnFast", "10:30"),),
    ),
]

#: the restart scenario may page for the restart itself, and for nothing else
MAY_PAGE = {"a ccwatch restart during a staffing closure": {"CcwatchScrapeDown"}}


def describe(outcome: Outcome) -> str:
    return ", ".join(map(str, outcome.pages)) or "no page"


@pytest.mark.parametrize("case", CASES, ids=[c.scenario.name for c in CASES])
def test_scenario_pages(case: Case) -> None:
    outcome = pages(case.scenario)
    allowed = MAY_PAGE.get(case.scenario.name, set())
    unexpected = [p for p in outcome.pages if p.alertname not in allowed]
    expected = [name for name, _ in case.pages]
    assert [p.alertname for p in unexpected] == expected, describe(outcome)
    for page, (_, deadline) in zip(unexpected, case.pages, strict=True):
        assert page.at <= hm(deadline), f"{page} is later than {deadline}"
    assert set(outcome.supervisors) >= case.supervisors, (
        f"the supervisors heard of {sorted(outcome.supervisors)}"
    )


def test_the_model_fires_what_it_should() -> None:
    """The model itself: a 40-minute closure fires the closure alert (the rules see the
    scenario), and the supervisors' alerts of a staffing closure start within the hour."""
    outcome = pages(CASES[2].scenario)
    first = outcome.supervisors["CcwatchEceEntryPointClosedStaffing"]
    assert hm("10:05") <= first <= hm("10:07"), clock(first)
    assert all(
        not any(a["alertname"] == "CcwatchEceEntryPointClosedStaffing" for a in alerts)
        for minute, alerts in outcome.firing.items()
        if minute >= hm("11:02")
    )


def test_the_inhibitions_are_alertmanagers() -> None:
    """The scenarios apply the inhibit rules as Alertmanager does: every inhibition case
    that test_alertmanager.py checks against a real Alertmanager comes out the same."""
    from tests.deploy.test_alertmanager import INHIBITION_CASES

    rules = inhibitions()
    for case, (sources, expected) in INHIBITION_CASES.items():
        alerts = [*sources, *(labels for labels, _ in expected)]
        out = delivered(alerts, rules)
        for labels, inhibited in expected:
            assert (labels not in out) == inhibited, (case, labels)
