"""The simulator tests' client and fixtures.

:class:`SimClient` is :class:`tests.harness.Sim` (the control API) plus plain requests
answered as a :class:`Reply`; each vendor's test file subclasses it for that vendor's
conveniences (its ``model``, its control routes). The :func:`start_sim` fixture starts
simulators with per-test ``build_app`` options.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pytest

from tests.harness import Sim, serving


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class SimClient(Sim):
    """A running simulator: its runner (for the app state) and a client for any route."""

    async def request(self, method: str, path: str, **kw: Any) -> Reply:
        async with self.session.request(method, self.url + path, **kw) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, params=params)


C = TypeVar("C", bound=SimClient)


class StartSim(Protocol):
    async def __call__(self, client: type[C], /, **options: Any) -> C: ...


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Starts a simulator for ``client``, ``options`` going to ``build_app`` as given
    (``tick=0`` for no evolution); every one is stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(client: type[C], /, **options: Any) -> C:
            return await stack.enter_async_context(serving(client, **options))

        yield start
