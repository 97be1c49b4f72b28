"""Genesys Context Services (through GMS): services of configured customers (spec 002).

For every configured customer id and contact key, two GETs, each answered with a JSON
array of Service objects:

===========  ==================================================================
endpoint     request
===========  ==================================================================
active       ``/genesys/1/cs/customers/{customer_id}/services/active``
             ``/genesys/1/cs/services/anonymous/{contact_key}/active``
completed    the same with ``/completed?completed_from=<now - completed_window>``
===========  ==================================================================

ccwatch only watches what it is configured with; it never lists customers. Path
segments are percent-encoded. A Service looks like (the spec's sample, without its
``//`` documentation comments, which no server sends)::

    [{"customer_id": "ABC1234", "service_id": 4692834, "est_duration": 86400,
      "started": {"timestamp": "2009-05-07T12:05:20.157", ...}, ...}]

Timestamps are ISO 8601; one without a zone (as in the sample) is read as UTC. The
service type is read from the Start Event (``started.service_type``), or from a
top-level ``service_type``; it is a business attribute id (number) or name (string).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import quote

import orjson
from pydantic import BeforeValidator, Field, StringConstraints, field_validator, model_validator
from yarl import URL

from ccwatch.config import Duration, TargetConfig
from ccwatch.errors import ParseFailure
from ccwatch.http import TargetClient
from ccwatch.numbers import check_json_int
from ccwatch.sources.base import NO_LABELS, Family, JobSpec, Reading, Sample, Source

NAME: Final = "genesys_services"
ACTIVE: Final = "active"
COMPLETED: Final = "completed"
ENDPOINTS: Final = (ACTIVE, COMPLETED)
JSON_TYPES: Final = ("json",)
CUSTOMER_PATH: Final = "/genesys/1/cs/customers/{id}/services/{endpoint}"
ANONYMOUS_PATH: Final = "/genesys/1/cs/services/anonymous/{id}/{endpoint}"
DEFAULT_COMPLETED_WINDOW: Final = 3600.0


def _type_name(value: object) -> object:
    """A configured service type: a business attribute id (YAML number) or name."""
    if isinstance(value, bool):
        raise ValueError("a service type is a number or a string, not a boolean")
    if isinstance(value, int):
        return str(value)
    return value


SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ServiceType = Annotated[
    str, BeforeValidator(_type_name), StringConstraints(min_length=1, max_length=128)
]


class GenesysServicesTarget(TargetConfig):
    """``source: genesys_services``: a GMS base URL and the subjects to watch."""

    source: Literal["genesys_services"]
    customer_ids: list[SubjectId] = Field(default_factory=list)
    contact_keys: list[SubjectId] = Field(default_factory=list)
    #: ``completed_services`` counts the services completed within this long before a poll.
    completed_window: Duration = DEFAULT_COMPLETED_WINDOW
    #: Export ``active_services_by_type`` for these service types; absent: not exported.
    service_types: list[ServiceType] | None = Field(default=None, min_length=1)

    threshold_keys: ClassVar[tuple[str, ...]] = ("genesys_oldest_active_service_age",)

    @field_validator("customer_ids", "contact_keys", "service_types")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            dupes = sorted({v for v in value if value.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate values: {dupes}")
        return value

    @model_validator(mode="after")
    def _something_to_watch(self) -> GenesysServicesTarget:
        if not self.customer_ids and not self.contact_keys:
            raise ValueError("set customer_ids or contact_keys (or both): nothing to watch")
        return self


# --------------------------------------------------------------------------- readings

ACTIVE_SERVICES = "ccwatch_genesys_active_services"
COMPLETED_SERVICES = "ccwatch_genesys_completed_services"
OLDEST_AGE = "ccwatch_genesys_oldest_active_service_age_seconds"
ACTIVE_BY_TYPE = "ccwatch_genesys_active_services_by_type"

_NOTHING: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ActiveServices:
    """The active services of one subject at ``now``."""

    count: int
    #: Age of the oldest active service; 0 when there is none.
    oldest_age_seconds: float
    #: (service type, active services of that type) per configured type, or None.
    by_type: tuple[tuple[str, int], ...] | None = None

    def samples(self) -> Iterable[Sample]:
        out: list[Sample] = [
            (ACTIVE_SERVICES, NO_LABELS, float(self.count)),
            (OLDEST_AGE, NO_LABELS, self.oldest_age_seconds),
        ]
        if self.by_type is not None:
            out.extend((ACTIVE_BY_TYPE, (kind,), float(n)) for kind, n in self.by_type)
        return out

    def watched(self) -> Mapping[str, str]:
        return _NOTHING


@dataclass(frozen=True, slots=True)
class CompletedServices:
    """The services of one subject completed within the window."""

    count: int

    def samples(self) -> Iterable[Sample]:
        return ((COMPLETED_SERVICES, NO_LABELS, float(self.count)),)

    def watched(self) -> Mapping[str, str]:
        return _NOTHING


# --------------------------------------------------------------------------- parsers


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def parse_timestamp(value: object, what: str) -> datetime:
    """An ISO 8601 date/time; one without a zone (``2009-05-07T12:05:20.157``) is UTC."""
    if not isinstance(value, str):
        raise ParseFailure(f"{what}: expected an ISO 8601 date/time, got {_kind(value)}")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ParseFailure(f"{what}: not an ISO 8601 date/time: {value[:64]!r}") from None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def format_timestamp(when: datetime) -> str:
    """``[YYYY]-[MM]-[DD]T[HH]:[mm]:[ss].[SSS]Z``, as the spec writes query date/times."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_services(body: bytes) -> list[dict[str, Any]]:
    """The JSON array of Service objects, each checked to be an object with a service_id."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseFailure(f"invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ParseFailure(f"expected a JSON array of services, got {_kind(data)}")
    for i, service in enumerate(data):
        if not isinstance(service, dict):
            raise ParseFailure(f"[{i}]: expected a service object, got {_kind(service)}")
        if "service_id" not in service:
            raise ParseFailure(f"[{i}]: service has no service_id")
        service_id = service["service_id"]
        if isinstance(service_id, bool) or not isinstance(service_id, int | str):
            raise ParseFailure(f"[{i}].service_id: expected an id, got {_kind(service_id)}")
    return data


def _event(service: dict[str, Any], name: str, i: int) -> dict[str, Any]:
    event = service.get(name)
    if not isinstance(event, dict):
        if event is None:
            raise ParseFailure(f"[{i}]: service has no {name} event")
        raise ParseFailure(f"[{i}].{name}: expected an object, got {_kind(event)}")
    return event


def _service_type(service: dict[str, Any], started: dict[str, Any], i: int) -> str | None:
    value = started.get("service_type", service.get("service_type"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ParseFailure(f"[{i}].service_type: expected a number or a string")
    if isinstance(value, int):  # a business attribute id: a plain integer of at most 2**53
        return str(check_json_int(value, f"[{i}].service_type"))
    return value


def parse_active(
    body: bytes, now: datetime, service_types: Sequence[str] | None = None
) -> ActiveServices:
    """An ``/active`` answer at ``now``: the count, the oldest age and, for the configured
    ``service_types``, the count of each type."""
    services = parse_services(body)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    oldest = 0.0
    counts: dict[str, int] = dict.fromkeys(service_types or (), 0)
    for i, service in enumerate(services):
        started = _event(service, "started", i)
        if "timestamp" not in started:
            raise ParseFailure(f"[{i}].started: no timestamp")
        when = parse_timestamp(started["timestamp"], f"[{i}].started.timestamp")
        # a start in the future (clock skew) counts as just started
        oldest = max(oldest, (now - when).total_seconds())
        if service_types is not None:
            kind = _service_type(service, started, i)
            if kind is not None and kind in counts:
                counts[kind] += 1
    by_type = tuple(counts.items()) if service_types is not None else None
    return ActiveServices(len(services), oldest, by_type)


def parse_completed(body: bytes, since: datetime | None = None) -> CompletedServices:
    """A ``/completed`` answer: the services completed at or after ``since``.

    The server filters with ``completed_from``; as a guard against one that ignores
    it, a service whose ``completed.timestamp`` is before ``since`` is not counted.
    """
    services = parse_services(body)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    count = 0
    for i, service in enumerate(services):
        completed = service.get("completed")
        if since is not None and completed is not None:
            if not isinstance(completed, dict):
                raise ParseFailure(f"[{i}].completed: expected an object, got {_kind(completed)}")
            if "timestamp" in completed:
                when = parse_timestamp(completed["timestamp"], f"[{i}].completed.timestamp")
                if when < since:
                    continue
        count += 1
    return CompletedServices(count)


# --------------------------------------------------------------------------- jobs


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _segment(value: str) -> str:
    """One percent-encoded path segment (``/`` included; ``.`` and ``..`` too)."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def _url(client: TargetClient, template: str, subject_id: str, endpoint: str) -> URL:
    path = template.format(id=_segment(subject_id), endpoint=endpoint)
    return URL(client.url(path), encoded=True)


async def _poll_active(
    client: TargetClient, url: URL, service_types: tuple[str, ...] | None
) -> Reading:
    response = await client.request("GET", url, content_types=JSON_TYPES)
    return parse_active(response.body, _utcnow(), service_types)


async def _poll_completed(client: TargetClient, url: URL, window: float) -> Reading:
    since = _utcnow() - timedelta(seconds=window)
    params = {"completed_from": format_timestamp(since)}
    response = await client.request("GET", url, params=params, content_types=JSON_TYPES)
    return parse_completed(response.body, since)


def jobs(target: GenesysServicesTarget, client: TargetClient, state: None = None) -> list[JobSpec]:
    types = tuple(target.service_types) if target.service_types is not None else None
    subjects = [("customer_id", CUSTOMER_PATH, c) for c in target.customer_ids] + [
        ("contact_key", ANONYMOUS_PATH, k) for k in target.contact_keys
    ]
    out = []
    for label, template, subject_id in subjects:
        subject = {label: subject_id}
        active = _url(client, template, subject_id, ACTIVE)
        completed = _url(client, template, subject_id, COMPLETED)
        out.append(JobSpec(ACTIVE, subject, partial(_poll_active, client, active, types)))
        out.append(
            JobSpec(
                COMPLETED,
                subject,
                partial(_poll_completed, client, completed, target.completed_window),
            )
        )
    return out


_LABELS = ("target", "customer_id", "contact_key")


def _help(what: str, endpoint: str) -> str:
    return f"{what} (from ccwatch's last successful {endpoint} poll)."


SOURCE: Final = Source(
    name=NAME,
    config_model=GenesysServicesTarget,
    subject_labels=("customer_id", "contact_key"),
    families=(
        Family(
            ACTIVE_SERVICES,
            "gauge",
            _help("Active Context Services services of the customer or contact key", ACTIVE),
            _LABELS,
        ),
        Family(
            COMPLETED_SERVICES,
            "gauge",
            _help(
                "Services of the customer or contact key completed within the target's "
                "completed_window before the poll",
                COMPLETED,
            ),
            _LABELS,
        ),
        Family(
            OLDEST_AGE,
            "gauge",
            _help(
                "Age in seconds of the oldest active service of the customer or contact key, "
                "from its start timestamp; 0 when none is active",
                ACTIVE,
            ),
            _LABELS,
        ),
        Family(
            ACTIVE_BY_TYPE,
            "gauge",
            _help(
                "Active services of the customer or contact key, per configured service type",
                ACTIVE,
            ),
            (*_LABELS, "service_type"),
        ),
    ),
    jobs=jobs,
    headers={"Accept": "application/json"},
)
