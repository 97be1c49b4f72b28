"""Configuration: a YAML file validated with pydantic, overridable from ``CCWATCH_*`` variables.

Every model forbids unknown keys, and every error is reported as ``key.path: problem``
(see :func:`load_config`). Durations are written as in Prometheus (``15s``, ``1m``,
``1h30m``); sizes as bytes or with a unit (``1MiB``). Secrets are ``SecretStr`` and may be
read from files through the matching ``*_file`` key; they never appear in a ``repr``,
a log line or a metric.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
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
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ccwatch.errors import ConfigError

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


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {value!r}: expected http:// or https:// and a host")
    if parts.query or parts.fragment:
        raise ValueError(f"invalid URL {value!r}: a base URL takes no query or fragment")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_url)]


def read_secret_file(path: str) -> SecretStr:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path!r}: {exc.strerror}") from None
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

    #: The interval a source uses when neither the target nor ``defaults`` sets one.
    default_interval: ClassVar[float | None] = None


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
    return errors


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
    errors = _semantic_errors(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


#: libyaml's safe loader where PyYAML was built with it (10x faster on a 10,000-entry-point
#: file, which matters for reloads), else the pure-Python one. Both are safe loaders.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: str | os.PathLike[str], model: type[ConfigBase]) -> ConfigBase:
    """Read, parse and validate a config file against ``model``."""
    return parse_config(read_yaml(path), model, origin=str(path))


# --------------------------------------------------------------------------- other files

# Shared with ccwatch.webconfig (the --web.config.file file), so that its errors read as
# this file's do.


def format_validation_errors(exc: ValidationError) -> list[str]:
    """One ``key.path: problem`` line per error of any model, as :func:`load_config` writes
    them (``targets[0].url: ...``, ``bogus: unknown key``)."""
    return _format_errors(exc, set())


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read and parse a YAML file with the safe loader; :class:`ConfigError` as
    :func:`load_config` raises for an unreadable file or invalid YAML."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text"]) from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: invalid YAML{where}: {problem}"]) from None
