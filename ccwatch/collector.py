"""Metrics built at scrape time from the latest poll results.

:class:`MetricStore` keeps, per metric family, one pre-rendered text fragment per poll
job, replaced when that job's poll completes and deleted when it fails. A scrape only
joins the fragments (a C-speed ``bytes.join`` per family), so /metrics for hundreds of
thousands of series takes milliseconds and never has to walk Python objects.

The same fragments serve both exposition formats: the Prometheus text format and
OpenMetrics differ only in the family headers (a counter's family name drops ``_total``
in OpenMetrics) and the closing ``# EOF``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as _generate_text
from prometheus_client.openmetrics.exposition import generate_latest as _generate_om

from ccwatch import __version__
from ccwatch.exposition import Family, escape_label_value
from ccwatch.exposition import format_value as format_value  # re-exported
from ccwatch.exposition import label_text as label_text  # re-exported

#: One sample as data (as :data:`ccwatch.sources.base.Sample`): family name, the values
#: of the family's labels after those the core fills in, value.
SampleData = tuple[str, tuple[str, ...], float]

#: Fragments joined into one chunk of a scrape (a few hundred kilobytes).
CHUNK_SERIES = 2000

#: The longest label value ccwatch exports, in characters (marker included): a longer
#: vendor string (a status, a type, a URL) is cut to this, ending in :data:`ELLIPSIS`.
MAX_LABEL_CHARS: Final = 512
#: The longest vendor text ccwatch logs or shows (a failure's detail, an event's field),
#: in characters (marker included).
MAX_DETAIL_CHARS: Final = 4096
#: What a cut string ends in.
ELLIPSIS: Final = "\u2026"

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class _FamilyData:
    __slots__ = ("family", "fragments", "om_header", "text_header")

    def __init__(self, family: Family) -> None:
        self.family = family
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        self.text_header = (
            f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n"
        ).encode()
        om_name = family.name.removesuffix("_total") if family.type == "counter" else family.name
        self.om_header = (
            f"# HELP {om_name} {help_text}\n# TYPE {om_name} {family.type}\n"
        ).encode()
        self.fragments: dict[int, bytes] = {}


class MetricStore:
    """Per family, one text fragment per job (``key``), rendered on demand."""

    def __init__(self) -> None:
        self._families: dict[str, _FamilyData] = {}
        self._process = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self._process)
        PlatformCollector(registry=self._process)

    def register(self, family: Family) -> None:
        existing = self._families.get(family.name)
        if existing is not None:
            if existing.family != family:
                raise ValueError(f"metric family {family.name} registered twice, differently")
            return
        self._families[family.name] = _FamilyData(family)

    def families(self) -> list[Family]:
        return [data.family for data in self._families.values()]

    def family(self, name: str) -> Family:
        """The registered family ``name``; ``KeyError`` for a name never registered."""
        return self._families[name].family

    def set(self, name: str, key: int, fragment: bytes) -> None:
        self._families[name].fragments[key] = fragment

    def delete(self, name: str, key: int) -> None:
        self._families[name].fragments.pop(key, None)

    def forget(self, key: int) -> None:
        """Drop every fragment of one job (a job removed by a reload)."""
        for data in self._families.values():
            data.fragments.pop(key, None)

    def chunks(self, *, openmetrics: bool = False) -> Iterator[bytes]:
        """The exposition in chunks of at most :data:`CHUNK_SERIES` fragments.

        A scrape never holds the whole exposition, only a chunk at a time. Each family
        is read from a snapshot taken at its first chunk, so it stays consistent even
        when polls complete between chunks.
        """
        for data in self._families.values():
            if not data.fragments:
                continue
            snapshot = list(data.fragments.values())
            header = data.om_header if openmetrics else data.text_header
            yield header + b"".join(snapshot[:CHUNK_SERIES])
            for start in range(CHUNK_SERIES, len(snapshot), CHUNK_SERIES):
                yield b"".join(snapshot[start : start + CHUNK_SERIES])
        if openmetrics:
            process: bytes = _generate_om(self._process)  # type: ignore[no-untyped-call]
            yield process.removesuffix(b"# EOF\n") + b"# EOF\n"
        else:
            yield _generate_text(self._process)

    def render(self, *, openmetrics: bool = False) -> bytes:
        return b"".join(self.chunks(openmetrics=openmetrics))


# --------------------------------------------------------------------------- core families

POLL_SUCCESS = "ccwatch_poll_success"
POLL_DURATION = "ccwatch_poll_duration_seconds"
POLL_LAST_SUCCESS = "ccwatch_poll_last_success_timestamp_seconds"
POLL_ERRORS = "ccwatch_poll_errors_total"
POLL_INTERVAL = "ccwatch_poll_interval_seconds"
BUILD_INFO = "ccwatch_build_info"
JOBS = "ccwatch_jobs"
SHARD_ORDINAL = "ccwatch_shard_ordinal"
TOTAL_SHARDS = "ccwatch_total_shards"
POLLS_IN_FLIGHT = "ccwatch_polls_in_flight"
POLLS_DELAYED = "ccwatch_polls_delayed_total"
CONFIG_LAST_RELOAD_SUCCESS = "ccwatch_config_last_reload_successful"
CONFIG_LAST_RELOAD_TIME = "ccwatch_config_last_reload_success_timestamp_seconds"
TARGET_HOLD_UNTIL = "ccwatch_target_hold_until_timestamp_seconds"
OPEN = "ccwatch_open"
OPENING_GRACE = "ccwatch_opening_grace"
THRESHOLD = "ccwatch_threshold"


def core_families(subject_labels: tuple[str, ...]) -> list[Family]:
    poll = ("target", "endpoint", *subject_labels)
    return [
        Family(
            POLL_SUCCESS, "gauge", "1 if ccwatch's last poll of this job succeeded, else 0.", poll
        ),
        Family(
            POLL_DURATION,
            "gauge",
            "How long ccwatch's last poll of this job took, in seconds.",
            poll,
        ),
        Family(
            POLL_LAST_SUCCESS,
            "gauge",
            "Unix time of ccwatch's last successful poll of this job.",
            poll,
        ),
        Family(
            POLL_ERRORS,
            "counter",
            "Failed polls of this job since ccwatch started, by reason.",
            (*poll, "reason"),
        ),
        Family(
            POLL_INTERVAL,
            "gauge",
            "The configured interval between two polls of this job, in seconds.",
            poll,
        ),
        Family(
            BUILD_INFO,
            "gauge",
            "ccwatch build information; always 1.",
            ("version", "python_version"),
        ),
        Family(JOBS, "gauge", "Poll jobs of this shard, by source.", ("source",)),
        Family(SHARD_ORDINAL, "gauge", "This process's shard, from 0 (0 when not sharded).", ()),
        Family(TOTAL_SHARDS, "gauge", "How many shards share the configuration (1: none).", ()),
        Family(POLLS_IN_FLIGHT, "gauge", "Polls in flight at the time of the scrape.", ()),
        Family(
            POLLS_DELAYED,
            "counter",
            "Polls that started late because the concurrency cap was reached.",
            (),
        ),
        Family(
            CONFIG_LAST_RELOAD_SUCCESS,
            "gauge",
            "1 if the last configuration reload succeeded.",
            (),
        ),
        Family(
            CONFIG_LAST_RELOAD_TIME,
            "gauge",
            "Unix time of the last successful configuration load.",
            (),
        ),
        Family(
            TARGET_HOLD_UNTIL,
            "gauge",
            "Unix time until which ccwatch does not poll the target, because its server "
            "answered 429 or 503 with Retry-After; absent while there is no hold.",
            ("target",),
        ),
        Family(
            OPEN,
            "gauge",
            "1 while the subject's opening-hours calendar says open, else 0; 1 for a "
            "subject without a calendar.",
            ("target", *subject_labels),
        ),
        Family(
            OPENING_GRACE,
            "gauge",
            "1 during the first opening_grace after the subject's calendar opens (the "
            "'closed' and 'no agents' alerts wait), else 0.",
            ("target", *subject_labels),
        ),
        Family(
            THRESHOLD,
            "gauge",
            "The target's alert thresholds (its own, else defaults.thresholds), by name; "
            "durations in seconds.",
            ("target", "name"),
        ),
    ]


def static_labels_text(labels: Mapping[str, str]) -> str:
    """A target's static labels as text to append after its other labels: sorted by
    name, each with a leading comma (``,site="munich",team="sales"``), or ``""``."""
    return "".join(f',{name}="{escape_label_value(v)}"' for name, v in sorted(labels.items()))


def target_labels_text(target: str, static: str = "") -> str:
    """The labels of a target-level series: ``target`` and the static labels' text."""
    return label_text([("target", target)]) + static


def build_info_fragment() -> bytes:
    labels = label_text([("version", __version__), ("python_version", platform.python_version())])
    return f"{BUILD_INFO}{{{labels}}} 1\n".encode()


# --------------------------------------------------------------------------- vendor strings


def cap(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``text`` itself when at most ``limit`` characters, else its first ``limit - 1``
    and :data:`ELLIPSIS`: every vendor string the core exports, logs or shows is cut here.
    Only a length is checked when nothing is cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def cap_fields(fields: Mapping[str, Any], limit: int) -> Mapping[str, Any]:
    """``fields`` with every string value capped at ``limit``: the very mapping when none
    is longer (the common case costs a length check per string), else a capped copy."""
    for value in fields.values():
        if isinstance(value, str) and len(value) > limit:
            return {k: cap(v, limit) if isinstance(v, str) else v for k, v in fields.items()}
    return fields


class CappedReading:
    """A reading that holds a vendor string over its cap, as the core keeps it.

    :meth:`JobRenderer.success` says when a reading needs one (only then is a reading
    wrapped: a reading with short strings is kept as it is). Its samples' label values
    are capped at :data:`MAX_LABEL_CHARS`, once, so that the status page and the targets
    API show what /metrics exports; so are its watched values, and its ``describe()``
    (if it has one) is capped at :data:`MAX_DETAIL_CHARS`. Any other attribute is the
    reading's own.
    """

    __slots__ = ("_samples", "reading")

    def __init__(self, reading: Any) -> None:
        self.reading = reading
        self._samples: tuple[SampleData, ...] = tuple(
            (family, tuple(cap(v) for v in values), value)
            for family, values, value in reading.samples()
        )

    def samples(self) -> tuple[SampleData, ...]:
        return self._samples

    def watched(self) -> Mapping[str, str]:
        watched: Mapping[str, str] = self.reading.watched()
        return cap_fields(watched, MAX_LABEL_CHARS)

    def __getattr__(self, name: str) -> Any:
        if name == "reading":  # not set yet (a copy): never look for it in itself
            raise AttributeError(name)
        own = getattr(self.reading, name)
        if name == "describe" and callable(own):
            return lambda: cap(str(own()), MAX_DETAIL_CHARS)
        return own

    def __repr__(self) -> str:
        return f"CappedReading({self.reading!r})"


# --------------------------------------------------------------------------- rendering


class SampleError(ValueError):
    """A sample does not fit its family: unknown family or wrong label values."""


def check_samples(
    families: Mapping[str, Family], samples: Iterable[SampleData], prefix: tuple[str, ...]
) -> None:
    """Check samples as data against the families' declared labels.

    ``prefix`` is the labels the core fills in (``target`` and the source's subject
    labels for a reading, ``target`` for a state): each family must start with them, and
    each sample must give a value for every label after them. Raises :class:`SampleError`.
    """
    for family_name, values, value in samples:
        family = families.get(family_name)
        if family is None:
            raise SampleError(f"{family_name}: no such metric family")
        if family.labels[: len(prefix)] != prefix:
            raise SampleError(f"{family_name}: labels {family.labels} do not start {prefix}")
        names = family.labels[len(prefix) :]
        if len(values) != len(names) or not all(isinstance(v, str) for v in values):
            raise SampleError(f"{family_name}: values {values!r} for the labels {names}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SampleError(f"{family_name}: value {value!r} is not a number")


class SampleRenderer:
    """Samples as data to Prometheus text, each family's label text made once.

    The text of each (family, number of filled-in labels, values) is cached, with a
    bound: label values are bounded sets (states, reasons, configured types).

    A label value longer than :data:`MAX_LABEL_CHARS` is capped (:func:`cap`) when its
    text is made, the only time a value is looked at; such a text is not cached (its
    key would keep the whole string), and :attr:`capped` is set.
    """

    MAX_CACHED = 20_000

    def __init__(self, store: MetricStore) -> None:
        self._store = store
        self._extra: dict[tuple[str, int, tuple[str, ...]], str] = {}
        #: set when a label value was capped (reset by whoever reads it)
        self.capped = False

    def labels_after(self, family: str, filled: int, values: tuple[str, ...]) -> str:
        """``,name="value"...`` for the family's labels after the ``filled`` first ones."""
        key = (family, filled, values)
        text = self._extra.get(key)
        if text is None:
            names = self._store.family(family).labels[filled:]
            if len(names) != len(values):
                raise SampleError(f"{family}: values {values!r} for the labels {names}")
            text = "".join(
                f',{name}="{escape_label_value(cap(value))}"'
                for name, value in zip(names, values, strict=True)
            )
            if any(len(value) > MAX_LABEL_CHARS for value in values):
                self.capped = True
                return text
            if len(self._extra) >= self.MAX_CACHED:
                self._extra.clear()
            self._extra[key] = text
        return text

    def lines(self, samples: Iterable[SampleData], labels: str, filled: int) -> dict[str, str]:
        """Per family, the text lines of ``samples``; ``labels`` is the filled-in text."""
        extra = self.labels_after
        out: dict[str, str] = {}
        for family, values, value in samples:
            line = f"{family}{{{labels}{extra(family, filled, values)}}} {format_value(value)}\n"
            out[family] = out.get(family, "") + line
        return out


class RenderedJob(Protocol):
    """What the renderer reads of a poll job (see :class:`ccwatch.scheduler.Job`)."""

    id: int
    target: str
    endpoint: str
    subject: Mapping[str, str]
    subject_labels: tuple[tuple[str, ...], tuple[str, ...]]
    interval: float
    families: tuple[str, ...]
    errors: dict[str, int] | None
    vendor_labels: str
    poll_labels: str
    filled: int
    #: the static labels' text the label texts were made with (see :meth:`JobRenderer.bind`)
    static: str
    group: Any
    reading: Any
    last_poll: float | None
    last_success: float | None
    last_duration: float


class JobRenderer:
    """Renders poll jobs' outcomes into the metric store: the one place that writes the
    text of vendor and poll-health series. The scheduler calls it; it decides nothing."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.samples = SampleRenderer(store)
        #: the tuples of family names jobs have, one object per distinct tuple
        self._families: dict[tuple[str, ...], tuple[str, ...]] = {}

    def bind(self, job: RenderedJob, shared: dict[str, str] | None = None) -> None:
        """Make a job's label texts. Empty subject labels are left out of the poll-health
        series (Prometheus reads an empty label as an absent one); ``shared`` lets the
        jobs of one subject share one vendor label string."""
        source_labels, all_labels = job.subject_labels
        subject = job.subject
        group = job.group
        static = job.static = group.labels if group is not None else ""
        vendor = (
            label_text([("target", job.target)] + [(n, subject.get(n, "")) for n in source_labels])
            + static
        )
        job.vendor_labels = vendor if shared is None else shared.setdefault(vendor, vendor)
        job.filled = 1 + len(source_labels)
        job.poll_labels = (
            label_text(
                [("target", job.target), ("endpoint", job.endpoint)]
                + [(n, subject[n]) for n in all_labels if subject.get(n)]
            )
            + static
        )

    def relabel(self, job: RenderedJob) -> None:
        """The target's static labels changed (a reload): every series of the job is
        written again under the new labels, from the job's state, with no gap."""
        self.store.forget(job.id)
        job.families = ()
        self.bind(job)
        self.interval(job)
        if job.last_poll is None:
            return  # not polled yet: nothing else to show
        key, labels = job.id, job.poll_labels
        reading = job.reading
        if reading is not None and job.last_success is not None:
            self.success(job, reading.samples(), job.last_duration, job.last_success)
        else:
            self.withdraw(job)
            duration = job.last_duration
            self.store.set(
                POLL_DURATION, key, f"{POLL_DURATION}{{{labels}}} {duration!r}\n".encode()
            )
        if job.last_success is not None:
            wall = job.last_success
            self.store.set(
                POLL_LAST_SUCCESS, key, f"{POLL_LAST_SUCCESS}{{{labels}}} {wall!r}\n".encode()
            )
        self._errors(job)

    def success(self, job: RenderedJob, samples: Iterable[SampleData], duration: float,
                wall: float) -> bool:  # fmt: skip
        """A successful poll's series. True when a label value had to be capped: the
        caller then keeps the reading as a :class:`CappedReading`."""
        store = self.store
        key = job.id
        renderer = self.samples
        renderer.capped = False
        lines = renderer.lines(samples, job.vendor_labels, job.filled)
        families = tuple(lines)
        if families != job.families:
            for family in job.families:
                if family not in lines:
                    store.delete(family, key)
            job.families = self._families.setdefault(families, families)
        for family, text in lines.items():
            store.set(family, key, text.encode())
        labels = job.poll_labels
        store.set(POLL_SUCCESS, key, f"{POLL_SUCCESS}{{{labels}}} 1\n".encode())
        store.set(POLL_DURATION, key, f"{POLL_DURATION}{{{labels}}} {duration!r}\n".encode())
        store.set(POLL_LAST_SUCCESS, key, f"{POLL_LAST_SUCCESS}{{{labels}}} {wall!r}\n".encode())
        return renderer.capped

    def withdraw(self, job: RenderedJob) -> None:
        """Drop a job's vendor series and read its poll_success as 0."""
        store = self.store
        for family in job.families:
            store.delete(family, job.id)
        job.families = ()
        store.set(POLL_SUCCESS, job.id, f"{POLL_SUCCESS}{{{job.poll_labels}}} 0\n".encode())

    def failure(self, job: RenderedJob, duration: float) -> None:
        """A failed poll: vendor series gone, poll_success 0, the errors by reason."""
        self.withdraw(job)
        store = self.store
        key = job.id
        labels = job.poll_labels
        store.set(POLL_DURATION, key, f"{POLL_DURATION}{{{labels}}} {duration!r}\n".encode())
        self._errors(job)

    def _errors(self, job: RenderedJob) -> None:
        if not job.errors:
            return
        labels = job.poll_labels
        self.store.set(
            POLL_ERRORS,
            job.id,
            "".join(
                f'{POLL_ERRORS}{{{labels},reason="{r}"}} {n}\n' for r, n in job.errors.items()
            ).encode(),
        )

    def interval(self, job: RenderedJob) -> None:
        self.store.set(
            POLL_INTERVAL,
            job.id,
            f"{POLL_INTERVAL}{{{job.poll_labels}}} {format_value(job.interval)}\n".encode(),
        )

    def forget(self, job: RenderedJob) -> None:
        self.store.forget(job.id)

    def hold(self, key: int, target: str, until: float, static: str = "") -> None:
        """``ccwatch_target_hold_until_timestamp_seconds`` of a held target."""
        labels = target_labels_text(target, static)
        self.store.set(
            TARGET_HOLD_UNTIL,
            key,
            f"{TARGET_HOLD_UNTIL}{{{labels}}} {format_value(until)}\n".encode(),
        )

    def unhold(self, key: int) -> None:
        self.store.delete(TARGET_HOLD_UNTIL, key)


def render_state_samples(
    store: MetricStore,
    renderer: SampleRenderer,
    states: Iterable[tuple[str, Iterable[SampleData]]],
    families: Iterable[str],
) -> None:
    """Scrape-time samples of the targets' states into ``families``' fragments (key 0):
    (target's label text (:func:`target_labels_text`), its samples) pairs; a family no
    state has a sample for is emptied."""
    lines: dict[str, str] = {}
    for labels, samples in states:
        for family, text in renderer.lines(samples, labels, 1).items():
            lines[family] = lines.get(family, "") + text
    for family in families:
        if family in lines:
            store.set(family, 0, lines[family].encode())
        else:
            store.delete(family, 0)


class OpenRenderer:
    """``ccwatch_open`` and ``ccwatch_opening_grace`` of every subject polled.

    The lines of each calendar's subjects are made when the subjects change (start and
    reload), for both values; a scrape joins them again only when a calendar's state
    changed, which the calendars compute once a minute (:class:`ccwatch.calendars.OpeningHours`
    hands back the very same mapping within a minute).
    """

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        #: per calendar (None: no calendar, always open): its subjects' lines as
        #: (open 1, open 0, grace 1, grace 0)
        self._parts: list[tuple[str | None, bytes, bytes, bytes, bytes]] = []
        self._states: object = None

    def configure(self, subjects: Iterable[tuple[str, str | None]]) -> None:
        """The subjects to export: (label text, calendar name or None) pairs, each subject
        once; rendered at the next :meth:`refresh`."""
        by_calendar: dict[str | None, list[str]] = {}
        for labels, calendar in subjects:
            by_calendar.setdefault(calendar, []).append(labels)

        def lines(family: str, labels: list[str], value: int) -> bytes:
            return "".join(f"{family}{{{text}}} {value}\n" for text in labels).encode()

        self._parts = [
            (
                calendar,
                lines(OPEN, labels, 1),
                lines(OPEN, labels, 0),
                lines(OPENING_GRACE, labels, 1),
                lines(OPENING_GRACE, labels, 0),
            )
            for calendar, labels in by_calendar.items()
        ]
        self._states = None

    def refresh(self, states: Mapping[str, tuple[bool, bool]]) -> None:
        """Write the fragments for the calendars' ``states`` (name -> (open, in grace));
        nothing to do when they are the very mapping of the last call."""
        if states is self._states:
            return
        self._states = states
        opened: list[bytes] = []
        grace: list[bytes] = []
        for calendar, open1, open0, grace1, grace0 in self._parts:
            is_open, in_grace = (True, False) if calendar is None else states[calendar]
            opened.append(open1 if is_open else open0)
            grace.append(grace1 if in_grace else grace0)
        if opened:
            self.store.set(OPEN, 0, b"".join(opened))
            self.store.set(OPENING_GRACE, 0, b"".join(grace))
        else:
            self.store.delete(OPEN, 0)
            self.store.delete(OPENING_GRACE, 0)
