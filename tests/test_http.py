"""The HTTP layer's pure parts; its network behaviour is tested over real sockets in
tests/integration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ccwatch.config import TLSConfig
from ccwatch.http import make_ssl_context, parse_retry_after


@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), (" 5 ", 5.0), ("0", 0.0)])
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "Wed, 99 Foo 2026"])
def test_retry_after_unreadable_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_ssl_context_follows_tls_config() -> None:
    assert make_ssl_context(None) is True
    ctx = make_ssl_context(TLSConfig(insecure_skip_verify=True))
    assert not isinstance(ctx, bool)
    assert ctx.check_hostname is False
