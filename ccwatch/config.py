"""Configuration: a YAML file validated with pydantic, overridable from ``CCWATCH_*`` variables.

Every model forbids unknown keys, and every error is reported as ``key.path: problem``
(see :func:`load_config`). Durations are written as in Prometheus (``15s``, ``1m``,
``1h30m``); sizes as bytes or with a unit (``1MiB``). Secrets are ``SecretStr`` and may be
read from files through the matching ``*_file`` key; they never appear in a ``repr``,
a log line or a metric.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ccwatch import calendars
from ccwatch.errors import ConfigError
from ccwatch.redact import redact_url

try:  # libyaml's loader where PyYAML was built with it
    from yaml import CSafeLoader as _SafeBase
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _SafeBase  # type: ignore[assignment]

DEFAULT_CONFIG_PATH = "/etc/ccwatch/ccwatch.yml"
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9865"

# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNITS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}


def parse_duration(value: object) -> float:
    """Parse a Prometheus duration (``1h30m``, ``15s``, ``500ms``) into seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"invalid duration {value!r}: write it with a unit, such as 15s, 1m or 1h30m"
        )
    match = _DURATION_RE.match(value.strip())
    if not value.strip() or match is None:
        raise ValueError(
            f"invalid duration {value!r}: write it with a unit, such as 15s, 1m or 1h30m"
        )
    seconds = sum(_UNITS[unit] * int(n) for unit, n in match.groupdict().items() if n)
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, for messages and serialisation."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    total = ms // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            out += f"{total // size}{unit}"
            total %= size
    return out or "0s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]

# --------------------------------------------------------------------------- helpers


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_listen_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {value!r}: expected HOST:PORT, e.g. :9865")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"invalid listen address {value!r}: unbalanced brackets")
    return value


ListenAddress = Annotated[str, AfterValidator(check_listen_address)]


def split_listen_address(value: str) -> tuple[str, int]:
    """``"0.0.0.0:9865"`` -> ``("0.0.0.0", 9865)``; an empty host means all interfaces."""
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _shown_url(value: str) -> str:
    """``value`` as an error may quote it: without userinfo, however malformed (whatever
    comes before its last ``@`` is left out when it is not a URL with a host)."""
    shown = redact_url(value)
    if "@" in shown and not urlsplit(shown).hostname:
        shown = "[redacted]@" + shown.rpartition("@")[2]
    return shown


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    shown = _shown_url(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {shown!r}: expected http:// or https:// and a host")
    if parts.query or parts.fragment:
        raise ValueError(f"invalid URL {shown!r}: a base URL takes no query or fragment")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_url)]


def parse_ratio(value: object) -> float:
    """A ratio written as a number (``0.99``) or a percentage (``"99%"``, ``"99.9 %"``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip().removesuffix("%").strip()) / 100
        except ValueError:
            raise ValueError(f"invalid percentage {value!r}: write it like 99% or 0.99") from None
    if isinstance(value, str):  # e.g. from the environment
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"invalid ratio {value!r}: write it like 0.99 or 99%") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"invalid ratio {value!r}: write it like 0.99 or 99%")
    return float(value)


Ratio = Annotated[float, BeforeValidator(parse_ratio)]


def parse_grace(value: object) -> float:
    """``opening_grace``: a duration in whole minutes from 0 (none) to 1h."""
    if value in ("0", "0s", "0m", 0):
        return 0.0
    seconds = parse_duration(value)
    if seconds % 60 or seconds > 3600:
        raise ValueError(f"{value!r}: write whole minutes from 0m to 1h")
    return seconds


#: The label names ccwatch writes itself (and ``job`` and ``instance``, which Prometheus
#: adds): a target's static ``labels`` may not use them, nor a ``__`` prefix.
#: tests/test_config.py checks that every label of every metric family is here.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "target",
        "endpoint",
        "entry_point",
        "customer_id",
        "contact_key",
        "gms_service",
        "reason",
        "state",
        "status",
        "collection",
        "name",
        "management_url",
        "service_type",
        "step",
        "job",
        "instance",
    }
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _check_static_labels(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a Prometheus label name (letters, digits and _, "
                "not starting with a digit)"
            )
        if name.startswith("__"):
            raise ValueError(f"{name!r}: names starting with __ are reserved for Prometheus")
        if name in RESERVED_LABELS:
            raise ValueError(
                f"{name!r} clashes with a label ccwatch or Prometheus sets; ccwatch's own "
                f"labels are {', '.join(sorted(RESERVED_LABELS))}"
            )
        if not text:
            raise ValueError(f"{name!r}: an empty value is the same as no label; leave it out")
    return value


StaticLabels = Annotated[dict[str, str], AfterValidator(_check_static_labels)]


#: The largest secret file ccwatch reads (a password, a client secret, an API key).
MAX_SECRET_FILE_BYTES = 64 * 1024


def read_file_safely(path: str, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, which must be a regular file (after symlinks) of at most
    ``limit`` bytes. Anything else, a FIFO, a device (``/dev/zero``, ``/dev/urandom``), a
    directory, a socket, is refused before it is read: opened without blocking, checked
    with ``fstat`` on the open file (so a file swapped in between cannot slip through),
    read up to ``limit + 1`` bytes. Raises OSError when it cannot be opened or read, and
    ValueError, naming ``what``, when it is not a regular file or too large."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} {path!r} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{what} {path!r} is larger than {limit} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{what} {path!r} is larger than {limit} bytes")
    return data


def read_secret_file(path: str) -> SecretStr:
    """A secret from a ``*_file``: a regular UTF-8 file of at most
    :data:`MAX_SECRET_FILE_BYTES`, surrounding white space stripped."""
    try:
        data = read_file_safely(path, MAX_SECRET_FILE_BYTES, "secret file")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path!r}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path!r} is not UTF-8 text") from None
    return SecretStr(text.strip())


def _resolve_secret(data: Any, field: str) -> Any:
    """Let ``field`` be given inline or as ``field_file``; read the file now, once."""
    if not isinstance(data, dict):
        return data
    file_key = f"{field}_file"
    if data.get(field) is not None and data.get(file_key) is not None:
        raise ValueError(f"set {field} or {file_key}, not both")
    if data.get(file_key) is not None:
        return {**data, field: read_secret_file(str(data[file_key]))}
    return data


# --------------------------------------------------------------------------- HTTP config


class TLSConfig(StrictModel):
    """As Prometheus's ``tls_config``."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path!r} is not a readable file")
        return self


class BasicAuth(StrictModel):
    """As Prometheus's ``basic_auth``: ``password`` or ``password_file``."""

    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return _resolve_secret(data, "password")


class OAuth2(StrictModel):
    """As Prometheus's ``oauth2``: the client credentials grant."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: str | None = None
    token_url: HttpUrl
    scopes: list[str] = Field(default_factory=list)
    endpoint_params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _secret(cls, data: Any) -> Any:
        return _resolve_secret(data, "client_secret")

    @model_validator(mode="after")
    def _require_secret(self) -> OAuth2:
        if self.client_secret is None:
            raise ValueError("client_secret or client_secret_file is required")
        return self


# --------------------------------------------------------------------------- thresholds

#: Config key -> the ``name`` label of ``ccwatch_threshold`` (durations in seconds).
THRESHOLD_NAMES: Mapping[str, str] = {
    "ece_queue_depth": "ece_queue_depth",
    "ece_wait_time": "ece_wait_time_seconds",
    "ece_availability_objective": "ece_availability_objective",
    "ece_staffed_availability_objective": "ece_staffed_availability_objective",
    "genesys_oldest_active_service_age": "genesys_oldest_active_service_age_seconds",
    "poll_failing_ratio": "poll_failing_ratio",
    "stale_intervals": "stale_intervals",
}
#: The thresholds every target has; a source adds its own (``TargetConfig.threshold_keys``).
CORE_THRESHOLDS = ("poll_failing_ratio", "stale_intervals")


def _objective(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1:
        raise ValueError(f"{value:g} is not between 0 and 1 (exclusive), e.g. 0.99 or 99%")
    return value


class Thresholds(StrictModel):
    """A target's ``thresholds:``, for the alert rules (exported as ``ccwatch_threshold``);
    a key left out takes the value in ``defaults.thresholds``."""

    #: CcwatchEceQueueDepthHigh: chats waiting in an entry point's queue, above this
    ece_queue_depth: float | None = Field(default=None, ge=0)
    #: CcwatchEceWaitTimeHigh: an entry point's estimated wait, above this
    ece_wait_time: Duration | None = None
    #: the SRE's chat availability SLO during opening hours: technical availability,
    #: staffing closures not counted (the SRE's burn-rate alerts)
    ece_availability_objective: Annotated[Ratio | None, AfterValidator(_objective)] = None
    #: the supervisors' staffed availability SLO during opening hours: staffing closures
    #: (no agent, queue full) counted too (the supervisors' burn-rate alerts)
    ece_staffed_availability_objective: Annotated[Ratio | None, AfterValidator(_objective)] = None
    #: CcwatchGenesysServicesStuck: age of a subject's oldest active service, above this
    genesys_oldest_active_service_age: Duration | None = None
    #: CcwatchTargetPollsFailing: share of a target's poll jobs failing, above this
    poll_failing_ratio: float | None = Field(default=None, ge=0, le=1)
    #: CcwatchDataStale: a job's last success older than this many of its intervals
    stale_intervals: float | None = Field(default=None, gt=0)


class DefaultThresholds(Thresholds):
    """``defaults.thresholds``: every key has a value (the rules' historical defaults)."""

    ece_queue_depth: float = Field(default=10.0, ge=0)
    ece_wait_time: Duration = 300.0
    ece_availability_objective: Annotated[Ratio, AfterValidator(_objective)] = 0.99
    ece_staffed_availability_objective: Annotated[Ratio, AfterValidator(_objective)] = 0.98
    genesys_oldest_active_service_age: Duration = 86400.0
    poll_failing_ratio: float = Field(default=0.2, ge=0, le=1)
    stale_intervals: float = Field(default=3.0, gt=0)


# --------------------------------------------------------------------------- calendars


class HolidaysConfig(StrictModel):
    """A calendar's ``holidays:``: the public holidays of a country (and subdivision),
    from the ``holidays`` package; closed all day."""

    country: str = Field(min_length=1)
    subdivision: str | None = Field(default=None, min_length=1)
    #: the holidays package's categories for the country (``[public, catholic]``); left
    #: out, the package's default (``public``)
    categories: list[str] | None = None

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        country = info.data.get("country")
        if value is not None and isinstance(country, str):
            try:
                calendars.check_holidays(country, None)
            except ValueError:
                return value  # the unknown country is reported on holidays itself
            calendars.check_holiday_categories(country, value)
        return value

    @model_validator(mode="after")
    def _known(self) -> HolidaysConfig:
        calendars.check_holidays(self.country, self.subdivision)
        return self


class CalendarConfig(StrictModel):
    """One entry of ``calendars:`` (see :mod:`ccwatch.calendars` for the semantics)."""

    #: IANA time zone of the hours; UTC when left out
    timezone: str = "UTC"
    #: day spec (``mon-fri``, ``sat``, ``mon,wed``) -> ranges (``"08:00-18:00"``)
    hours: dict[str, str | list[str]]
    holidays: HolidaysConfig | None = None
    #: extra closed dates (``2026-12-24``), closed all day
    closed: list[datetime.date] = Field(default_factory=list)
    #: how long after each opening the "closed"/"no agents" alerts wait
    opening_grace: Annotated[float, BeforeValidator(parse_grace)] = 300.0

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        calendars.check_timezone(value)
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        calendars.parse_hours(value)
        return value

    def build(self, name: str) -> calendars.Calendar:
        """The calendar at run time."""
        holidays = self.holidays
        return calendars.Calendar(
            name,
            week=calendars.parse_hours(self.hours),
            timezone=self.timezone,
            holidays=(holidays.country, holidays.subdivision) if holidays is not None else None,
            holiday_categories=holidays.categories if holidays is not None else None,
            closed=self.closed,
            opening_grace=self.opening_grace,
        )


_CALENDAR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_calendar_names(value: dict[str, CalendarConfig]) -> dict[str, CalendarConfig]:
    for name in value:
        if not _CALENDAR_NAME.fullmatch(name):
            raise ValueError(
                f"calendar name {name!r}: use letters, digits, '_', '.' and '-' "
                "(starting with a letter or digit)"
            )
    return value


# --------------------------------------------------------------------------- targets


class TargetConfig(StrictModel):
    """Fields every target has. Each source subclasses it with ``source: Literal[...]``."""

    name: str = Field(min_length=1, max_length=128)
    source: str
    url: HttpUrl
    interval: Duration | None = None
    timeout: Duration | None = None
    tls_config: TLSConfig | None = None
    basic_auth: BasicAuth | None = None
    proxy_url: HttpUrl | None = None
    max_response_size: ByteSize | None = Field(default=None, gt=0)
    #: The longest ``Retry-After`` (on 429 and 503) this target's server can hold it for.
    max_retry_after: Duration | None = None
    #: Use ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` when no ``proxy_url`` is set (as
    #: Prometheus's ``proxy_from_environment``); unset: ``defaults.proxy_from_environment``.
    proxy_from_environment: bool | None = None
    #: The opening-hours calendar of the target's subjects (a name in ``calendars:``);
    #: none: always open.
    calendar: str | None = Field(default=None, min_length=1)
    #: Static labels added to every series of the target (as Prometheus static_configs).
    labels: StaticLabels = Field(default_factory=dict)
    #: The alert thresholds of this target; unset keys take ``defaults.thresholds``.
    thresholds: Thresholds = Thresholds()

    #: The interval a source uses when neither the target nor ``defaults`` sets one.
    default_interval: ClassVar[float | None] = None
    #: The source's own ``thresholds`` keys (beyond :data:`CORE_THRESHOLDS`).
    threshold_keys: ClassVar[tuple[str, ...]] = ()
    #: The shortest interval the vendor should see: a shorter one is allowed (labs,
    #: tests) but warned about, with the load it causes (:meth:`ConfigBase.warnings`).
    interval_floor: ClassVar[float | None] = None

    def vendor_load(self, interval: float) -> str:
        """What polling at ``interval`` costs the vendor, in words (for warnings)."""
        return f"{60 / interval:g} polls a minute per job"

    def source_warnings(self) -> list[tuple[str, str]]:
        """Valid but unwise settings of this target that only its source knows of: (key
        path below the target, what is wrong). None by default."""
        return []

    def calendar_of(self, subject: Mapping[str, str]) -> str | None:
        """The calendar of one subject (the target's; a source may override per subject)."""
        return self.calendar

    def calendar_names(self) -> list[tuple[str, str]]:
        """(key path below the target, calendar name) of every calendar it names."""
        return [("calendar", self.calendar)] if self.calendar is not None else []


# --------------------------------------------------------------------------- top level


class WebConfig(StrictModel):
    listen_address: ListenAddress = DEFAULT_LISTEN_ADDRESS
    #: The web configuration file (TLS, basic auth, headers) in the Prometheus
    #: exporter-toolkit format; relative to this file's directory. ``--web.config.file``
    #: overrides it.
    config_file: str | None = Field(default=None, min_length=1)
    #: Paths served without basic auth (exact paths, e.g. ``/-/healthy``); TLS still
    #: applies to them.
    public_paths: list[str] = Field(default_factory=list)

    @field_validator("public_paths")
    @classmethod
    def _absolute_paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or any(c in path for c in "?# "):
                raise ValueError(f"{path!r} is not a path like /-/healthy (no query, no blanks)")
        return value


class Defaults(StrictModel):
    interval: Duration = 15.0
    timeout: Duration = 5.0
    max_response_size: ByteSize = Field(default=ByteSize(1024 * 1024), gt=0)
    max_retry_after: Duration = 300.0
    proxy_from_environment: bool = False
    thresholds: DefaultThresholds = DefaultThresholds()


class SchedulerConfig(StrictModel):
    #: At most this many requests in flight at once, over every target.
    max_concurrency: int = Field(default=256, ge=1, le=100_000)


class ShardingConfig(StrictModel):
    """``sharding:``: this process's share of the jobs (see :mod:`ccwatch.sharding`);
    ``--shard``/``--total-shards`` and the environment win over it."""

    #: an ordinal, or a StatefulSet pod name ending in ``-<ordinal>``
    shard: int | str = 0
    total_shards: int = Field(default=1, ge=1, le=10_000)


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ConfigBase(BaseSettings):
    """The top-level document. Subclassed by :func:`config_model` with the target union."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix="CCWATCH_", env_nested_delimiter="__"
    )

    web: WebConfig = WebConfig()
    defaults: Defaults = Defaults()
    scheduler: SchedulerConfig = SchedulerConfig()
    sharding: ShardingConfig = ShardingConfig()
    log: LogConfig = LogConfig()
    #: Named opening-hours calendars, referred to by the targets' ``calendar`` keys.
    calendars: Annotated[dict[str, CalendarConfig], AfterValidator(_check_calendar_names)] = Field(
        default_factory=dict
    )
    targets: Sequence[TargetConfig] = Field(min_length=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file.
        return (env_settings, init_settings)

    def interval_of(self, target: TargetConfig) -> float:
        if target.interval is not None:
            return target.interval
        if target.default_interval is not None:
            return target.default_interval
        return self.defaults.interval

    def timeout_of(self, target: TargetConfig) -> float:
        if target.timeout is not None:
            return target.timeout
        return min(self.defaults.timeout, self.interval_of(target))

    def max_response_size_of(self, target: TargetConfig) -> int:
        return int(target.max_response_size or self.defaults.max_response_size)

    def max_retry_after_of(self, target: TargetConfig) -> float:
        if target.max_retry_after is not None:
            return target.max_retry_after
        return self.defaults.max_retry_after

    def proxy_from_environment_of(self, target: TargetConfig) -> bool:
        if target.proxy_from_environment is not None:
            return target.proxy_from_environment
        return self.defaults.proxy_from_environment

    def warnings(self) -> list[str]:
        """Valid but unwise settings, one line each with its key path: intervals below
        their source's floor, which load the vendor, and what each source warns of
        (:meth:`TargetConfig.source_warnings`); ``check-config`` and startup print them."""
        out = []
        for i, target in enumerate(self.targets):
            floor = target.interval_floor
            interval = self.interval_of(target)
            if floor is None or interval >= floor:
                continue
            key = f"targets[{i}].interval" if target.interval is not None else "defaults.interval"
            out.append(
                f"{key}: {format_duration(interval)} for {target.source} target "
                f"{target.name!r} is below the floor of {format_duration(floor)}: "
                f"{target.vendor_load(interval)}"
            )
        for i, target in enumerate(self.targets):
            out += [f"targets[{i}].{key}: {message}" for key, message in target.source_warnings()]
        return out

    def thresholds_of(self, target: TargetConfig) -> list[tuple[str, float]]:
        """(``ccwatch_threshold`` name, value) of the target's source's thresholds, its
        own values where it sets them, else ``defaults.thresholds``."""
        own = target.thresholds
        default = self.defaults.thresholds
        out = []
        for key in (*CORE_THRESHOLDS, *target.threshold_keys):
            value = getattr(own, key)
            out.append((THRESHOLD_NAMES[key], getattr(default, key) if value is None else value))
        return sorted(out)


def config_model(targets: Sequence[type[TargetConfig]]) -> type[ConfigBase]:
    """The config model whose ``targets`` is the union of ``targets``, the target models
    of the registered sources (see :data:`ccwatch.sources.CONFIG_MODEL`). This module
    imports no source: the registry hands its models over."""
    from typing import Union

    models = tuple(targets)
    member: Any = (
        Annotated[Union[models], Field(discriminator="source")]  # noqa: UP007
        if len(models) > 1
        else models[0]
    )
    return type(
        "Config",
        (ConfigBase,),
        {
            "__annotations__": {"targets": list[member]},
            "targets": Field(min_length=1),
            "__module__": __name__,
        },
    )


def source_names(model: type[ConfigBase]) -> set[str]:
    """The ``source:`` values a config model accepts."""
    annotation = model.model_fields["targets"].annotation
    (member,) = get_args(annotation)
    union = get_args(member)[0] if get_args(member) else member
    targets = get_args(union) or (union,)
    return {get_args(t.model_fields["source"].annotation)[0] for t in targets}


# --------------------------------------------------------------------------- loading


def _format_loc(loc: tuple[int | str, ...], source_names: set[str]) -> str:
    out = ""
    parts = list(loc)
    # Drop the discriminator tag pydantic inserts after targets[i].
    if (
        len(parts) > 2
        and parts[0] == "targets"
        and isinstance(parts[1], int)
        and parts[2] in source_names
    ):
        del parts[2]
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part.startswith("Annotated"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_errors(exc: ValidationError, source_names: set[str]) -> list[str]:
    lines = []
    known = ", ".join(sorted(source_names))
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "union_tag_invalid":
            loc += ("source",)
            tag = err.get("ctx", {}).get("tag")
            msg = f"unknown source {tag!r}; known sources: {known}"
        elif err["type"] == "union_tag_not_found":
            loc += ("source",)
            msg = f"required key is missing; known sources: {known}"
        elif err["type"] == "literal_error" and err["loc"][-1] == "source":
            msg = f"unknown source {err.get('input')!r}; known sources: {known}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{_format_loc(loc, source_names)}: {msg}")
    return lines


def _semantic_errors(cfg: ConfigBase) -> list[str]:
    errors = []
    seen: dict[str, int] = {}
    for i, target in enumerate(cfg.targets):
        if target.name in seen:
            errors.append(
                f"targets[{i}].name: duplicate target name {target.name!r} "
                f"(also targets[{seen[target.name]}])"
            )
        seen.setdefault(target.name, i)
        if target.timeout is not None and target.timeout > cfg.interval_of(target):
            errors.append(
                f"targets[{i}].timeout: {format_duration(target.timeout)} is longer than "
                f"the interval {format_duration(cfg.interval_of(target))}"
            )
        for key, name in target.calendar_names():
            if name not in cfg.calendars:
                known = ", ".join(sorted(cfg.calendars)) or "none (add a calendars: section)"
                errors.append(
                    f"targets[{i}].{key}: unknown calendar {name!r}; known calendars: {known}"
                )
        allowed = (*CORE_THRESHOLDS, *target.threshold_keys)
        for key in sorted(target.thresholds.model_fields_set):
            if key not in allowed and getattr(target.thresholds, key) is not None:
                errors.append(
                    f"targets[{i}].thresholds.{key}: does not apply to {target.source} "
                    f"targets; their thresholds are {', '.join(allowed)}"
                )
    return errors


def _settings_error(exc: SettingsError) -> str:
    """The variable a pydantic-settings error is about, without the value (it may hold a
    secret)."""
    field = re.search(r'field "([^"]+)"', str(exc))
    if field is None:
        return "invalid CCWATCH_* environment variable"
    name = "CCWATCH_" + field.group(1).upper()
    return f"{name}: not valid JSON for a structured key (a list or a mapping)"


def parse_config(data: Any, model: type[ConfigBase], *, origin: str = "config") -> ConfigBase:
    """Validate already-loaded YAML data against ``model`` (from :func:`config_model`).

    Raises :class:`ConfigError` naming each key path.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): {origin} must be a YAML mapping"])
    try:
        cfg = model(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source_names(model))) from None
    except SettingsError as exc:
        # an environment override (CCWATCH_TARGETS=..., CCWATCH_WEB__...) that is not
        # valid JSON for a structured key
        raise ConfigError([f"(environment): {_settings_error(exc)}"]) from None
    errors = _semantic_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


#: libyaml's safe loader where PyYAML was built with it (10x faster on a 10,000-entry-point
#: file, which matters for reloads), else the pure-Python one. Both are safe loaders.
class _DateFreeLoader(_SafeBase):
    """The safe loader without implicit timestamps: ``2026-12-24`` stays a string, so that
    pydantic parses it (and names the key path of an impossible date such as 2026-02-30,
    which YAML's own date parser would raise as a bare ValueError)."""

    yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _SafeBase.yaml_implicit_resolvers.items()
    }


_YAML_LOADER = _DateFreeLoader


def load_config(path: str | os.PathLike[str], model: type[ConfigBase]) -> ConfigBase:
    """Read, parse and validate a config file against ``model``. Relative paths in it (the
    values of ``*_file`` keys: secrets, TLS files, the web config) are relative to the
    file's directory, as in Prometheus."""
    data = read_yaml(path)
    base = Path(os.path.abspath(path)).parent
    return parse_config(resolve_file_paths(data, base), model, origin=str(path))


def resolve_file_paths(data: Any, base: Path) -> Any:
    """``data`` with every relative path under a ``*_file`` key made absolute against
    ``base``."""
    if isinstance(data, dict):
        return {
            key: (
                str(base / value)
                if isinstance(key, str)
                and key.endswith("_file")
                and isinstance(value, str)
                and value
                and not os.path.isabs(value)
                else resolve_file_paths(value, base)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [resolve_file_paths(item, base) for item in data]
    return data


# --------------------------------------------------------------------------- other files

# Shared with ccwatch.webconfig (the --web.config.file file), so that its errors read as
# this file's do.


def format_validation_errors(exc: ValidationError) -> list[str]:
    """One ``key.path: problem`` line per error of any model, as :func:`load_config` writes
    them (``targets[0].url: ...``, ``bogus: unknown key``)."""
    return _format_errors(exc, set())


#: The largest YAML file ccwatch reads (a configuration of 10,000 entry points is ~1 MB).
MAX_YAML_BYTES = 64 * 1024 * 1024


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read and parse a YAML file with the safe loader; :class:`ConfigError` as
    :func:`load_config` raises for an unreadable file (or one that is not a regular file,
    or too large), invalid YAML, or a key given twice in one mapping (YAML would keep the
    last silently; named with its key path)."""
    try:
        raw = read_file_safely(os.fspath(path), MAX_YAML_BYTES)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except ValueError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text"]) from None
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = _duplicate_keys(node, ())
        if duplicates:
            raise ConfigError([f"{path}: {line}" for line in duplicates])
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node, where: tuple[str, ...]) -> list[str]:
    """``key.path: duplicate key (also at line N)`` for every key given twice in a mapping
    below ``node``."""
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and name in seen:
                path = ".".join((*where, name))
                found.append(
                    f"{path}: duplicate key at line {line} (also at line {seen[name]}); "
                    "YAML would keep only the last"
                )
            seen.setdefault(name, line)
            found += _duplicate_keys(value, (*where, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            head = (*where[:-1], f"{where[-1]}[{i}]") if where else (f"[{i}]",)
            found += _duplicate_keys(item, head)
    return found
