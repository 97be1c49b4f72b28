"""Every figure of the performance goals in one run, ccwatch beside the bare loop.

The vendor is nginx, serving the spec's ECE samples (``tests/fixtures/ece``) from disk, so
the server costs next to nothing and runs on the other core. Every measured program runs
in its own child process pinned to core 0; the CPU figures are that process's own CPU
(``time.process_time``, every thread), nothing else's.

Figures:

- **polls per CPU-second**: the bare loop (``bare_client.py``'s loop: 64 tasks sharing one
  ``ClientSession``, GET, ``await resp.read()``, an lxml parse; on uvloop) and the ccwatch
  daemon saturated (6,000 entry points at a 5 s interval: more than one core can poll, at
  the same concurrency of 64), alternated ``--rounds`` times, and the ratio of the medians;
- **10,000 entry points** (50,000 jobs at 15 s, the target scale): polls per CPU-second,
  HTTP scrape time with gzip and plain while polling goes on, the CPU of one scrape with
  polling stopped, and RSS;
- **idle**: 50 entry points at 15 s, the share of one core over ``--idle-seconds``;
- **reload**: 10 targets of 1,000 entry points (50,000 jobs) at 15 s; the file changes one
  target (one entry point more) and the daemon reloads: the CPU of the reload, and the
  longest the event loop was blocked (the lateness of a 1 ms ticker; no poll can be
  later than that).

Usage: python bench/perf.py [--seconds 15] [--rounds 2] [--idle-seconds 60] [--json]
Needs nginx (``apt-get install nginx``). Only 127.0.0.1 is used; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    CLIENT_CORE,
    FIRST,
    Ticker,
    free_port,
    loop_name,
    nginx,
    rss_mb,
    run_async,
    scrape_seconds,
)
from bare_client import bare_loop


def _child(conn: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        conn.send(fn(*args))
    except BaseException as exc:  # the parent reports it
        conn.send({"error": repr(exc)})
        raise


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a child process pinned to :data:`CLIENT_CORE`."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    result: dict[str, Any] = parent.recv()
    proc.join(30)
    if "error" in result:
        raise RuntimeError(f"{fn.__name__}: {result['error']}")
    return result


# --------------------------------------------------------------------------- ccwatch


def _config(
    port: int, targets: int, entry_points: int, interval: str, concurrency: int, web_port: int
) -> dict[str, Any]:
    return {
        "web": {"listen_address": f"127.0.0.1:{web_port}"},
        "defaults": {"interval": interval, "timeout": "5s"},
        "scheduler": {"max_concurrency": concurrency},
        "log": {"level": "warning"},
        "targets": [
            {
                "name": f"bench-{t}",
                "source": "ece",
                "url": f"http://127.0.0.1:{port}/system",
                "entry_points": list(
                    range(FIRST + t * entry_points, FIRST + (t + 1) * entry_points)
                ),
            }
            for t in range(targets)
        ],
    }


async def _started(data: dict[str, Any], path: Path | None = None) -> Any:
    from ccwatch import logs
    from ccwatch.daemon import Daemon, tune_gc
    from ccwatch.sources import parse_config

    logs.configure("warning", "json")
    daemon = Daemon(parse_config(data), config_path=path)
    await daemon.start()
    tune_gc()
    deadline = time.monotonic() + 180
    while not daemon.scheduler.ready and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.25)
    tune_gc()
    return daemon


async def polling(scheduler: Any, seconds: float) -> tuple[int, float, float]:
    """Polls completed, CPU seconds and wall seconds over the next ``seconds``."""
    p0, c0, t0 = scheduler.polls_total, time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return scheduler.polls_total - p0, time.process_time() - c0, time.monotonic() - t0


def saturated(port: int, entry_points: int, seconds: float, concurrency: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        daemon = await _started(_config(port, 1, entry_points, "5s", concurrency, free_port()))
        scheduler = daemon.scheduler
        p, c, t = await polling(scheduler, seconds)
        failing = sum(job.failures > 0 for job in scheduler.jobs)
        await daemon.stop()
        return {
            "per_cpu_second": p / c,
            "per_second": p / t,
            "failing": failing,
            "loop": loop_name(),
        }

    result: dict[str, Any] = run_async(run())
    return result


def at_scale(port: int, entry_points: int, seconds: float) -> dict[str, Any]:
    """10,000 entry points at 15 s: scrapes while polling, scrape CPU, RSS."""

    async def run() -> dict[str, Any]:
        import resource

        daemon = await _started(_config(port, 1, entry_points, "15s", 256, free_port()))
        scheduler = daemon.scheduler
        p, c, t = await polling(scheduler, seconds)
        rss = rss_mb()
        times: dict[bool, list[float]] = {True: [], False: []}
        with multiprocessing.get_context("fork").Pool(1) as pool:
            for gzip_ok in (True, False) * 5:
                elapsed = await asyncio.to_thread(
                    pool.apply, scrape_seconds, (daemon.metrics_url, gzip_ok)
                )
                times[gzip_ok].append(elapsed)
            rss_scraped = rss_mb()
            await scheduler.stop(grace=5.0)
            cpu: dict[bool, list[float]] = {True: [], False: []}
            for gzip_ok in (True, False) * 3:
                before = time.process_time()
                await asyncio.to_thread(pool.apply, scrape_seconds, (daemon.metrics_url, gzip_ok))
                cpu[gzip_ok].append(time.process_time() - before)
        failing = sum(job.failures > 0 for job in scheduler.jobs)
        await daemon.stop()
        return {
            "polls_per_cpu_second": p / c,
            "polls_per_second": p / t,
            "failing": failing,
            "scrape_ms_gzip": statistics.median(times[True]) * 1000,
            "scrape_ms_plain": statistics.median(times[False]) * 1000,
            "scrape_cpu_ms_gzip": statistics.median(cpu[True]) * 1000,
            "scrape_cpu_ms_plain": statistics.median(cpu[False]) * 1000,
            "rss_mb": rss,
            "rss_mb_after_scrapes": rss_scraped,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    result: dict[str, Any] = run_async(run())
    return result


def idle(port: int, entry_points: int, seconds: float) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        daemon = await _started(_config(port, 1, entry_points, "15s", 256, free_port()))
        scheduler = daemon.scheduler
        p, c, t = await polling(scheduler, seconds)
        await daemon.stop()
        return {
            "core_percent": 100 * c / t,
            "polls_per_second": p / t,
            "cpu_per_poll_us": 1e6 * c / max(p, 1),
        }

    result: dict[str, Any] = run_async(run())
    return result


def reload(port: int, targets: int, entry_points: int, seconds: float) -> dict[str, Any]:
    import yaml

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="ccwatch-bench-reload-") as tmp:
            path = Path(tmp) / "ccwatch.yml"
            data = _config(port, targets, entry_points, "15s", 256, free_port())
            path.write_text(yaml.safe_dump(data))
            daemon = await _started(data, path)
            await asyncio.sleep(seconds)
            data["targets"][0]["entry_points"].append(FIRST + targets * entry_points)
            path.write_text(yaml.safe_dump(data))
            with Ticker() as ticker:
                await asyncio.sleep(1)
                quiet = ticker.worst
                c0, t0 = time.process_time(), time.perf_counter()
                error = await daemon.reload()
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                await asyncio.sleep(3)
                worst = ticker.worst
            jobs = daemon.scheduler.job_count
            await daemon.stop()
        assert error is None, error
        return {
            "jobs": jobs,
            "reload_cpu_s": cpu,
            "reload_wall_s": wall,
            "loop_blocked_ms": worst * 1000,
            "loop_blocked_ms_before": quiet * 1000,
        }

    result: dict[str, Any] = run_async(run())
    return result


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--entry-points", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--saturated-entry-points",
        type=int,
        default=6_000,
        help="entry points at 5 s for the saturated run: 6,000 asks for 6,000 polls/s, "
        "more than one core does, yet every job polls within two intervals (no stale "
        "churn) as long as the daemon does over 3,000",
    )
    parser.add_argument("--idle-entry-points", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--only", choices=("ratio", "scale", "idle", "reload"), action="append", default=[]
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    only = set(args.only) or {"ratio", "scale", "idle", "reload"}
    out: dict[str, Any] = {}
    with nginx() as port:
        if "ratio" in only:
            bare, daemon = [], []
            for _ in range(args.rounds):
                bare.append(in_child(bare_loop, port, args.concurrency, args.seconds))
                daemon.append(
                    in_child(
                        saturated,
                        port,
                        args.saturated_entry_points,
                        args.seconds,
                        args.concurrency,
                    )
                )
            out["bare"] = bare
            out["saturated"] = daemon
            b = statistics.median(r["per_cpu_second"] for r in bare)
            d = statistics.median(r["per_cpu_second"] for r in daemon)
            print(f"event loop: bare {bare[0]['loop']}, ccwatch {daemon[0]['loop']}")
            print(f"bare loop, requests per CPU-second: {b:,.0f} (runs: {_runs(bare)})")
            print(
                f"ccwatch saturated ({args.saturated_entry_points:,} entry points at 5 s), "
                f"polls per CPU-second: {d:,.0f} (runs: {_runs(daemon)}; "
                f"{sum(r['failing'] for r in daemon)} jobs failing)"
            )
            print(f"ccwatch saturated / bare loop: {100 * d / b:.0f} %")
        if "scale" in only:
            r = out["scale"] = in_child(at_scale, port, args.entry_points, args.seconds)
            print(
                f"{args.entry_points:,} entry points at 15 s: "
                f"{r['polls_per_cpu_second']:,.0f} polls per CPU-second "
                f"({r['polls_per_second']:,.0f}/s, {r['failing']} jobs failing)"
            )
            print(
                f"  /metrics over HTTP while polling: gzip {r['scrape_ms_gzip']:.0f} ms, "
                f"plain {r['scrape_ms_plain']:.0f} ms"
            )
            print(
                f"  CPU of one scrape, polling stopped: gzip {r['scrape_cpu_ms_gzip']:.0f} ms, "
                f"plain {r['scrape_cpu_ms_plain']:.0f} ms"
            )
            print(
                f"  RSS: {r['rss_mb']:.0f} MB polling, {r['rss_mb_after_scrapes']:.0f} MB "
                f"after scrapes, peak {r['peak_rss_mb']:.0f} MB"
            )
        if "idle" in only:
            r = out["idle"] = in_child(idle, port, args.idle_entry_points, args.idle_seconds)
            print(
                f"idle, {args.idle_entry_points} entry points at 15 s: "
                f"{r['core_percent']:.2f} % of a core ({r['polls_per_second']:.1f} polls/s, "
                f"{r['cpu_per_poll_us']:.0f} µs of CPU per poll)"
            )
        if "reload" in only:
            r = out["reload"] = in_child(reload, port, 10, args.entry_points // 10, args.seconds)
            print(
                f"reload of {r['jobs']:,} jobs, one target changed: "
                f"{r['reload_cpu_s']:.3f} s CPU ({r['reload_wall_s']:.3f} s wall), "
                f"loop blocked at most {r['loop_blocked_ms']:.0f} ms "
                f"({r['loop_blocked_ms_before']:.0f} ms in the second before)"
            )
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()


def _runs(results: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['per_cpu_second']:,.0f}" for r in results)


if __name__ == "__main__":
    main()
