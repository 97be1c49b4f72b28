"""The GMS Service API simulator over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from ccwatch.simulator import build_app
from ccwatch.simulator.gms import GMS_KEY, STATUSES, takes_requests
from ccwatch.sources import gms_probe
from tests.harness import Sim, simulator
from tests.simulator.conftest import SimClient, StartSim

SERVICE = "/genesys/1/service"


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    return await start_sim(SimClient, tick=0, seed=1)


async def post(sim: Sim, path: str, data: Any = None, **kw: Any) -> tuple[int, str, bytes]:
    async with sim.session.post(sim.url + path, data=data, **kw) as resp:
        return resp.status, resp.content_type, await resp.read()


async def get_json(sim: Sim, path: str) -> Any:
    async with sim.session.get(f"{sim.url}/-/sim/gms/{path}") as resp:
        assert resp.status == 200
        return await resp.json()


async def create(sim: Sim, service: str = "request-inbound-poll", data: Any = None) -> str:
    status, ctype, body = await post(sim, f"{SERVICE}/{service}", data or {"_phone_number": "1"})
    assert status == 200, body
    assert ctype == "application/json"
    return gms_probe.parse_create(body)


async def test_create_urlencoded_and_ask_status(sim: Sim) -> None:
    status, ctype, body = await post(
        sim, f"{SERVICE}/request-inbound-poll", {"_phone_number": "6504669999", "language": "fr"}
    )
    assert status == 200
    data = orjson.loads(body)
    assert set(data) == {"_id", "_access_number", "_access_code"}
    status, ctype, body = await post(sim, f"{SERVICE}/{data['_id']}/status", {})
    assert status == 200
    assert ctype == "application/json"
    answer = orjson.loads(body)
    assert answer["status"] in STATUSES
    assert answer["dialog"] == STATUSES[answer["status"]]
    requests = await get_json(sim, "requests")
    assert requests[0] == {
        "method": "POST",
        "path": f"{SERVICE}/request-inbound-poll",
        "content_type": "application/x-www-form-urlencoded",
        "form": {"_phone_number": "6504669999", "language": "fr"},
    }


async def test_create_multipart(sim: Sim) -> None:
    form = aiohttp.FormData({"_phone_number": "6504669999"}, default_to_multipart=True)
    await create(sim, data=form)
    requests = await get_json(sim, "requests")
    assert requests[-1]["content_type"] == "multipart/form-data"
    assert requests[-1]["form"] == {"_phone_number": "6504669999"}


async def test_unknown_service_and_id_are_404(sim: Sim) -> None:
    assert (await post(sim, f"{SERVICE}/request-nothing", {}))[0] == 404
    assert (await post(sim, f"{SERVICE}/no-such-id/status", {}))[0] == 404
    service_id = await create(sim)
    assert (await post(sim, f"{SERVICE}/{service_id}/cancel", {}))[0] == 400


async def test_service_requests_only_on_inbound_and_outbound_services(sim: Sim) -> None:
    # spec 003: "only to be used for request-inbound-... or request-outbound-... based
    # services otherwise it will be rejected"
    for name in ("request-interaction", "request-callback"):
        service_id = await create(sim, name)
        status, ctype, body = await post(sim, f"{SERVICE}/{service_id}/status", {})
        assert (status, ctype) == (400, "application/json"), name
        assert name in orjson.loads(body)["message"]
    await sim.put("gms/services/request-outbound-survey", {})
    service_id = await create(sim, "request-outbound-survey")
    body = (await post(sim, f"{SERVICE}/{service_id}/status", {}))[2]
    assert gms_probe.parse_status(body) in STATUSES
    # the simulator and the probe's config agree on the rule
    for name in ("request-interaction", "request-callback", "request-inbound-poll", "x"):
        assert takes_requests(name) == gms_probe.allows_service_requests(name)


async def test_forced_status(sim: Sim) -> None:
    service_id = await create(sim)
    await sim.put("gms/status", {"status": "no-agents-today"})
    body = (await post(sim, f"{SERVICE}/{service_id}/status", {}))[2]
    assert gms_probe.parse_status(body) == "no-agents-today"
    await sim.delete("gms/status")
    body = (await post(sim, f"{SERVICE}/{service_id}/status", {}))[2]
    assert gms_probe.parse_status(body) in STATUSES


async def test_services_can_be_added_and_removed(sim: Sim) -> None:
    assert await get_json(sim, "services") == {
        "request-interaction": 0,
        "request-inbound-poll": 0,
        "request-callback": 0,
    }
    await sim.put("gms/services/request-new", {})
    await create(sim, "request-new")
    await sim.delete("gms/services/request-interaction")
    assert (await post(sim, f"{SERVICE}/request-interaction", {}))[0] == 404
    services = await get_json(sim, "services")
    assert services == {"request-inbound-poll": 0, "request-callback": 0, "request-new": 1}
    state = await sim.state()
    assert state["gms"]["created"] == 1


async def test_id_key_and_the_spec_body(sim: Sim) -> None:
    await sim.put("gms/config", {"id_key": "id"})
    body = (await post(sim, f"{SERVICE}/request-interaction", {}))[2]
    assert "id" in orjson.loads(body)
    await sim.put("gms/config", {"id_key": "_id", "spec_body": True})
    body = (await post(sim, f"{SERVICE}/request-inbound-poll", {}))[2]
    assert body.startswith(b'{ "_id":"')
    assert b', _access_code="' in body
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    service_id = gms_probe.parse_create(body)
    assert (await post(sim, f"{SERVICE}/{service_id}/status", {}))[0] == 200


async def test_bad_control_requests(sim: Sim) -> None:
    for path, data in [
        ("gms/config", {"id_key": "uuid"}),
        ("gms/config", {"spec_body": "yes"}),
        ("gms/config", {"other": 1}),
        ("gms/status", {"status": ""}),
    ]:
        async with sim.session.put(f"{sim.url}/-/sim/{path}", json=data) as resp:
            assert resp.status == 400, path
    async with sim.session.delete(f"{sim.url}/-/sim/gms/services/nope") as resp:
        assert resp.status == 404


async def test_faults_apply_to_the_service_api(sim: Sim) -> None:
    await sim.fault("/genesys/1/service/request-interaction", "status", status=503, count=1)
    assert (await post(sim, f"{SERVICE}/request-interaction", {}))[0] == 503
    assert (await post(sim, f"{SERVICE}/request-interaction", {}))[0] == 200


async def test_statuses_move_with_ticks() -> None:
    async with simulator(tick=0.01, seed=3) as s:
        ids = [await create(s) for _ in range(20)]
        seen: set[str] = set()
        for _ in range(200):
            seen = set()
            for service_id in ids:
                body = (await post(s, f"{SERVICE}/{service_id}/status", {}))[2]
                seen.add(gms_probe.parse_status(body))
            if "connected" in seen:
                break
            await asyncio.sleep(0.02)
        assert "connected" in seen


def test_created_services_are_bounded() -> None:
    app = build_app(tick=0, seed=1)
    model = app[GMS_KEY]
    for _ in range(10_005):
        model.create("request-interaction")
    assert len(model.created) == 10_000
    assert model.created_total == 10_005


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="gms_colour"):
        build_app(gms_colour="blue")
    app = build_app(gms_services=["request-x"], tick=0)
    assert app[GMS_KEY].services == {"request-x": 0}
