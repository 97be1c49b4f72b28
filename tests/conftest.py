"""Shared fixtures. See tests/harness.py for the simulator and daemon helpers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_path
from tests.harness import Sim, simulator

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The directory of verbatim spec samples."""
    return FIXTURES


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked ``both_loops`` run on asyncio's loop and on uvloop, the loop the
    ccwatch command uses (see ccwatch.runtime); the others on asyncio's."""
    if item.get_closest_marker("both_loops") is None:
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (``CI`` set), a skipped test fails: a skip there hides a missing install
    step (.ci/run installs every tool the tests need). Expected failures are left alone."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be: {reason}"


@pytest.fixture
def chromium() -> str:
    """The Chromium binary for the browser tests: they skip without one on a developer's
    machine (and so fail in CI, which installs Debian's ``chromium``: see .ci/run)."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "Chromium is not installed: apt-get install chromium (Debian), "
            "or point CCWATCH_CHROMIUM at a Chromium or Chrome binary"
        )
    return path


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """The vendor simulator on a free port of 127.0.0.1, evolution off (some test files
    define their own, with other options)."""
    async with simulator() as running:
        yield running
