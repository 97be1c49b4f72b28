"""The scheduler: intervals, spread, backoff, no overlap, the concurrency cap, shutdown.

These drive the scheduler with poll coroutines written here (no HTTP); the HTTP path is
covered over real sockets in tests/integration.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping

import pytest

from ccwatch.collector import MetricStore, core_families
from ccwatch.errors import ParseFailure, PollError, StatusFailure
from ccwatch.scheduler import (
    BACKOFF,
    PHASE_BATCH,
    RESOLUTION,
    Job,
    Scheduler,
    TargetGroup,
    phase_counts,
)
from ccwatch.sources.base import Family, Reading, Sample


class Value:
    def __init__(self, value: float) -> None:
        self.value = value

    def samples(self) -> Iterable[Sample]:
        return (("test_value", (), self.value),)

    def watched(self) -> Mapping[str, str]:
        return {}


def make_store() -> MetricStore:
    store = MetricStore()
    for family in core_families(("entry_point",)):
        store.register(family)
    store.register(Family("test_value", "gauge", "test", ("target", "entry_point")))
    return store


def make_job(
    poll: Callable[[], Awaitable[Reading]],
    *,
    id: int = 1,
    interval: float = 0.1,
    timeout: float = 0.08,
    subject: str = "1",
    target: str = "t",
) -> Job:
    return Job(
        id=id,
        source="test",
        target=target,
        endpoint="e",
        subject={"entry_point": subject},
        subject_labels=(("entry_point",), ("entry_point",)),
        interval=interval,
        timeout=timeout,
        poll=poll,
    )


async def run_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - a condition, not an event
            await asyncio.sleep(0.01)


async def test_polls_repeat_and_never_overlap() -> None:
    in_flight = 0
    most = 0
    calls = 0

    async def poll() -> Reading:
        nonlocal in_flight, most, calls
        in_flight += 1
        most = max(most, in_flight)
        calls += 1
        await asyncio.sleep(0.15)  # longer than the interval
        in_flight -= 1
        return Value(calls)

    job = make_job(poll, interval=0.05, timeout=1.0)
    scheduler = Scheduler([job], make_store(), max_concurrency=10)
    scheduler.start()
    await run_until(lambda: calls >= 4)
    await scheduler.stop(grace=1.0)
    assert most == 1
    assert scheduler.ready


async def test_failures_back_off_to_four_intervals_then_recover() -> None:
    fail = True
    dues: list[float] = []

    async def poll() -> Reading:
        dues.append(job.due)
        if fail:
            raise ParseFailure("bad")
        return Value(1)

    job = make_job(poll, interval=0.05)
    store = make_store()
    scheduler = Scheduler([job], store, max_concurrency=10)
    scheduler.start()
    await run_until(lambda: len(dues) >= 5)
    gaps = [round((b - a) / job.interval, 1) for a, b in itertools.pairwise(dues)]
    # after the 1st, 2nd, 3rd and 4th consecutive failure
    assert gaps[:4] == [BACKOFF[0], BACKOFF[1], BACKOFF[2], BACKOFF[2]]
    fail = False
    await run_until(lambda: job.failures == 0)
    count = len(dues)
    await run_until(lambda: len(dues) >= count + 2)
    await scheduler.stop(grace=1.0)
    assert round((dues[-1] - dues[-2]) / job.interval, 1) == 1.0
    text = store.render().decode()
    assert (
        'ccwatch_poll_errors_total{target="t",endpoint="e",entry_point="1",reason="parse"}' in text
    )
    assert 'test_value{target="t",entry_point="1"}' in text


async def test_timeout_is_a_failure_and_the_series_disappear() -> None:
    slow = False

    async def poll() -> Reading:
        if slow:
            await asyncio.sleep(10)
        return Value(7)

    job = make_job(poll, interval=0.05, timeout=0.05)
    store = make_store()
    scheduler = Scheduler([job], store, max_concurrency=10)
    scheduler.start()
    await run_until(lambda: b"test_value" in store.render())
    slow = True
    await run_until(lambda: (job.errors or {}).get("timeout", 0) >= 1)
    text = store.render().decode()
    await scheduler.stop(grace=0.1)
    assert "test_value{" not in text
    assert 'ccwatch_poll_success{target="t",endpoint="e",entry_point="1"} 0' in text


async def test_unexpected_exception_is_an_internal_failure_not_a_crash() -> None:
    async def poll() -> Reading:
        raise KeyError("bug")

    job = make_job(poll)
    scheduler = Scheduler([job], make_store(), max_concurrency=10)
    scheduler.start()
    await run_until(lambda: (job.errors or {}).get("internal", 0) >= 2)
    await scheduler.stop(grace=0.1)


async def test_concurrency_cap_delays_but_runs_every_job() -> None:
    in_flight = 0
    most = 0
    done: set[int] = set()

    def poll_for(n: int) -> Callable[[], Awaitable[Reading]]:
        async def poll() -> Reading:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            done.add(n)
            return Value(n)

        return poll

    jobs = [make_job(poll_for(i), id=i, subject=str(i), interval=0.05) for i in range(1, 41)]
    scheduler = Scheduler(jobs, make_store(), max_concurrency=3)
    scheduler.start()
    await run_until(lambda: len(done) == 40)
    await scheduler.stop(grace=1.0)
    assert most <= 3
    assert scheduler.delayed_total > 0


async def test_retry_after_holds_back_the_whole_target() -> None:
    polls: list[str] = []

    def poll_for(name: str) -> Callable[[], Awaitable[Reading]]:
        async def poll() -> Reading:
            polls.append(name)
            if name == "a" and polls.count("a") == 1:
                raise StatusFailure(429, retry_after=60)
            return Value(1)

        return poll

    jobs = [make_job(poll_for("a"), id=1, subject="a"), make_job(poll_for("b"), id=2, subject="b")]
    scheduler = Scheduler(jobs, make_store(), max_concurrency=10)
    scheduler.start()
    await run_until(lambda: "t" in scheduler.holds)
    held = len(polls)  # b may have polled with a (or before it), but not after the 429
    await asyncio.sleep(0.5)  # five intervals
    await scheduler.stop(grace=0.1)
    assert polls.count("a") == 1
    assert polls[held:] == []
    assert "t" in scheduler.holds


async def test_stop_lets_in_flight_polls_finish_within_grace_then_cancels() -> None:
    finished = 0
    cancelled = 0

    async def quick() -> Reading:
        nonlocal finished
        await asyncio.sleep(0.05)
        finished += 1
        return Value(1)

    async def stuck() -> Reading:
        nonlocal cancelled
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return Value(1)

    jobs = [
        make_job(quick, id=1, subject="q", interval=0.01, timeout=5.0),
        make_job(stuck, id=2, subject="s", interval=0.01, timeout=50.0),
    ]
    scheduler = Scheduler(jobs, make_store(), max_concurrency=10)
    scheduler.start()
    await run_until(lambda: scheduler.in_flight == 2)
    await scheduler.stop(grace=0.3)
    assert finished >= 1
    assert cancelled == 1
    assert scheduler.in_flight == 0


def test_first_polls_are_spread_and_stable() -> None:
    async def poll() -> Reading:
        return Value(1)

    jobs = [make_job(poll, id=i, subject=str(i), interval=10.0) for i in range(1000)]
    offsets = [job.initial_offset() for job in jobs]
    assert all(0 <= o < 10.0 for o in offsets)
    # spread: every tenth of the interval gets some jobs
    assert {int(o) for o in offsets} == set(range(10))
    # stable across restarts
    assert offsets == [
        make_job(poll, id=i, subject=str(i), interval=10.0).initial_offset() for i in range(1000)
    ]


def test_jobs_share_first_poll_phases_in_batches() -> None:
    async def poll() -> Reading:
        return Value(1)

    def jobs(n: int, interval: float) -> list[Job]:
        return [make_job(poll, id=i, subject=str(i), interval=interval) for i in range(n)]

    # a phase per PHASE_BATCH jobs of an interval, at most one per timer slot of the spread
    small, other = jobs(40, 15.0), jobs(3, 60.0)
    assert phase_counts([*small, *other]) == {15.0: 3, 60.0: 1}
    assert phase_counts(jobs(PHASE_BATCH * 100, 1.0)) == {1.0: round(1.0 / RESOLUTION)}
    # the first polls of 40 jobs land on 3 points within one interval of now
    now = 1234.5
    dues = {job.first_due(now, now, 3) for job in small}
    assert len(dues) == 3
    assert all(now <= due < now + 15.0 for due in dues)
    # later (a reload): the same lattice, anchored at the start
    later = now + 100.2
    for job in small:
        due = job.first_due(later, now, 3)
        assert later <= due < later + 15.0
        steps = (due - now) / 5.0
        assert abs(steps - round(steps)) < 1e-9
    # no phases: the hash's own offset, as before
    assert small[0].first_due(now, now) == now + small[0].initial_offset()


async def test_few_jobs_poll_together_and_a_timely_answer_leaves_no_deadline_timer() -> None:
    started: list[float] = []

    async def poll() -> Reading:
        started.append(asyncio.get_running_loop().time())
        return Value(1)

    jobs = [make_job(poll, id=i, subject=str(i), interval=5.0, timeout=2.0) for i in range(10)]
    scheduler = Scheduler(jobs, make_store(), max_concurrency=10)
    scheduler.start()
    await run_until(lambda: all(job.attempted for job in jobs))
    await asyncio.sleep(0)
    # ten jobs are one batch: one wake-up polls them all
    assert max(started) - min(started) < RESOLUTION
    # every poll answered long before its time-out: no time-out slot is armed
    assert not [key for key in scheduler._handles if key[0]]
    assert all(job.deadline == -1 for job in jobs)
    await scheduler.stop(grace=0.1)


@pytest.mark.parametrize("reason", ["auth", "rate_limited", "http_status"])
def test_status_failures_map_to_reasons(reason: str) -> None:
    status = {"auth": 401, "rate_limited": 429, "http_status": 503}[reason]
    error: PollError = StatusFailure(status)
    assert error.reason == reason


async def test_a_reload_during_a_hold_never_launches_a_job_twice() -> None:
    """Reloads that retime a held target, with the cap full when the hold ends: every job
    still has at most one poll in flight."""
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    calls: list[str] = []

    def poll_for(name: str, seconds: float) -> Callable[[], Awaitable[Reading]]:
        async def poll() -> Reading:
            in_flight[name] = in_flight.get(name, 0) + 1
            most[name] = max(most.get(name, 0), in_flight[name])
            calls.append(name)
            try:
                await asyncio.sleep(seconds)
                if name == "a" and calls.count("a") == 1:
                    raise StatusFailure(429, retry_after=0.4)
                return Value(1)
            finally:
                in_flight[name] -= 1

        return poll

    held = [make_job(poll_for(n, 0.15), id=i, subject=n, interval=0.2, timeout=0.19)
            for i, n in enumerate("ab", 1)]  # fmt: skip
    busy = [
        make_job(poll_for(n, 0.1), id=10 + i, subject=n, interval=0.05, timeout=1.0, target="u")
        for i, n in enumerate("de")
    ]
    scheduler = Scheduler([*held, *busy], make_store(), max_concurrency=2)
    scheduler.start()
    await run_until(lambda: "t" in scheduler.holds)
    for _ in range(4):  # reloads that shorten the held target's interval, during the hold
        group = scheduler.groups["t"]
        interval = 0.1 if group.timing != (0.1, 0.09, 300.0) else 0.15
        retimed = TargetGroup(
            "t", url=group.url, shape=group.shape, timing=(interval, 0.09, 300.0), jobs=group.jobs
        )
        scheduler.update([retimed, scheduler.groups["u"]], max_concurrency=2)
        await asyncio.sleep(0.05)
    await run_until(lambda: "t" not in scheduler.holds and calls.count("a") >= 4)
    await scheduler.stop(grace=1.0)
    assert max(most.values()) == 1, most
    assert scheduler.groups["t"].jobs[0].group is scheduler.groups["t"]
