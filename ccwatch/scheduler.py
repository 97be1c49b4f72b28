"""The one place that owns time and failure.

Every poll job repeats at its interval. First polls are spread over the interval (by a
stable hash of the job, so restarts keep the phase) to avoid a thundering herd. Each poll
runs under a total timeout; a job never has two polls in flight; after consecutive
failures a job backs off exponentially (1x, 2x, then 4x its interval at most), and a
server's ``Retry-After`` holds back every job of that target until it has passed. A
global cap limits how many polls are in flight at once; polls over the cap wait in a
FIFO and count as delayed.

Timers live on a wheel of 20 ms slots: one ``loop.call_at`` per slot rather than per
job, which batches the work of each event-loop iteration and keeps the loop's timer heap
small. Poll time-outs use a second wheel the same way. Each poll runs as a short-lived
task; no task sleeps per job, so 50,000 jobs cost a few megabytes.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog

from ccwatch.collector import (
    POLL_DURATION,
    POLL_ERRORS,
    POLL_INTERVAL,
    POLL_LAST_SUCCESS,
    POLL_SUCCESS,
    MetricStore,
    format_value,
    label_text,
)
from ccwatch.errors import REASON_INTERNAL, PollError, TimeoutFailure
from ccwatch.sources.base import Reading

log = structlog.get_logger("ccwatch.scheduler")

#: Backoff multipliers after 1, 2, 3+ consecutive failures.
BACKOFF = (1.0, 2.0, 4.0)
#: A Retry-After longer than this is treated as this long.
MAX_RETRY_AFTER = 3600.0
#: First polls are spread over min(interval, this), so long intervals still start soon.
MAX_INITIAL_SPREAD = 60.0
#: Transition events kept for ``/logs``.
HISTORY = 500
#: Width of a timer-wheel slot in seconds.
RESOLUTION = 0.02

_label_cache: dict[str, str] = {}


def _shared(text: str) -> str:
    """One string object for equal label texts (the jobs of one subject share theirs)."""
    return _label_cache.setdefault(text, text)


class Job:
    """One (target, subject, endpoint) poll job and its run-time state."""

    __slots__ = (
        "attempted",
        "due",
        "endpoint",
        "errors",
        "failing_since",
        "failures",
        "families",
        "id",
        "interval",
        "last_reason",
        "last_success",
        "poll",
        "poll_labels",
        "source",
        "subject",
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
        source_subject_labels: tuple[str, ...],
        all_subject_labels: tuple[str, ...],
        interval: float,
        timeout: float,
        poll: Callable[[], Awaitable[Reading]],
    ) -> None:
        self.id = id
        self.source = source
        self.target = target
        self.endpoint = endpoint
        self.subject = subject
        self.interval = interval
        self.timeout = timeout
        self.poll = poll
        self.vendor_labels = _shared(
            label_text(
                [("target", target)] + [(n, subject.get(n, "")) for n in source_subject_labels]
            )
        )
        self.poll_labels = label_text(
            [("target", target), ("endpoint", endpoint)]
            + [(n, subject.get(n, "")) for n in all_subject_labels]
        )
        self.due = 0.0
        self.task: asyncio.Task[None] | None = None
        self.timed_out = False
        self.attempted = False
        self.failures = 0
        self.failing_since: float | None = None
        self.last_reason: str | None = None
        self.last_success: float | None = None
        self.watched: dict[str, str] | None = None
        self.families: tuple[str, ...] = ()
        self.errors: dict[str, int] = {}

    @property
    def key(self) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
        """The job's identity across reloads."""
        return (self.source, self.target, self.endpoint, tuple(sorted(self.subject.items())))

    @property
    def log_fields(self) -> dict[str, str]:
        return {"target": self.target, "endpoint": self.endpoint, **self.subject}

    def adopt(self, old: Job) -> None:
        """Carry run-time state over from the same job before a reload."""
        self.id = old.id
        self.attempted = old.attempted
        self.failures = old.failures
        self.failing_since = old.failing_since
        self.last_reason = old.last_reason
        self.last_success = old.last_success
        self.watched = old.watched
        self.families = old.families
        self.errors = old.errors

    def initial_offset(self) -> float:
        """A stable fraction of the interval, from a hash of the job's identity."""
        fraction = zlib.crc32(repr(self.key).encode()) / 2**32
        return fraction * min(self.interval, MAX_INITIAL_SPREAD)


class Scheduler:
    """Runs jobs on their intervals and records every outcome in the metric store."""

    def __init__(
        self,
        jobs: Iterable[Job],
        store: MetricStore,
        *,
        max_concurrency: int,
        wall_clock: Callable[[], float] = time.time,
        history: deque[dict[str, Any]] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.store = store
        self.max_concurrency = max_concurrency
        self._wall = wall_clock
        #: The most recent transition events (also logged), newest last, for ``/logs``.
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY) if history is None else history
        self._waiting: deque[Job] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # timer wheels: slot number -> jobs due in it, and the slot's loop handle
        self._slots: dict[int, list[Job]] = {}
        self._deadlines: dict[int, list[tuple[Job, asyncio.Task[None]]]] = {}
        self._handles: dict[tuple[bool, int], asyncio.TimerHandle] = {}
        # target -> loop time before which it gets no request (a server's Retry-After)
        self.holds: dict[str, float] = {}
        self.in_flight = 0
        self.delayed_total = 0
        self.unattempted = sum(not job.attempted for job in self.jobs)
        self.polls_total = 0

    @property
    def ready(self) -> bool:
        """True once every job has made its first attempt."""
        return self.unattempted == 0

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        for job in self.jobs:
            self.store.set(
                POLL_INTERVAL,
                job.id,
                f"{POLL_INTERVAL}{{{job.poll_labels}}} {format_value(job.interval)}\n".encode(),
            )
            self._enqueue(job, now + job.initial_offset())

    async def stop(self, grace: float) -> None:
        """Stop scheduling; let in-flight polls finish within ``grace``, then cancel them."""
        self._stopping = True
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

    # ----------------------------------------------------------------- timer wheels

    def _enqueue(self, job: Job, due: float) -> None:
        assert self._loop is not None
        job.due = due
        slot = math.ceil(due / RESOLUTION)
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
        holds = self.holds
        now = self._loop.time() if holds else 0.0
        for job in self._slots.pop(slot, ()):
            if self._stopping:
                return
            if holds:
                hold = holds.get(job.target)
                if hold is not None:
                    if hold > now:
                        self._enqueue(job, hold)
                        continue
                    del holds[job.target]
            if self.in_flight >= self.max_concurrency:
                self.delayed_total += 1
                self._waiting.append(job)
            else:
                self._launch(job)

    def _watch_deadline(self, job: Job, task: asyncio.Task[None], deadline: float) -> None:
        assert self._loop is not None
        slot = math.ceil(deadline / RESOLUTION)
        bucket = self._deadlines.get(slot)
        if bucket is None:
            self._deadlines[slot] = [(job, task)]
            self._handles[True, slot] = self._loop.call_at(
                slot * RESOLUTION, self._fire_deadlines, slot
            )
        else:
            bucket.append((job, task))

    def _fire_deadlines(self, slot: int) -> None:
        self._handles.pop((True, slot), None)
        for job, task in self._deadlines.pop(slot, ()):
            if job.task is task and not task.done():
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
            self._launch(self._waiting.popleft())

    async def _run(self, job: Job) -> None:
        assert self._loop is not None
        loop = self._loop
        started = loop.time()
        error: PollError | None = None
        reading: Reading | None = None
        try:
            reading = await job.poll()
        except asyncio.CancelledError:
            if not job.timed_out or self._stopping:
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
        duration = loop.time() - started
        self.polls_total += 1
        if not job.attempted:
            job.attempted = True
            self.unattempted -= 1
        if error is None:
            assert reading is not None
            try:
                self._record_success(job, reading, duration)
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
        if error is None:
            delay = job.interval
        else:
            delay = job.interval * BACKOFF[min(job.failures, len(BACKOFF)) - 1]
            if error.retry_after is not None:
                retry_after = min(error.retry_after, MAX_RETRY_AFTER)
                delay = max(delay, retry_after)
                # the server asked the whole target to wait, not just this job
                self.holds[job.target] = max(
                    self.holds.get(job.target, 0.0), self._loop.time() + retry_after
                )
        now = self._loop.time()
        due = job.due + delay
        if due < now:  # overran: skip the missed slots, keep the phase
            due += math.ceil((now - due) / job.interval) * job.interval
        self._enqueue(job, due)

    # ----------------------------------------------------------------- recording

    def _event(self, level: str, event: str, **fields: Any) -> None:
        """Log a transition, and keep it in :attr:`history`."""
        getattr(log, level)(event, **fields)
        self.history.append({"timestamp": self._wall(), "level": level, "event": event, **fields})

    def _record_success(self, job: Job, reading: Reading, duration: float) -> None:
        store = self.store
        key = job.id
        lines: dict[str, str] = {}
        labels = job.vendor_labels
        for family, extra, value in reading.samples():
            line = f"{family}{{{labels}{extra}}} {format_value(value)}\n"
            lines[family] = lines.get(family, "") + line
        families = tuple(lines)
        if families != job.families:
            for family in job.families:
                if family not in lines:
                    store.delete(family, key)
            job.families = families
        for family, text in lines.items():
            store.set(family, key, text.encode())
        now = self._wall()
        job.last_success = now
        store.set(POLL_SUCCESS, key, f"{POLL_SUCCESS}{{{job.poll_labels}}} 1\n".encode())
        store.set(
            POLL_DURATION, key, f"{POLL_DURATION}{{{job.poll_labels}}} {duration!r}\n".encode()
        )
        store.set(
            POLL_LAST_SUCCESS, key, f"{POLL_LAST_SUCCESS}{{{job.poll_labels}}} {now!r}\n".encode()
        )
        if job.failures:
            self._event(
                "info",
                "poll_recovered",
                **job.log_fields,
                failed_polls=job.failures,
                failed_for_seconds=round(now - (job.failing_since or now), 3),
                previous_reason=job.last_reason,
            )
            job.failures = 0
            job.failing_since = None
            job.last_reason = None
        watched = reading.watched()
        if watched:
            if job.watched is not None and watched != job.watched:
                previous = {f"previous_{k}": v for k, v in job.watched.items()}
                self._event("info", "state_changed", **job.log_fields, **watched, **previous)
            job.watched = dict(watched)

    def _record_failure(self, job: Job, error: PollError, duration: float) -> None:
        store = self.store
        key = job.id
        for family in job.families:
            store.delete(family, key)
        job.families = ()
        store.set(POLL_SUCCESS, key, f"{POLL_SUCCESS}{{{job.poll_labels}}} 0\n".encode())
        store.set(
            POLL_DURATION, key, f"{POLL_DURATION}{{{job.poll_labels}}} {duration!r}\n".encode()
        )
        reason = error.reason
        job.errors[reason] = job.errors.get(reason, 0) + 1
        store.set(
            POLL_ERRORS,
            key,
            "".join(
                f'{POLL_ERRORS}{{{job.poll_labels},reason="{r}"}} {n}\n'
                for r, n in job.errors.items()
            ).encode(),
        )
        job.failures += 1
        if job.failures == 1 or reason != job.last_reason:
            fields: dict[str, Any] = {**job.log_fields, "reason": reason, "error": error.detail}
            if error.retry_after is not None:
                fields["retry_after_seconds"] = error.retry_after
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
