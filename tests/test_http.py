"""The HTTP layer's pure parts; its network behaviour is tested over real sockets in
tests/integration."""

from __future__ import annotations

import functools
import gzip
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ccwatch.config import TLSConfig
from ccwatch.errors import ParseFailure, TooLargeFailure
from ccwatch.http import Decoder, make_ssl_context, parse_retry_after


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


# --------------------------------------------------------------------------- decoding


@functools.cache
def _bomb(decoded: int) -> bytes:
    """A gzip body of ``decoded`` zero bytes, built without holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(decoded >> 20)]
    return b"".join([*parts, compressor.flush()])


def _feed(decoder: Decoder, body: bytes, chunk: int = 64 * 1024) -> bytes:
    for i in range(0, len(body), chunk):
        decoder.feed(body[i : i + chunk])
    return decoder.finish()


@pytest.mark.parametrize("chunk", [64 * 1024, 1 << 30])
def test_a_gzip_bomb_fails_within_the_cap_whatever_the_chunk_size(chunk: int) -> None:
    bomb = _bomb(64 << 20)
    assert len(bomb) < 100_000
    cap = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeFailure, match="decoded body exceeds the 1048576-byte cap"):
            _feed(Decoder("gzip", cap), bomb, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one whole network chunk (or the whole body at once) is never inflated before counting
    assert peak < cap + (4 << 20)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b"<a>1</a>")),
        ("x-gzip", gzip.compress(b"<a>1</a>")),
        ("gzip", gzip.compress(b"<a>1") + gzip.compress(b"</a>")),  # two members
        ("deflate", zlib.compress(b"<a>1</a>")),  # as RFC 9110 says: zlib-wrapped
        ("deflate", zlib.compress(b"<a>1</a>")[2:-4]),  # bare deflate, as some servers send
    ],
)
def test_decoding_gzip_and_deflate(encoding: str, body: bytes) -> None:
    for chunk in (1, 3, len(body)):
        assert _feed(Decoder(encoding, 100), body, chunk) == b"<a>1</a>"


def test_a_body_exactly_at_the_cap_passes_one_byte_more_fails() -> None:
    assert _feed(Decoder("gzip", 8), gzip.compress(b"12345678")) == b"12345678"
    with pytest.raises(TooLargeFailure):
        _feed(Decoder("gzip", 8), gzip.compress(b"123456789"))


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("br", b"\x1b", "unsupported Content-Encoding 'br'"),
        ("zstd", b"", "unsupported Content-Encoding 'zstd'"),
        ("gzip", b"not gzip at all", "invalid gzip body"),
        ("gzip", gzip.compress(b"<a>1</a>")[:-6], "ends before its stream does"),
        ("gzip", gzip.compress(b"<a>1</a>") + b"trailing junk", "invalid gzip body"),
        ("deflate", zlib.compress(b"<a>1</a>") + b"x", "data after the end"),
    ],
)
def test_undecodable_bodies_are_parse_failures(encoding: str, body: bytes, message: str) -> None:
    with pytest.raises(ParseFailure, match=message) as info:
        _feed(Decoder(encoding, 1000), body, 4)
    assert info.value.reason == "parse"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0000000000007", 7.0), ("9" * 400, 1e9), ("1234567890", 1e9)],
)
def test_retry_after_long_digit_strings(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "٣",
        "\uff14",  # FULLWIDTH DIGIT FOUR
        "1.5",
        "+5",
        "5s",
        "1_0",
        "Sun, 06 Nov 1994 08:49",
        "Mon, 01 Jan 99999 00:00:00 GMT",
    ],
)
def test_retry_after_that_is_neither_digits_nor_a_date_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_a_base_url_is_percent_encoded_once_for_every_source() -> None:
    from ccwatch.http import HttpClient
    from ccwatch.sources import parse_config

    target = parse_config(
        {
            "targets": [
                {"name": "a", "source": "ece", "url": "http://h/a b/ü%20c", "entry_points": [1]}
            ]
        }
    ).targets[0]
    client = HttpClient().for_target(target, max_response_size=10)
    assert client.url("/x/1") == "http://h/a%20b/%C3%BC%20c/x/1"
