"""The Genesys Context Services simulator (``/genesys/1/cs/...``), over real sockets."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from ccwatch.simulator import build_app
from ccwatch.simulator.genesys import (
    DEFAULT_CONTACT_KEYS,
    DEFAULT_CUSTOMER_IDS,
    GENESYS_KEY,
    GenesysModel,
    format_timestamp,
)
from ccwatch.sources.genesys_services import parse_active, parse_completed
from tests.simulator.conftest import Reply, SimClient, StartSim

CUSTOMERS = "/genesys/1/cs/customers"
ANONYMOUS = "/genesys/1/cs/services/anonymous"
#: A fixed simulator clock, so that ages are exact.
T0 = datetime(2024, 5, 7, 12, 0, 0, tzinfo=UTC).timestamp()


class Sim(SimClient):
    @property
    def model(self) -> GenesysModel:
        return self.runner.app[GENESYS_KEY]

    async def put_subject(self, kind: str, subject: str, data: Any) -> Reply:
        return await self.request("PUT", f"/-/sim/genesys/{kind}/{subject}", json=data)


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    s = await start_sim(Sim, seed=7, tick=0)
    s.model.clock = lambda: T0
    return s


def now() -> datetime:
    return datetime.fromtimestamp(T0, UTC)


async def test_active_services_of_a_customer(sim: Sim) -> None:
    reply = await sim.get(f"{CUSTOMERS}/ABC1234/services/active")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    data = reply.json()
    assert isinstance(data, list)
    assert data
    for service in data:
        assert service["customer_id"] == "ABC1234"
        assert isinstance(service["service_id"], int)
        stamp = service["started"]["timestamp"]
        # as in the spec's sample: milliseconds, no zone
        assert len(stamp) == len("2009-05-07T12:05:20.157")
        assert "completed" not in service
        assert "active_states" not in service
    reading = parse_active(reply.body, now())
    assert reading.count == len(sim.model.subjects["customers"]["ABC1234"].active)


async def test_anonymous_services_carry_the_contact_key(sim: Sim) -> None:
    data = (await sim.get(f"{ANONYMOUS}/408-832-7799/active")).json()
    assert data
    assert all(s["contact_key"] == "408-832-7799" and "customer_id" not in s for s in data)


async def test_the_state_set_through_the_control_api(sim: Sim) -> None:
    reply = await sim.put_subject(
        "customers",
        "ABC1234",
        {
            "active": [{"service_type": 400, "age": 120}, {"service_type": "billing", "age": 900}],
            "completed": [
                {"service_type": 401, "age": 7200, "completed_ago": 5400},
                {"age": 600, "completed_ago": 60},
            ],
        },
    )
    assert reply.status == 200
    assert reply.json()["frozen"] is True
    active = await sim.get(f"{CUSTOMERS}/ABC1234/services/active")
    reading = parse_active(active.body, now(), ["400", "billing", "401"])
    assert reading.count == 2
    assert reading.oldest_age_seconds == 900.0
    assert reading.by_type == (("400", 1), ("billing", 1), ("401", 0))

    completed = await sim.get(f"{CUSTOMERS}/ABC1234/services/completed")
    assert parse_completed(completed.body).count == 2
    window = format_timestamp(T0 - 3600) + "Z"
    recent = await sim.get(f"{CUSTOMERS}/ABC1234/services/completed", completed_from=window)
    assert parse_completed(recent.body).count == 1
    assert recent.json()[0]["completed"]["timestamp"] == format_timestamp(T0 - 60)

    everything = (await sim.get(f"{CUSTOMERS}/ABC1234/services")).json()
    assert len(everything) == 4


async def test_query_filters(sim: Sim) -> None:
    await sim.put_subject(
        "contact_keys",
        "408-832-7799",
        {
            "active": [{"service_type": 400, "age": 100}, {"service_type": 401, "age": 10}],
            "completed": [],
        },
    )
    path = f"{ANONYMOUS}/408-832-7799"
    assert len((await sim.get(path, service_types="401,402")).json()) == 1
    started_to = format_timestamp(T0 - 50) + "Z"
    assert len((await sim.get(path, started_to=started_to)).json()) == 1
    assert len((await sim.get(path, started_from=format_timestamp(T0 - 50))).json()) == 1
    # completed_* filter only the history
    assert len((await sim.get(f"{path}/active", completed_from=started_to)).json()) == 2
    states = (await sim.get(f"{path}/active", active_states="true")).json()
    assert all(s["active_states"][0]["state_type"] == 8 for s in states)
    reply = await sim.get(f"{path}/completed", completed_from="yesterday")
    assert reply.status == 400
    assert "completed_from" in reply.json()["message"]


async def test_unknown_subjects_have_no_services(sim: Sim) -> None:
    for path in (f"{CUSTOMERS}/NOBODY/services/active", f"{ANONYMOUS}/000/completed"):
        reply = await sim.get(path)
        assert reply.status == 200
        assert reply.body == b"[]"
    assert (await sim.request("GET", "/-/sim/genesys/customers/NOBODY")).status == 404


async def test_encoded_subjects(sim: Sim) -> None:
    key = "a/b c+é"
    encoded = "a%2Fb%20c%2B%C3%A9"
    reply = await sim.put_subject("contact_keys", encoded, {"active": [{"age": 5}]})
    assert reply.status == 200
    data = (await sim.get(f"{ANONYMOUS}/{encoded}/active")).json()
    assert [s["contact_key"] for s in data] == [key]
    state = (await sim.request("GET", "/-/sim/state")).json()["genesys"]
    assert key in state["contact_keys"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("customers/ABC1234", [1]),
        ("customers/ABC1234", {"bogus": []}),
        ("customers/ABC1234", {"active": {}}),
        ("customers/ABC1234", {"active": [5]}),
        ("customers/ABC1234", {"active": [{"age": -1}]}),
        ("customers/ABC1234", {"active": [{"age": True}]}),
        ("customers/ABC1234", {"active": [{"service_type": [1]}]}),
        ("customers/ABC1234", {"active": [{"completed_ago": 1}]}),
        ("customers/ABC1234", {"completed": [{"age": 1, "completed_ago": 2}]}),
    ],
)
async def test_control_validation(sim: Sim, path: str, body: Any) -> None:
    reply = await sim.request("PUT", f"/-/sim/genesys/{path}", json=body)
    assert reply.status == 400
    assert "error" in reply.json()


async def test_control_routes(sim: Sim) -> None:
    assert (await sim.request("PUT", "/-/sim/genesys/people/x", json={})).status == 404
    assert (await sim.request("PUT", "/-/sim/genesys/customers/x", data=b"{")).status == 400
    assert (await sim.request("DELETE", "/-/sim/genesys/customers/x/freeze")).status == 404
    described = (await sim.request("GET", "/-/sim/genesys/customers/ABC1234")).json()
    assert described["frozen"] is False
    assert all("age" in s for s in described["active"])
    everything = (await sim.request("GET", "/-/sim/genesys")).json()
    assert set(everything["customers"]) == set(DEFAULT_CUSTOMER_IDS)
    assert set(everything["contact_keys"]) == set(DEFAULT_CONTACT_KEYS)


async def test_faults_apply_to_json(sim: Sim) -> None:
    path = f"{CUSTOMERS}/ABC1234/services/active"
    await sim.request("POST", "/-/sim/faults", json={"path": path, "kind": "malformed"})
    with pytest.raises(json.JSONDecodeError):
        json.loads((await sim.get(path)).body)
    assert (await sim.get(f"{CUSTOMERS}/DEF5678/services/active")).json()  # not affected


# --------------------------------------------------------------------------- evolution


def test_services_start_and_complete() -> None:
    model = GenesysModel(["A", "B"], ["k"], random.Random(1), clock=lambda: T0)
    first = {s.service_id for s in model.subjects["customers"]["A"].active}
    completed_before = len(model.subjects["customers"]["A"].completed)
    for _ in range(50):
        model.step()
        for table in model.subjects.values():
            for subject in table.values():
                assert all(s.completed is None for s in subject.active)
                assert all(s.completed is not None for s in subject.completed)
                assert len(subject.active) <= 25
    later = {s.service_id for s in model.subjects["customers"]["A"].active}
    assert first != later
    assert len(model.subjects["customers"]["A"].completed) > completed_before
    ids = [s.service_id for t in model.subjects.values() for x in t.values() for s in x.active]
    assert len(ids) == len(set(ids))


def test_old_history_is_forgotten() -> None:
    clock = [T0]
    model = GenesysModel(["A"], [], random.Random(1), clock=lambda: clock[0])
    model.step()
    assert model.subjects["customers"]["A"].completed
    clock[0] += 2 * 86400
    model.subjects["customers"]["A"].active = []
    model.step()
    assert all(
        (s.completed or 0) >= clock[0] - 86400 for s in model.subjects["customers"]["A"].completed
    )


def test_frozen_subjects_stay() -> None:
    model = GenesysModel(["A"], [], random.Random(1), clock=lambda: T0)
    subject = model.update("customers", "A", {"active": [{"age": 5}]})
    for _ in range(30):
        model.step()
    assert [s.started for s in subject.active] == [T0 - 5]
    subject.frozen = False
    for _ in range(30):
        model.step()
    assert [s.started for s in subject.active] != [T0 - 5]


async def test_the_ticker_moves_the_services(start_sim: StartSim) -> None:
    sim = await start_sim(Sim, seed=5, tick=0.005)
    before = json.dumps(sim.model.snapshot()["customers"])
    for _ in range(2000):
        await asyncio.sleep(0.005)
        if sim.model.ticks >= 10:
            break
    assert json.dumps(sim.model.snapshot()["customers"]) != before


def test_options() -> None:
    model = build_app(tick=0, genesys_customer_ids=["X"], genesys_contact_keys=[])[GENESYS_KEY]
    assert list(model.subjects["customers"]) == ["X"]
    assert model.subjects["contact_keys"] == {}
    with pytest.raises(TypeError):
        build_app(genesys_bogus=1)
    with pytest.raises(TypeError):
        build_app(genesys_customer_ids="ABC")
    with pytest.raises(TypeError):
        build_app(genesys_contact_keys=[1])
