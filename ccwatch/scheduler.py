"""The one place that owns time and failure.

Every poll job repeats at its interval. First polls are spread over the interval (by a
stable hash of the job, so restarts keep the phase) to avoid a thundering herd. Each poll
runs under a total timeout; a job never has two polls in flight; after consecutive
failures a job backs off exponentially (1x, 2x, then 4x its interval at most). A 429 or
503 with ``Retry-After`` holds back every job of that target until it has passed, for at
most the target's ``max_retry_after``. A global cap limits how many polls are in flight
at once; polls over the cap wait in a FIFO and count as delayed.

Freshness: no vendor value is served older than twice its job's interval. A job whose
last success is older than that (its target is held, ccwatch is overloaded, the loop
stalled) loses its vendor series and reads ``ccwatch_poll_success`` 0 until it succeeds
again. :meth:`Scheduler.expire_stale` enforces this; the daemon calls it before every
scrape as well as once a second, because a stalled loop runs no timer.

A reload (:meth:`Scheduler.update`) never stops the scheduler: unchanged targets keep
their jobs as they are, polls in flight included; changed jobs take their new
definition in place and keep their phase and state; removed jobs are cancelled and their
series dropped; new jobs start spread over their interval.

Timers live on a wheel of 20 ms slots: one ``loop.call_at`` per slot rather than per
job, which batches the work of each event-loop iteration and keeps the loop's timer heap
small. Poll time-outs use a second wheel the same way. Each poll runs as a short-lived
task; no task sleeps per job, so 50,000 jobs cost a few megabytes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from ccwatch.collector import (
    MAX_DETAIL_CHARS,
    MAX_LABEL_CHARS,
    CappedReading,
    JobRenderer,
    MetricStore,
    cap,
    cap_fields,
)
from ccwatch.errors import REASON_INTERNAL, PollError, TimeoutFailure
from ccwatch.logs import EventHistory
from ccwatch.redact import PUBLIC, Redactor
from ccwatch.sources.base import Reading

log = structlog.get_logger("ccwatch.scheduler")

#: Backoff multipliers after 1, 2, 3+ consecutive failures.
BACKOFF = (1.0, 2.0, 4.0)
#: The default longest hold a server's ``Retry-After`` can set (``max_retry_after``).
MAX_RETRY_AFTER = 300.0
#: First polls are spread over min(interval, this), so long intervals still start soon.
MAX_INITIAL_SPREAD = 60.0
#: A vendor value older than this many of its job's intervals is never served.
FRESH_INTERVALS = 2.0
#: Seconds between two freshness sweeps on the loop (scrapes sweep as well).
SWEEP_EVERY = 1.0
#: Transition events kept for ``/logs``, at most.
HISTORY = 500
#: ... and at most this many bytes of them, as JSON lines (each field is capped at
#: collector.MAX_DETAIL_CHARS; the oldest events go first).
HISTORY_BYTES = 1024 * 1024
#: Distinct watched states kept as shared dicts (see Scheduler._shared_watched).
MAX_SHARED_STATES = 10_000
#: Width of a timer-wheel slot in seconds.
RESOLUTION = 0.02
#: First polls of jobs sharing an interval start on a grid of phases with about this many
#: jobs each, so a small installation wakes once for a handful of polls instead of once
#: per poll (each wake-up of an idle process costs more than the poll's own work); a
#: large one keeps a phase per timer slot.
PHASE_BATCH = 16


async def _removed() -> Reading:
    """The poll of a job removed by a reload; never called."""
    raise PollError("removed by a reload")


class TargetGroup:
    """One configured target: its jobs, its definition, and its ``Retry-After`` hold.

    ``shape`` is what the jobs are built from (the target's configuration, its body cap)
    and ``timing`` their interval, timeout and ``max_retry_after``; both are compared
    with ``==`` on reload. A group whose shape is unchanged keeps its jobs (a new timing
    is applied to them in place); a new shape rebuilds them.
    """

    __slots__ = (
        "hold_reason",
        "hold_until",
        "hold_wall",
        "jobs",
        "key",
        "labels",
        "name",
        "redactor",
        "shape",
        "source",
        "timing",
        "url",
    )

    def __init__(
        self,
        name: str,
        *,
        url: str = "",
        source: str = "",
        shape: object = None,
        timing: tuple[float, float, float] | None = None,
        jobs: Iterable[Job] = (),
        labels: str = "",
        redactor: Redactor = PUBLIC,
    ) -> None:
        self.name = name
        #: the target's secrets: a failure's detail is redacted with it before it is kept
        #: or logged
        self.redactor = redactor
        #: the target's static labels as text (``collector.static_labels_text``)
        self.labels = labels
        self.url = url
        self.source = source
        self.shape = shape
        self.timing = timing
        #: kept as the very list when given one: a retimed group shares its jobs' list
        self.jobs = jobs if isinstance(jobs, list) else list(jobs)
        self.key = 0  # the metric store key of its target-level series; set by the scheduler
        #: Loop time before which none of its jobs is polled (a server's Retry-After).
        self.hold_until: float | None = None
        #: The same moment as Unix time, for ``ccwatch_target_hold_until_timestamp_seconds``.
        self.hold_wall = 0.0
        #: The reason of the answer that set the hold: ``rate_limited`` or ``http_status``.
        self.hold_reason: str | None = None


class Job:
    """One (target, subject, endpoint) poll job and its run-time state."""

    __slots__ = (
        "attempted",
        "deadline",
        "due",
        "endpoint",
        "errors",
        "failing_since",
        "failures",
        "families",
        "filled",
        "fresh_until",
        "group",
        "heap_until",
        "id",
        "interval",
        "last_duration",
        "last_error",
        "last_poll",
        "last_reason",
        "last_success",
        "max_retry_after",
        "poll",
        "poll_labels",
        "queued",
        "reading",
        "removed",
        "slot",
        "source",
        "stale",
        "stale_since",
        "static",
        "subject",
        "subject_labels",
        "target",
        "task",
        "timed_out",
        "timeout",
        "vendor_labels",
        "watched",
    )

    def __init__(
        self,
        *,
        id: int,
        source: str,
        target: str,
        endpoint: str,
        subject: Mapping[str, str],
        subject_labels: tuple[tuple[str, ...], tuple[str, ...]],
        interval: float,
        timeout: float,
        poll: Callable[[], Awaitable[Reading]],
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self.id = id
        self.source = source
        self.target = target
        self.endpoint = endpoint
        self.subject = subject
        self.interval = interval
        self.timeout = timeout
        self.max_retry_after = max_retry_after
        self.poll = poll
        self.group: TargetGroup | None = None
        # label texts are made by the renderer's bind(), only for jobs that are going to
        # run: a reload builds many jobs only to hand their definition to running ones
        #: (the source's subject labels, every source's): one pair shared by the jobs of
        #: a target
        self.subject_labels = subject_labels
        self.vendor_labels = ""
        self.poll_labels = ""
        self.static = ""
        self.filled = 0
        self.due = 0.0
        #: the timer-wheel slot the job is armed in (-1: none); entries of other slots
        #: that still name the job are stale and skipped
        self.slot = -1
        #: the time-out wheel slot of the poll in flight (-1: none)
        self.deadline = -1
        #: waiting in the FIFO for a free place under the concurrency cap
        self.queued = False
        self.task: asyncio.Task[None] | None = None
        self.timed_out = False
        self.removed = False
        self.attempted = False
        self.failures = 0
        self.failing_since: float | None = None
        self.last_reason: str | None = None
        #: the detail of the last failure (None while succeeding)
        self.last_error: str | None = None
        #: Unix time the last completed poll started, and how long it took
        self.last_poll: float | None = None
        self.last_duration = 0.0
        self.last_success: float | None = None
        #: the reading of the last poll while its values are served (None otherwise)
        self.reading: Reading | None = None
        #: Loop time after which the last success's values are too old to serve.
        self.fresh_until = math.inf
        #: the expiry of the job's entry in the scheduler's freshness heap (inf: none)
        self.heap_until = math.inf
        self.stale = False
        self.stale_since: float | None = None
        self.watched: dict[str, str] | None = None
        self.families: tuple[str, ...] = ()
        #: failures by reason (None until the first)
        self.errors: dict[str, int] | None = None

    @property
    def key(self) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
        """The job's identity across reloads."""
        return (self.source, self.target, self.endpoint, tuple(sorted(self.subject.items())))

    @property
    def log_fields(self) -> dict[str, str]:
        return {"target": self.target, "endpoint": self.endpoint, **self.subject}

    def initial_offset(self) -> float:
        """A stable fraction of the interval, from a hash of the job's identity."""
        fraction = zlib.crc32(repr(self.key).encode()) / 2**32
        return fraction * min(self.interval, MAX_INITIAL_SPREAD)

    def first_due(self, now: float, epoch: float, phases: int = 0) -> float:
        """When the job first polls: ``now`` plus its :meth:`initial_offset`, or with
        ``phases`` > 0 the point of a lattice of ``phases`` points per spread, starting at
        ``epoch`` (the scheduler's start, so jobs added by a later reload join the same
        points), that its hash picks, within one spread of ``now``."""
        if phases <= 0:
            return now + self.initial_offset()
        spread = min(self.interval, MAX_INITIAL_SPREAD)
        grid = spread / phases
        first = epoch + math.ceil((now - epoch) / grid) * grid
        return first + math.floor(self.initial_offset() / spread * phases) * grid


def phase_counts(jobs: Iterable[Job]) -> dict[float, int]:
    """How many first-poll phases the jobs of each interval share (see PHASE_BATCH): one
    per PHASE_BATCH jobs, at most one per timer slot of the spread."""
    counts: dict[float, int] = {}
    for job in jobs:
        counts[job.interval] = counts.get(job.interval, 0) + 1
    return {
        interval: max(
            1,
            min(
                math.ceil(n / PHASE_BATCH),
                math.ceil(min(interval, MAX_INITIAL_SPREAD) / RESOLUTION),
            ),
        )
        for interval, n in counts.items()
    }


class Scheduler:
    """Runs jobs on their intervals; every outcome goes to the renderer (collector.JobRenderer)."""

    def __init__(
        self,
        jobs: Iterable[Job],
        store: MetricStore,
        *,
        max_concurrency: int,
        wall_clock: Callable[[], float] = time.time,
        history: EventHistory | None = None,
        groups: Iterable[TargetGroup] = (),
        render: JobRenderer | None = None,
    ) -> None:
        self.store = store
        #: writes every outcome's series; the scheduler only decides when and what
        self.render = JobRenderer(store) if render is None else render
        self.max_concurrency = max_concurrency
        self._wall = wall_clock
        #: The most recent transition events (also logged), newest last, for ``/logs``.
        self.history = EventHistory(HISTORY, HISTORY_BYTES) if history is None else history
        self.groups: dict[str, TargetGroup] = {}
        self._ids = itertools.count(1)
        self._group_keys = itertools.count(-1, -1)  # store keys apart from the jobs' ids
        for group in self._grouped(jobs, groups):
            self._adopt_group(group)
        self._waiting: deque[Job] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoch = 0.0  # loop time of start(): the origin of the first polls' phases
        # timer wheels: slot number -> jobs due in it, and the slot's loop handle
        self._slots: dict[int, list[Job]] = {}
        self._deadlines: dict[int, list[tuple[Job, asyncio.Task[None]]]] = {}
        # time-out slot -> polls of it still in flight: a slot whose polls all ended is
        # cancelled, so a poll that answers in time costs no wake-up at its deadline
        self._deadline_live: dict[int, int] = {}
        self._handles: dict[tuple[bool, int], asyncio.TimerHandle] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # (expiry, job id, job): at most one live entry per job, re-pushed lazily
        self._fresh: list[tuple[float, int, Job]] = []
        self._held: set[TargetGroup] = set()
        self._watched: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        self.in_flight = 0
        self.delayed_total = 0
        self.unattempted = sum(not job.attempted for job in self.jobs)
        self._was_ready = self.unattempted == 0
        self.polls_total = 0

    @staticmethod
    def _grouped(jobs: Iterable[Job], groups: Iterable[TargetGroup]) -> list[TargetGroup]:
        """``groups`` plus a group per target for bare ``jobs`` (as tests build them)."""
        out = list(groups)
        loose: dict[str, TargetGroup] = {}
        for job in jobs:
            if job.target not in loose:
                loose[job.target] = TargetGroup(job.target, source=job.source)
                out.append(loose[job.target])
            loose[job.target].jobs.append(job)
        return out

    def _adopt_group(self, group: TargetGroup) -> None:
        group.key = next(self._group_keys)
        self.groups[group.name] = group
        shared: dict[str, str] = {}
        for job in group.jobs:
            job.group = group
            self.render.bind(job, shared)
            if job.id <= 0:
                job.id = next(self._ids)
            else:  # ids given by the caller: keep new ones above them
                self._ids = itertools.count(max(job.id + 1, next(self._ids)))

    @property
    def jobs(self) -> list[Job]:
        return [job for group in self.groups.values() for job in group.jobs]

    @property
    def job_count(self) -> int:
        return sum(len(group.jobs) for group in self.groups.values())

    @property
    def holds(self) -> dict[str, float]:
        """Targets held back by a server's Retry-After: name -> loop time the hold ends."""
        return {g.name: g.hold_until for g in self._held if g.hold_until is not None}

    def loop_time(self) -> float:
        """The event loop's clock (timers and holds are in it)."""
        return self._loop.time() if self._loop is not None else time.monotonic()

    @property
    def ready(self) -> bool:
        """True once every job has made its first attempt; stays true across reloads."""
        if self.unattempted == 0:
            self._was_ready = True
        return self._was_ready

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        now = self._epoch = loop.time()
        jobs = self.jobs
        phases = phase_counts(jobs)
        for job in jobs:
            self._set_interval(job)
            self._enqueue(job, job.first_due(now, self._epoch, phases[job.interval]))
        self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    async def stop(self, grace: float) -> None:
        """Stop scheduling; let in-flight polls finish within ``grace``, then cancel them."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._slots.clear()
        self._waiting.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._deadlines.clear()
        self._deadline_live.clear()

    # ----------------------------------------------------------------- reload

    def update(self, groups: Iterable[TargetGroup], *, max_concurrency: int) -> dict[str, int]:
        """Swap in a new set of targets without stopping.

        A group that is the very object already running is unchanged: nothing happens to
        it. In a changed group, a job with the same identity as a running one keeps its
        object, id, state and phase and takes the new definition; its poll in flight, if
        any, completes into it. Jobs no longer configured are cancelled and their series
        dropped; new jobs start spread over their interval. A target keeps its
        Retry-After hold, and its jobs their backoff, unless its URL changed.

        Returns counts of ``unchanged``, ``changed``, ``added`` and ``removed`` jobs.
        """
        assert self._loop is not None, "update() needs a started scheduler"
        groups = list(groups)
        phases = phase_counts(job for group in groups for job in group.jobs)
        if self.unattempted == 0:
            self._was_ready = True  # before any new job counts
        now = self._loop.time()
        counts = dict.fromkeys(("unchanged", "changed", "added", "removed"), 0)
        old_groups = self.groups
        self.groups = {}
        for group in groups:
            old = old_groups.pop(group.name, None)
            if old is group:
                self.groups[group.name] = group
                counts["unchanged"] += len(group.jobs)
                continue
            group.key = next(self._group_keys)
            self.groups[group.name] = group
            same_url = old is not None and old.url == group.url
            if old is not None:
                self._release_group(old)
                if same_url and old.hold_until is not None:
                    until, wall = old.hold_until, old.hold_wall
                    if group.timing is not None and until > now + group.timing[2]:
                        # a lower max_retry_after shortens the hold it carries
                        wall -= until - (now + group.timing[2])
                        until = now + group.timing[2]
                    self._set_hold(group, until, wall, old.hold_reason)
            if old is not None and group.jobs is old.jobs:
                # the same jobs with a new timing: nothing to build or to match
                for same in group.jobs:
                    same.group = group
                    self._redefine_job(same, same, now, keep_backoff=same_url, phases=phases)
                counts["changed"] += len(group.jobs)
                continue
            running = {job.key: job for job in old.jobs} if old is not None else {}
            merged: list[Job] = []
            shared: dict[str, str] = {}
            for fresh in group.jobs:
                job: Job | None = running.pop(fresh.key, None) if running else None
                if job is None:
                    fresh.group = group
                    self._add_job(fresh, now, shared, phases)
                    merged.append(fresh)
                    counts["added"] += 1
                else:
                    job.group = group
                    self._redefine_job(job, fresh, now, keep_backoff=same_url, phases=phases)
                    merged.append(job)
                    counts["changed"] += 1
            group.jobs = merged
            if old is not None:
                old.jobs = []  # no group keeps a removed job alive
            for job in running.values():
                self._remove_job(job)
                counts["removed"] += 1
        for old in old_groups.values():
            self._release_group(old)
            for job in old.jobs:
                self._remove_job(job)
                counts["removed"] += 1
            old.jobs = []
        self.max_concurrency = max_concurrency
        self._drain(now)
        return counts

    def _add_job(
        self, job: Job, now: float, shared: dict[str, str], phases: Mapping[float, int]
    ) -> None:
        job.id = next(self._ids)
        self.render.bind(job, shared)
        if not job.attempted:
            self.unattempted += 1
        self._set_interval(job)
        self._enqueue(job, job.first_due(now, self._epoch, phases.get(job.interval, 0)))

    def _redefine_job(
        self,
        job: Job,
        fresh: Job,
        now: float,
        *,
        keep_backoff: bool,
        phases: Mapping[float, int],
    ) -> None:
        """Give ``job`` ``fresh``'s poll and the group's timing, keeping state and phase."""
        old_interval = job.interval
        job.poll = fresh.poll
        if job.group is not None and job.group.labels != job.static:
            self.render.relabel(job)  # new static labels: its series are rewritten
        timing = job.group.timing if job.group is not None else None
        if timing is not None:
            job.interval, job.timeout, job.max_retry_after = timing
        else:
            job.interval, job.timeout = fresh.interval, fresh.timeout
            job.max_retry_after = fresh.max_retry_after
        if job.interval != old_interval:
            self._set_interval(job)
            if math.isfinite(job.fresh_until):
                self._mark_fresh(job, job.fresh_until - FRESH_INTERVALS * old_interval)
        if job.task is not None or job.queued:
            return  # in flight or queued: it polls, then goes on at the new interval
        due = job.due
        if not keep_backoff:  # a new URL: no reason to wait out the old one's backoff
            due = min(due, job.first_due(now, self._epoch, phases.get(job.interval, 0)))
        elif job.interval < old_interval:  # poll no later than the new interval (backed off)
            backoff = BACKOFF[min(job.failures, len(BACKOFF)) - 1] if job.failures else 1.0
            due = min(due, now + job.interval * backoff)
        if math.ceil(due / RESOLUTION) != job.slot:
            self._enqueue(job, due)  # the entry in the old slot is skipped when it fires

    def _remove_job(self, job: Job) -> None:
        job.removed = True
        if not job.attempted:
            self.unattempted -= 1
        if job.task is not None:
            job.task.cancel()
        # nothing of the removed job stays reachable through it: no cycle through the
        # group, and its poll (client, per-target source state) is let go now, not when
        # the freshness heap drops the job
        job.group = None
        job.poll = _removed
        self.render.forget(job)

    def _release_group(self, group: TargetGroup) -> None:
        if group in self._held:
            self._held.discard(group)
            self.render.unhold(group.key)

    # ----------------------------------------------------------------- holds and freshness

    def _set_hold(self, group: TargetGroup, until: float, wall: float, reason: str | None) -> None:
        if group.hold_until is not None and group.hold_until >= until:
            return
        group.hold_until = until
        group.hold_wall = wall
        group.hold_reason = reason
        self._held.add(group)
        self.render.hold(group.key, group.name, wall, group.labels)

    def _end_hold(self, group: TargetGroup) -> None:
        group.hold_until = None
        group.hold_reason = None
        self._held.discard(group)
        self.render.unhold(group.key)

    def _mark_fresh(self, job: Job, succeeded_at: float) -> None:
        job.fresh_until = until = succeeded_at + FRESH_INTERVALS * job.interval
        if until < job.heap_until:  # not in the heap yet, or there for later (a shorter interval)
            job.heap_until = until
            heapq.heappush(self._fresh, (until, job.id, job))

    def expire_stale(self, now: float | None = None) -> int:
        """Withdraw every vendor value older than twice its job's interval; end past holds.

        Returns how many jobs went stale. Cheap when nothing is due: one heap peek.
        """
        if now is None:
            now = self.loop_time()
        for group in [g for g in self._held if g.hold_until is not None and g.hold_until <= now]:
            self._end_hold(group)
        fresh = self._fresh
        expired = 0
        while fresh and fresh[0][0] <= now:
            until, _, job = heapq.heappop(fresh)
            if until != job.heap_until:
                continue  # superseded by an earlier entry of the same job
            job.heap_until = math.inf
            if job.removed or job.stale:
                continue
            if job.fresh_until > now:  # refreshed since (or failing: inf)
                if math.isfinite(job.fresh_until):
                    job.heap_until = job.fresh_until
                    heapq.heappush(fresh, (job.fresh_until, job.id, job))
                continue
            self._withdraw(job, now)
            expired += 1
        return expired

    def _sweep(self) -> None:
        if self._stopping or self._loop is None:
            return
        self.expire_stale()
        self._sweeper = self._loop.call_later(SWEEP_EVERY, self._sweep)

    def _withdraw(self, job: Job, now: float) -> None:
        """A job's values are too old: drop its vendor series, poll_success 0, log once."""
        succeeded_at = job.fresh_until - FRESH_INTERVALS * job.interval
        self.render.withdraw(job)
        job.reading = None
        job.stale = True
        job.stale_since = self._wall()
        job.fresh_until = math.inf
        fields: dict[str, Any] = {
            **job.log_fields,
            "data_age_seconds": round(now - succeeded_at, 3),
            "interval_seconds": job.interval,
        }
        group = job.group
        if group is not None and group.hold_until is not None and group.hold_until > now:
            # not polled because the server asked to wait: say which answer asked
            fields["reason"] = group.hold_reason
            fields["held_until"] = group.hold_wall
        else:
            fields["in_flight"] = job.task is not None
        self._event("warning", "poll_stale", **fields)

    # ----------------------------------------------------------------- timer wheels

    def _enqueue(self, job: Job, due: float) -> None:
        assert self._loop is not None
        job.due = due
        job.slot = slot = math.ceil(due / RESOLUTION)
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = [job]
            self._handles[False, slot] = self._loop.call_at(
                slot * RESOLUTION, self._fire_slot, slot
            )
        else:
            bucket.append(job)

    def _fire_slot(self, slot: int) -> None:
        assert self._loop is not None
        self._handles.pop((False, slot), None)
        now = self._loop.time()
        for job in self._slots.pop(slot, ()):
            if self._stopping:
                return
            if job.slot != slot or job.removed:
                continue  # moved to another slot (by a reload or a hold), or removed
            job.slot = -1
            self._dispatch(job, now)

    def _dispatch(self, job: Job, now: float) -> None:
        """Launch ``job`` now, or hold it for its target, or queue it under the cap."""
        if job.removed or job.task is not None or job.queued:
            return
        group = job.group
        if group is not None and group.hold_until is not None:
            if group.hold_until > now:
                self._enqueue(job, group.hold_until)
                return
            self._end_hold(group)
        if self.in_flight >= self.max_concurrency:
            self.delayed_total += 1
            job.queued = True
            self._waiting.append(job)
        else:
            self._launch(job)

    def _watch_deadline(self, job: Job, task: asyncio.Task[None], deadline: float) -> None:
        assert self._loop is not None
        job.deadline = slot = math.ceil(deadline / RESOLUTION)
        bucket = self._deadlines.get(slot)
        if bucket is None:
            self._deadlines[slot] = [(job, task)]
            self._deadline_live[slot] = 1
            self._handles[True, slot] = self._loop.call_at(
                slot * RESOLUTION, self._fire_deadlines, slot
            )
        else:
            bucket.append((job, task))
            self._deadline_live[slot] += 1

    def _unwatch_deadline(self, job: Job) -> None:
        """``job``'s poll ended: the last poll of a time-out slot to end cancels it."""
        slot = job.deadline
        if slot < 0:
            return
        job.deadline = -1
        live = self._deadline_live.get(slot, 0) - 1
        if live > 0:
            self._deadline_live[slot] = live
            return
        self._deadline_live.pop(slot, None)
        self._deadlines.pop(slot, None)
        handle = self._handles.pop((True, slot), None)
        if handle is not None:
            handle.cancel()

    def _fire_deadlines(self, slot: int) -> None:
        self._handles.pop((True, slot), None)
        self._deadline_live.pop(slot, None)
        for job, task in self._deadlines.pop(slot, ()):
            if job.task is task and not task.done():
                job.deadline = -1
                job.timed_out = True
                task.cancel()

    # ----------------------------------------------------------------- dispatch

    def _launch(self, job: Job) -> None:
        assert self._loop is not None
        self.in_flight += 1
        job.timed_out = False
        task = self._loop.create_task(self._run(job))
        job.task = task
        self._tasks.add(task)
        task.add_done_callback(self._done)
        self._watch_deadline(job, task, self._loop.time() + job.timeout)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler_error", error=repr(task.exception()))
        if self._waiting and not self._stopping:
            assert self._loop is not None
            now = self._loop.time()
            self._drain(now)

    def _drain(self, now: float) -> None:
        """Launch waiting jobs while there is room under the cap."""
        waiting = self._waiting
        while waiting and self.in_flight < self.max_concurrency:
            job = waiting.popleft()
            job.queued = False
            self._dispatch(job, now)

    async def _run(self, job: Job) -> None:
        assert self._loop is not None
        loop = self._loop
        started = loop.time()
        error: PollError | None = None
        reading: Reading | None = None
        try:
            reading = await job.poll()
        except asyncio.CancelledError:
            if not job.timed_out or self._stopping or job.removed:
                job.task = None
                self._unwatch_deadline(job)
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            error = TimeoutFailure(f"no complete answer within {job.timeout:g}s")
        except PollError as exc:
            error = exc
        except Exception as exc:  # a ccwatch bug: record it, keep running
            error = self._internal(job, exc)
        job.task = None
        self._unwatch_deadline(job)
        if job.removed:
            return  # removed by a reload while in flight: its series are gone
        now = loop.time()
        duration = now - started
        wall = self._wall()
        job.last_poll = wall - duration
        job.last_duration = duration
        self.polls_total += 1
        if not job.attempted:
            job.attempted = True
            self.unattempted -= 1
            if self.unattempted == 0:
                self._was_ready = True
        if error is None:
            assert reading is not None
            try:
                self._record_success(job, reading, duration, now, wall)
            except Exception as exc:  # a reading that cannot be rendered is a bug too
                error = self._internal(job, exc)
        try:
            if error is not None:
                self._record_failure(job, error, duration)
        finally:
            # whatever happened, the job polls again
            self._schedule_next(job, error)

    @staticmethod
    def _internal(job: Job, exc: Exception) -> PollError:
        """A ccwatch bug in a poll: a failure with reason ``internal``, traceback logged once."""
        error = PollError(f"{type(exc).__name__}: {exc}")
        error.reason = REASON_INTERNAL
        if job.last_reason != REASON_INTERNAL:
            log.exception("poll_internal_error", **job.log_fields)
        return error

    def _schedule_next(self, job: Job, error: PollError | None) -> None:
        if self._stopping:
            return
        assert self._loop is not None
        now = self._loop.time()
        if error is None:
            delay = job.interval
        else:
            delay = job.interval * BACKOFF[min(job.failures, len(BACKOFF)) - 1]
            if error.retry_after is not None and error.retry_after > 0 and job.group is not None:
                # the server asked the whole target to wait, not just this job
                retry_after = min(error.retry_after, job.max_retry_after)
                delay = max(delay, retry_after)
                self._set_hold(
                    job.group, now + retry_after, self._wall() + retry_after, error.reason
                )
        due = job.due + delay
        if due < now:  # overran: skip the missed slots, keep the phase
            due += math.ceil((now - due) / job.interval) * job.interval
        self._enqueue(job, due)

    # ----------------------------------------------------------------- recording

    def _event(self, level: str, event: str, **fields: Any) -> None:
        """Log a transition, and keep it in :attr:`history`; every string field is capped
        at MAX_DETAIL_CHARS first (a vendor's words can be any length)."""
        capped = cap_fields(fields, MAX_DETAIL_CHARS)
        getattr(log, level)(event, **capped)
        self.history.append({"timestamp": self._wall(), "level": level, "event": event, **capped})

    def _record_success(
        self, job: Job, reading: Reading, duration: float, now: float, wall: float
    ) -> None:
        if self.render.success(job, reading.samples(), duration, wall):
            # a label value was over its cap: keep (and show) the reading as exported
            reading = CappedReading(reading)
        job.reading = reading
        job.last_error = None
        job.last_success = wall
        self._mark_fresh(job, now)
        if job.failures:
            self._event(
                "info",
                "poll_recovered",
                **job.log_fields,
                failed_polls=job.failures,
                failed_for_seconds=round(wall - (job.failing_since or wall), 3),
                previous_reason=job.last_reason,
            )
            job.failures = 0
            job.failing_since = None
            job.last_reason = None
        elif job.stale:
            self._event(
                "info",
                "poll_fresh",
                **job.log_fields,
                stale_for_seconds=round(wall - (job.stale_since or wall), 3),
            )
        job.stale = False
        job.stale_since = None
        # capped like a label value: the values go into the state_changed event, twice
        watched = cap_fields(reading.watched(), MAX_LABEL_CHARS)
        if watched and watched != job.watched:
            if job.watched is not None:
                previous = {f"previous_{k}": v for k, v in job.watched.items()}
                self._event("info", "state_changed", **job.log_fields, **watched, **previous)
            job.watched = self._shared_watched(watched)

    def _shared_watched(self, watched: Mapping[str, str]) -> dict[str, str]:
        """One read-only dict per distinct watched state (states are few; the table is
        emptied should a source ever watch values without bound)."""
        key = tuple(watched.items())
        shared = self._watched.get(key)
        if shared is None:
            if len(self._watched) >= MAX_SHARED_STATES:
                self._watched.clear()
            shared = self._watched[key] = dict(watched)
        return shared

    def _record_failure(self, job: Job, error: PollError, duration: float) -> None:
        job.fresh_until = math.inf
        job.stale = False
        job.stale_since = None
        job.reading = None
        # a detail may hold a library's text or a server's words: redacted before it is
        # stored (status page, API) or logged (process log, /logs)
        redactor = job.group.redactor if job.group is not None else PUBLIC
        # ... then capped: a server's words can be any length
        detail = job.last_error = cap(redactor.text(error.detail), MAX_DETAIL_CHARS)
        reason = error.reason
        errors = job.errors
        if errors is None:
            errors = job.errors = {}
        errors[reason] = errors.get(reason, 0) + 1
        self.render.failure(job, duration)
        job.failures += 1
        if job.failures == 1 or reason != job.last_reason:
            fields: dict[str, Any] = {**job.log_fields, "reason": reason, "error": detail}
            if error.retry_after is not None:
                fields["retry_after_seconds"] = min(error.retry_after, job.max_retry_after)
            if job.failures == 1:
                job.failing_since = self._wall()
                self._event("warning", "poll_failing", **fields)
            else:
                self._event(
                    "warning",
                    "poll_failure_reason_changed",
                    **fields,
                    previous_reason=job.last_reason,
                )
        job.last_reason = reason

    def _set_interval(self, job: Job) -> None:
        self.render.interval(job)
