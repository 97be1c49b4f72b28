"""Benchmark: the status page and /api/v1/targets at scale, and what they cost polling.

Runs the ECE simulator in a child process with ``--entry-points`` entry points and the
daemon in this process with one ECE target over all of them (five jobs each), polling at
``--interval``. A ``content_type`` fault on every ``/capacity/<prefix>`` of ``--faulty``
prefixes makes some jobs fail (each prefix of three digits fails 100 entry points), so
the overview has a full table of failing jobs. Once every job has polled, it measures:

- **in-process render time** of each view (the generator driven without yielding to the
  loop: the CPU a request costs), median and maximum of ``--repeat`` runs: the
  overview, page 1 and the last page of the target, the failing jobs across targets,
  and the whole API answer (and ``?health=down``);
- **over HTTP** from another process, while polling goes on: the wall time of each
  request;
- **what polling sees meanwhile**: the longest an event-loop tick waited (a 1 ms ticker's
  worst lateness) and the polls delayed under the concurrency cap, during each view's
  requests and during as long a time without requests.

Usage: python bench/status_page.py [--entry-points 10000] [--interval 15s] [--repeat 10]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Generator, Iterator
from typing import Any

import aiohttp
from _common import Ticker, free_port, rss_mb, simulator_process

from ccwatch import logs, page
from ccwatch.daemon import Daemon, tune_gc
from ccwatch.sources import parse_config
from ccwatch.status import api_chunks


def _get(url: str) -> tuple[float, int]:
    """Time one GET, reading the whole body (runs in a child process)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - loopback
        size = len(resp.read())
    return time.perf_counter() - t0, size


def _drive(steps: Generator[None, None, Any]) -> Any:
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _drain(chunks: Iterator[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


def _timed(repeat: int, run: Callable[[], Any]) -> dict[str, float | int]:
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
        size = out if isinstance(out, int) else len(out or "")
    return {
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "bytes": size,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    web_port = free_port()
    first = 1000
    async with simulator_process(first, args.entry_points) as sim_port:
        sim = f"http://127.0.0.1:{sim_port}"
        async with aiohttp.ClientSession() as session:
            for prefix in range(12, 12 + args.faulty):
                fault = {
                    "path": f"/capacity/{prefix}",
                    "kind": "content_type",
                    "content_type": "text/<b>html</b>",
                }
                async with session.post(f"{sim}/-/sim/faults", json=fault) as resp:
                    assert resp.status == 200, await resp.text()
        config = parse_config(
            {
                "web": {"listen_address": f"127.0.0.1:{web_port}"},
                "defaults": {"interval": args.interval, "timeout": "5s"},
                "targets": [
                    {
                        "name": "bench",
                        "source": "ece",
                        "url": f"{sim}/system",
                        "entry_points": list(range(first, first + args.entry_points)),
                    }
                ],
            }
        )
        daemon = Daemon(config)
        await daemon.start()
        tune_gc()
        scheduler = daemon.scheduler
        deadline = time.monotonic() + 180
        while not scheduler.ready and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        tune_gc()
        jobs = scheduler.job_count
        rss_ready = rss_mb()
        status = daemon.status()
        last_page = -(-jobs // page.PAGE_ROWS)
        down = sum(job.failures > 0 for job in scheduler.jobs)

        def view(**kwargs: Any) -> Callable[[], Any]:
            return lambda: _drive(page.jobs_page(daemon.status(), **kwargs))

        in_process = {
            "overview": _timed(args.repeat, lambda: _drive(page.overview(daemon.status()))),
            "target_page_1": _timed(args.repeat, view(target="bench", health_filter=None, page=1)),
            "target_page_last": _timed(
                args.repeat, view(target="bench", health_filter=None, page=last_page)
            ),
            "failing_across_targets": _timed(
                args.repeat, view(target=None, health_filter="down", page=1)
            ),
            "api_all": _timed(args.repeat, lambda: _drain(api_chunks(daemon.status()))),
            "api_down": _timed(
                args.repeat, lambda: _drain(api_chunks(daemon.status(), health_filter="down"))
            ),
        }
        del status
        # Over HTTP from another process, while polling goes on; the loop's lateness
        # during the requests, against as long a time without them.
        base = f"http://127.0.0.1:{web_port}"
        paths = {
            "control_healthy": "/-/healthy",  # a request that costs nothing: the baseline
            "overview": "/",
            "target_page_1": "/?target=bench",
            "api_all": "/api/v1/targets",
        }
        over_http: dict[str, Any] = {}
        # a spawned client: a forked one would make the daemon pay copy-on-write faults
        # on its 200+ MB while the requests are measured
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            await asyncio.to_thread(pool.apply, time.sleep, (0.1,))  # started
            busy_seconds = 0.0
            for name, path in paths.items():
                delayed0 = scheduler.delayed_total
                t0 = time.monotonic()
                with Ticker() as busy:
                    results = [
                        await asyncio.to_thread(pool.apply, _get, (base + path,))
                        for _ in range(args.repeat)
                    ]
                busy_seconds += time.monotonic() - t0
                over_http[name] = {
                    "median_ms": round(statistics.median(r[0] for r in results) * 1000, 1),
                    "max_ms": round(max(r[0] for r in results) * 1000, 1),
                    "bytes": results[-1][1],
                    "loop_worst_lateness_ms": round(busy.worst * 1000, 1),
                    "polls_delayed": scheduler.delayed_total - delayed0,
                }
            delayed0 = scheduler.delayed_total
            with Ticker() as idle:
                await asyncio.sleep(busy_seconds)
            delayed_idle = scheduler.delayed_total - delayed0
        result = {
            "entry_points": args.entry_points,
            "jobs": jobs,
            "jobs_down": down,
            "interval": args.interval,
            "rss_mb_all_polled": round(rss_ready, 1),
            "in_process": in_process,
            "over_http": over_http,
            "without_requests": {
                "seconds": round(busy_seconds, 1),
                "loop_worst_lateness_ms": round(idle.worst * 1000, 1),
                "polls_delayed": delayed_idle,
            },
            "rss_mb_after": round(rss_mb(), 1),
        }
        await daemon.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-points", type=int, default=10_000)
    parser.add_argument("--interval", default="15s")
    parser.add_argument("--faulty", type=int, default=6, help="prefixes of 100 failing jobs")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    logs.configure("error", "json")  # not the poll_failing warnings of the faulty jobs
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
