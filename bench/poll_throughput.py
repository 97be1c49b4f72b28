"""Benchmark: polls per CPU-second, RSS and /metrics render time at scale.

Runs the ECE simulator in a child process (so its CPU is not counted) and the ccwatch
daemon in this process, configured with ``--entry-points`` entry points (five jobs each)
at an interval short enough that the scheduler always has work. Then it measures, over
``--seconds``:

- polls completed per CPU-second of this process (GET, parse and metric update),
- polls per wall-clock second,
- peak RSS of this process,
- /metrics render time over every series, in-process and over HTTP,
- the CPU of one scrape (gzip and plain) with polling stopped.

With ``--hours``, the target has two static labels and an opening-hours calendar (half
the entry points another one), as an operator's would: their series are longer and
``ccwatch_open``/``ccwatch_opening_grace`` are exported per entry point.

Usage: python bench/poll_throughput.py [--entry-points 10000] [--seconds 20] [--hours]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import time
from typing import Any

from _common import free_port, rss_mb, run_async, scrape_seconds, simulator_process

from ccwatch import logs
from ccwatch.daemon import Daemon, tune_gc
from ccwatch.sources import parse_config


async def run(args: argparse.Namespace) -> dict[str, Any]:
    web_port = free_port()
    first = 1000
    async with simulator_process(first, args.entry_points) as sim_port:
        entry_points = list(range(first, first + args.entry_points))
        target: dict[str, Any] = {
            "name": "bench",
            "source": "ece",
            "url": f"http://127.0.0.1:{sim_port}/system",
            "entry_points": entry_points,
        }
        data: dict[str, Any] = {
            "web": {"listen_address": f"127.0.0.1:{web_port}"},
            "defaults": {"interval": args.interval, "timeout": "5s"},
            "scheduler": {"max_concurrency": args.concurrency},
            "targets": [target],
        }
        if args.hours:
            data["calendars"] = {
                "business": {
                    "timezone": "Europe/Berlin",
                    "hours": {"mon-fri": ["08:00-18:00"], "sat": ["09:00-13:00"]},
                    "holidays": {"country": "DE", "subdivision": "BY"},
                },
                "always": {"hours": {"mon-sun": ["00:00-24:00"]}},
            }
            target["calendar"] = "business"
            target["entry_point_calendars"] = {ep: "always" for ep in entry_points[::2]}
            target["labels"] = {"team": "customer-support", "site": "munich"}
        config = parse_config(data)
        rss_before = rss_mb()
        daemon = Daemon(config)
        await daemon.start()
        tune_gc()  # as Daemon.run does, at start and once every job has polled
        scheduler = daemon.scheduler
        jobs = len(scheduler.jobs)
        rss_started = rss_mb()
        # warm-up: until every job has polled once
        deadline = time.monotonic() + 120
        while not scheduler.ready and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        tune_gc()
        rss_ready = rss_mb()
        polls0, cpu0, wall0 = scheduler.polls_total, time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        polls1, cpu1, wall1 = scheduler.polls_total, time.process_time(), time.monotonic()
        polls = polls1 - polls0
        rss_polled = rss_mb()
        # What a scrape does minus the socket: every family's chunk, one at a time.
        renders = []
        series = 0
        size = 0
        for _ in range(10):
            series = size = 0
            elapsed = 0.0
            t0 = time.perf_counter()
            for chunk in daemon.metric_chunks(openmetrics=False):
                elapsed += time.perf_counter() - t0
                series += chunk.count(b"\n") - chunk.count(b"\n#") - chunk.startswith(b"#")
                size += len(chunk)
                del chunk
                t0 = time.perf_counter()
            renders.append(elapsed)
        rss_rendered = rss_mb()
        # Scrape over HTTP from another process, as Prometheus would (gzip, and plain).
        http_times: list[float] = []
        with multiprocessing.Pool(1) as pool:
            for gzip_ok in (True, False) * 3:
                http_times.append(
                    await asyncio.to_thread(
                        pool.apply, scrape_seconds, (daemon.metrics_url, gzip_ok)
                    )
                )
        ok = sum(job.failures == 0 and job.attempted for job in scheduler.jobs)
        # The CPU one scrape costs this process, with polling stopped so that nothing else
        # runs: rendering, and for gzip the deflate (in worker threads; process_time
        # counts every thread).
        await scheduler.stop(grace=5.0)
        scrape_cpu: dict[bool, list[float]] = {True: [], False: []}
        with multiprocessing.Pool(1) as pool:
            for gzip_ok in (True, False) * 3:
                cpu_before = time.process_time()
                await asyncio.to_thread(pool.apply, scrape_seconds, (daemon.metrics_url, gzip_ok))
                scrape_cpu[gzip_ok].append(time.process_time() - cpu_before)
        result = {
            "entry_points": args.entry_points,
            "hours": args.hours,
            "jobs": jobs,
            "interval": args.interval,
            "max_concurrency": args.concurrency,
            "seconds": round(wall1 - wall0, 2),
            "polls": polls,
            "polls_per_wall_second": round(polls / (wall1 - wall0)),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "polls_per_cpu_second": round(polls / max(cpu1 - cpu0, 1e-9)),
            "rss_mb_jobs_built": round(rss_started, 1),
            "rss_mb_all_polled": round(rss_ready, 1),
            "rss_mb_after_run": round(rss_polled, 1),
            "rss_mb_after_renders": round(rss_rendered, 1),
            "rss_mb_after_scrapes": round(rss_mb(), 1),
            "rss_mb_before_daemon": round(rss_before, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "series": series,
            "jobs_succeeding": ok,
            "render_ms_median": round(statistics.median(renders) * 1000, 1),
            "render_ms_max": round(max(renders) * 1000, 1),
            "http_metrics_gzip_ms_median": round(statistics.median(http_times[0::2]) * 1000, 1),
            "http_metrics_plain_ms_median": round(statistics.median(http_times[1::2]) * 1000, 1),
            "metrics_bytes": size,
            "scrape_cpu_ms_gzip_median": round(statistics.median(scrape_cpu[True]) * 1000, 1),
            "scrape_cpu_ms_plain_median": round(statistics.median(scrape_cpu[False]) * 1000, 1),
        }
        await daemon.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-points", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--hours", action="store_true", help="static labels and calendars on the target"
    )
    args = parser.parse_args()
    logs.configure("warning", "json")
    result = run_async(run(args))  # on the loop the ccwatch command uses
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
