"""The exceptions ccwatch raises, and the closed set of poll failure reasons.

Exception tree::

    CCWatchError
    ├── ConfigError          a configuration file or value is invalid (names the key path)
    └── PollError            one poll failed; carries exactly one ``reason``
        ├── TimeoutFailure   reason "timeout": the poll's total timeout expired
        ├── ConnectFailure   reason "connect": DNS, refused, reset or closed connection
        ├── TLSFailure       reason "tls": handshake or certificate verification failed
        ├── StatusFailure    reason "http_status" (or "auth" for 401/403, "rate_limited" for 429)
        ├── TooLargeFailure  reason "too_large": the body exceeded the configured cap
        └── ParseFailure     reason "parse": the body could not be read as the documented shape

Sources raise ``ParseFailure`` from their pure parsers; the HTTP layer raises the others.
The scheduler turns any of them into a failed poll with that reason and never lets one
escape: an exception that is not a ``PollError`` is recorded with reason ``internal``
(a ccwatch bug, logged with its traceback) so the daemon keeps running.
"""

from __future__ import annotations

from typing import Final, TextIO

from ccwatch.redact import strip_userinfo

REASON_TIMEOUT: Final = "timeout"
REASON_CONNECT: Final = "connect"
REASON_TLS: Final = "tls"
REASON_HTTP_STATUS: Final = "http_status"
REASON_TOO_LARGE: Final = "too_large"
REASON_PARSE: Final = "parse"
REASON_AUTH: Final = "auth"
REASON_RATE_LIMITED: Final = "rate_limited"
REASON_INTERNAL: Final = "internal"

#: Every reason a failed poll can carry. Bounded, so ``reason`` is a safe label.
REASONS: Final = (
    REASON_TIMEOUT,
    REASON_CONNECT,
    REASON_TLS,
    REASON_HTTP_STATUS,
    REASON_TOO_LARGE,
    REASON_PARSE,
    REASON_AUTH,
    REASON_RATE_LIMITED,
    REASON_INTERNAL,
)


class CCWatchError(Exception):
    """Base class of every ccwatch error."""


class ConfigError(CCWatchError):
    """The configuration is invalid. ``errors`` holds one ``"key.path: problem"`` per line.

    Every line loses the userinfo of any URL it quotes (``http://user:password@host``):
    the lines are shown by ``check-config``, in the ``/-/reload`` answer, on the status
    page and in the ``config_reload_failed`` log, and none of them may show a password.
    """

    def __init__(self, errors: list[str]) -> None:
        errors = [strip_userinfo(line) for line in errors]
        self.errors = errors
        super().__init__("\n".join(errors))

    def report(self, path: object, file: TextIO) -> None:
        """Write ``PATH: invalid configuration`` and an indented line per error: how every
        command (check-config, probe, time-intervals) shows an invalid file."""
        print(f"{path}: invalid configuration", file=file)
        for line in self.errors:
            print(f"  {line}", file=file)


class PollError(CCWatchError):
    """One poll failed for exactly one ``reason`` (one of :data:`REASONS`)."""

    reason: str = REASON_INTERNAL

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        #: Seconds the server asked us to wait before the next request (429/503).
        self.retry_after = retry_after


class TimeoutFailure(PollError):
    reason = REASON_TIMEOUT


class ConnectFailure(PollError):
    reason = REASON_CONNECT


class TLSFailure(PollError):
    reason = REASON_TLS


class StatusFailure(PollError):
    reason = REASON_HTTP_STATUS

    def __init__(self, status: int, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(detail or f"HTTP status {status}", retry_after=retry_after)
        self.status = status
        if status in (401, 403):
            self.reason = REASON_AUTH
        elif status == 429:
            self.reason = REASON_RATE_LIMITED


class TooLargeFailure(PollError):
    reason = REASON_TOO_LARGE


class ParseFailure(PollError):
    reason = REASON_PARSE
