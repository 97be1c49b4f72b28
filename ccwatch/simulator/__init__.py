"""A vendor simulator for ccwatch: fake contact-center servers with fault injection.

The core is vendor-agnostic: :data:`VENDORS` lists vendor modules (see
:class:`ccwatch.simulator.common.Vendor`); each adds its routes, state and background tick
task to the app. :mod:`ccwatch.simulator.faults` adds the fault middleware.

Control API (JSON, never subject to faults):

* ``GET /-/sim/state``: every vendor's state, ``{"ece": {"1000": {...}, ...}, ...}``.
* ``GET|POST|DELETE /-/sim/faults``, ``DELETE /-/sim/faults/{id}``: see
  :mod:`ccwatch.simulator.faults`.
* vendor routes under ``/-/sim/<vendor>/...``, e.g. ``PUT /-/sim/ece/entry_points/{id}``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web

from . import alvaria, context_service, ece, faults, genesys, gms
from .common import CONTROL_PREFIX, Vendor, log

__all__ = ["VENDORS", "VENDORS_KEY", "Vendor", "build_app", "run_simulator", "serve"]

#: The vendor modules every simulator app serves.
VENDORS: list[Vendor] = [ece, context_service, genesys, gms, alvaria]

VENDORS_KEY: Final = web.AppKey("ccwatch_sim_vendors", tuple[Vendor, ...])


def _vendor_options(
    vendors: Sequence[Vendor], options: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Split ``<vendor>_<option>`` keyword arguments by vendor."""
    per_vendor: dict[str, dict[str, Any]] = {v.NAME: {} for v in vendors}
    accepted = {v.NAME: set(v.OPTIONS) for v in vendors}
    by_length = sorted(per_vendor, key=len, reverse=True)
    for key, value in options.items():
        name = next((n for n in by_length if key.startswith(f"{n}_")), None)
        option = key[len(name) + 1 :] if name is not None else ""
        if name is None or option not in accepted[name]:
            raise TypeError(f"build_app() got an unexpected keyword argument {key!r}")
        per_vendor[name][option] = value
    return per_vendor


async def _state(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response({v.NAME: v.snapshot(app) for v in app[VENDORS_KEY]})


def build_app(
    *,
    ece_entry_points: Sequence[int] = (1000, 1001, 1002, 1003),
    tick: float = 5.0,
    seed: int | None = None,
    **vendor_options: Any,
) -> web.Application:
    """The simulator app for all :data:`VENDORS`.

    ``tick`` is the period of the vendors' random walks in seconds (``<= 0``: no
    evolution); ``seed`` makes them reproducible. Further vendor options are passed as
    ``<vendor>_<option>`` keyword arguments, like ``ece_entry_points``.
    """
    vendors = tuple(VENDORS)
    per_vendor = _vendor_options(vendors, {"ece_entry_points": ece_entry_points, **vendor_options})
    app = web.Application()
    faults.setup(app)
    app[VENDORS_KEY] = vendors
    app.router.add_get(f"{CONTROL_PREFIX}/state", _state)
    for vendor in vendors:
        # one generator per vendor: adding a vendor does not change the others' walks
        rng = random.Random(f"{seed}:{vendor.NAME}") if seed is not None else random.Random()
        vendor.setup(app, tick=tick, rng=rng, options=per_vendor[vendor.NAME])
    return app


async def serve(host: str, port: int, **kwargs: Any) -> web.AppRunner:
    """Start the simulator on ``host:port`` (``port=0``: any free port, see
    ``runner.addresses``). ``kwargs`` go to :func:`build_app`. The caller must
    ``await runner.cleanup()``."""
    app = build_app(**kwargs)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def run_simulator(host: str, port: int, **kwargs: Any) -> None:
    """Serve the simulator until cancelled (``ccwatch simulate --listen HOST:PORT``)."""
    runner = await serve(host, port, **kwargs)
    try:
        for address in runner.addresses:
            log.info("simulator listening", host=address[0], port=address[1])
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
