"""Reference: a bare aiohttp + lxml client loop, no ccwatch.

The loop ccwatch's polling cost is measured against: ``--workers`` tasks sharing one
``ClientSession``, each doing GET, ``await resp.read()`` and an lxml parse of the answer,
round the five ECE endpoints of its entry point, on the event loop the ccwatch command
uses (uvloop). The server is nginx serving the spec's samples, on the
other core; this process is pinned to one core and counts only its own CPU.

Usage: python bench/bare_client.py [--workers 64] [--seconds 10]
Needs nginx. Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from _common import CLIENT_CORE, ENDPOINTS, FIRST, loop_name, nginx


def bare_loop(port: int, workers: int, seconds: float) -> dict[str, Any]:
    """Requests per CPU-second and per second of the bare loop against nginx on ``port``."""
    import aiohttp
    from lxml import etree

    async def run() -> dict[str, Any]:
        # recover: checkEligibility's sample has an unquoted attribute
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, recover=True
        )
        done = 0

        async def worker(session: aiohttp.ClientSession, i: int) -> None:
            nonlocal done
            base = f"http://127.0.0.1:{port}/system/egain/chat/entrypoint"
            urls = [f"{base}/{endpoint}/{FIRST + i}" for endpoint in ENDPOINTS]
            while True:
                for url in urls:
                    async with session.get(url) as resp:
                        body = await resp.read()
                    etree.fromstring(body, parser)
                    done += 1

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            tasks = [asyncio.create_task(worker(session, i)) for i in range(workers)]
            await asyncio.sleep(2)
            n0, c0, t0 = done, time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            n, c, t = done - n0, time.process_time() - c0, time.monotonic() - t0
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"per_cpu_second": n / c, "per_second": n / t, "loop": loop_name()}

    # uvloop, as the ccwatch command uses, also when measuring an older ccwatch
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result: dict[str, Any] = runner.run(run())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp + lxml client loop")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with nginx() as port:
        os.sched_setaffinity(0, {CLIENT_CORE})
        r = bare_loop(port, args.workers, args.seconds)
    print(
        f"{r['loop']}: requests per CPU-second: {r['per_cpu_second']:.0f}; "
        f"per wall second: {r['per_second']:.0f}"
    )


if __name__ == "__main__":
    main()
