"""What the benchmarks share: free ports, the simulator in a child process, RSS, and a
ticker that measures the event loop's lateness."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ece"
#: the ECE endpoints nginx serves (chatAllowed answers the allowed="true" sample)
ENDPOINTS = (
    "agentAvailability",
    "capacity",
    "liveSessionStatus",
    "checkEligibility",
    "chatAllowed",
)
#: the first entry point id the benchmarks use
FIRST = 1000
#: the core the measured process is pinned to; nginx's worker runs on the other one
CLIENT_CORE = 0
SERVER_CORE = 1


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


NGINX_CONF = """\
worker_processes 1;
worker_cpu_affinity {affinity};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    types {{ }}
    default_type application/xml;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/system/egain/chat/entrypoint/chatAllowed/[0-9]+$ {{
            alias {fixtures}/chatAllowed_true.xml;
        }}
        location ~ ^/system/egain/chat/entrypoint/([A-Za-z]+)/[0-9]+$ {{
            alias {fixtures}/$1.xml;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx() -> Iterator[int]:
    """nginx on a free port, its one worker on :data:`SERVER_CORE`."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ccwatch-bench-nginx-") as tmp:
        affinity = "".join("1" if i == SERVER_CORE else "0" for i in reversed(range(2)))
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(affinity=affinity, dir=tmp, port=port, fixtures=FIXTURES))
        proc = subprocess.Popen([binary, "-p", tmp, "-c", str(conf)])
        try:
            url = f"http://127.0.0.1:{port}/system/egain/chat/entrypoint/capacity/{FIRST}"
            for _ in range(100):
                try:
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        assert resp.read().startswith(b"<?xml")
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError((Path(tmp) / "error.log").read_text())
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop the ccwatch command runs on (plain asyncio before it chose one)."""
    import importlib.util

    import ccwatch

    # an older checkout on PYTHONPATH has no ccwatch.runtime: an editable install of this
    # one would supply it, so look for it in the ccwatch that is imported
    spec = importlib.util.find_spec("ccwatch.runtime")
    if spec is None or not str(spec.origin).startswith(ccwatch.__path__[0]):
        return asyncio.new_event_loop
    from ccwatch.runtime import loop_factory as ccwatch_loop_factory

    return ccwatch_loop_factory()


def run_async(coro: Any) -> Any:
    """``coro`` on :func:`loop_factory`'s loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def scrape_seconds(url: str, gzip_ok: bool) -> float:
    """Time one GET of ``url``, reading the whole body (run in another process)."""
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
        resp.read()
    return time.perf_counter() - t0
