"""What the benchmarks share: free ports, the simulator in a child process, RSS, and a
ticker that measures the event loop's lateness."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def simulator(port: int, first: int, count: int) -> None:
    """The ECE simulator with entry points ``first`` .. ``first + count - 1`` (a child
    process's target: its CPU is not the benchmark's)."""
    from ccwatch.simulator import run_simulator

    asyncio.run(
        run_simulator("127.0.0.1", port, ece_entry_points=range(first, first + count), tick=0)
    )


@asynccontextmanager
async def simulator_process(first: int, count: int) -> AsyncIterator[int]:
    """:func:`simulator` in a child process on a free port, which it yields once the
    simulator listens; terminated on exit."""
    port = free_port()
    proc = multiprocessing.Process(target=simulator, args=(port, first, count), daemon=True)
    proc.start()
    try:
        await wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.join(5)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Ticker:
    """The worst lateness of a 1 ms sleep on the running loop, while in the ``with``: the
    longest any poll could have waited for the loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - t0 - 0.001)

    def __enter__(self) -> Ticker:
        self.worst = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
