"""Cisco Context Service registration, as SocialMiner / CCE reports it (spec 000).

One authenticated GET per target::

    GET {url}/unifiedconfig/config/contextserviceregistration

answered with XML::

    <contextServiceRegistration>
       <state>registered</state>
       <managementUrl>(url)</managementUrl>   <!-- only while registered -->
       <refURL>/unifiedconfig/config/contextservice</refURL>
    </contextServiceRegistration>

ccwatch exports the state as a state set (``registered``, ``notRegistered``, and any
other state the server reports, with value 1) and the management URL as an info metric
while registered. It never passes a ``callbackUrl`` (so the server never hands out
registration links) and never calls the Update API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final, Literal

from lxml import etree
from pydantic import model_validator
from yarl import URL

from ccwatch.config import TargetConfig
from ccwatch.errors import ParseFailure
from ccwatch.http import TargetClient
from ccwatch.sources.base import (
    Family,
    JobSpec,
    Reading,
    Sample,
    Source,
    StateSet,
)
from ccwatch.xml import expect_root, local_name, parse_xml

NAME: Final = "context_service"
ENDPOINT: Final = "contextserviceregistration"
PATH: Final = "/unifiedconfig/config/contextserviceregistration"
XML_TYPES: Final = ("xml",)
#: The documented states; any other state the server reports is exported too.
STATES: Final = ("registered", "notRegistered")
REGISTERED: Final = "registered"
#: A state longer than this is not a state but a broken answer: the poll fails. (This is
#: what a state is, not a cap: the core caps every vendor string, the management URL
#: included, at MAX_LABEL_CHARS; see ccwatch.sources.base.)
MAX_STATE_LENGTH: Final = 64


class ContextServiceTarget(TargetConfig):
    """``source: context_service``: a SocialMiner (or CCE AW) base URL and its credentials."""

    source: Literal["context_service"]

    @model_validator(mode="after")
    def _require_auth(self) -> ContextServiceTarget:
        if self.basic_auth is None:
            raise ValueError(
                "basic_auth is required: the registration API needs an administrator login"
            )
        if self.basic_auth.password is None:
            raise ValueError("basic_auth: password or password_file is required")
        return self


# --------------------------------------------------------------------------- readings

REGISTRATION = "ccwatch_context_service_registration"
INFO = "ccwatch_context_service_info"

_STATE_SET = StateSet(REGISTRATION, "state", STATES)


@dataclass(frozen=True, slots=True)
class Registration:
    """The registration state and, while registered, the management URL."""

    state: str
    management_url: str | None = None

    @property
    def registered(self) -> bool:
        return self.state == REGISTERED

    def samples(self) -> Iterable[Sample]:
        states = _STATE_SET.samples(self.state)
        if not self.registered:
            return states
        info: Sample = (INFO, (self.management_url or "",), 1.0)
        return (*states, info)

    def watched(self) -> Mapping[str, str]:
        return {"state": self.state, "management_url": self.management_url or ""}


# --------------------------------------------------------------------------- parser


def _children(root: etree._Element, name: str) -> list[str]:
    """The stripped texts of the child elements whose local name is ``name``."""
    return [(child.text or "").strip() for child in root if local_name(child) == name]


def parse_registration(body: bytes) -> Registration:
    """The GET answer -> :class:`Registration`; anything else raises :class:`ParseFailure`."""
    root = parse_xml(body)
    expect_root(root, "contextServiceRegistration")
    states = _children(root, "state")
    if not states:
        raise ParseFailure("<contextServiceRegistration> has no <state> element")
    if len(states) > 1:
        raise ParseFailure(f"<contextServiceRegistration> has {len(states)} <state> elements")
    state = states[0]
    if not state:
        raise ParseFailure("<state> is empty")
    if len(state) > MAX_STATE_LENGTH or any(c.isspace() for c in state):
        raise ParseFailure(f"<state>: not a registration state: {state[:MAX_STATE_LENGTH]!r}")
    urls = _children(root, "managementUrl")
    management_url = urls[0] if urls and urls[0] else None  # capped by the core
    if state != REGISTERED:
        management_url = None  # only meaningful (and documented) while registered
    return Registration(state, management_url)


# --------------------------------------------------------------------------- jobs


async def _poll(client: TargetClient, url: URL) -> Reading:
    response = await client.request("GET", url, content_types=XML_TYPES)
    return parse_registration(response.body)


def jobs(target: ContextServiceTarget, client: TargetClient, state: None = None) -> list[JobSpec]:
    url = URL(client.url(PATH))
    return [JobSpec(ENDPOINT, {}, partial(_poll, client, url))]


_LABELS = ("target",)


def _help(what: str) -> str:
    return f"{what} (from ccwatch's last successful {ENDPOINT} poll)."


SOURCE: Final = Source(
    name=NAME,
    config_model=ContextServiceTarget,
    subject_labels=(),
    families=(
        Family(
            REGISTRATION,
            "gauge",
            _help(
                "Context Service registration state: 1 on the current state "
                "(registered, notRegistered or another state the server reports), 0 on the others"
            ),
            (*_LABELS, "state"),
        ),
        Family(
            INFO,
            "gauge",
            _help("1 while registered with Context Service, labelled with its management URL"),
            (*_LABELS, "management_url"),
        ),
    ),
    jobs=jobs,
    headers={"Accept": "application/xml"},
)
