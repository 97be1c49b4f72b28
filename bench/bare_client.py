"""Reference: a bare aiohttp + lxml client loop against the simulator, no ccwatch.

The ceiling ccwatch's own overhead is measured against. Usage:
python bench/bare_client.py [--workers 64] [--seconds 10]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from _common import simulator_process
from lxml import etree


async def run(workers: int, seconds: float) -> None:
    async with simulator_process(1000, 10_000) as port:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        done = 0

        async def worker(session: aiohttp.ClientSession, i: int) -> None:
            nonlocal done
            url = f"http://127.0.0.1:{port}/system/egain/chat/entrypoint/capacity/{1000 + i}"
            while True:
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
        print(f"requests per CPU-second: {n / c:.0f}; per wall second: {n / t:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp + lxml client loop")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(run(args.workers, args.seconds))


if __name__ == "__main__":
    main()
