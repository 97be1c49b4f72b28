"""Pieces shared by the simulator core and its vendor modules."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

import structlog
from aiohttp import web

__all__ = ["CONTROL_PREFIX", "Vendor", "add_ticker", "json_body", "json_error", "log"]

#: Control routes live under this prefix; faults never apply to them.
CONTROL_PREFIX: Final = "/-/sim"

log = structlog.get_logger("ccwatch.simulator")


class Vendor(Protocol):
    """What a vendor module of the simulator provides (modules satisfy this protocol)."""

    @property
    def NAME(self) -> str:
        """Short name: key in ``/-/sim/state``, prefix of ``build_app`` options."""
        ...

    @property
    def OPTIONS(self) -> tuple[str, ...]:
        """The options ``setup`` accepts; ``build_app`` refuses any other."""
        ...

    def setup(
        self,
        app: web.Application,
        *,
        tick: float,
        rng: random.Random,
        options: Mapping[str, Any],
    ) -> None:
        """Add the vendor's routes, state and background tick task to ``app``.

        ``options`` holds the ``build_app`` keyword arguments named ``<NAME>_<option>``,
        with the prefix removed. ``build_app`` has refused any not in ``OPTIONS``.
        """
        ...

    def snapshot(self, app: web.Application) -> dict[str, Any]:
        """The vendor's current state as JSON-ready data."""
        ...


def add_ticker(
    app: web.Application, name: str, tick: float, step: Callable[[], Awaitable[None]]
) -> None:
    """Run ``await step()`` every ``tick`` seconds while ``app`` runs (never if ``tick <= 0``)."""
    if tick <= 0:
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                await step()
            except Exception:
                log.exception("simulator tick failed", vendor=name)

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(), name=f"ccwatch-simulator-{name}-tick")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(ctx)


def json_error(status: int, message: str) -> web.Response:
    """A control-route error: ``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status)


async def json_body(request: web.Request) -> dict[str, Any]:
    """A control route's JSON object body, or 400."""
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data
