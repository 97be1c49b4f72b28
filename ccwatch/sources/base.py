"""What a source module declares, and what the core needs from it.

A source module (``ccwatch/sources/<vendor>.py``) provides:

- its config model, a :class:`~ccwatch.config.TargetConfig` subclass with
  ``source: Literal["<name>"]``;
- its metric families (:class:`Family`), rendered by the core at scrape time;
- pure parsers: response bytes in, a typed reading out, no I/O;
- a ``jobs`` function that turns one configured target into poll jobs, each an
  ``endpoint`` name, its subject labels and a coroutine function that makes the
  requests through the shared :class:`~ccwatch.http.TargetClient` and parses them.

A source never sleeps, retries or catches time-outs: the scheduler owns time and failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccwatch.config import TargetConfig
from ccwatch.exposition import Family as Family  # re-exported for source modules
from ccwatch.exposition import escape_label_value as escape_label_value  # re-exported
from ccwatch.http import TargetClient

#: One sample of a reading: (family name, extra label text, value). The extra label text
#: is ``""`` or starts with a comma, e.g. ``',state="accepting"'``; the core prepends the
#: job's own labels (``target`` and the source's subject labels).
Sample = tuple[str, str, float]


class Reading(Protocol):
    """A typed result of one successful poll."""

    def samples(self) -> Iterable[Sample]:
        """The vendor samples this reading exports."""
        ...

    def watched(self) -> Mapping[str, str]:
        """Watched state: a change between two polls is logged (``state_changed``)."""
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
    jobs: Callable[[Any, TargetClient], list[JobSpec]]
    #: Extra headers every request of this source carries.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Makes the per-target client (e.g. to add OAuth2); ``None`` uses the shared one.
    client_factory: Callable[[Any, TargetClient], TargetClient] | None = None
    #: Samples that outlive any one poll (e.g. a per-target counter of token failures),
    #: read at scrape time: (family, complete label text, value).
    scrape_samples: Callable[[], Iterable[tuple[str, str, float]]] | None = None


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
            extra = f',{self.label}="{escape_label_value(state)}"'
            yield (self.family, extra, 1.0 if state == current else 0.0)

    def samples(self, current: str | None) -> tuple[Sample, ...]:
        """The samples with ``current`` set; a state outside the set is added with value 1."""
        cached = self._samples.get(current)
        if cached is not None:
            return cached
        assert current is not None
        extra = f',{self.label}="{escape_label_value(current)}"'
        return (*self._samples[None], (self.family, extra, 1.0))
