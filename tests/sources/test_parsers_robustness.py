"""Every pure parser, fed thousands of damaged versions of the spec samples, either reads
them or fails with ParseFailure (reason ``parse``): never another exception, which would
be a ccwatch bug (reason ``internal``)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ccwatch.errors import ParseFailure
from ccwatch.sources import alvaria_context_cookies as alvaria
from ccwatch.sources import context_service, ece, genesys_services, gms_probe
from tests.sources.test_genesys_services import NOW as GENESYS_NOW
from tests.sources.test_genesys_services import strip_documentation_comments

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW = time.time()


def _genesys_sample() -> bytes:
    # the documented example carries // comments (documentation, not what servers send)
    text = (FIXTURES / "genesys_services" / "customer_services_active.jsonc").read_text()
    return strip_documentation_comments(text).encode()


CASES: list[tuple[str, Callable[[bytes], object], bytes]] = [
    (
        "ece.agentAvailability",
        ece.parse_agent_availability,
        (FIXTURES / "ece" / "agentAvailability.xml").read_bytes(),
    ),
    ("ece.capacity", ece.parse_capacity, (FIXTURES / "ece" / "capacity.xml").read_bytes()),
    (
        "ece.liveSessionStatus",
        ece.parse_live_session_status,
        (FIXTURES / "ece" / "liveSessionStatus.xml").read_bytes(),
    ),
    (
        "ece.checkEligibility",
        ece.parse_check_eligibility,
        (FIXTURES / "ece" / "checkEligibility.xml").read_bytes(),
    ),
    (
        "ece.chatAllowed",
        ece.parse_chat_allowed,
        (FIXTURES / "ece" / "chatAllowed_false.xml").read_bytes(),
    ),
    (
        "context_service",
        context_service.parse_registration,
        (FIXTURES / "context_service" / "get_registered.xml").read_bytes(),
    ),
    ("genesys.active", lambda b: genesys_services.parse_active(b, GENESYS_NOW), _genesys_sample()),
    ("genesys.completed", lambda b: genesys_services.parse_completed(b), _genesys_sample()),
    ("gms.create", gms_probe.parse_create, (FIXTURES / "gms_probe" / "create.json").read_bytes()),
    ("gms.status", gms_probe.parse_status, (FIXTURES / "gms_probe" / "status.json").read_bytes()),
    (
        "alvaria.settings",
        lambda b: alvaria.parse_settings(b, now=NOW, stale_after=86400.0),
        (FIXTURES / "alvaria_context_cookies" / "settings.json").read_bytes(),
    ),
    (
        "alvaria.channels",
        lambda b: alvaria.parse_collection(b, "channels"),
        (FIXTURES / "alvaria_context_cookies" / "channels.json").read_bytes(),
    ),
]

JUNK = [
    b"",
    b"\x00",
    b"\xff\xfe",
    b"<",
    b">",
    b'"',
    b"{",
    b"}",
    b"[",
    b"]",
    b"&",
    b"&#0;",
    b"=",
    b"-1",
    b"1e999",
    b"NaN",
    b"null",
    b"true",
    b"\xc3\x28",
    b"<!--",
    b"]]>",
    b"<!DOCTYPE x>",
    b"&lol;",
    b"9" * 400,
    b"\n",
    b"'",
]


def mutations(sample: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = [b"", sample[: len(sample) // 2], sample * 2, sample.upper(), sample.replace(b'"', b"")]
    for _ in range(count):
        data = bytearray(sample)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:  # flip a byte
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:  # insert junk
                data[pos:pos] = rng.choice(JUNK)
            elif op == 2:  # delete a run
                del data[pos : pos + rng.randint(1, 20)]
            else:  # truncate
                del data[pos:]
        out.append(bytes(data))
    return out


@pytest.mark.parametrize(("name", "parse", "sample"), CASES, ids=[c[0] for c in CASES])
def test_damaged_answers_parse_or_fail_with_reason_parse(
    name: str, parse: Callable[[bytes], object], sample: bytes
) -> None:
    parse(sample)  # the undamaged sample reads
    rng = random.Random(name)
    failures = 0
    for body in mutations(sample, rng, 1500):
        try:
            parse(body)
        except ParseFailure as exc:
            failure: ParseFailure = exc
            failures += 1
            assert failure.reason == "parse"
            assert failure.detail
    assert failures > 0  # the damage was noticed at least sometimes
