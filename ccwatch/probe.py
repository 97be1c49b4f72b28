"""``ccwatch probe``: one poll of the matching jobs, now, with the whole HTTP exchange.

::

    ccwatch probe --config.file FILE [--target NAME] [--endpoint E]
                  [--subject LABEL=VALUE] [--format text|json] [--body-limit BYTES]

The jobs of the configuration that match the filters are polled once, at once (at most
``scheduler.max_concurrency`` at a time), each with its target's timeout, TLS settings,
proxy, auth and body cap, exactly as ``ccwatch run`` polls them; nothing is scheduled and
no server is started. A ``gms_probe`` job creates a real service, as it does in the
daemon. The report lists the jobs in config order, each as soon as it and the jobs
before it are done. For each job it shows

- every HTTP request the poll made, in order (an OAuth2 token request, then the call; the
  GMS probe's create, then its status request): the method and URL (without userinfo),
  the headers sent and the request body;
- the answer: its status, how long the exchange took, its headers and the first
  ``--body-limit`` bytes (default 2048) of its decoded body, or why none came; a
  redirect (3xx) is shown as it came, its ``Location`` among the headers, and is never
  followed (the poll fails as ``http_status``);
- the reading (its type and fields), or the failure's reason and detail, as the
  scheduler would record them (a time-out is ``timeout``, a ccwatch bug ``internal``);
- the exposition lines the job would produce: its vendor series and its poll-health
  series (``ccwatch_poll_success``, ...), plus its target's state series where its
  source keeps one (``ccwatch_gms_probe_success``, ``ccwatch_alvaria_token_failures_total``).

Filters: ``--target`` and ``--endpoint`` may be repeated (either value matches).
``--subject LABEL=VALUE`` may be repeated: the same label repeated matches either value,
different labels must all match. A ``--target`` that names no configured target is an
error.

Secrets are kept out of the output, by ccwatch's one redactor (:mod:`ccwatch.redact`,
the one the daemon's failure details and logs go through). ``Authorization``,
``Proxy-Authorization``, ``Cookie`` and ``Set-Cookie`` values are replaced by
``[redacted]`` (the auth scheme and the cookie names stay). Wherever they appear (URLs,
header values, request and response bodies, failure details, label values), these are
replaced too: every secret of the configuration (every ``SecretStr``: a basic auth
password, an OAuth2 client secret, an API key, ...; the password of any URL in it), the
credentials of the auth headers sent, the values of the ``access_token``,
``refresh_token``, ``id_token``, ``client_secret``, ``password`` and ``client_assertion``
fields (however spelt: ``accessToken``) of request and response bodies, parsed or not (a
token answer ccwatch rejects: a form sent as ``text/plain``, JSON after a BOM), and the
tokens the target's state holds; each as written and in any mix of its percent-, JSON-
and HTML-encodings, and base64-encoded (also inside a longer base64 text); the userinfo
of any URL is removed. A body is redacted before it is cut to ``--body-limit``. In
text, line breaks and other control characters are shown escaped (``\\n``, ``\\x1b``),
so that no vendor string can print a line of the report.

Exit status: 0 when every job succeeded, 1 when any failed, 2 for a usage or config
error or when no job matches (with a message on stderr).

``--format json`` prints one JSON object per job, one line each (JSON lines), with the
fields:

=====================  ===================================================================
``target``             the target's name
``source``             its source (``ece``, ``gms_probe``, ...)
``endpoint``           the job's endpoint (``capacity``, ``settings``, ``probe``, ...)
``subject``            the job's subject labels, an object (``{"entry_point": "1000"}``)
``ok``                 true when the poll succeeded
``reason``             the failure reason (``http_status``, ``timeout``, ...), or null
``detail``             the failure detail, or null
``duration_seconds``   how long the poll took
``timeout_seconds``    the poll's timeout
``exchanges``          the HTTP exchanges in order, objects with the fields below
``reading``            null on failure, else an object: ``type`` (the reading's class),
                       ``description`` (the reading in words, or null), ``fields`` (its
                       fields, an object)
``metrics``            the exposition lines the job would produce, a list of strings
=====================  ===================================================================

Each exchange:

=====================  ===================================================================
``method``             ``GET``, ``POST``
``url``                the URL requested, without userinfo
``request_headers``    the headers sent, a list of ``[name, value]`` pairs
``request_body``       the request body as text (a form urlencoded), or null
``status``             the HTTP status, or null when no answer came
``duration_seconds``   how long the exchange took
``response_headers``   the answer's headers, a list of ``[name, value]`` pairs
``body``               the start of the decoded body as text (invalid UTF-8 replaced),
                       at most ``--body-limit`` bytes of it after redaction
``body_bytes``         the size of the whole decoded body in bytes
``body_truncated``     true when ``body`` is not the whole body
``error``              why the request failed (``reason: detail``), or null
=====================  ===================================================================
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, TextIO
from urllib.parse import parse_qsl

from ccwatch.collector import (
    JobRenderer,
    MetricStore,
    core_families,
    render_state_samples,
    target_labels_text,
)
from ccwatch.config import ConfigBase, TargetConfig
from ccwatch.daemon import build_group, target_states
from ccwatch.errors import REASON_INTERNAL, ConfigError, PollError, TimeoutFailure
from ccwatch.http import TRACE, Exchange, HttpClient
from ccwatch.redact import CREDENTIAL_HEADERS, MAX_DEPTH, REDACTED, Redactor, secrets_in
from ccwatch.scheduler import Job
from ccwatch.sources import SOURCES, all_subject_labels, load_config
from ccwatch.sources.base import Reading, SourceState

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "Filters",
    "exchange_secrets",
    "run_probe",
]

DEFAULT_BODY_LIMIT: Final = 2048
#: Fields of JSON and form bodies whose values are secrets wherever they appear, however
#: spelt: ``access_token``, ``accessToken``, ``Access-Token`` (compared as here, lowercase
#: without ``_`` or ``-``).
SECRET_FIELDS: Final = frozenset(
    {
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "clientsecret",
        "password",
        "clientassertion",
    }
)
#: A cookie value shorter than this is redacted in its header, not searched for
#: everywhere (``Set-Cookie: lang=en`` must not redact every "en").
MIN_COOKIE_SECRET: Final = 8

# --------------------------------------------------------------------------- secrets


def _secret_field(key: object) -> bool:
    return re.sub(r"[_\-]", "", str(key).lower()) in SECRET_FIELDS


def _field_secrets(data: object, depth: int = 0) -> Iterable[str]:
    """The values of :data:`SECRET_FIELDS` anywhere in parsed JSON."""
    if depth > MAX_DEPTH:
        return
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and _secret_field(key):
                yield value
            else:
                yield from _field_secrets(value, depth + 1)
    elif isinstance(data, list):
        for value in data:
            yield from _field_secrets(value, depth + 1)


#: A secret field in a text that is not valid JSON nor a form (a BOM before the JSON, a
#: cut body, ``key: value`` lines): its name, quoted or not, ``:`` or ``=``, its value.
_FIELD_IN_TEXT: Final = re.compile(
    r"""(?i)(?<![a-z0-9])["']?(access[_-]?token|refresh[_-]?token|id[_-]?token|"""
    r"""client[_-]?secret|password|client[_-]?assertion)["']?\s*[:=]\s*["']?([^"'&\s,;}<>]+)"""
)
#: Values the text search finds that are not secrets.
_NOT_SECRETS: Final = frozenset({"null", "true", "false", "undefined"})


def _body_secrets(body: bytes | None) -> list[str]:
    """Secret fields of a body, whatever its content type says: as JSON (after a BOM),
    as a form, and searched for in the text (a token answer ccwatch could not parse)."""
    if not body:
        return []
    text = body.decode("utf-8", "replace").lstrip("\ufeff")
    found: list[str] = []
    if text.lstrip()[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            found.extend(_field_secrets(json.loads(text)))
    found.extend(v for k, v in parse_qsl(text.strip(), keep_blank_values=True) if _secret_field(k))
    found.extend(
        value
        for _, value in _FIELD_IN_TEXT.findall(text)
        if len(value) >= 4 and value.lower() not in _NOT_SECRETS
    )
    return found


def exchange_secrets(exchange: Exchange) -> list[str]:
    """The secrets an exchange reveals: credentials in its auth and cookie headers, and
    secret fields of its bodies (a token request's client secret, a token answer's
    tokens)."""
    found: list[str] = []
    for name, value in (*exchange.request_headers, *exchange.response_headers):
        lowered = name.lower()
        if lowered in CREDENTIAL_HEADERS:
            scheme, sep, credentials = value.strip().partition(" ")
            credentials = credentials.strip() if sep else scheme
            found.append(credentials)
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(credentials, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    continue
                found.extend((decoded, decoded.partition(":")[2]))
        elif lowered in ("cookie", "set-cookie"):
            pairs = value.split(";") if lowered == "cookie" else value.split(";")[:1]
            for pair in pairs:
                cookie = pair.partition("=")[2].strip()
                if len(cookie) >= MIN_COOKIE_SECRET:
                    found.append(cookie)
    found += _body_secrets(exchange.request_body)
    found += _body_secrets(exchange.body)
    return [secret for secret in found if secret]


# --------------------------------------------------------------------------- polling


@dataclass(frozen=True)
class Filters:
    """Which jobs to poll. Each filter left empty matches every job."""

    targets: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    #: (label, value) pairs: the same label repeated matches either value, different
    #: labels must all match
    subjects: tuple[tuple[str, str], ...] = ()

    def matches(self, job: Job) -> bool:
        if self.targets and job.target not in self.targets:
            return False
        if self.endpoints and job.endpoint not in self.endpoints:
            return False
        wanted: dict[str, set[str]] = {}
        for label, value in self.subjects:
            wanted.setdefault(label, set()).add(value)
        return all(job.subject.get(label) in values for label, values in wanted.items())

    def describe(self) -> str:
        flags = [f"--target {t}" for t in self.targets]
        flags += [f"--endpoint {e}" for e in self.endpoints]
        flags += [f"--subject {label}={value}" for label, value in self.subjects]
        return " ".join(flags) or "no filters"


@dataclass
class _Poll:
    job: Job
    target: TargetConfig
    state: SourceState | None


@dataclass
class _Outcome:
    exchanges: list[Exchange]
    reading: Reading | None
    error: PollError | None
    duration: float
    wall: float


def _internal(exc: BaseException) -> PollError:
    """A ccwatch bug in a poll, as the scheduler records it: reason ``internal``."""
    error = PollError(f"{type(exc).__name__}: {exc}")
    error.reason = REASON_INTERNAL
    return error


async def _poll_once(job: Job, limit: asyncio.Semaphore) -> _Outcome:
    """One poll of ``job`` under its timeout, its requests traced.

    Runs as a task of its own: :data:`~ccwatch.http.TRACE` is set in this task's
    context only, so concurrent jobs' exchanges do not mix.
    """
    async with limit:
        exchanges: list[Exchange] = []
        TRACE.set(exchanges)
        loop = asyncio.get_running_loop()
        started = loop.time()
        reading: Reading | None = None
        error: PollError | None = None
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                reading = await job.poll()
        except TimeoutError as exc:
            if deadline.expired():
                error = TimeoutFailure(f"no complete answer within {job.timeout:g}s")
            else:
                error = _internal(exc)
        except PollError as exc:
            error = exc
        except Exception as exc:  # a ccwatch bug: reported, as the scheduler records it
            error = _internal(exc)
        return _Outcome(exchanges, reading, error, loop.time() - started, time.time())


_FAMILY_RE: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _exposition(poll: _Poll, outcome: _Outcome) -> tuple[PollError | None, list[str]]:
    """The lines the job's outcome renders to, as in the daemon; the error, possibly
    ``internal`` when the reading cannot be rendered (as in the scheduler)."""
    job = poll.job
    store = MetricStore()
    for source in SOURCES.values():
        for family in source.families:
            store.register(family)
    for family in core_families(all_subject_labels()):
        store.register(family)
    render = JobRenderer(store)
    job.id = 1  # key 0 is the target-level series' (the state's)
    render.bind(job)
    render.interval(job)
    error = outcome.error
    if error is None:
        assert outcome.reading is not None
        try:
            render.success(job, outcome.reading.samples(), outcome.duration, outcome.wall)
        except Exception as exc:  # a reading that cannot be rendered is a bug too
            error = _internal(exc)
    if error is not None:
        job.errors = {error.reason: 1}
        render.failure(job, outcome.duration)
    if poll.state is not None:
        families = [family.name for family in SOURCES[job.source].families]
        render_state_samples(
            store,
            render.samples,
            [(target_labels_text(job.target), poll.state.samples())],
            families,
        )
    names = {family.name for family in store.families()}
    lines = []
    for chunk in store.chunks(openmetrics=False):
        # lines end in \n only: a label value may hold a \r (the text format escapes
        # \n, \\ and \" alone), which must not cut its line
        for line in chunk.decode().split("\n"):
            match = _FAMILY_RE.match(line)
            if match is not None and match.group() in names:
                lines.append(line)
    return error, lines


# --------------------------------------------------------------------------- the report


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` bytes of ``text`` (UTF-8), never half a ``[redacted]``."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[:limit].decode("utf-8", "ignore")
    for match in re.finditer(re.escape(REDACTED), text[: len(cut) + len(REDACTED)]):
        if match.start() < len(cut) < match.end():
            return text[: match.end()]
    return cut


def _plain(value: object) -> object:
    """A reading's field value as JSON, or ``None`` for what cannot be shown."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, list | tuple) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return list(value)
    return None


def _reading(reading: Reading, redactor: Redactor) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if dataclasses.is_dataclass(reading) and not isinstance(reading, type):
        for field in dataclasses.fields(reading):
            value = getattr(reading, field.name)
            shown = _plain(value)
            if shown is None and value is not None:
                continue  # a helper (a state set), not a value
            fields[field.name] = redactor.text(shown) if isinstance(shown, str) else shown
    describe = getattr(reading, "describe", None)  # optional: the reading in words
    try:
        description = describe() if callable(describe) else None
    except Exception:  # the words are a nicety; the fields and the metrics say it all
        description = None
    return {
        "type": type(reading).__name__,
        "description": redactor.text(description) if isinstance(description, str) else None,
        "fields": fields,
    }


def _exchange(exchange: Exchange, redactor: Redactor, body_limit: int) -> dict[str, Any]:
    body = redactor.text(exchange.body.decode("utf-8", "replace"))
    shown = _cut(body, body_limit)
    request_body = exchange.request_body
    return {
        "method": exchange.method,
        "url": redactor.text(exchange.url),
        "request_headers": [[k, redactor.header(k, v)] for k, v in exchange.request_headers],
        "request_body": (
            None if request_body is None else redactor.text(request_body.decode("utf-8", "replace"))
        ),
        "status": exchange.status,
        "duration_seconds": round(exchange.duration, 6),
        "response_headers": [[k, redactor.header(k, v)] for k, v in exchange.response_headers],
        "body": shown,
        "body_bytes": len(exchange.body),
        "body_truncated": len(shown) < len(body),
        "error": None if exchange.error is None else redactor.text(exchange.error),
    }


def _report(poll: _Poll, outcome: _Outcome, redactor: Redactor, body_limit: int) -> dict[str, Any]:
    """One job's report: the JSON object of ``--format json``, which text is made from."""
    job = poll.job
    error, lines = _exposition(poll, outcome)
    return {
        "target": job.target,
        "source": job.source,
        "endpoint": job.endpoint,
        "subject": dict(job.subject),
        "ok": error is None,
        "reason": None if error is None else error.reason,
        "detail": None if error is None else redactor.text(error.detail),
        "duration_seconds": round(outcome.duration, 6),
        "timeout_seconds": job.timeout,
        "exchanges": [_exchange(ex, redactor, body_limit) for ex in outcome.exchanges],
        "reading": (
            _reading(outcome.reading, redactor)
            if error is None and outcome.reading is not None
            else None
        ),
        "metrics": [redactor.text(line) for line in lines],
    }


# --------------------------------------------------------------------------- text


#: Control characters (line feeds included: a vendor's string must not start a line of
#: its own), and the bidirectional overrides a terminal would obey. A tab stays.
_UNPRINTABLE: Final = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
_SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _printable(text: str) -> str:
    """``text`` safe to write to a terminal on one line: line breaks and other control
    characters shown escaped (``\\n``, ``\\x1b``). Everything text mode prints from a
    report passes through here (a body through :func:`_lines`, line by line)."""
    return _UNPRINTABLE.sub(_escaped, text)


def _lines(text: str) -> list[str]:
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [_printable(line.removesuffix("\r")) for line in lines]


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class _Style:
    """ANSI colours, or none."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def ok(self, text: str) -> str:
        return self(text, "32")

    def bad(self, text: str) -> str:
        return self(text, "31")

    def bold(self, text: str) -> str:
        return self(text, "1")

    def dim(self, text: str) -> str:
        return self(text, "2")


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def format_text(report: Mapping[str, Any], body_limit: int, style: _Style) -> str:
    """A job's report for a terminal."""
    subject = " ".join(f"{k}={v}" for k, v in report["subject"].items())
    name = " ".join(x for x in (report["target"], report["endpoint"], subject) if x)
    took = _seconds(report["duration_seconds"])
    if report["ok"]:
        verdict = style.ok("OK")
    else:
        verdict = style.bad(f"FAILED {report['reason']}: {_printable(report['detail'])}")
    out = [style.bold(f"== {_printable(name)}: ") + verdict + f" ({took})"]
    if not report["exchanges"]:
        out.append(style.dim("  (no HTTP request)"))
    for i, ex in enumerate(report["exchanges"]):
        if i:
            out.append("")
        out.append(f"  > {ex['method']} {_printable(ex['url'])}")
        out += [style.dim(f"  > {_printable(f'{k}: {v}')}") for k, v in ex["request_headers"]]
        if ex["request_body"] is not None:
            out.append("  >")
            out += [f"  > {line}" for line in _lines(ex["request_body"])]
        status = ex["status"]
        ex_took = _seconds(ex["duration_seconds"])
        if status is None:
            out.append(style.bad(f"  < no answer after {ex_took}"))
        else:
            line = f"  < {_status_line(status)} {ex_took}"
            out.append(style.ok(line) if 200 <= status < 300 else style.bad(line))
            out += [style.dim(f"  < {_printable(f'{k}: {v}')}") for k, v in ex["response_headers"]]
            body_lines = _lines(ex["body"])
            if body_lines or ex["body_truncated"]:
                out.append("  <")
            out += [f"  < {line}" for line in body_lines]
            if ex["body_truncated"]:
                shown = len(ex["body"].encode())
                note = f"{shown} of {ex['body_bytes']} bytes shown: --body-limit {body_limit}"
                out.append(style.dim(f"  < [{note}]"))
        if ex["error"] is not None:
            out.append(style.bad(f"  ! {_printable(ex['error'])}"))
    reading = report["reading"]
    if reading is not None:
        described = f" ({reading['description']})" if reading["description"] else ""
        out.append(f"  reading: {reading['type']}{_printable(described)}")
        for key, value in reading["fields"].items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.append(f"    {key}: {_printable(text)}")
    else:
        out.append(style.bad(f"  failure: {report['reason']}: {_printable(report['detail'])}"))
    out.append("  metrics:")
    out += [f"    {_printable(line)}" for line in report["metrics"]]
    return "\n".join(out) + "\n\n"


def format_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------- entry point


def _no_match(polls: Sequence[_Poll], filters: Filters) -> str:
    """Why nothing matched, with what there is to match."""
    lines = [f"ccwatch probe: no job matches ({filters.describe()})"]
    endpoints = sorted({p.job.endpoint for p in polls})
    if endpoints:
        lines.append(f"  endpoints: {', '.join(endpoints)}")
    labels = sorted({label for p in polls for label in p.job.subject})
    if labels:
        lines.append(f"  subject labels: {', '.join(labels)}")
        subjects = sorted({f"{k}={v}" for p in polls for k, v in p.job.subject.items()})
        more = f", ... ({len(subjects)} in all)" if len(subjects) > 20 else ""
        lines.append(f"  subjects: {', '.join(subjects[:20])}{more}")
    return "\n".join(lines)


async def _probe(
    config: ConfigBase,
    filters: Filters,
    *,
    json_lines: bool,
    body_limit: int,
    out: TextIO,
    err: TextIO,
    style: _Style,
) -> int:
    http = HttpClient(max_connections=config.scheduler.max_concurrency)
    states = target_states(config, {})
    polls: list[_Poll] = []
    # one redactor for the whole report: a secret of one target is not shown either
    # where it appears in another target's exchanges
    redactor = Redactor(secrets_in(config))
    for target in config.targets:
        if filters.targets and target.name not in filters.targets:
            continue
        held = states.get(target.name)
        state = held[1] if held is not None else None
        group = build_group(config, target, http, state)
        polls.extend(_Poll(job, target, state) for job in group.jobs)
    selected = [poll for poll in polls if filters.matches(poll.job)]
    if not selected:
        print(_no_match(polls, filters), file=err)
        return 2
    limit = asyncio.Semaphore(config.scheduler.max_concurrency)
    tasks = [asyncio.create_task(_poll_once(poll.job, limit)) for poll in selected]
    failed = False
    try:
        for poll, task in zip(selected, tasks, strict=True):
            outcome = await task
            # learnt at run time: the tokens the target's state holds now, and what its
            # exchanges reveal (the credentials sent, a token answer's tokens)
            redactor.add(secrets_in(poll.state))
            for exchange in outcome.exchanges:
                redactor.add(exchange_secrets(exchange))
            report = _report(poll, outcome, redactor, body_limit)
            failed = failed or not report["ok"]
            out.write(format_json(report) if json_lines else format_text(report, body_limit, style))
            out.flush()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
    return 1 if failed else 0


def run_probe(
    config_file: str,
    filters: Filters,
    *,
    json_lines: bool = False,
    body_limit: int = DEFAULT_BODY_LIMIT,
    out: TextIO,
    err: TextIO,
    color: bool | None = None,
) -> int:
    """Run ``ccwatch probe``; returns its exit status (see the module's docstring).

    ``color``: ANSI colours in text; ``None``: when ``out`` is a terminal and
    ``NO_COLOR`` is not set.
    """
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        exc.report(config_file, err)
        return 2
    names = [target.name for target in config.targets]
    unknown = [name for name in filters.targets if name not in names]
    if unknown:
        print(
            f"ccwatch probe: no target named {', '.join(map(repr, unknown))} in {config_file}; "
            f"its targets: {', '.join(names)}",
            file=err,
        )
        return 2
    if color is None:
        color = out.isatty() and "NO_COLOR" not in os.environ
    return asyncio.run(
        _probe(
            config,
            filters,
            json_lines=json_lines,
            body_limit=body_limit,
            out=out,
            err=err,
            style=_Style(color and not json_lines),
        )
    )
