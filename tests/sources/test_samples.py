"""Every source's samples fit the families it declares.

For every registered source, readings in every state they can take (parsed from the
spec samples and built directly) and the source's per-target states are checked with
:func:`ccwatch.collector.check_samples` against the source's own families: readings after
``target`` and the source's subject labels, states after ``target``. A source added to
:data:`ccwatch.sources.SOURCES` without cases here fails :func:`test_every_source_has_cases`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ccwatch.collector import SampleError, check_samples
from ccwatch.exposition import Family
from ccwatch.sources import SOURCES, context_service, ece, genesys_services, gms_probe, parse_config
from ccwatch.sources import alvaria_context_cookies as alvaria
from ccwatch.sources.base import Reading, Sample, Source, SourceState, StateSet
from tests.sources.test_genesys_services import strip_documentation_comments

FIXTURES = Path(__file__).parent.parent / "fixtures"
GENESYS_NOW = datetime(2009, 5, 7, 13, 5, 20, 157000, tzinfo=UTC)
#: a moment after the Alvaria sample setting expired and went stale
ALVARIA_NOW = datetime(2017, 7, 1, tzinfo=UTC).timestamp()


def fixture(source: str, name: str) -> bytes:
    return (FIXTURES / source / name).read_bytes()


@dataclass(frozen=True)
class Cases:
    """What one source's samples are checked on."""

    readings: list[Reading]
    #: per-target states, in the states they can take (None when the source keeps none)
    states: list[SourceState]


def target_of(data: dict[str, Any]) -> Any:
    return parse_config({"targets": [{"name": "t", "url": "http://127.0.0.1:1", **data}]}).targets[
        0
    ]


def ece_cases() -> Cases:
    samples = {
        "agentAvailability": "agentAvailability.xml",
        "capacity": "capacity.xml",
        "liveSessionStatus": "liveSessionStatus.xml",
        "checkEligibility": "checkEligibility.xml",
        "chatAllowed": "chatAllowed_false.xml",
    }
    readings: list[Reading] = [
        ece.PARSERS[endpoint](fixture("ece", name)) for endpoint, name in samples.items()
    ]
    readings.append(ece.parse_chat_allowed(fixture("ece", "chatAllowed_true.xml")))
    readings += [ece.AgentAvailability(True), ece.AgentAvailability(False), ece.Capacity(0)]
    readings += [ece.SessionStatus(0.0, 0), ece.SessionStatus(12.5, 7)]
    readings += [ece.Eligibility(state) for state in ece.ELIGIBILITY_STATES]
    readings.append(ece.ChatAllowed(True, None))
    readings += [ece.ChatAllowed(False, reason, reason) for reason in ece.BLOCKED_REASONS]
    return Cases(readings, [])


def context_service_cases() -> Cases:
    readings: list[Reading] = [
        context_service.parse_registration(fixture("context_service", "get_registered.xml")),
        context_service.Registration("registered", "https://cs.example.com/org/1"),
        context_service.Registration("registered", 'a "quoted"\\url\n'),
        context_service.Registration("registered"),
        context_service.Registration("notRegistered"),
        context_service.Registration("unknown"),
    ]
    return Cases(readings, [])


def genesys_cases() -> Cases:
    text = fixture("genesys_services", "customer_services_active.jsonc").decode()
    body = strip_documentation_comments(text).encode()
    readings: list[Reading] = [
        genesys_services.parse_active(body, GENESYS_NOW),
        genesys_services.parse_active(body, GENESYS_NOW, ["400", "billing"]),
        genesys_services.parse_active(b"[]", GENESYS_NOW, ["400"]),
        genesys_services.parse_completed(body),
        genesys_services.ActiveServices(0, 0.0),
        genesys_services.ActiveServices(3, 10.5, (("400", 2), ("billing", 1))),
        genesys_services.CompletedServices(0),
        genesys_services.CompletedServices(7),
    ]
    return Cases(readings, [])


def gms_cases() -> Cases:
    source = SOURCES[gms_probe.NAME]
    assert source.state is not None
    expected = ("waiting-for-agent", "connected")
    statuses = StateSet(gms_probe.SERVICE_STATUS, "status", expected)
    none = StateSet(gms_probe.SERVICE_STATUS, "status", ())
    readings: list[Reading] = [
        gms_probe.ProbeReading(0.2, None, None, none, frozenset()),
        gms_probe.ProbeReading(0.2, 0.1, "anything", none, frozenset()),
        *[
            gms_probe.ProbeReading(0.2, 0.1, status, statuses, frozenset(expected))
            for status in (*expected, "failed")
        ],
    ]
    states: list[SourceState] = []
    for verdict in (None, True, False):
        state = source.state(target_of({"source": "gms_probe", "gms_service": "request-chat"}))
        assert isinstance(state, gms_probe.ProbeState)
        state.success = verdict
        state.at = 0.0 if verdict is None else float("inf")  # fresh: a verdict from the future
        states.append(state)
    return Cases(readings, states)


def alvaria_cases() -> Cases:
    source = SOURCES[alvaria.NAME]
    assert source.state is not None
    readings: list[Reading] = [
        alvaria.parse_collection(fixture("alvaria_context_cookies", f"{c}.json"), c)
        for c in alvaria.COLLECTIONS
    ]
    settings = fixture("alvaria_context_cookies", "settings.json")
    readings.append(alvaria.parse_settings(settings, now=ALVARIA_NOW, stale_after=86400.0))
    readings += [alvaria.CollectionReading(c, 0) for c in alvaria.COLLECTIONS]
    readings.append(alvaria.SettingsReading(0, 0, 0))
    target = target_of(
        {
            "source": "alvaria_context_cookies",
            "org_id": "o",
            "api_key": "k",
            "oauth2": {"token_url": "http://127.0.0.1:1/t", "client_id": "c", "client_secret": "s"},
        }
    )
    fresh, failed = source.state(target), source.state(target)
    assert isinstance(failed, alvaria.TokenState)
    failed.tokens.failures = 3
    return Cases(readings, [fresh, failed])


#: Per registered source: how to build its cases. Every source must have an entry.
CASES: dict[str, Callable[[], Cases]] = {
    ece.NAME: ece_cases,
    context_service.NAME: context_service_cases,
    genesys_services.NAME: genesys_cases,
    gms_probe.NAME: gms_cases,
    alvaria.NAME: alvaria_cases,
}


def families_of(source: Source) -> dict[str, Family]:
    return {family.name: family for family in source.families}


def test_every_source_has_cases() -> None:
    assert set(CASES) == set(SOURCES), "add cases for every source in ccwatch.sources.SOURCES"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_samples_fit_the_declared_families(name: str) -> None:
    source = SOURCES[name]
    families = families_of(source)
    cases = CASES[name]()
    assert cases.readings
    assert bool(cases.states) is (source.state is not None)
    seen: set[str] = set()
    for reading in cases.readings:
        samples = list(reading.samples())
        assert samples, reading
        check_samples(families, samples, ("target", *source.subject_labels))
        seen.update(family for family, _, _ in samples)
    for state in cases.states:
        samples = list(state.samples())
        check_samples(families, samples, ("target",))
        seen.update(family for family, _, _ in samples)
    # between them, the readings and states feed every family the source declares
    assert seen == set(families)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_source_declares_each_family_once(name: str) -> None:
    names = [family.name for family in SOURCES[name].families]
    assert len(names) == len(set(names))
    assert all(n.startswith("ccwatch_") for n in names)


def all_samples(name: str) -> Iterable[tuple[Sample, tuple[str, ...]]]:
    """Every sample of a source's cases, with the prefix it is checked with."""
    source = SOURCES[name]
    cases = CASES[name]()
    for reading in cases.readings:
        for sample in reading.samples():
            yield sample, ("target", *source.subject_labels)
    for state in cases.states:
        for sample in state.samples():
            yield sample, ("target",)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_mistyped_family_name_is_refused(name: str) -> None:
    families = families_of(SOURCES[name])
    for (family, values, value), prefix in all_samples(name):
        for wrong in (family + "s", family.removeprefix("ccwatch_"), family.upper()):
            with pytest.raises(SampleError, match="no such metric family"):
                check_samples(families, [(wrong, values, value)], prefix)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_a_wrong_number_of_label_values_is_refused(name: str) -> None:
    families = families_of(SOURCES[name])
    for (family, values, value), prefix in all_samples(name):
        wrong_values = [(*values, "extra")]
        if values:
            wrong_values.append(values[:-1])
        for wrong in wrong_values:
            with pytest.raises(SampleError, match="values"):
                check_samples(families, [(family, wrong, value)], prefix)
        # a label value is a string
        if values:
            with pytest.raises(SampleError, match="values"):
                check_samples(families, [(family, (*values[:-1], 1), value)], prefix)  # type: ignore[arg-type]


def test_the_prefix_is_part_of_the_check() -> None:
    families = families_of(SOURCES[ece.NAME])
    samples = list(ece.Eligibility("accepting").samples())
    check_samples(families, samples, ("target", "entry_point"))
    # as a state's samples (after target only) they lack the entry_point value
    with pytest.raises(SampleError):
        check_samples(families, samples, ("target",))
    # a prefix the family does not start with
    with pytest.raises(SampleError, match="do not start"):
        check_samples(families, samples, ("target", "customer_id"))


def test_another_sources_families_do_not_fit() -> None:
    sample = next(iter(ece.Capacity(4).samples()))
    with pytest.raises(SampleError, match="no such metric family"):
        check_samples(families_of(SOURCES[genesys_services.NAME]), [sample], ("target",))


def test_a_value_is_a_number() -> None:
    families = families_of(SOURCES[ece.NAME])
    check_samples(families, [(ece.AVAILABLE_SLOTS, (), 4)], ("target", "entry_point"))
    with pytest.raises(SampleError, match="is not a number"):
        check_samples(families, [(ece.AVAILABLE_SLOTS, (), "4")], ("target", "entry_point"))  # type: ignore[list-item]
