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

Contact keys are personal data (typically the caller's phone number), so a contact key
is never a label value. Each is written either with a name, which becomes its
``contact_key`` label value::

    contact_keys: [{key: "408-832-7799", name: hotline-a}]

or bare (``contact_keys: ["408-832-7799"]``), and then labelled with a pseudonym:
``ck-`` and the first 12 hex digits of HMAC-SHA256 with the target's
``pseudonym_salt`` (or ``pseudonym_salt_file``) as the key and the contact key as the
message; without a salt, the target's ``name`` is the key. A pseudonym is the same on
every start and reload as long as the salt (or name) is. Without a secret salt the
pseudonym of a phone number can be brute-forced (there are few phone numbers and the
target's name is no secret): give the keys names, or set a ``pseudonym_salt``.

Only the request URL carries the contact key: the job's subject (hence the metrics, the
logs, the status page and ``/api/v1/targets``) holds the label value, and a poll's
failure details and, under ``ccwatch probe``, its traced exchanges (but their URL) have
every occurrence of the key replaced by the label value. Customer ids are exported as
they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import quote, quote_plus

import orjson
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from yarl import URL

from ccwatch.config import Duration, StrictModel, TargetConfig, _resolve_secret
from ccwatch.errors import ParseFailure, PollError
from ccwatch.http import TRACE, Exchange, TargetClient
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

#: What a contact key's name (its label value) may be made of.
NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
PSEUDONYM_PREFIX: Final = "ck-"
PSEUDONYM_HEX_DIGITS: Final = 12


def pseudonym(key: str, salt: str) -> str:
    """The label value of a contact key without a name: ``ck-`` and the first 12 hex
    digits of HMAC-SHA256(key=``salt``, msg=``key``), both UTF-8."""
    digest = hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]


def _check_name(value: str) -> str:
    # the value is not repeated: a mistyped name may be the phone number itself
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            "a contact key name is 1 to 128 letters, digits, '_', '.', ':' or '-' (e.g. hotline-a)"
        )
    return value


def _contact_key(value: object) -> object:
    """A bare contact key (a string) is the mapping ``{key: <it>}``."""
    if isinstance(value, str):
        return {"key": value}
    if isinstance(value, dict):
        return value
    # the value is not repeated: an unquoted phone number reads as a YAML number
    raise ValueError(
        "a contact key is a string (quote a number) or a mapping {key: ..., name: ...}"
    )


class ContactKey(StrictModel):
    """One contact key to watch and, optionally, its label value."""

    #: the contact key: only ever sent in the request URL (and kept out of ``repr``)
    key: SubjectId = Field(repr=False)
    #: the ``contact_key`` label value; none: a pseudonym (see :func:`pseudonym`)
    name: Annotated[str, AfterValidator(_check_name)] | None = None


def _problems(title: str, problems: list[tuple[tuple[int | str, ...], str]]) -> ValidationError:
    """One error per (key path below the target, problem), so each names its own path."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("contact_keys", "{problem}", {"problem": problem}),
                loc=loc,
                input=None,
            )
            for loc, problem in problems
        ],
    )


class GenesysServicesTarget(TargetConfig):
    """``source: genesys_services``: a GMS base URL and the subjects to watch.

    ``contact_keys`` are personal data and never label values: each is labelled with
    its ``name`` or, without one, with its pseudonym, ``ck-`` + the first 12 hex digits
    of HMAC-SHA256(key=``pseudonym_salt``, msg=<contact key>). ``pseudonym_salt`` (or a
    file holding it, ``pseudonym_salt_file``) defaults to the target's ``name``: without a
    secret salt, the pseudonym of a phone number can be brute-forced from the exported
    label, so give the keys names or set a salt. Pseudonyms are stable across restarts and
    reloads while the salt (or, without one, the target's name) stays the same.
    """

    source: Literal["genesys_services"]
    customer_ids: list[SubjectId] = Field(default_factory=list)
    contact_keys: list[Annotated[ContactKey, BeforeValidator(_contact_key)]] = Field(
        default_factory=list
    )
    #: The HMAC key of the pseudonyms of contact keys without a name; default: ``name``.
    pseudonym_salt: SecretStr | None = None
    pseudonym_salt_file: str | None = None
    #: ``completed_services`` counts the services completed within this long before a poll.
    completed_window: Duration = DEFAULT_COMPLETED_WINDOW
    #: Export ``active_services_by_type`` for these service types; absent: not exported.
    service_types: list[ServiceType] | None = Field(default=None, min_length=1)

    threshold_keys: ClassVar[tuple[str, ...]] = ("genesys_oldest_active_service_age",)

    @model_validator(mode="before")
    @classmethod
    def _salt(cls, data: Any) -> Any:
        return _resolve_secret(data, "pseudonym_salt")

    @field_validator("customer_ids", "service_types")
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

    @model_validator(mode="after")
    def _distinct_labels(self) -> GenesysServicesTarget:
        """Contact keys unique, label values unique, no name that is a contact key, and
        no message that repeats a contact key."""
        problems: list[tuple[tuple[int | str, ...], str]] = []
        if self.pseudonym_salt is not None and not self.pseudonym_salt.get_secret_value():
            problems.append((("pseudonym_salt",), "must not be empty"))
        pairs = self.contact_key_labels()
        first_key: dict[str, int] = {}
        for i, (_, key) in enumerate(pairs):
            if key in first_key:
                problems.append(
                    (
                        ("contact_keys", i, "key"),
                        f"duplicate contact key (also contact_keys[{first_key[key]}])",
                    )
                )
            first_key.setdefault(key, i)
        first_label: dict[str, int] = {}
        for i, (label, key) in enumerate(pairs):
            named = self.contact_keys[i].name is not None
            j = first_label.setdefault(label, i)
            if named and label in first_key:
                problems.append(
                    (
                        ("contact_keys", i, "name"),
                        "a name is exported as the label value, so it must not be a contact "
                        f"key (it is the key of contact_keys[{first_key[label]}])",
                    )
                )
            elif j == i or pairs[j][1] == key:  # first, or a duplicate key (reported)
                continue
            elif named and self.contact_keys[j].name is not None:
                problems.append(
                    (
                        ("contact_keys", i, "name"),
                        f"duplicate name {label!r} (also contact_keys[{j}])",
                    )
                )
            elif named:
                problems.append(
                    (
                        ("contact_keys", i, "name"),
                        f"{label!r} is the pseudonym of contact_keys[{j}]; choose another name",
                    )
                )
            else:
                problems.append(
                    (
                        ("contact_keys", i, "key"),
                        f"its pseudonym {label!r} is also the label value of contact_keys[{j}]; "
                        "give one of them another name",
                    )
                )
        if problems:
            raise _problems(type(self).__name__, problems)
        return self

    def source_warnings(self) -> list[tuple[str, str]]:
        """Contact keys labelled by pseudonyms salted with the target's name, which is no
        secret: a phone number's pseudonym can then be brute-forced from the label."""
        unnamed = sum(1 for ck in self.contact_keys if ck.name is None)
        if not unnamed or self.pseudonym_salt is not None:
            return []
        return [
            (
                "contact_keys",
                f"{unnamed} contact key(s) without a name are labelled by pseudonyms whose "
                f"salt is the target's name {self.name!r}, which is no secret: their phone "
                "numbers can be brute-forced from the contact_key label; set "
                "pseudonym_salt (or pseudonym_salt_file), or give the keys names",
            )
        ]

    def contact_key_labels(self) -> list[tuple[str, str]]:
        """(``contact_key`` label value, contact key) of each contact key, in order."""
        if self.pseudonym_salt is not None:
            salt = self.pseudonym_salt.get_secret_value()
        else:
            salt = self.name
        return [
            (ck.name if ck.name is not None else pseudonym(ck.key, salt), ck.key)
            for ck in self.contact_keys
        ]


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


#: No letter or digit before and after a form of a contact key: key "1" is not in "401".
_APART: Final = (r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])")


class _Hide:
    """Keeps one contact key out of what its poll reports: every form of it (as written,
    percent-encoded, JSON-escaped, its digits alone), where no letter or digit adjoins
    it, is replaced by its label value in a failure's detail and, under ``ccwatch
    probe``, in the traced exchanges' bodies, response headers and errors. The URL
    requested is left as it was: it is the one place the key belongs."""

    __slots__ = ("_bytes", "_label", "_text")

    def __init__(self, key: str, label: str) -> None:
        forms = {key, _segment(key), quote(key), quote_plus(key), json.dumps(key)[1:-1]}
        digits = re.sub(r"\D", "", key)
        if len(digits) >= 7:  # a phone number written without its separators
            forms.add(digits)
        ordered = sorted((f for f in forms if f), key=len, reverse=True)
        self._label = label
        text = "|".join(map(re.escape, ordered))
        data = b"|".join(re.escape(f.encode()) for f in ordered)
        self._text = re.compile(f"{_APART[0]}(?:{text}){_APART[1]}", re.IGNORECASE)
        self._bytes = re.compile(
            _APART[0].encode() + b"(?:" + data + b")" + _APART[1].encode(), re.IGNORECASE
        )

    def found(self, text: str) -> bool:
        return self._text.search(text) is not None

    def text(self, text: str) -> str:
        return self._text.sub(lambda _: self._label, text)

    def exchange(self, exchange: Exchange) -> Exchange:
        label = self._label.encode()
        return dataclasses.replace(
            exchange,
            response_headers=tuple((k, self.text(v)) for k, v in exchange.response_headers),
            body=self._bytes.sub(lambda _: label, exchange.body),
            error=self.text(exchange.error) if exchange.error is not None else None,
        )

    def error(self, exc: PollError) -> None:
        """``exc`` with the key replaced, in place (keeping its class, reason and
        Retry-After); the exception it was raised from is dropped if it names the key."""
        exc.detail = self.text(exc.detail)
        exc.args = (exc.detail,)
        for chained in (exc.__cause__, exc.__context__):
            if chained is not None and self.found(f"{chained!r} {chained}"):
                exc.__cause__ = exc.__context__ = None
                exc.__suppress_context__ = True


@contextmanager
def _hiding(hide: _Hide | None) -> Iterator[None]:
    """Run a poll with ``hide`` applied to whatever it reports (see :class:`_Hide`)."""
    if hide is None:
        yield
        return
    trace = TRACE.get()
    start = len(trace) if trace is not None else 0
    try:
        yield
    except PollError as exc:
        hide.error(exc)
        raise
    except Exception as exc:  # a ccwatch bug, logged with its message: hide the key there too
        message = f"{exc!r} {exc}"
        if not hide.found(message):
            raise
        raise RuntimeError(f"{type(exc).__name__}: {hide.text(str(exc))}").with_traceback(
            exc.__traceback__
        ) from None
    finally:
        if trace is not None:
            trace[start:] = [hide.exchange(x) for x in trace[start:]]


async def _poll_active(
    client: TargetClient, url: URL, service_types: tuple[str, ...] | None, hide: _Hide | None
) -> Reading:
    with _hiding(hide):
        response = await client.request("GET", url, content_types=JSON_TYPES)
        return parse_active(response.body, _utcnow(), service_types)


async def _poll_completed(
    client: TargetClient, url: URL, window: float, hide: _Hide | None
) -> Reading:
    with _hiding(hide):
        since = _utcnow() - timedelta(seconds=window)
        params = {"completed_from": format_timestamp(since)}
        response = await client.request("GET", url, params=params, content_types=JSON_TYPES)
        return parse_completed(response.body, since)


def jobs(target: GenesysServicesTarget, client: TargetClient, state: None = None) -> list[JobSpec]:
    """Two jobs per customer id and per contact key. A contact key's subject is its label
    value (name or pseudonym); only its jobs' poll functions hold the key itself."""
    types = tuple(target.service_types) if target.service_types is not None else None
    subjects: list[tuple[dict[str, str], str, str, _Hide | None]] = [
        ({"customer_id": c}, CUSTOMER_PATH, c, None) for c in target.customer_ids
    ]
    subjects += [
        ({"contact_key": label}, ANONYMOUS_PATH, key, _Hide(key, label))
        for label, key in target.contact_key_labels()
    ]
    out = []
    for subject, template, subject_id, hide in subjects:
        active = _url(client, template, subject_id, ACTIVE)
        completed = _url(client, template, subject_id, COMPLETED)
        out.append(JobSpec(ACTIVE, subject, partial(_poll_active, client, active, types, hide)))
        out.append(
            JobSpec(
                COMPLETED,
                subject,
                partial(_poll_completed, client, completed, target.completed_window, hide),
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
