"""Structured logging: JSON lines off a TTY, readable console output on one.

Everything the process writes goes through structlog, including the standard library's
``logging`` (aiohttp, asyncio) and ``warnings``, so off a TTY every line is one JSON
object.

The scheduler also keeps its transition events in an :class:`EventHistory` for ``/logs``
and the status page: bounded in count and in bytes, and written out in chunks
(:func:`ndjson_chunks`), never as one answer.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization")


def _drop_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Belt and braces: never let a field named like a secret reach the output."""
    for key in list(event_dict):
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_KEYS) and not lowered.endswith("_total"):
            event_dict[key] = "[redacted]"
    return event_dict


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


#: The bytes of JSON lines :func:`ndjson_chunks` gathers into one write, at least.
CHUNK_BYTES: Final = 64 * 1024


def event_line(event: Mapping[str, Any]) -> bytes:
    """One event as a JSON line, as ``/logs`` writes it."""
    return orjson.dumps(event, default=str) + b"\n"


class EventHistory:
    """The most recent events, newest last: at most ``max_events`` of them, and at most
    ``max_bytes`` of them as JSON lines (:func:`event_line`); the oldest go first.

    Each event's size is measured once, when it is added (events are transitions: rare).
    Iterating gives the events themselves; copy it (``list(history)``) before an ``await``.
    """

    __slots__ = ("_events", "_sizes", "bytes", "max_bytes", "max_events")

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: deque[dict[str, Any]] = deque()
        self._sizes: deque[int] = deque()
        #: the size of the events kept, as JSON lines
        self.bytes = 0

    def append(self, event: dict[str, Any]) -> None:
        size = len(event_line(event))
        self._events.append(event)
        self._sizes.append(size)
        self.bytes += size
        while len(self._events) > self.max_events or self.bytes > self.max_bytes:
            self._events.popleft()
            self.bytes -= self._sizes.popleft()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)


def ndjson_chunks(
    events: Iterable[Mapping[str, Any]], target: str | None = None, size: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """``events`` (those of ``target`` if given) as JSON lines, in chunks of about ``size``
    bytes: an answer is written a chunk at a time, never made whole."""
    pending: list[bytes] = []
    held = 0
    for event in events:
        if target is not None and event.get("target") != target:
            continue
        line = event_line(event)
        pending.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(pending)
            pending = []
            held = 0
    if pending:
        yield b"".join(pending)


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging and warnings through it."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        # dict_tracebacks, but without locals: a local may hold a secret
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """Even a crash is one log event, not a bare traceback."""
    logging.getLogger("ccwatch").critical("uncaught_exception", exc_info=(kind, value, tb))
