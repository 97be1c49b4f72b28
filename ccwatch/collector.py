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
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client import generate_latest as _generate_text
from prometheus_client.openmetrics.exposition import generate_latest as _generate_om

from ccwatch import __version__
from ccwatch.exposition import Family
from ccwatch.exposition import format_value as format_value  # re-exported
from ccwatch.exposition import label_text as label_text  # re-exported

#: Fragments joined into one chunk of a scrape (a few hundred kilobytes).
CHUNK_SERIES = 2000

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
POLLS_IN_FLIGHT = "ccwatch_polls_in_flight"
POLLS_DELAYED = "ccwatch_polls_delayed_total"
CONFIG_LAST_RELOAD_SUCCESS = "ccwatch_config_last_reload_successful"
CONFIG_LAST_RELOAD_TIME = "ccwatch_config_last_reload_success_timestamp_seconds"
TARGET_HOLD_UNTIL = "ccwatch_target_hold_until_timestamp_seconds"


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
        Family(JOBS, "gauge", "Poll jobs configured, by source.", ("source",)),
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
    ]


def build_info_fragment() -> bytes:
    labels = label_text([("version", __version__), ("python_version", platform.python_version())])
    return f"{BUILD_INFO}{{{labels}}} 1\n".encode()
