"""Benchmark: what basic auth costs, and that a flood of wrong passwords does not touch
polling.

Runs the ECE simulator in a child process and the daemon in this process, polling
``--entry-points`` entry points (five jobs each) at ``--interval``, behind a web config
with TLS and one basic auth user whose bcrypt hash has cost ``--cost`` (10, as
``htpasswd -B`` and ``ccwatch hash-password`` make). It measures:

- **one bcrypt check** (the cost of a first scrape with a password), median of 20;
- **one cached check** (every later scrape with the same password), median over 10,000;
- **1,000 authenticated scrapes** of /metrics over HTTPS: the bcrypt time they cost in
  total (the daemon's own count), and their wall time;
- **a flood**: ``--flood`` requests with wrong passwords, each different, from another
  process over 50 keep-alive connections: how many were answered 401 at once (beyond
  the queue) and how many cost a bcrypt check, how long the flood took, and what polling
  saw meanwhile (the worst lateness of a 1 ms ticker on the loop, polls delayed under
  the cap) against 3 s just before it.

Usage: python bench/web_auth.py [--entry-points 1000] [--interval 5s] [--cost 10]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import trustme
import yaml
from _common import Ticker, free_port, simulator_process

from ccwatch import logs
from ccwatch.daemon import Daemon, load_web
from ccwatch.sources import load_config
from ccwatch.webauth import BasicAuth

PASSWORD = b"a-long-enough-scrape-password"


def flood(url: str, ca_file: str, count: int) -> list[int]:
    """``count`` requests with wrong passwords, each different, 50 at a time (in a child)."""

    async def go() -> list[int]:
        context = ssl.create_default_context(cafile=ca_file)
        connector = aiohttp.TCPConnector(ssl=context, limit=50)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def wrong(i: int) -> int:
                headers = {"Authorization": header("prometheus", f"guess-{i}".encode())}
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                    return resp.status

            return list(await asyncio.gather(*(wrong(i) for i in range(count))))

    return asyncio.run(go())


def header(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


async def costs(hashed: bytes) -> dict[str, float]:
    runs = []
    for _ in range(20):
        t0 = time.perf_counter()
        bcrypt.checkpw(PASSWORD, hashed)
        runs.append(time.perf_counter() - t0)
    auth = BasicAuth({"prometheus": hashed})
    right = header("prometheus", PASSWORD)
    assert await auth.check(right)
    cached = []
    for _ in range(10_000):
        t0 = time.perf_counter()
        await auth.check(right)
        cached.append(time.perf_counter() - t0)
    auth.close()
    return {
        "bcrypt_check_ms_median": round(statistics.median(runs) * 1000, 2),
        "cached_check_us_median": round(statistics.median(cached) * 1e6, 2),
        "cached_check_us_p99": round(sorted(cached)[int(len(cached) * 0.99)] * 1e6, 2),
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    hashed = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(args.cost))
    result: dict[str, Any] = {"cost": args.cost, **(await costs(hashed))}
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(workdir / "server.crt"))
    server.private_key_pem.write_to_path(str(workdir / "server.key"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    (workdir / "web.yml").write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {"prometheus": hashed.decode()},
            }
        )
    )
    web_port = free_port()
    first = 1000
    async with simulator_process(first, args.entry_points) as sim_port:
        (workdir / "ccwatch.yml").write_text(
            yaml.safe_dump(
                {
                    "web": {"listen_address": f"127.0.0.1:{web_port}", "config_file": "web.yml"},
                    "defaults": {"interval": args.interval, "timeout": "2s"},
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
        )
        path = workdir / "ccwatch.yml"
        config = load_config(path)
        daemon = Daemon(config, config_path=path, web_config=load_web(config, path, None))
        await daemon.start()
        while not daemon.scheduler.ready:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        auth = daemon.security.auth
        assert auth is not None
        url = f"https://127.0.0.1:{web_port}/metrics"
        right = {"Authorization": header("prometheus", PASSWORD)}
        connector = aiohttp.TCPConnector(ssl=client, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            seconds0 = auth.stats.bcrypt_seconds
            t0 = time.perf_counter()
            for _ in range(1000):
                async with session.get(url, headers=right) as resp:
                    assert resp.status == 200
                    await resp.read()
            result["scrapes_1000_wall_s"] = round(time.perf_counter() - t0, 2)
            result["scrapes_1000_bcrypt_ms_total"] = round(
                (auth.stats.bcrypt_seconds - seconds0) * 1000, 1
            )

            # the flood comes from another process, over 50 keep-alive connections, as
            # a password guesser would: the daemon pays for its handshakes and checks,
            # not for the client's work
            delayed0 = daemon.scheduler.delayed_total
            with Ticker() as quiet_ticker:
                await asyncio.sleep(3.0)
            quiet_delayed = daemon.scheduler.delayed_total - delayed0
            runs0, busy0 = auth.stats.bcrypt_runs, auth.stats.refused_busy
            delayed0 = daemon.scheduler.delayed_total
            with (
                multiprocessing.get_context("spawn").Pool(1) as pool,
            ):
                await asyncio.to_thread(pool.apply, time.sleep, (0.1,))  # started
                with Ticker() as flood_ticker:
                    t0 = time.perf_counter()
                    statuses = await asyncio.to_thread(
                        pool.apply, flood, (url, str(workdir / "ca.pem"), args.flood)
                    )
                    flood_seconds = time.perf_counter() - t0
            result["flood"] = {
                "requests": args.flood,
                "all_401": all(status == 401 for status in statuses),
                "bcrypt_checks": auth.stats.bcrypt_runs - runs0,
                "refused_at_once": auth.stats.refused_busy - busy0,
                "seconds": round(flood_seconds, 2),
                "loop_worst_lateness_ms": round(flood_ticker.worst * 1000, 1),
                "polls_delayed": daemon.scheduler.delayed_total - delayed0,
            }
            result["before_the_flood_3s"] = {
                "loop_worst_lateness_ms": round(quiet_ticker.worst * 1000, 1),
                "polls_delayed": quiet_delayed,
            }
        result["polls_per_second"] = round(args.entry_points * 5 / config.defaults.interval)
        await daemon.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-points", type=int, default=1000)
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--cost", type=int, default=10)
    parser.add_argument("--flood", type=int, default=500)
    args = parser.parse_args()
    logs.configure("error", "json")
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(run(args, Path(workdir)))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
