"""The README's picture of the status page: ``make screenshot`` (docs/status-page.png).

Runs what ``make demo`` runs (the simulator and the daemon on the demo config), makes one
ECE entry point's capacity answer 503 so that the page has a failing job to show, waits
for a few rounds of polls, and takes a screenshot in headless Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

from ccwatch import logs
from ccwatch.daemon import Daemon
from ccwatch.demo import demo_config
from ccwatch.simulator import serve as serve_simulator
from tests.browser import browser, chromium_path


async def take(path: Path, width: int, settle: float) -> None:
    runner = await serve_simulator("127.0.0.1", 0, tick=5.0)
    try:
        port = next(a for a in runner.addresses if isinstance(a, tuple))[1]
        sim_url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            fault = {"path": "/capacity/1002", "kind": "status", "status": 503}
            async with session.post(f"{sim_url}/-/sim/faults", json=fault) as resp:
                resp.raise_for_status()
        daemon = Daemon(demo_config(sim_url, "127.0.0.1:0"))
        await daemon.start()
        try:
            await asyncio.sleep(settle)
            async with browser(executable=chromium_path()) as chrome:
                page = await chrome.new_page()
                await page.goto(daemon.metrics_url.removesuffix("metrics"))
                await page.idle()
                if page.errors:
                    raise SystemExit(f"the browser reported errors: {page.errors}")
                await page.screenshot(path, width=width, height=900, full_page=True)
        finally:
            await daemon.stop()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="docs/status-page.png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of polling first")
    args = parser.parse_args()
    logs.configure("warning", "console", sys.stderr)
    asyncio.run(take(args.path, args.width, args.settle))
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
