"""What a source module declares, and what the core needs from it.

A source module (``ccwatch/sources/<vendor>.py``) provides:

- its config model, a :class:`~ccwatch.config.TargetConfig` subclass with
  ``source: Literal["<name>"]``;
- its metric families (:class:`Family`), rendered by the core at scrape time;
- pure parsers: response bytes in, a typed reading out, no I/O;
- a ``jobs`` function that turns one configured target into poll jobs, each an
  ``endpoint`` name, its subject labels and a coroutine function that makes the
  requests through the shared :class:`~ccwatch.http.TargetClient` and parses them;
- optionally, a ``state`` factory: state that outlives a poll (a probe verdict, a token
  cache and its failure counter) lives in one object per target, made and owned by the
  daemon, handed to ``jobs`` and ``client_factory``, read at scrape time through its
  ``samples()`` and dropped when the target is removed.

A reading may also have a ``describe() -> str`` method: the reading in words for the
status page (``"4 free chat slots"``); without one, the page words its values.

Readings and states yield samples as data; the core checks them against the families'
declared labels and renders the text. A source never sleeps, retries or catches
time-outs: the scheduler owns time and failure.

A source does not cap the strings it reads either: the core does, in one place, for
every source. A label value (in samples and in ``watched()``) longer than
:data:`MAX_LABEL_CHARS` is cut to that length ending in ``…``, on /metrics, in events,
on the status page and in the targets API; a failure's detail, an event's field and
``describe()`` are cut the same way at :data:`MAX_DETAIL_CHARS` (see
:func:`ccwatch.collector.cap`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccwatch.collector import MAX_DETAIL_CHARS as MAX_DETAIL_CHARS  # re-exported
from ccwatch.collector import MAX_LABEL_CHARS as MAX_LABEL_CHARS  # re-exported
from ccwatch.config import TargetConfig
from ccwatch.exposition import Family as Family  # re-exported for source modules
from ccwatch.http import TargetClient

#: One sample as data: (family name, label values, value). The values are those of the
#: family's labels that follow the ones the core fills in: after ``target`` and the
#: source's subject labels for a reading, after ``target`` for a state. For example
#: ``("ccwatch_ece_eligibility", ("accepting",), 1.0)``.
Sample = tuple[str, tuple[str, ...], float]
NO_LABELS: tuple[str, ...] = ()


class Reading(Protocol):
    """A typed result of one successful poll."""

    def samples(self) -> Iterable[Sample]:
        """The vendor samples this reading exports."""
        ...

    def watched(self) -> Mapping[str, str]:
        """Watched state: a change between two polls is logged (``state_changed``)."""
        ...


class SourceState(Protocol):
    """A target's state that outlives its polls, owned by the daemon."""

    def samples(self) -> Iterable[Sample]:
        """Scrape-time samples; their label values follow ``target``."""
        ...

    def reconfigure(self, target: Any) -> None:
        """The target's config changed on reload (same name, same source)."""
        ...


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One poll job: what to poll (``poll``) and how it is labelled."""

    endpoint: str
    subject: Mapping[str, str]
    poll: Callable[[], Awaitable[Reading]]


@dataclass(frozen=True)
class Source:
    """A registry entry: everything the core needs to know about one vendor API."""

    name: str
    config_model: type[TargetConfig]
    #: Labels that identify what a job polls (``entry_point``, ``customer_id``, ...).
    subject_labels: tuple[str, ...]
    families: tuple[Family, ...]
    #: (target config, its client, its state or None) -> the target's poll jobs
    jobs: Callable[[Any, TargetClient, Any], list[JobSpec]]
    #: Extra headers every request of this source carries.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Makes the per-target client (e.g. to add OAuth2) from the shared one and the
    #: target's state; ``None`` uses the shared one.
    client_factory: Callable[[Any, TargetClient, Any], TargetClient] | None = None
    #: Makes a target's :class:`SourceState`; ``None``: the source keeps none.
    state: Callable[[Any], SourceState] | None = None


class StateSet:
    """A state-set metric: one sample per state, 1 on the current state, 0 on the others.

    The samples for each possible current state are built once, up front.
    """

    def __init__(self, family: str, label: str, states: Iterable[str]) -> None:
        self.family = family
        self.label = label
        self.states = tuple(states)
        self._samples = {current: tuple(self._build(current)) for current in (*self.states, None)}

    def _build(self, current: str | None) -> Iterable[Sample]:
        for state in self.states:
            yield (self.family, (state,), 1.0 if state == current else 0.0)

    def samples(self, current: str | None) -> tuple[Sample, ...]:
        """The samples with ``current`` set; a state outside the set is added with value 1."""
        cached = self._samples.get(current)
        if cached is not None:
            return cached
        assert current is not None
        return (*self._samples[None], (self.family, (current,), 1.0))
