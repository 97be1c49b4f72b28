"""Benchmark: polls per CPU-second, RSS and /metrics render time at scale.

Runs the ECE simulator in a child process (so its CPU is not counted) and the ccwatch
daemon in this process, configured with ``--entry-points`` entry points (five jobs each)
at an interval short enough that the scheduler always has work. Then it measures, over
``--seconds``:

- polls completed per CPU-second of this process (GET, parse and metric update),
- polls per wall-clock second,
- peak RSS of this process,
- /metrics render time over every series, in-process and over HTTP.

Usage: python bench/poll_throughput.py [--entry-points 10000] [--seconds 20]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import statistics
import sys
import time
from typing import Any

import aiohttp

from ccwatch import logs
from ccwatch.config import parse_config
from ccwatch.daemon import Daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _simulator(port: int, first: int, count: int) -> None:
    from ccwatch.simulator import run_simulator

    asyncio.run(
        run_simulator("127.0.0.1", port, ece_entry_points=range(first, first + count), tick=0)
    )


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("simulator did not start")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sim_port, web_port = _free_port(), _free_port()
    first = 1000
    proc = multiprocessing.Process(
        target=_simulator, args=(sim_port, first, args.entry_points), daemon=True
    )
    proc.start()
    try:
        await _wait_port(sim_port)
        config = parse_config(
            {
                "web": {"listen_address": f"127.0.0.1:{web_port}"},
                "defaults": {"interval": args.interval, "timeout": "5s"},
                "scheduler": {"max_concurrency": args.concurrency},
                "targets": [
                    {
                        "name": "bench",
                        "source": "ece",
                        "url": f"http://127.0.0.1:{sim_port}/system",
                        "entry_points": list(range(first, first + args.entry_points)),
                    }
                ],
            }
        )
        rss_before = _rss_mb()
        daemon = Daemon(config)
        await daemon.start()
        scheduler = daemon.scheduler
        jobs = len(scheduler.jobs)
        # warm-up: until every job has polled once
        deadline = time.monotonic() + 120
        while not scheduler.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        polls0, cpu0, wall0 = scheduler.polls_total, time.process_time(), time.monotonic()
        await asyncio.sleep(args.seconds)
        polls1, cpu1, wall1 = scheduler.polls_total, time.process_time(), time.monotonic()
        polls = polls1 - polls0
        renders = []
        body = b""
        for _ in range(10):
            t0 = time.perf_counter()
            body = daemon.render_metrics(openmetrics=False)
            renders.append(time.perf_counter() - t0)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        http_times = []
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                t0 = time.perf_counter()
                async with session.get(daemon.metrics_url) as resp:
                    await resp.read()
                http_times.append(time.perf_counter() - t0)
        ok = sum(1 for line in body.splitlines() if line.startswith(b"ccwatch_poll_success{") and line.endswith(b" 1"))
        result = {
            "entry_points": args.entry_points,
            "jobs": jobs,
            "interval": args.interval,
            "max_concurrency": args.concurrency,
            "seconds": round(wall1 - wall0, 2),
            "polls": polls,
            "polls_per_wall_second": round(polls / (wall1 - wall0)),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "polls_per_cpu_second": round(polls / max(cpu1 - cpu0, 1e-9)),
            "rss_mb": round(_rss_mb(), 1),
            "rss_mb_before_daemon": round(rss_before, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "series": series,
            "jobs_succeeding": ok,
            "render_ms_median": round(statistics.median(renders) * 1000, 1),
            "render_ms_max": round(max(renders) * 1000, 1),
            "http_metrics_ms_median": round(statistics.median(http_times) * 1000, 1),
            "metrics_bytes": len(body),
        }
        await daemon.stop()
        return result
    finally:
        proc.terminate()
        proc.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-points", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    logs.configure("warning", "json")
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
