"""The Context Service registration simulator, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
from typing import Any

import pytest
from lxml import etree

from ccwatch.simulator import build_app
from ccwatch.simulator.context_service import (
    CONTEXT_SERVICE_KEY,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    PATH,
    ContextServiceModel,
)
from ccwatch.sources.context_service import Registration, parse_registration
from tests.simulator.conftest import Reply, SimClient, StartSim


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(DEFAULT_USERNAME, DEFAULT_PASSWORD)


class Sim(SimClient):
    @property
    def model(self) -> ContextServiceModel:
        return self.runner.app[CONTEXT_SERVICE_KEY]

    async def registration(self, auth: dict[str, str] | None = AUTH, **kw: Any) -> Reply:
        return await self.request("GET", PATH, headers=auth, **kw)

    async def put_state(self, **fields: Any) -> Reply:
        return await self.request("PUT", "/-/sim/context_service", json=fields)


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    return await start_sim(Sim, seed=7, tick=0)


def children(body: bytes) -> list[str]:
    root = etree.fromstring(body)
    return [str(child.tag) for child in root if isinstance(child.tag, str)]


async def test_answers_the_documented_xml(sim: Sim) -> None:
    reply = await sim.registration()
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/xml"
    # laid out as the spec's sample: leading space, no declaration
    assert reply.body.startswith(b" <contextServiceRegistration>\n   <state>registered</state>")
    assert children(reply.body) == ["state", "managementUrl", "refURL"]
    reading = parse_registration(reply.body)
    assert reading.state == "registered"
    assert reading.management_url == sim.model.management_url
    assert (await sim.request("GET", "/-/sim/state")).json()["context_service"]["gets"] == 1


@pytest.mark.parametrize(
    "auth",
    [None, basic(DEFAULT_USERNAME, "wrong"), basic("x", DEFAULT_PASSWORD)],
)
async def test_needs_the_basic_auth_login(sim: Sim, auth: dict[str, str] | None) -> None:
    reply = await sim.registration(auth=auth)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic ")
    assert sim.model.gets == 0


@pytest.mark.parametrize("header", ["Bearer abc", "Basic !!!", "Basic bm9jb2xvbg=="])
async def test_odd_authorization_headers_are_refused(sim: Sim, header: str) -> None:
    reply = await sim.request("GET", PATH, headers={"Authorization": header})
    assert reply.status == 401


async def test_other_credentials_as_options(start_sim: StartSim) -> None:
    sim = await start_sim(
        Sim, tick=0, context_service_username="cs", context_service_password="pw:with:colons"
    )
    assert (await sim.registration()).status == 401
    reply = await sim.registration(auth=basic("cs", "pw:with:colons"))
    assert reply.status == 200


async def test_callback_url_adds_the_documented_links(sim: Sim) -> None:
    reply = await sim.registration(params={"callbackUrl": "https://me.example.com/cb?x=1"})
    assert children(reply.body) == ["state", "managementUrl", "deregistrationUrl", "refURL"]
    assert b"callbackUrl=https%3A%2F%2Fme.example.com%2Fcb%3Fx%3D1" in reply.body
    await sim.put_state(state="notRegistered")
    reply = await sim.registration(params={"callbackUrl": "https://me.example.com/cb"})
    assert children(reply.body) == ["state", "registrationUrl", "refURL"]


async def test_control_put_freezes_and_changes_the_answer(sim: Sim) -> None:
    reply = await sim.put_state(state="notRegistered")
    assert reply.status == 200
    assert reply.json()["frozen"] is True
    body = (await sim.registration()).body
    assert children(body) == ["state", "refURL"]
    assert parse_registration(body) == Registration("notRegistered", None)

    await sim.put_state(state="registered", management_url="https://cs.example.com/o/<1>&")
    assert parse_registration((await sim.registration()).body) == Registration(
        "registered", "https://cs.example.com/o/<1>&"
    )
    await sim.put_state(state="registrationPending")
    assert parse_registration((await sim.registration()).body).state == "registrationPending"

    reply = await sim.request("GET", "/-/sim/context_service")
    assert reply.json()["state"] == "registrationPending"
    reply = await sim.request("DELETE", "/-/sim/context_service/freeze")
    assert reply.status == 200
    assert reply.json()["frozen"] is False


@pytest.mark.parametrize(
    "body",
    [[1], {"state": ""}, {"state": 5}, {"bogus": "x"}, {"management_url": None}],
)
async def test_control_put_validation(sim: Sim, body: Any) -> None:
    reply = await sim.request("PUT", "/-/sim/context_service", json=body)
    assert reply.status == 400
    assert "error" in reply.json()
    reply = await sim.request("PUT", "/-/sim/context_service", data=b"{nope")
    assert reply.status == 400


async def test_the_update_api_is_counted(sim: Sim) -> None:
    xml = (
        b"<contextServiceRegistration><connectionData>x</connectionData>"
        b"</contextServiceRegistration>"
    )
    assert (await sim.request("PUT", PATH, data=xml)).status == 401
    assert (await sim.request("PUT", PATH, data=xml, headers=AUTH)).status == 200
    assert sim.model.updates == 1
    assert (await sim.request("POST", PATH, data=xml, headers=AUTH)).status == 405


async def test_faults_apply(sim: Sim) -> None:
    reply = await sim.request(
        "POST", "/-/sim/faults", json={"path": PATH, "kind": "status", "status": 403, "count": 1}
    )
    assert reply.status == 200
    assert (await sim.registration()).status == 403
    assert (await sim.registration()).status == 200


# --------------------------------------------------------------------------- evolution


def test_registration_drops_now_and_then_and_comes_back() -> None:
    model = ContextServiceModel(random.Random(3), "u", "p")
    states = []
    for _ in range(400):
        model.step()
        states.append(model.state)
        assert (b"<managementUrl>" in model.body) == (model.state == "registered")
    assert "notRegistered" in states
    assert states.count("registered") > states.count("notRegistered")
    flips = sum(1 for a, b in itertools.pairwise(states) if a != b)
    assert flips >= 4


def test_frozen_registration_stays() -> None:
    model = ContextServiceModel(random.Random(3), "u", "p")
    model.update({"state": "registered"})
    for _ in range(200):
        model.step()
    assert model.state == "registered"
    model.frozen = False
    model.update({"state": "notRegistered"})
    model.frozen = False
    model.step()
    assert model.state == "registered"  # back at the first tick after the freeze


async def test_the_ticker_moves_the_state(start_sim: StartSim) -> None:
    sim = await start_sim(Sim, seed=5, tick=0.005)
    seen = set()
    for _ in range(2000):
        seen.add(sim.model.state)
        if len(seen) == 2:
            break
        await asyncio.sleep(0.005)
    assert seen == {"registered", "notRegistered"}


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError):
        build_app(context_service_bogus=1)
    with pytest.raises(TypeError):
        build_app(context_service_password=5)
