"""Test harness: the simulator and the daemon over real sockets on 127.0.0.1.

- :func:`simulator` starts the vendor simulator on a free port; :class:`Sim` drives its
  control API (faults, entry point state). :func:`serving` does the same with the
  ``build_app`` options exactly as given, for a subclass of :class:`Sim`.
- :func:`daemon` starts a :class:`~ccwatch.daemon.Daemon` on a free port from a config
  dict; :meth:`Running.scrape` fetches /metrics over HTTP and parses it with
  prometheus_client's parser into :class:`Scrape`, whose :meth:`Scrape.value` works like
  ``CollectorRegistry.get_sample_value``.
- :meth:`Running.wait_for` polls a condition on fresh scrapes, with a deadline.
- :func:`fail_with_one_reason`, :func:`wait_polled_again` and
  :func:`assert_failed_once_then_recovered` are the steps of the vendor daemon tests'
  "a bad answer fails one job with one reason" case.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ccwatch.daemon import Daemon
from ccwatch.simulator import serve
from ccwatch.sources import load_config, parse_config


@dataclass
class Sim:
    """A running simulator and a client for its control API."""

    url: str
    session: aiohttp.ClientSession
    runner: web.AppRunner

    async def fault(self, path: str, kind: str, **params: Any) -> int:
        async with self.session.post(
            f"{self.url}/-/sim/faults", json={"path": path, "kind": kind, **params}
        ) as resp:
            assert resp.status == 200, await resp.text()
            fault_id = (await resp.json())["id"]
            assert isinstance(fault_id, int)
            return fault_id

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
            result = await resp.json()
            assert isinstance(result, dict)
            return result


S = TypeVar("S", bound=Sim)


@asynccontextmanager
async def serving(client: type[S], **kwargs: Any) -> AsyncIterator[S]:
    """``client`` for the simulator on 127.0.0.1, ``kwargs`` going to ``build_app`` as given."""
    runner = await serve("127.0.0.1", 0, **kwargs)
    try:
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        async with aiohttp.ClientSession() as session:
            yield client(f"http://127.0.0.1:{port}", session, runner)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def local_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` (a test's own fake server) on a free port of 127.0.0.1; yields its
    base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def simulator(**kwargs: Any) -> AsyncIterator[Sim]:
    """The simulator on 127.0.0.1, with evolution off unless ``tick`` is given."""
    async with serving(Sim, **{"tick": 0, "seed": 1, **kwargs}) as sim:
        yield sim


class Scrape:
    """One parsed /metrics exposition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``.

        An empty label value matches an absent label, as in Prometheus: ccwatch leaves
        empty labels out.
        """
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k, "") == v for k, v in labels.items())
        ]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def series(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k, "") == v for k, v in labels.items())
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
async def running(instance: Daemon) -> AsyncIterator[Running]:
    """Start ``instance``, yield it with a client session, and stop it on exit."""
    await instance.start()
    try:
        host, port = instance.bound[0]
        async with aiohttp.ClientSession() as session:
            yield Running(instance, f"http://{host}:{port}", session)
    finally:
        await instance.stop()


@asynccontextmanager
async def daemon(config: Mapping[str, Any]) -> AsyncIterator[Running]:
    """A daemon on a free port of 127.0.0.1 from a config dict; stopped on exit."""
    data = {**config, "web": {"listen_address": "127.0.0.1:0"}}
    async with running(Daemon(parse_config(data))) as d:
        yield d


@asynccontextmanager
async def reloadable_daemon(path: Path, config: Mapping[str, Any]) -> AsyncIterator[Running]:
    """:func:`daemon` from a config file at ``path``, so that ``/-/reload`` rereads it."""
    write_config(path, config)
    async with running(Daemon(load_config(path), config_path=path)) as d:
        yield d


def ece_config(
    sim: Sim, *, interval: str = "500ms", timeout: str = "400ms", **target: Any
) -> dict[str, Any]:
    """One ECE target named ``ece`` on the simulator (entry points 1000 and 1001 unless
    ``target`` says otherwise)."""
    return {
        "defaults": {"interval": interval, "timeout": timeout},
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1000, 1001],
                **target,
            }
        ],
    }


def gms_probe_target(sim: Sim, **extra: Any) -> dict[str, Any]:
    """A GMS probe target named ``probe`` on the simulator, as the spec's examples: a
    ``status`` service request, so a ``request-inbound-...`` service (spec 003)."""
    return {
        "name": "probe",
        "source": "gms_probe",
        "url": sim.url,
        "gms_service": "request-inbound-poll",
        "form": {"_phone_number": "6504669999"},
        "status_request": "status",
        "expected_statuses": ["waiting-for-agent"],
        **extra,
    }


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Write ``config`` (listening on a free port of 127.0.0.1) as YAML to ``path``."""
    path.write_text(yaml.safe_dump({**config, "web": {"listen_address": "127.0.0.1:0"}}))


async def reload(d: Running) -> str:
    """POST /-/reload; assert it succeeded; return its answer."""
    async with d.session.post(f"{d.url}/-/reload") as resp:
        text = await resp.text()
        assert resp.status == 200, text
        return text


async def events(d: Running, target: str | None = None) -> list[dict[str, Any]]:
    """The transition events at /logs, oldest first."""
    status, text = await d.get("/logs" + (f"?target={target}" if target else ""))
    assert status == 200
    return [json.loads(line) for line in text.splitlines()]


POLL_ERRORS = "ccwatch_poll_errors_total"
LAST_SUCCESS = "ccwatch_poll_last_success_timestamp_seconds"


async def fail_with_one_reason(
    d: Running, sim: Sim, path: str, fault: Mapping[str, Any], reason: str, job: Mapping[str, str]
) -> Scrape:
    """Inject ``fault`` at ``path``; wait until ``job`` has failed twice with ``reason``.

    Asserts that the job's ``ccwatch_poll_success`` is 0 and that ``reason`` is the only
    reason its ``ccwatch_poll_errors_total`` counts. Returns that scrape.
    """
    await sim.fault(path, **fault)
    s = await d.wait_for(
        lambda s: (s.value(POLL_ERRORS, reason=reason, **job) or 0) >= 2,
        what=f"two {reason} failures",
    )
    assert s.value("ccwatch_poll_success", **job) == 0.0
    # exactly one reason
    reasons = {x.labels["reason"] for x in s.series(POLL_ERRORS, **job)}
    assert reasons == {reason}
    return s


async def wait_polled_again(
    d: Running, s: Scrape, jobs: Sequence[Mapping[str, str]], what: str
) -> Scrape:
    """Wait until every one of ``jobs``, each with a last success in ``s``, succeeds again."""
    stamps: list[float] = []
    for job in jobs:
        stamp = s.value(LAST_SUCCESS, **job)
        assert stamp is not None, job
        stamps.append(stamp)

    def again(now: Scrape) -> bool:
        latest = [now.value(LAST_SUCCESS, **job) or 0 for job in jobs]
        return all(b > a for a, b in zip(stamps, latest, strict=True))

    return await d.wait_for(again, what=what)


def assert_failed_once_then_recovered(
    events: Sequence[MutableMapping[str, Any]], reason: str, **labels: str
) -> MutableMapping[str, Any]:
    """One ``poll_failing`` event with ``reason`` and ``labels``, no reason change, and one
    ``poll_recovered`` from ``reason`` among the captured ``events``. Returns the first."""
    failing = [e for e in events if e["event"] == "poll_failing"]
    assert len(failing) == 1, failing
    assert failing[0]["reason"] == reason
    assert {key: failing[0].get(key) for key in labels} == labels
    assert not [e for e in events if e["event"] == "poll_failure_reason_changed"]
    recovered = [e for e in events if e["event"] == "poll_recovered"]
    assert len(recovered) == 1
    assert recovered[0]["previous_reason"] == reason
    return failing[0]
