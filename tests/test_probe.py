"""``ccwatch probe`` as a real process against the simulator over real sockets: the
report, its exit status, its filters and its redaction; the HTTP trace hook; and the
redaction helpers."""

from __future__ import annotations

import asyncio
import base64
import html
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import SecretStr
from yarl import URL

from ccwatch.errors import PollError
from ccwatch.http import TRACE, Exchange, HttpClient
from ccwatch.oauth2 import Token
from ccwatch.probe import Filters, _cut, _printable, exchange_secrets
from ccwatch.redact import REDACTED, Redactor, secrets_in
from ccwatch.scheduler import Job
from ccwatch.simulator.alvaria import TOKEN_PATH
from ccwatch.simulator.context_service import DEFAULT_USERNAME
from ccwatch.sources import parse_config
from ccwatch.sources.alvaria_context_cookies import AlvariaContextCookiesTarget, TokenState
from ccwatch.sources.base import Reading
from tests.harness import Sim, ece_config, gms_probe_target, simulator, write_config
from tests.test_redact import SECRET, assert_no_leak, encodings

CCWATCH = (sys.executable, "-m", "ccwatch")
INVALID = Path(__file__).parent / "testdata" / "config" / "invalid"

CS_PASSWORD = "cs-pass-5e1d7c9a"
CLIENT_ID = "probe-client"
CLIENT_SECRET = "probe-client-secret-0b4f2e"
API_KEY = "probe-api-key-8c3a61"
URL_USER = "probe-user"
URL_PASSWORD = "url-pw@9d2b"  # written percent-encoded in the URL
#: every field of a job's JSON object, and of an exchange's (documented in ccwatch.probe)
JOB_FIELDS = {
    "target",
    "source",
    "endpoint",
    "subject",
    "ok",
    "reason",
    "detail",
    "duration_seconds",
    "timeout_seconds",
    "exchanges",
    "reading",
    "metrics",
}
EXCHANGE_FIELDS = {
    "method",
    "url",
    "request_headers",
    "request_body",
    "status",
    "duration_seconds",
    "response_headers",
    "body",
    "body_bytes",
    "body_truncated",
    "error",
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def jobs(self) -> list[dict[str, Any]]:
        """stdout as JSON lines: one object per line."""
        out = []
        for line in self.out.splitlines():
            job = json.loads(line)
            assert isinstance(job, dict), line
            out.append(job)
        return out


async def probe(config: Path | str, *args: str) -> Result:
    """``ccwatch probe --config.file config args`` as a real process."""
    proc = await asyncio.create_subprocess_exec(
        *CCWATCH,
        "probe",
        "--config.file",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with simulator(
        ece_entry_points=[1000, 1001, 1002],
        context_service_password=CS_PASSWORD,
        alvaria_client_id=CLIENT_ID,
        alvaria_client_secret=CLIENT_SECRET,
        alvaria_api_key=API_KEY,
    ) as running:
        await running.put("gms/status", {"status": "waiting-for-agent"})
        yield running


def ece_file(tmp_path: Path, sim: Sim, **target: Any) -> Path:
    """One ECE target named ``ece``, with the entry points 1000, 1001 and 1002 unless
    ``target`` says otherwise."""
    path = tmp_path / "ccwatch.yml"
    target = {"entry_points": [1000, 1001, 1002], **target}
    write_config(path, ece_config(sim, interval="2s", timeout="1s", **target))
    return path


def config_file(tmp_path: Path, *targets: dict[str, Any]) -> Path:
    path = tmp_path / "ccwatch.yml"
    write_config(path, {"defaults": {"interval": "2s", "timeout": "1s"}, "targets": targets})
    return path


def alvaria_target(sim: Sim, **extra: Any) -> dict[str, Any]:
    return {
        "name": "alvaria",
        "source": "alvaria_context_cookies",
        "url": sim.url,
        "org_id": "orgId",
        "oauth2": {
            "token_url": sim.url + TOKEN_PATH,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        "api_key": API_KEY,
        **extra,
    }


def cs_target(sim: Sim) -> dict[str, Any]:
    return {
        "name": "cs",
        "source": "context_service",
        "url": sim.url,
        "basic_auth": {"username": DEFAULT_USERNAME, "password": CS_PASSWORD},
    }


def userinfo_target(sim: Sim) -> dict[str, Any]:
    host = sim.url.removeprefix("http://")
    return {
        "name": "ece-userinfo",
        "source": "ece",
        "url": f"http://{URL_USER}:{quote(URL_PASSWORD, safe='')}@{host}/system",
        "entry_points": [1000],
        "endpoints": ["capacity"],
    }


# --------------------------------------------------------------------------- the report


async def test_healthy_entry_points_exit_0_with_the_whole_exchange(
    sim: Sim, tmp_path: Path
) -> None:
    result = await probe(ece_file(tmp_path, sim), "--endpoint", "capacity")
    assert result.code == 0, result.err
    out = result.out
    one = out.index("== ece capacity entry_point=1000: OK (")
    two = out.index("== ece capacity entry_point=1001: OK (")
    three = out.index("== ece capacity entry_point=1002: OK (")
    assert one < two < three  # config order
    first = out[one:two]
    assert f"  > GET {sim.url}/system/egain/chat/entrypoint/capacity/1000\n" in first
    assert "  > Accept: application/xml\n" in first
    assert "  > User-Agent: ccwatch/" in first  # the headers sent, session defaults included
    assert re.search(r"\n  < 200 OK [\d.]+ ms\n", first)
    assert "  < Content-Type: application/xml" in first
    assert "<ns2:count>" in first  # the body
    assert "  reading: Capacity" in first
    assert re.search(r"\n    available_slots: \d+\n", first)
    assert "  metrics:\n" in first
    assert re.search(
        r'\n    ccwatch_ece_available_slots\{target="ece",entry_point="1000"\} \d+\n', first
    )
    assert (
        '    ccwatch_poll_success{target="ece",endpoint="capacity",entry_point="1000"} 1\n' in first
    )
    assert '    ccwatch_poll_interval_seconds{target="ece",endpoint="capacity",' in first
    assert "# HELP" not in out
    assert "process_" not in out
    assert "python_info" not in out
    assert "\x1b[" not in out  # no colours off a terminal
    assert result.err == ""


async def test_json_lines_one_object_per_job_with_the_documented_fields(
    sim: Sim, tmp_path: Path
) -> None:
    result = await probe(ece_file(tmp_path, sim), "--endpoint", "capacity", "--format", "json")
    assert result.code == 0, result.err
    jobs = result.jobs()
    assert [job["subject"] for job in jobs] == [
        {"entry_point": "1000"},
        {"entry_point": "1001"},
        {"entry_point": "1002"},
    ]
    for job in jobs:
        assert set(job) == JOB_FIELDS
        assert job["target"] == "ece"
        assert job["source"] == "ece"
        assert job["endpoint"] == "capacity"
        assert job["ok"] is True
        assert job["reason"] is None
        assert job["detail"] is None
        assert job["duration_seconds"] > 0
        assert job["timeout_seconds"] == 1.0
        (exchange,) = job["exchanges"]
        assert set(exchange) == EXCHANGE_FIELDS
        entry_point = job["subject"]["entry_point"]
        # each job's own exchange: concurrent jobs' traces do not mix
        assert exchange["url"] == f"{sim.url}/system/egain/chat/entrypoint/capacity/{entry_point}"
        assert exchange["method"] == "GET"
        assert exchange["status"] == 200
        assert ["Accept", "application/xml"] in exchange["request_headers"]
        assert exchange["request_body"] is None
        assert any(k == "Content-Type" for k, _ in exchange["response_headers"])
        assert "<ns2:count>" in exchange["body"]
        assert exchange["body_bytes"] == len(exchange["body"].encode())
        assert exchange["body_truncated"] is False
        assert exchange["error"] is None
        reading = job["reading"]
        assert reading["type"] == "Capacity"
        assert isinstance(reading["fields"]["available_slots"], int)
        slots = reading["fields"]["available_slots"]
        assert (
            f'ccwatch_ece_available_slots{{target="ece",entry_point="{entry_point}"}} {slots}'
            in job["metrics"]
        )


async def test_a_failed_job_exits_1_with_its_reason_and_the_error_page(
    sim: Sim, tmp_path: Path
) -> None:
    await sim.fault(
        "/capacity/1000", "status", status=500, body="<h1>boom</h1>\x1b[2J in the error page"
    )
    path = ece_file(tmp_path, sim)
    result = await probe(path, "--endpoint", "capacity")
    assert result.code == 1
    out = result.out
    assert (
        "== ece capacity entry_point=1000: FAILED http_status: unexpected HTTP status 500 (" in out
    )
    assert re.search(r"\n  < 500 Internal Server Error [\d.]+ ms\n", out)
    assert "  < <h1>boom</h1>\\x1b[2J in the error page\n" in out  # shown, escaped
    assert "\x1b" not in out
    assert "  ! http_status: unexpected HTTP status 500\n" in out
    assert "  failure: http_status: unexpected HTTP status 500\n" in out
    assert (
        'ccwatch_poll_errors_total{target="ece",endpoint="capacity",entry_point="1000",'
        'reason="http_status"} 1' in out
    )
    assert 'ccwatch_poll_success{target="ece",endpoint="capacity",entry_point="1000"} 0' in out
    assert 'ccwatch_ece_available_slots{target="ece",entry_point="1000"}' not in out
    assert "== ece capacity entry_point=1001: OK" in out

    result = await probe(path, "--endpoint", "capacity", "--format", "json")
    assert result.code == 1
    failed, *others = result.jobs()
    assert failed["ok"] is False
    assert failed["reason"] == "http_status"
    assert failed["detail"] == "unexpected HTTP status 500"
    assert failed["reading"] is None
    (exchange,) = failed["exchanges"]
    assert exchange["status"] == 500
    assert exchange["body"] == "<h1>boom</h1>\x1b[2J in the error page"
    assert exchange["error"] == "http_status: unexpected HTTP status 500"
    assert [job["ok"] for job in others] == [True, True]


async def test_a_timeout_and_a_refused_connection(sim: Sim, tmp_path: Path) -> None:
    await sim.fault("/capacity/1000", "slow", delay=1.5)
    dead = {
        "name": "dead",
        "source": "ece",
        "url": f"http://127.0.0.1:{free_port()}/system",
        "entry_points": [7],
        "endpoints": ["capacity"],
    }
    path = tmp_path / "ccwatch.yml"
    config = ece_config(sim, interval="1s", timeout="300ms", endpoints=["capacity"])
    config["targets"] = [{**config["targets"][0], "entry_points": [1000]}, dead]
    write_config(path, config)
    result = await probe(path, "--format", "json")
    assert result.code == 1
    slow, refused = result.jobs()
    assert slow["reason"] == "timeout"
    assert slow["detail"] == "no complete answer within 0.3s"
    (exchange,) = slow["exchanges"]
    assert exchange["status"] is None
    assert exchange["error"].startswith("cancelled before it was complete")
    assert refused["reason"] == "connect"
    (exchange,) = refused["exchanges"]
    assert exchange["status"] is None
    assert exchange["error"].startswith("connect: ")
    assert ["Accept", "application/xml"] in exchange["request_headers"]  # those passed

    result = await probe(path)
    assert "== ece capacity entry_point=1000: FAILED timeout: no complete answer within" in (
        result.out
    )
    assert re.search(r"\n  < no answer after [\d.]+ (ms|s)\n", result.out)
    assert "== dead capacity entry_point=7: FAILED connect: " in result.out


async def test_the_gms_probe_shows_its_create_then_its_status_request(
    sim: Sim, tmp_path: Path
) -> None:
    path = config_file(tmp_path, gms_probe_target(sim))
    result = await probe(path, "--format", "json")
    assert result.code == 0, result.err
    (job,) = result.jobs()
    assert job["subject"] == {"gms_service": "request-inbound-poll"}
    create, status = job["exchanges"]
    assert create["method"] == status["method"] == "POST"
    assert create["url"] == f"{sim.url}/genesys/1/service/request-inbound-poll"
    assert create["request_body"] == "_phone_number=6504669999"
    service_id = json.loads(create["body"])["_id"]
    assert status["url"] == f"{sim.url}/genesys/1/service/{service_id}/status"
    assert json.loads(status["body"])["status"] == "waiting-for-agent"
    assert job["reading"]["fields"]["status"] == "waiting-for-agent"
    labels = 'target="probe",gms_service="request-inbound-poll"'
    assert f"ccwatch_gms_probe_success{{{labels}}} 1" in job["metrics"]
    assert (
        f'ccwatch_gms_service_status{{{labels},status="waiting-for-agent"}} 1' in (job["metrics"])
    )

    text = (await probe(path)).out
    create_at = text.index("  > POST " + sim.url + "/genesys/1/service/request-inbound-poll\n")
    status_at = text.index("/status\n", create_at)
    assert "  > _phone_number=6504669999\n" in text[create_at:status_at]


# --------------------------------------------------------------------------- exit 2


async def test_no_matching_job_exits_2_with_what_there_is(sim: Sim, tmp_path: Path) -> None:
    path = ece_file(tmp_path, sim)
    result = await probe(path, "--endpoint", "capcity")
    assert result.code == 2
    assert result.out == ""
    assert "ccwatch probe: no job matches (--endpoint capcity)" in result.err
    assert "endpoints: agentAvailability, capacity," in result.err

    result = await probe(path, "--target", "nope")
    assert result.code == 2
    assert "no target named 'nope'" in result.err
    assert "its targets: ece" in result.err

    # different labels must all match: no ECE job has a gms_service
    result = await probe(path, "--subject", "entry_point=1000", "--subject", "gms_service=x")
    assert result.code == 2
    assert "no job matches" in result.err


async def test_a_bad_config_or_usage_exits_2() -> None:
    result = await probe(INVALID / "duration_bad_unit.yml")
    assert result.code == 2
    assert "duration_bad_unit.yml: invalid configuration" in result.err
    assert "  defaults.interval: invalid duration '10x'" in result.err
    assert result.out == ""

    result = await probe(INVALID / "unknown_top_level_key.yml")
    assert result.code == 2
    assert "bogus: unknown key" in result.err

    result = await probe("/nonexistent/ccwatch.yml")
    assert result.code == 2
    assert "cannot read" in result.err

    for flags in (["--subject", "entry_point"], ["--body-limit", "-1"], ["--format", "xml"]):
        result = await probe(INVALID / "duration_bad_unit.yml", *flags)
        assert result.code == 2, flags
        assert "usage: ccwatch probe" in result.err


# --------------------------------------------------------------------------- filters


async def test_filters_target_endpoint_and_subject(sim: Sim, tmp_path: Path) -> None:
    base = ece_config(sim, interval="2s", timeout="1s")["targets"][0]
    path = config_file(
        tmp_path,
        {**base, "name": "ece-a", "entry_points": [1000, 1001, 1002]},
        {**base, "name": "ece-b", "entry_points": [1000, 1001, 1002]},
    )

    def jobs(result: Result) -> list[tuple[str, str, str]]:
        assert result.code == 0, result.err
        return [(j["target"], j["endpoint"], j["subject"]["entry_point"]) for j in result.jobs()]

    result = await probe(path, "--format", "json", "--target", "ece-b", "--endpoint", "capacity")
    assert jobs(result) == [
        ("ece-b", "capacity", "1000"),
        ("ece-b", "capacity", "1001"),
        ("ece-b", "capacity", "1002"),
    ]
    # repeated: either value; different filters: all of them
    result = await probe(
        path,
        "--format",
        "json",
        "--target",
        "ece-a",
        "--endpoint",
        "chatAllowed",
        "--endpoint",
        "capacity",
        "--subject",
        "entry_point=1000",
        "--subject",
        "entry_point=1002",
    )
    assert jobs(result) == [
        ("ece-a", "capacity", "1000"),
        ("ece-a", "chatAllowed", "1000"),
        ("ece-a", "capacity", "1002"),
        ("ece-a", "chatAllowed", "1002"),
    ]
    result = await probe(
        path, "--format", "json", "--target", "ece-b", "--target", "ece-a", "--endpoint", "capacity"
    )
    assert [t for t, _, _ in jobs(result)] == ["ece-a"] * 3 + ["ece-b"] * 3  # config order


def _job(target: str, endpoint: str, **subject: str) -> Job:
    async def poll() -> Reading:
        raise AssertionError("not polled")

    return Job(
        id=0,
        source="ece",
        target=target,
        endpoint=endpoint,
        subject=subject,
        subject_labels=(tuple(subject), tuple(subject)),
        interval=1.0,
        timeout=1.0,
        poll=poll,
    )


def test_filters_match_as_documented() -> None:
    job = _job("a", "capacity", entry_point="1000", customer_id="c")
    assert Filters().matches(job)
    assert Filters(targets=("b", "a")).matches(job)
    assert not Filters(targets=("b",)).matches(job)
    assert Filters(endpoints=("x", "capacity")).matches(job)
    either = (("entry_point", "1001"), ("entry_point", "1000"))
    assert Filters(subjects=either).matches(job)
    both = (("entry_point", "1000"), ("customer_id", "c"))
    assert Filters(subjects=both).matches(job)
    assert not Filters(subjects=(("entry_point", "1000"), ("customer_id", "d"))).matches(job)
    assert not Filters(subjects=(("gms_service", "x"),)).matches(job)


# --------------------------------------------------------------------------- body limit


async def test_body_limit_cuts_the_body_shown(sim: Sim, tmp_path: Path) -> None:
    path = ece_file(tmp_path, sim, entry_points=[1000], endpoints=["capacity"])
    result = await probe(path, "--body-limit", "20")
    assert result.code == 0, result.err
    start = '<?xml version="1.0" encoding="UTF-8"'[:20]
    body = [line for line in result.out.splitlines() if line.startswith("  < <")]
    assert body == [f"  < {start}"]
    assert re.search(r"\n  < \[20 of \d+ bytes shown: --body-limit 20\]\n", result.out)
    assert "</availableSlots>" not in result.out

    (job,) = (await probe(path, "--body-limit", "20", "--format", "json")).jobs()
    (exchange,) = job["exchanges"]
    assert exchange["body"] == start
    assert exchange["body_truncated"] is True
    assert exchange["body_bytes"] > 100

    (job,) = (await probe(path, "--body-limit", "0", "--format", "json")).jobs()
    assert job["exchanges"][0]["body"] == ""
    assert job["exchanges"][0]["body_truncated"] is True

    (job,) = (await probe(path, "--body-limit", "100000", "--format", "json")).jobs()
    assert job["exchanges"][0]["body"].rstrip().endswith("</availableSlots>")
    assert job["exchanges"][0]["body_truncated"] is False


# --------------------------------------------------------------------------- secrets


def _forbidden() -> list[str]:
    """The configured secrets and the encodings they travel in."""
    return [
        CS_PASSWORD,
        base64.b64encode(f"{DEFAULT_USERNAME}:{CS_PASSWORD}".encode()).decode(),
        CLIENT_SECRET,
        quote_plus(CLIENT_SECRET),
        API_KEY,
        URL_PASSWORD,
        quote(URL_PASSWORD, safe=""),
        base64.b64encode(f"{URL_USER}:{URL_PASSWORD}".encode()).decode(),
    ]


async def _tokens(sim: Sim) -> list[str]:
    async with sim.session.get(f"{sim.url}/-/sim/alvaria/tokens") as resp:
        tokens: list[str] = await resp.json()
    return tokens


async def test_no_secret_in_the_output(sim: Sim, tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        cs_target(sim),
        alvaria_target(sim, collections=["customers", "settings"]),
        userinfo_target(sim),
    )
    text = await probe(path)
    json_result = await probe(path, "--format", "json")
    assert text.code == json_result.code == 0, text.out + text.err
    tokens = await _tokens(sim)
    assert len(tokens) == 2  # one per run, shared by the target's jobs
    for result in (text, json_result):
        for secret in [*_forbidden(), *tokens]:
            assert secret not in result.out, secret
            assert secret not in result.err, secret

    out = text.out
    assert "  > Authorization: Basic [redacted]\n" in out  # basic auth, and URL userinfo
    assert out.count("  > Authorization: Bearer [redacted]\n") == 2
    assert out.count("  > x-api-key: [redacted]\n") == 2
    assert f"  > grant_type=client_credentials&client_id={CLIENT_ID}&client_secret=[redacted]" in (
        out
    )
    assert '"access_token": "[redacted]"' in out
    assert f"  > GET {sim.url}/system/egain/" in out  # the URL without its userinfo
    assert URL_USER not in out

    jobs = json_result.jobs()
    assert [(j["target"], j["endpoint"]) for j in jobs] == [
        ("cs", "contextserviceregistration"),
        ("alvaria", "customers"),
        ("alvaria", "settings"),
        ("ece-userinfo", "capacity"),
    ]
    cs, customers, settings, userinfo = jobs
    assert ["Authorization", "Basic [redacted]"] in cs["exchanges"][0]["request_headers"]
    token, call = customers["exchanges"]
    assert token["url"] == sim.url + TOKEN_PATH
    assert f"client_secret={REDACTED}" in token["request_body"]
    assert json.loads(token["body"])["access_token"] == REDACTED
    assert ["Authorization", "Bearer [redacted]"] in call["request_headers"]
    assert ["x-api-key", REDACTED] in call["request_headers"]
    (call,) = settings["exchanges"]  # the token is the target's, fetched once
    assert ["Authorization", "Bearer [redacted]"] in call["request_headers"]
    assert (
        userinfo["exchanges"][0]["url"] == f"{sim.url}/system/egain/chat/entrypoint/capacity/1000"
    )
    assert ["Authorization", "Basic [redacted]"] in userinfo["exchanges"][0]["request_headers"]


async def test_secrets_echoed_in_a_body_or_a_header_are_redacted(sim: Sim, tmp_path: Path) -> None:
    basic = base64.b64encode(f"{DEFAULT_USERNAME}:{CS_PASSWORD}".encode()).decode()
    await sim.fault(
        "/contextserviceregistration",
        "status",
        status=401,
        body=f"wrong password {CS_PASSWORD!r} (sent as Basic {basic}), key {API_KEY}",
        headers={"Set-Cookie": "session=abcdef0123456789; Path=/; HttpOnly", "X-Echo": API_KEY},
    )
    path = config_file(tmp_path, cs_target(sim), alvaria_target(sim, collections=["channels"]))
    result = await probe(path, "--target", "cs", "--format", "json")
    assert result.code == 1
    (job,) = result.jobs()
    assert job["reason"] == "auth"
    (exchange,) = job["exchanges"]
    # the API key is another target's, and redacted too
    assert exchange["body"] == (
        f"wrong password '{REDACTED}' (sent as Basic {REDACTED}), key {REDACTED}"
    )
    assert ["Set-Cookie", f"session={REDACTED}; Path=/; HttpOnly"] in exchange["response_headers"]
    assert ["X-Echo", REDACTED] in exchange["response_headers"]
    for secret in [*_forbidden(), "abcdef0123456789"]:
        assert secret not in result.out


async def test_a_failed_token_request_is_shown_without_its_secret(sim: Sim, tmp_path: Path) -> None:
    await sim.put("alvaria/config", {"client_secret": "another-secret"})
    path = config_file(tmp_path, alvaria_target(sim, collections=["channels"]))
    result = await probe(path)
    assert result.code == 1
    assert "== alvaria channels: FAILED auth: token request failed: " in result.out
    assert re.search(r"\n  < 401 Unauthorized [\d.]+ ms\n", result.out)
    assert "invalid_client" in result.out  # the token endpoint's error page
    assert "client_secret=[redacted]" in result.out
    assert CLIENT_SECRET not in result.out


async def test_a_secret_echoed_in_every_encoding_is_redacted(tmp_path: Path) -> None:
    forms = encodings(SECRET)
    body = "\n".join(f"{name}: {form}" for name, form in forms.items())
    async with simulator(context_service_password=SECRET) as sim:
        await sim.fault(
            "/contextserviceregistration",
            "status",
            status=500,
            body=body,
            headers={"X-Echo": forms["encodeURIComponent"], "X-Go": forms["go-json"]},
        )
        target = {**cs_target(sim), "basic_auth": {"username": "admin", "password": SECRET}}
        path = config_file(tmp_path, target)
        text = await probe(path, "--body-limit", "100000")
        json_result = await probe(path, "--body-limit", "100000", "--format", "json")
    assert text.code == json_result.code == 1, text.out + text.err
    (job,) = json_result.jobs()
    (exchange,) = job["exchanges"]
    assert exchange["body"].split("\n") == [f"{name}: {REDACTED}" for name in forms]
    assert ["X-Echo", REDACTED] in exchange["response_headers"]
    assert ["X-Go", REDACTED] in exchange["response_headers"]
    assert f"  < %7E: {REDACTED}\n" in text.out
    for result in (text, json_result):
        assert_no_leak(result.out + result.err, SECRET, "probe")


#: a token the token endpoint hands out in an answer ccwatch rejects
REJECTED_TOKEN = "tok-3e9a1f7c5b2d"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", f"access_token={REJECTED_TOKEN}&token_type=bearer&expires_in=3600"),
        (
            "application/json",
            "\ufeff" + json.dumps({"access_token": REJECTED_TOKEN, "token_type": "bearer"}),
        ),
        ("application/json", json.dumps({"accessToken": REJECTED_TOKEN, "expiresIn": 3600})),
        ("application/json", f'{{"access_token": "{REJECTED_TOKEN}", "token_type": '),
    ],
    ids=["text-plain-form", "bom-json", "accessToken", "cut-json"],
)
async def test_a_token_answer_ccwatch_rejects_is_redacted(
    sim: Sim, tmp_path: Path, content_type: str, body: str
) -> None:
    await sim.fault(
        TOKEN_PATH, "status", status=200, body=body, headers={"Content-Type": content_type}
    )
    path = config_file(tmp_path, alvaria_target(sim, collections=["channels"]))
    text = await probe(path)
    json_result = await probe(path, "--format", "json")
    assert text.code == json_result.code == 1
    assert "== alvaria channels: FAILED auth: token request failed: " in text.out
    (job,) = json_result.jobs()
    (token,) = job["exchanges"]  # the answer was rejected: no API call
    assert token["status"] == 200
    assert REDACTED in token["body"], token["body"]
    for result in (text, json_result):
        assert_no_leak(result.out + result.err, REJECTED_TOKEN, "probe")


async def test_a_vendor_string_cannot_forge_a_report_line(sim: Sim, tmp_path: Path) -> None:
    forged = "== probe probe: OK (1.0 ms)"
    status = f"waiting-for-agent\n{forged}\r\n  reading: forged\x1b[2K\u2028x\x85y"
    await sim.put("gms/status", {"status": status})
    result = await probe(config_file(tmp_path, gms_probe_target(sim)))
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    # one report line, the real one; the vendor's string on its own line, escaped
    assert [line for line in lines if line.startswith("==")] == [
        next(line for line in lines if line.startswith("== probe probe gms_service="))
    ]
    assert "  reading: ProbeReading" in lines
    assert not [line for line in lines if line.startswith("  reading: forged")]
    escaped = f"waiting-for-agent\\n{forged}\\r\\n  reading: forged\\x1b[2K\\u2028x\\x85y"
    assert f"    status: {escaped}" in lines
    # the label value keeps its line too, whole
    assert any(
        line.startswith("    ccwatch_gms_service_status{") and "x85y" in line for line in lines
    )
    for char in "\x1b\r\u2028\x85":
        assert char not in result.out, repr(char)


# --------------------------------------------------------------------------- the trace hook


@pytest.mark.parametrize(
    "fault",
    [
        None,
        {"kind": "status", "status": 500, "body": "oops"},
        {"kind": "status", "status": 503, "headers": {"Retry-After": "7"}},
        {"kind": "status", "status": 429, "headers": {"Retry-After": "3"}},
        {"kind": "status", "status": 401},
        {"kind": "content_type", "content_type": "text/html"},
        {"kind": "oversized", "size": 50_000},
        {"kind": "oversized", "size": 50_000, "chunked": True},
        {"kind": "gzip_bomb", "size": 1_000_000},
        {"kind": "reset"},
    ],
)
async def test_a_traced_request_fails_exactly_as_an_untraced_one(
    fault: dict[str, Any] | None,
) -> None:
    async with simulator() as sim:
        if fault is not None:
            await sim.fault("/capacity/1000", **fault)
        target = parse_config(ece_config(sim)).targets[0]
        http = HttpClient()
        try:
            client = http.for_target(
                target, max_response_size=10_000, headers={"Accept": "application/xml"}
            )
            url = URL(client.url("/egain/chat/entrypoint/capacity/1000"), encoded=True)

            async def outcome() -> tuple[object, ...]:
                try:
                    response = await client.request("GET", url, content_types=("xml",))
                except PollError as exc:
                    return (type(exc), exc.reason, exc.detail, exc.retry_after)
                return ("ok", response.status, response.body)

            assert TRACE.get() is None
            untraced = await outcome()
            trace: list[Exchange] = []
            token = TRACE.set(trace)
            try:
                traced = await outcome()
            finally:
                TRACE.reset(token)
            assert traced == untraced
            (exchange,) = trace
            assert exchange.method == "GET"
            assert exchange.url == str(url)
            if untraced[0] == "ok":
                assert exchange.error is None
                assert exchange.body == untraced[2]
            else:
                assert exchange.error == f"{untraced[1]}: {untraced[2]}"
            if fault is not None and fault["kind"] == "status" and fault.get("body"):
                assert exchange.body == fault["body"].encode()  # the error page, read
        finally:
            await http.close()


async def test_the_trace_records_each_request_of_its_own_task_only(sim: Sim) -> None:
    target = parse_config(ece_config(sim)).targets[0]
    http = HttpClient()
    try:
        client = http.for_target(target, max_response_size=10_000)

        async def traced(entry_point: int) -> list[Exchange]:
            trace: list[Exchange] = []
            TRACE.set(trace)
            for endpoint in ("capacity", "chatAllowed"):
                path = f"/egain/chat/entrypoint/{endpoint}/{entry_point}"
                await client.request("GET", URL(client.url(path), encoded=True))
            return trace

        first, second = await asyncio.gather(traced(1000), traced(1001))
        assert [e.url.rsplit("/", 2)[1:] for e in first] == [
            ["capacity", "1000"],
            ["chatAllowed", "1000"],
        ]
        assert [e.url.rsplit("/", 2)[1:] for e in second] == [
            ["capacity", "1001"],
            ["chatAllowed", "1001"],
        ]
        assert TRACE.get() is None  # the tasks' settings stayed theirs
    finally:
        await http.close()


# --------------------------------------------------------------------------- redaction


def test_a_secret_is_redacted_as_written_and_in_its_encodings() -> None:
    secret = 'pa ss/w+rd&é"<>'
    redactor = Redactor([secret])
    lowered_escapes = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe=""))
    for form in (
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        lowered_escapes,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        html.escape(secret),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
    ):
        assert redactor.text(f"before {form} after") == f"before {REDACTED} after", form
    assert redactor.text("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "a-longer-user-name:"])
def test_a_secret_inside_a_longer_base64_text_is_redacted(prefix: str) -> None:
    secret = "hunter2-but-longer"
    redactor = Redactor([secret])
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        blob = encode(f"{prefix}{secret}:and-more".encode()).decode()
        redacted = redactor.text(blob)
        assert redacted.count(REDACTED) == 1, (prefix, blob)
        # the characters replaced cover the secret's bits, whatever its alignment
        replaced = len(blob) - (len(redacted) - len(REDACTED))
        assert replaced >= len(secret) * 4 // 3 - 2, (prefix, blob, redacted)
    unrelated = base64.b64encode(b"some other credentials entirely").decode()
    assert redactor.text(unrelated) == unrelated


def test_redaction_details() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    assert redactor.text("xabcdefx abc") == f"x{REDACTED}x {REDACTED}"  # the longest first
    redactor.add(["later-token"])
    assert redactor.text("Bearer later-token") == f"Bearer {REDACTED}"
    assert Redactor().text("anything") == "anything"


def test_credential_and_cookie_headers_are_redacted_whatever_their_value() -> None:
    redactor = Redactor()
    basic = base64.b64encode(b"user:pw").decode()
    assert redactor.header("Authorization", f"Basic {basic}") == f"Basic {REDACTED}"
    assert redactor.header("authorization", "Bearer abc.def") == f"Bearer {REDACTED}"
    assert redactor.header("Proxy-Authorization", "Basic xyz") == f"Basic {REDACTED}"
    assert redactor.header("Authorization", "rawtoken") == REDACTED
    assert redactor.header("Authorization", "weird/scheme value") == REDACTED
    assert redactor.header("Cookie", "a=1; session=xyz") == f"a={REDACTED}; session={REDACTED}"
    assert (
        redactor.header("Set-Cookie", "sid=abc; Path=/; HttpOnly")
        == f"sid={REDACTED}; Path=/; HttpOnly"
    )
    assert redactor.header("Content-Type", "application/xml") == "application/xml"
    assert Redactor(["k3y-value"]).header("x-api-key", "k3y-value") == REDACTED


def test_secrets_are_found_anywhere_in_a_config_and_a_state() -> None:
    config = parse_config(
        {
            "targets": [
                {
                    "name": "cs",
                    "source": "context_service",
                    "url": "http://cs.example.com",
                    "basic_auth": {"username": "admin", "password": "basic-pw"},
                    "proxy_url": "http://proxy-user:proxy%2Fpw@proxy.example.com:3128",
                },
                {
                    "name": "alvaria",
                    "source": "alvaria_context_cookies",
                    "url": "https://api-user:api%40pw@api.example.com",
                    "org_id": "org",
                    "oauth2": {
                        "token_url": "https://login.example.com/token",
                        "client_id": "id",
                        "client_secret": "oauth-secret",
                    },
                    "api_key": "the-api-key",
                },
            ]
        }
    )
    found = set(secrets_in(config))
    assert {"basic-pw", "oauth-secret", "the-api-key"} <= found
    assert {"proxy%2Fpw", "proxy/pw", "api%40pw", "api@pw"} <= found
    assert "admin" not in found
    assert "id" not in found

    target = config.targets[1]
    assert isinstance(target, AlvariaContextCookiesTarget)
    state = TokenState(target)
    state.tokens._token = Token(SecretStr("a-token-from-the-server"), None)
    assert "a-token-from-the-server" in secrets_in(state)
    assert "oauth-secret" in secrets_in(state)


def test_an_exchange_reveals_its_credentials_and_tokens() -> None:
    basic = base64.b64encode(b"someone:basic-secret").decode()
    exchange = Exchange(
        method="POST",
        url="https://login.example.com/token",
        request_headers=(
            ("Authorization", f"Basic {basic}"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "short=1; session=0123456789abcdef"),
        ),
        request_body=b"grant_type=client_credentials&client_id=me&client_secret=s%2Fecret",
        status=200,
        response_headers=(("Content-Type", "application/json"),),
        body=json.dumps(
            {
                "access_token": "the-access-token",
                "refresh_token": "the-refresh-token",
                "nested": [{"id_token": "the-id-token"}],
                "token_type": "bearer",
            }
        ).encode(),
        duration=0.1,
        error=None,
    )
    found = set(exchange_secrets(exchange))
    assert {basic, "basic-secret", "someone:basic-secret", "s/ecret"} <= found
    assert {"the-access-token", "the-refresh-token", "the-id-token"} <= found
    assert "0123456789abcdef" in found
    assert "1" not in found
    assert "bearer" not in found
    assert "me" not in found


def test_a_cut_body_never_ends_in_half_a_marker_or_a_character() -> None:
    text = f"aaaa{REDACTED}bbbb"
    assert _cut(text, 100) == text
    assert _cut(text, 6) == f"aaaa{REDACTED}"
    assert _cut(text, 4) == "aaaa"
    assert _cut(text, 2) == "aa"
    assert _cut("ééé", 3) == "é"


def test_text_is_made_safe_for_a_terminal() -> None:
    assert _printable("\x1b[31mred\x07\ttab") == "\\x1b[31mred\\x07\ttab"
    assert _printable("one\ntwo\rthree\x0bfour") == "one\\ntwo\\rthree\\x0bfour"
    assert _printable("a\u202eb\x85") == "a\\u202eb\\x85"
