"""Test harness: the simulator and the daemon over real sockets on 127.0.0.1.

- :func:`simulator` starts the vendor simulator on a free port; :class:`Sim` drives its
  control API (faults, entry point state).
- :func:`daemon` starts a :class:`~ccwatch.daemon.Daemon` on a free port from a config
  dict; :meth:`Running.scrape` fetches /metrics over HTTP and parses it with
  prometheus_client's parser into :class:`Scrape`, whose :meth:`Scrape.value` works like
  ``CollectorRegistry.get_sample_value``.
- :meth:`Running.wait_for` polls a condition on fresh scrapes, with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ccwatch.config import parse_config
from ccwatch.daemon import Daemon
from ccwatch.simulator import serve


@dataclass
class Sim:
    """A running simulator and a client for its control API."""

    url: str
    session: aiohttp.ClientSession

    async def fault(self, path: str, kind: str, **params: Any) -> int:
        async with self.session.post(
            f"{self.url}/-/sim/faults", json={"path": path, "kind": kind, **params}
        ) as resp:
            assert resp.status == 200, await resp.text()
            return int((await resp.json())["id"])

    async def clear_faults(self) -> None:
        async with self.session.delete(f"{self.url}/-/sim/faults") as resp:
            assert resp.status == 200

    async def put(self, path: str, data: Mapping[str, Any]) -> None:
        async with self.session.put(f"{self.url}/-/sim/{path}", json=data) as resp:
            assert resp.status == 200, await resp.text()

    async def delete(self, path: str) -> None:
        async with self.session.delete(f"{self.url}/-/sim/{path}") as resp:
            assert resp.status == 200, await resp.text()

    async def state(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/-/sim/state") as resp:
            result: dict[str, Any] = await resp.json()
            return result


@asynccontextmanager
async def simulator(**kwargs: Any) -> AsyncIterator[Sim]:
    """The simulator on 127.0.0.1, with evolution off unless ``tick`` is given."""
    kwargs.setdefault("tick", 0)
    kwargs.setdefault("seed", 1)
    runner = await serve("127.0.0.1", 0, **kwargs)
    try:
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        async with aiohttp.ClientSession() as session:
            yield Sim(f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


class Scrape:
    """One parsed /metrics exposition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``."""
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def series(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]


@dataclass
class Running:
    daemon: Daemon
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}", **kwargs) as resp:
            return resp.status, await resp.text()

    async def scrape(self) -> Scrape:
        status, text = await self.get("/metrics")
        assert status == 200
        return Scrape(text)

    async def wait_for(
        self, condition: Callable[[Scrape], bool], within: float = 15.0, what: str = ""
    ) -> Scrape:
        """Scrape until ``condition`` holds; fail with the last scrape after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            scrape = await self.scrape()
            if condition(scrape):
                return scrape
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}:\n{scrape.text}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def daemon(config: Mapping[str, Any]) -> AsyncIterator[Running]:
    """A daemon on a free port of 127.0.0.1 from a config dict; stopped on exit."""
    data = {**config, "web": {"listen_address": "127.0.0.1:0"}}
    instance = Daemon(parse_config(data))
    await instance.start()
    try:
        host, port = instance.bound[0]
        async with aiohttp.ClientSession() as session:
            yield Running(instance, f"http://{host}:{port}", session)
    finally:
        await instance.stop()
