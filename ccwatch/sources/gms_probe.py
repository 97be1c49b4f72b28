"""Genesys Mobile Services (GMS) synthetic probe (spec 003). OPT-IN: it creates services.

Every other ccwatch source only reads. This one, once per interval (5 minutes unless
configured), **creates and starts a real GMS service** (for ``request-interaction`` or
``request-inbound-poll`` that can mean a real callback or interaction in the contact
center), then optionally asks for its status::

    POST {url}/genesys/1/service/{gms_service}          form fields -> {"_id": "...", ...}
    POST {url}/genesys/1/service/{id}/{status_request}  -> {"status": "waiting-for-agent", ...}

The spec's "Service specific Request" is "only to be used for request-inbound-... or
request-outbound-... based services otherwise it will be rejected": ``status_request`` is
a config error for any other ``gms_service`` (see :func:`allows_service_requests`); a
create-only probe of any service is fine.

The form is sent ``application/x-www-form-urlencoded`` (default) or ``multipart/form-data``
(``form_encoding: multipart``). The created service's id is read from ``_id`` (the spec's
example) or ``id`` (the spec's text). The spec's example answer is not valid JSON
(``_access_code="7684"``); a bare ``name=`` key like that is read too.

A 404 to the create request means the service is not configured on the GMS: the poll
fails with reason ``http_status`` and a detail naming the service.

``ccwatch_gms_probe_success`` is the probe's verdict and, unlike every other vendor series,
stays exported when a poll fails: 1 when the service was created, its status (if
requested) was read and is one of ``expected_statuses`` (if given); 0 when the probe
failed for any reason, including a failed poll (time-out, HTTP error, unreadable answer).
It is kept in the target's :class:`ProbeState`, owned by the daemon, and read at scrape
time; a verdict older than twice the interval reads 0 (the freshness rule). The
step durations and the status state set come from the last successful poll and vanish
when a poll fails, like every other vendor series.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import Field, ValidationInfo, field_validator, model_validator
from yarl import URL

from ccwatch.config import TargetConfig
from ccwatch.errors import ParseFailure, StatusFailure
from ccwatch.http import TargetClient
from ccwatch.numbers import check_json_int
from ccwatch.sources.base import Family, JobSpec, Sample, Source, StateSet

NAME: Final = "gms_probe"
ENDPOINT: Final = "probe"
CREATE_PATH: Final = "/genesys/1/service/{service}"
REQUEST_PATH: Final = "/genesys/1/service/{id}/{request}"
JSON_TYPES: Final = ("json",)
#: The services a service request (``status_request``) may be made on (spec 003, "Service
#: specific Request": "only to be used for request-inbound-... or request-outbound-...
#: based services otherwise it will be rejected").
SERVICE_REQUEST_PREFIXES: Final = ("request-inbound-", "request-outbound-")


def allows_service_requests(service: str) -> bool:
    """Whether spec 003 allows service requests on a GMS service of this name."""
    return any(
        service.startswith(prefix) and len(service) > len(prefix)
        for prefix in SERVICE_REQUEST_PREFIXES
    )


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError("form values must be strings, numbers or booleans")


class GmsProbeTarget(TargetConfig):
    """``source: gms_probe``: a GMS base URL and the service the probe creates."""

    source: Literal["gms_probe"]
    #: The name of the configured GMS service to create (``request-interaction``, ...).
    gms_service: str = Field(min_length=1, max_length=256)
    #: The form fields of the create request; keys starting with ``_`` go to ORS.
    form: dict[str, str] = Field(default_factory=dict)
    form_encoding: Literal["urlencoded", "multipart"] = "urlencoded"
    #: A service request to make on the created service (``status``); none by default.
    #: Only on ``request-inbound-...`` and ``request-outbound-...`` services (spec 003).
    status_request: str | None = Field(default=None, min_length=1, max_length=256)
    #: The statuses that count as success; any status counts when empty.
    expected_statuses: list[str] = Field(default_factory=list)

    #: A probe creates a real service: rarely, unless configured otherwise.
    default_interval: ClassVar[float | None] = 300.0
    #: Each poll creates a real service: no more than one a minute.
    interval_floor: ClassVar[float | None] = 60.0

    def vendor_load(self, interval: float) -> str:
        return (
            f"{60 / interval:g} real {self.gms_service} services a minute created on GMS "
            "(each may become a real interaction)"
        )

    @field_validator("form", mode="before")
    @classmethod
    def _form_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): _form_value(v) for k, v in value.items()}
        return value

    @field_validator("status_request")
    @classmethod
    def _service_request_allowed(cls, value: str | None, info: ValidationInfo) -> str | None:
        service = info.data.get("gms_service")  # absent when gms_service itself is invalid
        if value is not None and isinstance(service, str) and not allows_service_requests(service):
            raise ValueError(
                "service requests are only allowed on request-inbound-... and "
                "request-outbound-... services (spec 003, Service specific Request); "
                f"{service!r} is neither"
            )
        return value

    @field_validator("expected_statuses")
    @classmethod
    def _unique_statuses(cls, value: list[str]) -> list[str]:
        if any(not status for status in value):
            raise ValueError("statuses must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("duplicate statuses")
        return value

    @model_validator(mode="after")
    def _check(self) -> GmsProbeTarget:
        if self.expected_statuses and self.status_request is None:
            raise ValueError("expected_statuses needs status_request")
        return self


# --------------------------------------------------------------------------- results

PROBE_SUCCESS = "ccwatch_gms_probe_success"
STEP_DURATION = "ccwatch_gms_probe_step_duration_seconds"
SERVICE_STATUS = "ccwatch_gms_service_status"


class ProbeState:
    """The last probe verdict of one target: outlives failed polls and reloads."""

    __slots__ = ("at", "max_age", "service", "success")

    def __init__(self, target: GmsProbeTarget) -> None:
        self.success: bool | None = None  # None until the first probe ends
        #: monotonic time of the verdict
        self.at = 0.0
        self.service = target.gms_service
        self.max_age = _max_age(target)

    def reconfigure(self, target: GmsProbeTarget) -> None:
        if target.gms_service != self.service:  # another service: its own verdict
            self.success = None
            self.service = target.gms_service
        self.max_age = _max_age(target)

    def samples(self) -> Iterator[Sample]:
        """``ccwatch_gms_probe_success`` once a probe has ended."""
        if self.success is not None:
            # the freshness rule: a verdict older than twice the interval is no success
            fresh = time.monotonic() - self.at <= self.max_age
            yield PROBE_SUCCESS, (self.service,), 1.0 if self.success and fresh else 0.0


def _max_age(target: GmsProbeTarget) -> float:
    # gms_probe's interval is the target's own or the source default (5m), never
    # defaults.interval
    return 2 * (target.interval or GmsProbeTarget.default_interval or 300.0)


_CREATE: Final = ("create",)
_STATUS: Final = ("status",)


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """One completed probe: step durations, and the status if one was requested."""

    create_seconds: float
    status_seconds: float | None
    status: str | None
    statuses: StateSet
    expected: frozenset[str]

    @property
    def success(self) -> bool:
        return not self.expected or self.status in self.expected

    def samples(self) -> Iterable[Sample]:
        out: list[Sample] = [(STEP_DURATION, _CREATE, self.create_seconds)]
        if self.status_seconds is not None:
            out.append((STEP_DURATION, _STATUS, self.status_seconds))
        if self.status is not None:
            out.extend(self.statuses.samples(self.status))
        return out

    def watched(self) -> Mapping[str, str]:
        if self.status is None:
            return {}
        return {"status": self.status}


# --------------------------------------------------------------------------- parsers

# name= or name: without quotes, right after { or , (the spec's `_access_code="7684"`)
_BARE_KEY_RE: Final = re.compile(rb'([{,]\s*)([A-Za-z_][A-Za-z0-9_.-]*)\s*[=:]\s*(?=["\d\[{tfn-])')


def load_json_object(body: bytes, what: str) -> dict[str, Any]:
    """A JSON object; bare ``name=`` keys as in the spec's example are tolerated."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        repaired = _BARE_KEY_RE.sub(rb'\1"\2":', body)
        try:
            data = orjson.loads(repaired) if repaired != body else None
        except orjson.JSONDecodeError:
            data = None
        if data is None:
            raise ParseFailure(f"{what}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParseFailure(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def parse_create(body: bytes) -> str:
    """The id of the created service, from ``_id`` or ``id``."""
    data = load_json_object(body, "create")
    for key in ("_id", "id"):
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):  # a number is a plain integer of at most 2**53
            return str(check_json_int(value, f"create: {key}"))
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise ParseFailure("create: no service id (_id or id) in the answer")


def parse_status(body: bytes) -> str:
    """The ``status`` of a service request's answer."""
    data = load_json_object(body, "status")
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise ParseFailure("status: no status in the answer")
    return status.strip()


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class _Probe:
    target: GmsProbeTarget
    client: TargetClient
    create_url: URL
    statuses: StateSet
    expected: frozenset[str]
    state: ProbeState

    def form(self, fields: Mapping[str, str]) -> Any:
        if self.target.form_encoding == "multipart":
            return aiohttp.FormData(dict(fields), default_to_multipart=True)
        return dict(fields)


async def _run(probe: _Probe) -> ProbeReading:
    success = False
    try:
        reading = await _steps(probe)
        success = reading.success
        return reading
    finally:  # also on a failed or timed-out poll: that probe failed
        probe.state.success = success
        probe.state.at = time.monotonic()


async def _steps(probe: _Probe) -> ProbeReading:
    target = probe.target
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        response = await probe.client.request(
            "POST", probe.create_url, data=probe.form(target.form), content_types=JSON_TYPES
        )
    except StatusFailure as exc:
        if exc.status != 404:
            raise
        raise StatusFailure(
            404,
            f"GMS service {target.gms_service!r} is not configured on the server (HTTP 404)",
            retry_after=exc.retry_after,
        ) from None
    service_id = parse_create(response.body)
    create_seconds = loop.time() - started
    if target.status_request is None:
        return ProbeReading(create_seconds, None, None, probe.statuses, probe.expected)
    url = URL(
        probe.client.url(
            REQUEST_PATH.format(
                id=quote(service_id, safe=""), request=quote(target.status_request, safe="")
            )
        ),
        encoded=True,
    )
    started = loop.time()
    try:
        response = await probe.client.request(
            "POST", url, data=probe.form({}), content_types=JSON_TYPES
        )
    except StatusFailure as exc:
        if exc.status != 404:
            raise
        raise StatusFailure(
            404,
            f"GMS {target.status_request!r} request for the new {target.gms_service!r} "
            "service: not found (HTTP 404)",
            retry_after=exc.retry_after,
        ) from None
    status = parse_status(response.body)
    status_seconds = loop.time() - started
    return ProbeReading(create_seconds, status_seconds, status, probe.statuses, probe.expected)


def jobs(target: GmsProbeTarget, client: TargetClient, state: ProbeState) -> list[JobSpec]:
    service = quote(target.gms_service, safe="")
    probe = _Probe(
        target=target,
        client=client,
        create_url=URL(client.url(CREATE_PATH.format(service=service)), encoded=True),
        statuses=StateSet(SERVICE_STATUS, "status", target.expected_statuses),
        expected=frozenset(target.expected_statuses),
        state=state,
    )
    return [JobSpec(ENDPOINT, {"gms_service": target.gms_service}, partial(_run, probe))]


_LABELS = ("target", "gms_service")

SOURCE: Final = Source(
    name=NAME,
    config_model=GmsProbeTarget,
    subject_labels=("gms_service",),
    families=(
        Family(
            PROBE_SUCCESS,
            "gauge",
            "1 if ccwatch's last GMS probe created the service and read an expected status, "
            "else 0 (from ccwatch's last probe poll; 0 when that poll failed).",
            _LABELS,
        ),
        Family(
            STEP_DURATION,
            "gauge",
            "How long each step of ccwatch's last GMS probe took, in seconds: create or "
            "status (from ccwatch's last successful probe poll).",
            (*_LABELS, "step"),
        ),
        Family(
            SERVICE_STATUS,
            "gauge",
            "Status of the service ccwatch's last GMS probe created: 1 on the observed "
            "status, 0 on the other expected ones (from ccwatch's last successful probe poll).",
            (*_LABELS, "status"),
        ),
    ),
    jobs=jobs,
    headers={"Accept": "application/json"},
    state=ProbeState,
)
