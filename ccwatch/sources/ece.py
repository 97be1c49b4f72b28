"""Cisco Enterprise Chat and Email (ECE) 12.5 chat entry points (spec 001).

Five anonymous GETs per entry point, each an XML document:

==================  ===========================================================
endpoint            answer
==================  ===========================================================
agentAvailability   ``<agentAvailability available="true"/>``
capacity            ``<availableSlots><ns2:count>4</ns2:count></availableSlots>``
liveSessionStatus   ``<sessionStatus><ns2:waitTime>3.0</..><ns2:queueDepth>1</..>``
checkEligibility    ``<checkEligibility responseType=0 />`` (unquoted, as documented)
chatAllowed         ``<chatAllowed allowed="false" reason="entry_point_inactive"/>``
==================  ===========================================================

ccwatch never calls the survey API (the one POST).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

from pydantic import Field, field_validator, model_validator
from yarl import URL

from ccwatch.config import TargetConfig
from ccwatch.errors import ParseFailure
from ccwatch.http import TargetClient
from ccwatch.sources.base import NO_LABELS, Family, JobSpec, Reading, Sample, Source, StateSet
from ccwatch.xml import (
    attribute,
    child_text,
    expect_root,
    parse_bool,
    parse_float,
    parse_int,
    parse_xml,
)

NAME: Final = "ece"
Endpoint = Literal[
    "agentAvailability", "capacity", "liveSessionStatus", "checkEligibility", "chatAllowed"
]
ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    "agentAvailability",
    "capacity",
    "liveSessionStatus",
    "checkEligibility",
    "chatAllowed",
)
ELIGIBILITY_STATES: Final = ("accepting", "no_agent", "queue_full")  # responseType 0, 1, 2
BLOCKED_REASONS: Final = (
    "queue_depth_reached",
    "agent_not_available",
    "service_not_running",
    "invalid_entry_point",
    "entry_point_inactive",
    "other",
)
XML_TYPES: Final = ("xml",)
PATH: Final = "/egain/chat/entrypoint/{endpoint}/{entry_point}"


class EceTarget(TargetConfig):
    """``source: ece``: a base URL and the chat entry points to watch."""

    source: Literal["ece"]
    entry_points: list[int] = Field(min_length=1)
    #: Which of the five GETs to poll; all by default.
    endpoints: list[Endpoint] = Field(default_factory=lambda: list(ENDPOINTS), min_length=1)
    #: entry point -> calendar name, overriding the target's ``calendar`` for it
    entry_point_calendars: dict[int, str] = Field(default_factory=dict)
    #: The unit of liveSessionStatus's ``waitTime``, which the spec does not document
    #: (its sample, 3.0, reads as seconds); exported in seconds either way.
    wait_time_unit: Literal["seconds", "minutes"] = "seconds"

    threshold_keys: ClassVar[tuple[str, ...]] = (
        "ece_queue_depth",
        "ece_wait_time",
        "ece_availability_objective",
        "ece_staffed_availability_objective",
    )

    #: ECE's chat APIs serve customers' browsers: poll them no more than every 5 s.
    interval_floor: ClassVar[float | None] = 5.0

    def vendor_load(self, interval: float) -> str:
        requests = len(self.entry_points) * len(self.endpoints) * 60 / interval
        return (
            f"{requests:g} requests a minute to ECE ({len(self.entry_points)} entry points "
            f"x {len(self.endpoints)} endpoints)"
        )

    def calendar_of(self, subject: Mapping[str, str]) -> str | None:
        override = self.entry_point_calendars.get(int(subject["entry_point"]))
        return self.calendar if override is None else override

    def calendar_names(self) -> list[tuple[str, str]]:
        return [
            *super().calendar_names(),
            *(
                (f"entry_point_calendars.{ep}", name)
                for ep, name in self.entry_point_calendars.items()
            ),
        ]

    @model_validator(mode="after")
    def _calendar_entry_points(self) -> EceTarget:
        unknown = sorted(set(self.entry_point_calendars) - set(self.entry_points))
        if unknown:
            raise ValueError(
                f"entry_point_calendars: entry points {unknown} are not in entry_points"
            )
        return self

    @field_validator("entry_points")
    @classmethod
    def _unique_ids(cls, value: list[int]) -> list[int]:
        if any(ep < 0 for ep in value):
            raise ValueError("entry point ids must be non-negative integers")
        dupes = sorted(ep for ep, n in Counter(value).items() if n > 1)
        if dupes:
            raise ValueError(f"duplicate entry point ids: {dupes}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _unique_endpoints(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("duplicate endpoints")
        return value


# --------------------------------------------------------------------------- readings

AGENT_AVAILABLE = "ccwatch_ece_agent_available"
AVAILABLE_SLOTS = "ccwatch_ece_available_slots"
QUEUE_DEPTH = "ccwatch_ece_queue_depth"
WAIT_TIME = "ccwatch_ece_wait_time_seconds"
ELIGIBILITY = "ccwatch_ece_eligibility"
CHAT_ALLOWED = "ccwatch_ece_chat_allowed"
CHAT_BLOCKED = "ccwatch_ece_chat_blocked"

_NOTHING: Final[Mapping[str, str]] = MappingProxyType({})
_ELIGIBILITY_SET = StateSet(ELIGIBILITY, "state", ELIGIBILITY_STATES)
_BLOCKED_SET = StateSet(CHAT_BLOCKED, "reason", BLOCKED_REASONS)


@dataclass(frozen=True, slots=True)
class AgentAvailability:
    available: bool

    def samples(self) -> Iterable[Sample]:
        return ((AGENT_AVAILABLE, NO_LABELS, 1.0 if self.available else 0.0),)

    def watched(self) -> Mapping[str, str]:
        return _NOTHING

    def describe(self) -> str:
        return "agent available" if self.available else "no agent available"


@dataclass(frozen=True, slots=True)
class Capacity:
    available_slots: int

    def samples(self) -> Iterable[Sample]:
        return ((AVAILABLE_SLOTS, NO_LABELS, float(self.available_slots)),)

    def watched(self) -> Mapping[str, str]:
        return _NOTHING

    def describe(self) -> str:
        return f"{self.available_slots} free chat slot{'' if self.available_slots == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class SessionStatus:
    wait_time_seconds: float
    queue_depth: int

    def samples(self) -> Iterable[Sample]:
        return (
            (QUEUE_DEPTH, NO_LABELS, float(self.queue_depth)),
            (WAIT_TIME, NO_LABELS, self.wait_time_seconds),
        )

    def watched(self) -> Mapping[str, str]:
        return _NOTHING

    def describe(self) -> str:
        return f"queue depth {self.queue_depth}, estimated wait {self.wait_time_seconds:g}s"


@dataclass(frozen=True, slots=True)
class Eligibility:
    state: str  # one of ELIGIBILITY_STATES

    def samples(self) -> Iterable[Sample]:
        return _ELIGIBILITY_SET.samples(self.state)

    def watched(self) -> Mapping[str, str]:
        return {"eligibility": self.state}

    def describe(self) -> str:
        return f"eligibility: {self.state}"


@dataclass(frozen=True, slots=True)
class ChatAllowed:
    allowed: bool
    reason: str | None  # one of BLOCKED_REASONS when not allowed
    raw_reason: str | None = None  # as the server wrote it

    def samples(self) -> Iterable[Sample]:
        allowed: Sample = (CHAT_ALLOWED, NO_LABELS, 1.0 if self.allowed else 0.0)
        return (allowed, *_BLOCKED_SET.samples(self.reason))

    def watched(self) -> Mapping[str, str]:
        return {
            "chat_allowed": "true" if self.allowed else "false",
            "blocked_reason": self.reason or "",
        }

    def describe(self) -> str:
        if self.allowed:
            return "chat allowed"
        if self.raw_reason is not None and self.raw_reason != self.reason:
            return f"chat blocked: {self.reason} ({self.raw_reason!r} as sent)"
        return f"chat blocked: {self.reason}"


# --------------------------------------------------------------------------- parsers


def parse_agent_availability(body: bytes) -> AgentAvailability:
    root = parse_xml(body)
    expect_root(root, "agentAvailability")
    return AgentAvailability(parse_bool(attribute(root, "available"), "available"))


def parse_capacity(body: bytes) -> Capacity:
    root = parse_xml(body)
    expect_root(root, "availableSlots")
    count = parse_int(child_text(root, "count"), "count")
    if count < 0:
        raise ParseFailure(f"count: negative capacity {count}")
    return Capacity(count)


def parse_live_session_status(body: bytes, wait_unit_seconds: float = 1.0) -> SessionStatus:
    """``waitTime`` in ``wait_unit_seconds`` (60 for a target's ``wait_time_unit:
    minutes``), returned in seconds."""
    root = parse_xml(body)
    expect_root(root, "sessionStatus")
    wait = parse_float(child_text(root, "waitTime"), "waitTime")
    depth = parse_int(child_text(root, "queueDepth"), "queueDepth")
    if wait < 0 or depth < 0:
        raise ParseFailure(f"negative waitTime {wait} or queueDepth {depth}")
    return SessionStatus(wait * wait_unit_seconds, depth)


def parse_check_eligibility(body: bytes) -> Eligibility:
    root = parse_xml(body)
    expect_root(root, "checkEligibility")
    response_type = parse_int(attribute(root, "responseType"), "responseType")
    if not 0 <= response_type < len(ELIGIBILITY_STATES):
        raise ParseFailure(f"responseType: unknown value {response_type}")
    return Eligibility(ELIGIBILITY_STATES[response_type])


def parse_chat_allowed(body: bytes) -> ChatAllowed:
    root = parse_xml(body)
    expect_root(root, "chatAllowed")
    allowed = parse_bool(attribute(root, "allowed"), "allowed")
    if allowed:
        return ChatAllowed(True, None)
    raw = root.get("reason")
    reason = raw.strip().lower() if raw else "other"
    if reason not in BLOCKED_REASONS:
        reason = "other"
    return ChatAllowed(False, reason, raw)


PARSERS: Final[Mapping[str, Callable[[bytes], Reading]]] = MappingProxyType(
    {
        "agentAvailability": parse_agent_availability,
        "capacity": parse_capacity,
        "liveSessionStatus": parse_live_session_status,
        "checkEligibility": parse_check_eligibility,
        "chatAllowed": parse_chat_allowed,
    }
)

# --------------------------------------------------------------------------- jobs


async def _poll(client: TargetClient, url: URL, parse: Callable[[bytes], Reading]) -> Reading:
    response = await client.request("GET", url, content_types=XML_TYPES)
    return parse(response.body)


_WAIT_UNITS: Final = {"seconds": 1.0, "minutes": 60.0}


def parser(endpoint: str, wait_time_unit: str = "seconds") -> Callable[[bytes], Reading]:
    """The parser of one endpoint's answers for a target."""
    unit = _WAIT_UNITS[wait_time_unit]
    if endpoint == "liveSessionStatus" and unit != 1.0:
        return lambda body: parse_live_session_status(body, unit)
    return PARSERS[endpoint]


class _Poll:
    """One job's poll. The URL object is made per poll from the job's URL text (about
    2 µs): kept per job, with what aiohttp caches on it, it cost 600 bytes a job."""

    __slots__ = ("client", "parse", "url")

    def __init__(self, client: TargetClient, url: str, parse: Callable[[bytes], Reading]) -> None:
        self.client = client
        self.url = url
        self.parse = parse

    def __call__(self) -> Coroutine[Any, Any, Reading]:
        # the base URL is encoded once per target; the path is plain ASCII
        return _poll(self.client, URL(self.url, encoded=True), self.parse)


def jobs(target: EceTarget, client: TargetClient, state: None = None) -> list[JobSpec]:
    out = []
    base = client.url("")
    parsers = {endpoint: parser(endpoint, target.wait_time_unit) for endpoint in target.endpoints}
    for entry_point in target.entry_points:
        subject = {"entry_point": str(entry_point)}
        for endpoint in target.endpoints:
            path = PATH.format(endpoint=endpoint, entry_point=entry_point)
            out.append(JobSpec(endpoint, subject, _Poll(client, base + path, parsers[endpoint])))
    return out


_LABELS = ("target", "entry_point")


def _help(what: str, endpoint: str) -> str:
    return f"{what} (from ccwatch's last successful {endpoint} poll)."


SOURCE: Final = Source(
    name=NAME,
    config_model=EceTarget,
    subject_labels=("entry_point",),
    families=(
        Family(
            AGENT_AVAILABLE,
            "gauge",
            _help("1 if an agent is available for chats from the entry point", "agentAvailability"),
            _LABELS,
        ),
        Family(
            AVAILABLE_SLOTS,
            "gauge",
            _help("Free chat capacity of the entry point's agents", "capacity"),
            _LABELS,
        ),
        Family(
            QUEUE_DEPTH,
            "gauge",
            _help("Chats waiting in the entry point's queue", "liveSessionStatus"),
            _LABELS,
        ),
        Family(
            WAIT_TIME,
            "gauge",
            _help("Estimated wait in the entry point's queue in seconds", "liveSessionStatus"),
            _LABELS,
        ),
        Family(
            ELIGIBILITY,
            "gauge",
            _help("Entry point eligibility: accepting, no_agent or queue_full", "checkEligibility"),
            (*_LABELS, "state"),
        ),
        Family(
            CHAT_ALLOWED,
            "gauge",
            _help("1 if the entry point accepts new chats", "chatAllowed"),
            _LABELS,
        ),
        Family(
            CHAT_BLOCKED,
            "gauge",
            _help("Why the entry point refuses new chats; all 0 while allowed", "chatAllowed"),
            (*_LABELS, "reason"),
        ),
    ),
    jobs=jobs,
    headers={"Accept": "application/xml"},
)
