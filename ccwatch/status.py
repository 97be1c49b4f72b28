"""What the status page and ``/api/v1/targets`` show: a view of the daemon's targets and jobs.

Nothing here keeps state: :class:`Status` is a snapshot of the daemon taken per request
(its jobs are the live objects, read and never written), and every function turns it
into data. The HTML page (:mod:`ccwatch.page`) and the JSON API (:func:`api_chunks`)
both read it through the helpers below, so they always agree.

Both work in steps: a generator that walks the jobs yields after every
:data:`STEP_JOBS` of them (and the API after every :data:`API_STEP_JOBS` it encodes), and
the web layer lets the event loop run polls whenever the steps have held it for a few
milliseconds, so a page over 50,000 jobs never holds the loop for longer than that.

Health, as Prometheus's targets API words it: ``unknown`` before a job's first poll,
``down`` while its last poll failed or its values are too old to serve (``stale``: the
target is held or ccwatch is overloaded), ``up`` otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import orjson

from ccwatch.collector import MAX_DETAIL_CHARS, cap
from ccwatch.http import redact_url as redact_url  # re-exported for the page
from ccwatch.scheduler import Job, TargetGroup
from ccwatch.sources.base import Reading

HEALTH_UP: Final = "up"
HEALTH_DOWN: Final = "down"
HEALTH_UNKNOWN: Final = "unknown"
HEALTHS: Final = (HEALTH_UP, HEALTH_DOWN, HEALTH_UNKNOWN)
#: The reason shown for a job whose last poll succeeded but whose values went stale.
REASON_STALE: Final = "stale"
#: Jobs walked (counted, filtered) between two steps of a rendering generator: well under
#: a millisecond of work. The web layer lets polls run once a few steps have added up to
#: :data:`ccwatch.web.STEP_SECONDS`.
STEP_JOBS: Final = 1000
#: Jobs encoded as JSON between two steps of the API's answer (and at most one chunk).
API_STEP_JOBS: Final = 100


@dataclass(frozen=True)
class Status:
    """A snapshot of one daemon for one request."""

    version: str
    config_file: str
    started: float
    reload_ok: bool
    reload_time: float
    reload_error: str | None
    groups: Sequence[TargetGroup]
    events: Sequence[Mapping[str, Any]]
    #: the daemon's clocks when the snapshot was taken: Unix time and event-loop time
    wall: float = field(default_factory=time.time)
    loop: float = field(default_factory=time.monotonic)

    def loop_to_wall(self, when: float) -> float:
        return self.wall + (when - self.loop)


# --------------------------------------------------------------------------- per job


def health(job: Job) -> str:
    if not job.attempted:
        return HEALTH_UNKNOWN
    if job.failures or job.stale:
        return HEALTH_DOWN
    return HEALTH_UP


def reason(job: Job) -> str:
    """Why a down job is down (``stale`` when its last poll succeeded); "" otherwise."""
    if job.failures:
        return job.last_reason or ""
    return REASON_STALE if job.stale else ""


def error_text(job: Job, status: Status) -> str:
    """The detail of a down job's failure, or why its values went stale; "" otherwise."""
    if job.failures:
        return job.last_error or ""
    if job.stale:
        group = job.group
        if group is not None and group.hold_until is not None and group.hold_until > status.loop:
            return (
                f"not polled: the server asked to wait ({group.hold_reason}) "
                f"until {rfc3339(group.hold_wall)}"
            )
        return f"no successful poll for over {2 * job.interval:g}s (ccwatch overloaded or stalled)"
    return ""


def next_poll(job: Job, status: Status) -> float | None:
    """Unix time of the job's next poll; None while one is in flight or waits for a slot."""
    if job.task is not None or job.queued or job.slot < 0:
        return None
    due = job.due
    group = job.group
    if group is not None and group.hold_until is not None and group.hold_until > due:
        due = group.hold_until
    return status.loop_to_wall(due)


def subject_text(job: Job) -> str:
    return ", ".join(f"{name}={value}" for name, value in job.subject.items())


# --------------------------------------------------------------------------- per target


def interval(group: TargetGroup) -> float:
    if group.timing is not None:
        return group.timing[0]
    return group.jobs[0].interval if group.jobs else 0.0


def held_until(group: TargetGroup, status: Status) -> float | None:
    """Unix time a server's Retry-After holds the target until; None when not held."""
    if group.hold_until is not None and group.hold_until > status.loop:
        return group.hold_wall
    return None


@dataclass
class Counts:
    """Jobs by health."""

    up: int = 0
    down: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down + self.unknown

    def tally(self, job: Job) -> str:
        """Count ``job`` under its health; return that health."""
        state = health(job)
        if state == HEALTH_UP:
            self.up += 1
        elif state == HEALTH_DOWN:
            self.down += 1
        else:
            self.unknown += 1
        return state

    def add(self, other: Counts) -> None:
        self.up += other.up
        self.down += other.down
        self.unknown += other.unknown


# --------------------------------------------------------------------------- readings


@lru_cache(maxsize=64)
def family_prefix(source: str) -> str:
    """``ccwatch_<source>_``, the prefix a source's family names start with."""
    return f"ccwatch_{source}_"


def short_name(family: str, source: str) -> str:
    """A family's name without ``ccwatch_<source>_``: ``ccwatch_ece_queue_depth`` ->
    ``queue_depth``. A source whose families use a shorter vendor prefix
    (``ccwatch_genesys_`` for ``genesys_services``) loses that prefix."""
    prefix = family_prefix(source)
    if family.startswith(prefix):
        return family[len(prefix) :]
    vendor = f"ccwatch_{source.split('_', 1)[0]}_"
    if family.startswith(vendor):
        return family[len(vendor) :]
    return family.removeprefix("ccwatch_")


def _number(value: float) -> float | int | None:
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def reading_values(reading: Reading, source: str) -> dict[str, Any]:
    """The reading's values under their families' short names.

    A family with labels beyond the target and subject (a state set, an info metric)
    becomes an object keyed by its label value: ``{"eligibility": {"accepting": 1,
    "no_agent": 0, "queue_full": 0}}``.
    """
    out: dict[str, Any] = {}
    for family, values, value in reading.samples():
        name = short_name(family, source)
        number = _number(value)
        if values:
            key = values[0] if len(values) == 1 else ",".join(values)
            nested = out.get(name)
            if not isinstance(nested, dict):
                nested = out[name] = {}
            nested[key] = number
        else:
            out[name] = number
    return out


def describe(reading: Reading, source: str) -> str:
    """The reading in words: its own ``describe()`` if it has one (capped like every
    vendor string), else its values."""
    own = getattr(reading, "describe", None)
    if callable(own):
        return cap(str(own()), MAX_DETAIL_CHARS)
    parts: list[str] = []
    for name, value in reading_values(reading, source).items():
        words = name.replace("_", " ")
        if isinstance(value, dict):
            current = [key for key, v in value.items() if v == 1]
            if all(v in (0, 1) for v in value.values()):
                parts.append(f"{words}: {', '.join(current) if current else 'none'}")
            else:
                parts.append(f"{words}: " + ", ".join(f"{k} {v:g}" for k, v in value.items()))
        elif value is None:
            parts.append(f"{words} unknown")
        else:
            parts.append(f"{words} {value:g}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- times


@lru_cache(maxsize=4096)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def rfc3339(when: float | None) -> str | None:
    """Unix time as RFC 3339 in UTC with milliseconds (``2026-11-30T10:00:00.123Z``)."""
    if when is None:
        return None
    millis = round(when * 1000)
    second, ms = divmod(millis, 1000)
    return f"{_second(second)}.{ms:03d}Z"


# --------------------------------------------------------------------------- the API


def parse_health(value: str | None) -> str | None:
    """The ``health`` filter: None for all, else one of :data:`HEALTHS`; ValueError else."""
    if value is None or value == "":
        return None
    if value not in HEALTHS:
        raise ValueError(f"health must be one of {', '.join(HEALTHS)}, not {value[:40]!r}")
    return value


def job_json(job: Job, status: Status, source: str) -> dict[str, Any]:
    """One job as ``/api/v1/targets`` shows it."""
    reading = job.reading
    return {
        "endpoint": job.endpoint,
        "labels": dict(job.subject),
        "health": health(job),
        "lastPoll": rfc3339(job.last_poll),
        "lastPollDuration": job.last_duration if job.last_poll is not None else None,
        "lastSuccess": rfc3339(job.last_success),
        "lastReason": reason(job),
        "lastError": error_text(job, status),
        "consecutiveFailures": job.failures,
        "failingSince": rfc3339(job.failing_since),
        "nextPoll": rfc3339(next_poll(job, status)),
        "reading": reading_values(reading, source) if reading is not None else None,
    }


def _target_head(group: TargetGroup, status: Status) -> bytes:
    head = {
        "name": group.name,
        "source": group.source,
        "url": redact_url(group.url),
        "interval": interval(group),
        "heldUntil": rfc3339(held_until(group, status)),
        "heldReason": group.hold_reason if held_until(group, status) is not None else None,
    }
    # the object is left open: its jobs follow
    return orjson.dumps(head)[:-1] + b',"jobs":['


def api_chunks(
    status: Status, *, target: str | None = None, health_filter: str | None = None
) -> Iterator[bytes]:
    """``/api/v1/targets`` as chunks of JSON, at most :data:`API_STEP_JOBS` jobs each.

    ``target`` keeps one target; ``health_filter`` keeps the jobs of one health, and
    leaves out the targets with none.
    """
    yield b'{"status":"success","data":{"targets":['
    separator = b""
    parts: list[bytes] = []
    walked = 0
    for group in status.groups:
        if target is not None and group.name != target:
            continue
        opened = False
        for job in list(group.jobs):
            walked += 1
            if walked % STEP_JOBS == 0 or len(parts) >= API_STEP_JOBS:
                yield b"".join(parts)
                parts = []
            if health_filter is not None and health(job) != health_filter:
                continue
            encoded = orjson.dumps(job_json(job, status, group.source))
            if opened:
                parts.append(b"," + encoded)
            else:
                parts.append(separator + _target_head(group, status) + encoded)
                separator = b","
                opened = True
        if not opened and health_filter is None:
            parts.append(separator + _target_head(group, status))
            separator = b","
            opened = True
        if opened:
            parts.append(b"]}")
    parts.append(b"]}}")
    yield b"".join(parts)


__all__ = [
    "HEALTHS",
    "Counts",
    "Status",
    "api_chunks",
    "describe",
    "error_text",
    "health",
    "held_until",
    "interval",
    "job_json",
    "next_poll",
    "parse_health",
    "reading_values",
    "reason",
    "redact_url",
    "rfc3339",
    "short_name",
    "subject_text",
]
