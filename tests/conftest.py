"""Shared fixtures. See tests/harness.py for the simulator and daemon helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The directory of verbatim spec samples."""
    return FIXTURES
