"""Shared fixtures. See tests/harness.py for the simulator and daemon helpers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser import chromium_path
from tests.harness import Sim, simulator

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The directory of verbatim spec samples."""
    return FIXTURES


@pytest.fixture
def chromium() -> str:
    """The Chromium binary for the browser tests: they skip without one on a developer's
    machine, and fail in CI, which installs Debian's ``chromium`` (.ci/run)."""
    path = chromium_path()
    if path is None:
        reason = (
            "Chromium is not installed: apt-get install chromium (Debian), "
            "or point CCWATCH_CHROMIUM at a Chromium or Chrome binary"
        )
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must have a browser: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    """The vendor simulator on a free port of 127.0.0.1, evolution off (some test files
    define their own, with other options)."""
    async with simulator() as running:
        yield running
