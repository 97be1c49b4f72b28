"""The vendor simulator: ECE chat entry points and fault injection, over real sockets."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from lxml import etree

from ccwatch.errors import ParseFailure
from ccwatch.simulator import VENDORS, build_app, run_simulator
from ccwatch.simulator.ece import ECE_KEY, ENDPOINTS, EceModel
from ccwatch.simulator.faults import BOMB_CACHE_SIZE, FAULTS_KEY
from ccwatch.sources import ece
from tests.simulator.conftest import Reply, SimClient, StartSim

ECE = "/system/egain/chat/entrypoint"
DECL = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
NS = (
    b'xmlns:ns2="http://bindings.egain.com/chat" '
    b'xmlns:ns4="urn:ietf:params:xml:ns:xmpp-stanzas" '
    b'xmlns:ns3="jabber:client" '
    b'xmlns:ns5="http://jabber.org/protocol/httpbind"'
)
NSMAP = {
    "ns2": "http://bindings.egain.com/chat",
    "ns4": "urn:ietf:params:xml:ns:xmpp-stanzas",
    "ns3": "jabber:client",
    "ns5": "http://jabber.org/protocol/httpbind",
}
CHAT_NS = "{http://bindings.egain.com/chat}"
# a known, fully specified state
BASE_STATE: dict[str, Any] = {
    "agents_available": 2,
    "slots": 4,
    "queue_depth": 1,
    "max_queue_depth": 10,
    "wait_time": 3.0,
    "active": True,
    "service_running": True,
}


class Sim(SimClient):
    @property
    def model(self) -> EceModel:
        return self.runner.app[ECE_KEY]

    async def ece(self, endpoint: str, ep_id: int | str = 1000) -> Reply:
        return await self.get(f"{ECE}/{endpoint}/{ep_id}")

    async def put_state(self, ep_id: int | str = 1000, **fields: Any) -> Reply:
        return await self.request("PUT", f"/-/sim/ece/entry_points/{ep_id}", json=fields)


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    """A simulator without evolution (tick=0): state only changes through the API."""
    return await start_sim(Sim, seed=7, tick=0)


@pytest.fixture
async def ticking(start_sim: StartSim) -> Sim:
    return await start_sim(Sim, seed=11, tick=0.02, ece_entry_points=range(1000, 1020))


def parse(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))


def parse_lenient(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(recover=True, no_network=True))


def response_type(body: bytes) -> int:
    match = re.search(rb"responseType=\"?(\d)", body)
    assert match is not None, body
    return int(match.group(1))


async def wait_ticks(sim: Sim, n: int) -> None:
    """Wait until the model has ticked ``n`` more times (bounded number of polls)."""
    target = sim.model.ticks + n
    for _ in range(2000):
        if sim.model.ticks >= target:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the simulator did not tick")


# --------------------------------------------------------------------------- ECE bodies


async def test_bodies_have_documented_shape(sim: Sim) -> None:
    assert (await sim.put_state(**BASE_STATE)).status == 200
    replies = {name: await sim.ece(name) for name in ENDPOINTS}
    for name, reply in replies.items():
        assert reply.status == 200, name
        assert reply.headers["Content-Type"] == "application/xml"
        assert reply.body.startswith(DECL)

    root = parse(replies["agentAvailability"].body)
    assert root.tag == "agentAvailability"
    assert root.get("available") == "true"
    assert root.nsmap == NSMAP

    root = parse(replies["capacity"].body)
    assert root.tag == "availableSlots"
    assert root.findtext(f"{CHAT_NS}count") == "4"

    root = parse(replies["liveSessionStatus"].body)
    assert root.tag == "sessionStatus"
    assert [child.tag for child in root] == [f"{CHAT_NS}waitTime", f"{CHAT_NS}queueDepth"]
    assert root.findtext(f"{CHAT_NS}waitTime") == "3.0"
    assert root.findtext(f"{CHAT_NS}queueDepth") == "1"

    root = parse_lenient(replies["checkEligibility"].body)
    assert root.tag == "checkEligibility"
    assert response_type(replies["checkEligibility"].body) == 0

    root = parse(replies["chatAllowed"].body)
    assert root.tag == "chatAllowed"
    assert root.get("allowed") == "true"
    assert root.get("reason") is None
    assert root.nsmap["ns4"] == "urn:iETF:params:xml:ns:xmpp-stanzas"  # the spec's quirk


async def test_bodies_are_byte_for_byte_the_spec(sim: Sim) -> None:
    await sim.put_state(**BASE_STATE)
    assert (await sim.ece("agentAvailability")).body == (
        DECL + b'<agentAvailability available="true" ' + NS + b"/>"
    )
    assert (await sim.ece("capacity")).body == (
        DECL + b"<availableSlots " + NS + b">\n  <ns2:count>4</ns2:count>\n</availableSlots>"
    )
    assert (await sim.ece("liveSessionStatus")).body == (
        DECL
        + b"<sessionStatus "
        + NS
        + b">\n  <ns2:waitTime>3.0</ns2:waitTime>\n  <ns2:queueDepth>1</ns2:queueDepth>\n"
        + b"</sessionStatus>"
    )
    assert (await sim.ece("checkEligibility")).body == (
        DECL + b"<checkEligibility " + NS + b" responseType=0 />"
    )
    odd_ns = NS.replace(b"urn:ietf:", b"urn:iETF:")
    assert (await sim.ece("chatAllowed")).body == (
        DECL + b"<chatAllowed " + odd_ns + b' allowed="true"/>'
    )
    await sim.put_state(active=False)
    assert (await sim.ece("chatAllowed")).body == (
        DECL + b"<chatAllowed " + NS + b' allowed="false" reason="entry_point_inactive"/>'
    )


async def test_check_eligibility_keeps_the_unquoted_attribute(sim: Sim) -> None:
    for state, expected in [
        ({"agents_available": 2, "queue_depth": 0, "max_queue_depth": 5}, 0),
        ({"agents_available": 0, "queue_depth": 0, "max_queue_depth": 5}, 1),
        ({"agents_available": 2, "queue_depth": 5, "max_queue_depth": 5}, 2),
    ]:
        await sim.put_state(**state)
        body = (await sim.ece("checkEligibility")).body
        assert body.endswith(f" responseType={expected} />".encode())
        with pytest.raises(etree.XMLSyntaxError):
            parse(body)  # not well-formed, like the real server's answer


@pytest.mark.parametrize(
    ("patch", "available", "count", "rtype", "reason"),
    [
        ({}, "true", 4, 0, None),
        ({"agents_available": 0}, "false", 0, 1, "agent_not_available"),
        ({"queue_depth": 10}, "true", 4, 2, "queue_depth_reached"),
        ({"queue_depth": 12}, "true", 4, 2, "queue_depth_reached"),
        ({"active": False}, "true", 4, 0, "entry_point_inactive"),
        ({"service_running": False}, "true", 4, 0, "service_not_running"),
        ({"active": False, "service_running": False}, "true", 4, 0, "entry_point_inactive"),
        ({"service_running": False, "agents_available": 0}, "false", 0, 1, "service_not_running"),
        ({"agents_available": 0, "queue_depth": 10}, "false", 0, 1, "agent_not_available"),
        ({"slots": 0}, "true", 0, 0, None),
    ],
)
async def test_derived_values_follow_the_state(
    sim: Sim,
    patch: dict[str, Any],
    available: str,
    count: int,
    rtype: int,
    reason: str | None,
) -> None:
    reply = await sim.put_state(1001, **{**BASE_STATE, **patch})
    assert reply.status == 200
    described = reply.json()
    assert described["frozen"] is True
    assert described["derived"]["reason"] == reason

    assert parse((await sim.ece("agentAvailability", 1001)).body).get("available") == available
    count_text = parse((await sim.ece("capacity", 1001)).body).findtext(f"{CHAT_NS}count")
    assert count_text == str(count)
    assert response_type((await sim.ece("checkEligibility", 1001)).body) == rtype
    allowed = parse((await sim.ece("chatAllowed", 1001)).body)
    assert allowed.get("allowed") == ("true" if reason is None else "false")
    assert allowed.get("reason") == reason

    state = (await sim.state())["ece"]["1001"]
    assert {k: state[k] for k in BASE_STATE} == {**BASE_STATE, **patch}


async def test_wait_time_is_a_float_of_seconds(sim: Sim) -> None:
    await sim.put_state(wait_time=42, queue_depth=7)
    root = parse((await sim.ece("liveSessionStatus")).body)
    assert root.findtext(f"{CHAT_NS}waitTime") == "42.0"
    assert root.findtext(f"{CHAT_NS}queueDepth") == "7"
    await sim.put_state(wait_time=12.5)
    root = parse((await sim.ece("liveSessionStatus")).body)
    assert root.findtext(f"{CHAT_NS}waitTime") == "12.5"


@pytest.mark.parametrize("ep_id", ["999", "abc", "10000000000000000000000", "-1"])
async def test_unknown_entry_point(sim: Sim, ep_id: str) -> None:
    for name in ENDPOINTS:
        reply = await sim.ece(name, ep_id)
        if name == "chatAllowed":
            assert reply.status == 200
            root = parse(reply.body)
            assert root.get("allowed") == "false"
            assert root.get("reason") == "invalid_entry_point"
        else:
            assert reply.status == 500
            assert 0 < len(reply.body) < 200
            assert reply.headers["Content-Type"].startswith("text/plain")


async def test_entry_point_id_is_read_as_a_long(sim: Sim) -> None:
    reply = await sim.ece("capacity", "01000")
    assert reply.status == 200
    assert reply.body == (await sim.ece("capacity", 1000)).body


# --------------------------------------------------------------------------- control API


async def test_state_lists_every_vendor_and_entry_point(sim: Sim) -> None:
    state = await sim.state()
    assert set(state) == {vendor.NAME for vendor in VENDORS}
    assert set(state["ece"]) == {"1000", "1001", "1002", "1003"}
    for ep in state["ece"].values():
        assert set(BASE_STATE) <= set(ep)
        assert ep["frozen"] is False
    one = (await sim.get("/-/sim/ece/entry_points/1002")).json()
    assert one == state["ece"]["1002"]


async def test_put_rejects_bad_input(sim: Sim) -> None:
    assert (await sim.put_state(bogus=1)).status == 400
    assert (await sim.put_state(agents_available="3")).status == 400
    assert (await sim.put_state(agents_available=1.5)).status == 400
    assert (await sim.put_state(queue_depth=-1)).status == 400
    assert (await sim.put_state(active=1)).status == 400
    assert (await sim.put_state(wait_time=True)).status == 400
    reply = await sim.request("PUT", "/-/sim/ece/entry_points/1000", data=b"{nope")
    assert reply.status == 400
    reply = await sim.request("PUT", "/-/sim/ece/entry_points/1000", json=[1, 2])
    assert reply.status == 400
    assert (await sim.put_state(4242, active=False)).status == 404
    assert (await sim.put_state("abc", active=False)).status == 404
    assert (await sim.request("DELETE", "/-/sim/ece/entry_points/4242/freeze")).status == 404
    # nothing was applied or frozen by the failed requests
    assert (await sim.state())["ece"]["1000"]["frozen"] is False


async def test_freeze_stops_the_random_walk_until_released(ticking: Sim) -> None:
    sim = ticking
    frozen = {**BASE_STATE, "queue_depth": 3, "wait_time": 9.0}
    await sim.put_state(1005, **frozen)
    before = await sim.state()
    bodies = {name: (await sim.ece(name, 1005)).body for name in ENDPOINTS}
    await wait_ticks(sim, 15)
    after = await sim.state()
    assert {k: after["ece"]["1005"][k] for k in frozen} == frozen
    assert after["ece"]["1005"]["frozen"] is True
    assert {name: (await sim.ece(name, 1005)).body for name in ENDPOINTS} == bodies
    others = [k for k in before["ece"] if k != "1005"]
    assert any(before["ece"][k] != after["ece"][k] for k in others)

    reply = await sim.request("DELETE", "/-/sim/ece/entry_points/1005/freeze")
    assert reply.status == 200
    assert reply.json()["frozen"] is False
    for _ in range(200):
        await wait_ticks(sim, 1)
        current = (await sim.state())["ece"]["1005"]
        if {k: current[k] for k in frozen} != frozen:
            break
    else:
        pytest.fail("the entry point did not move after the freeze was released")


# --------------------------------------------------------------------------- evolution


async def test_values_evolve_over_ticks(ticking: Sim) -> None:
    sim = ticking
    first = await sim.state()
    first_bodies = [(await sim.ece("liveSessionStatus", i)).body for i in range(1000, 1020)]
    await wait_ticks(sim, 10)
    later = await sim.state()
    later_bodies = [(await sim.ece("liveSessionStatus", i)).body for i in range(1000, 1020)]
    assert first != later
    assert first_bodies != later_bodies


def test_evolution_stays_consistent_and_entry_points_come_back() -> None:
    app = build_app(ece_entry_points=range(1000, 1200), seed=3, tick=0)
    model = app[ECE_KEY]
    seen_inactive: set[int] = set()
    came_back: set[int] = set()
    seen_reasons: set[str | None] = set()
    for _ in range(60):
        model.step()
        for ep_id, ep in model.entry_points.items():
            s = ep.state
            assert 0 <= s.queue_depth <= s.max_queue_depth
            assert s.agents_available >= 0
            assert s.slots >= 0
            assert s.wait_time >= 0
            assert s.agents_available > 0 or s.slots == 0
            if not s.active:
                seen_inactive.add(ep_id)
            elif ep_id in seen_inactive:
                came_back.add(ep_id)
            seen_reasons.add(s.chat_allowed_reason)
            # the rendered bodies always match the state
            key = str(ep_id)
            assert model.bodies["capacity"][key].count(f">{s.capacity}<".encode()) == 1
            assert response_type(model.bodies["checkEligibility"][key]) == s.response_type
            allowed = parse(model.bodies["chatAllowed"][key])
            assert allowed.get("reason") == s.chat_allowed_reason
    assert came_back
    assert {None, "agent_not_available", "entry_point_inactive"} <= seen_reasons


def test_same_seed_same_walk() -> None:
    a = build_app(seed=42, tick=0)[ECE_KEY]
    b = build_app(seed=42, tick=0)[ECE_KEY]
    for _ in range(5):
        a.step()
        b.step()
    assert a.snapshot() == b.snapshot()


def test_ten_thousand_entry_points() -> None:
    model = build_app(ece_entry_points=range(1000, 11000), seed=1)[ECE_KEY]
    assert len(model.entry_points) == 10000
    assert all(len(table) == 10000 for table in model.bodies.values())
    model.step()
    assert parse(model.bodies["capacity"]["10999"]).tag == "availableSlots"


def test_build_app_rejects_unknown_options() -> None:
    with pytest.raises(TypeError):
        build_app(bogus=1)
    with pytest.raises(TypeError):
        build_app(ece_bogus=1)
    with pytest.raises(TypeError):
        build_app(ece_entry_points=["1000"])  # type: ignore[list-item]


# --------------------------------------------------------------------------- faults


async def test_fault_status_with_headers(sim: Sim) -> None:
    await sim.fault(
        path="/capacity/", kind="status", status=429, headers={"Retry-After": "3"}, body="slow down"
    )
    reply = await sim.ece("capacity")
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "3"
    assert reply.body == b"slow down"
    # other paths are not affected
    assert (await sim.ece("agentAvailability")).status == 200


@pytest.mark.parametrize("status", [204, 401, 403, 404, 500, 503])
async def test_fault_status_codes(sim: Sim, status: int) -> None:
    await sim.fault(path=ECE, kind="status", status=status)
    reply = await sim.ece("chatAllowed")
    assert reply.status == status
    assert bool(reply.body) == (status != 204)  # a short default text


async def test_fault_slow_still_answers(sim: Sim) -> None:
    await sim.fault(path="/liveSessionStatus/", kind="slow", delay=0.3)
    reply = await sim.ece("liveSessionStatus")
    assert reply.status == 200
    assert parse(reply.body).tag == "sessionStatus"


async def test_fault_oversized_with_content_length(sim: Sim) -> None:
    await sim.fault(path="/capacity/", kind="oversized")
    reply = await sim.ece("capacity")
    assert reply.status == 200
    assert len(reply.body) == 2 * 1024 * 1024
    assert reply.headers["Content-Length"] == str(2 * 1024 * 1024)
    # still valid-looking: it parses and carries the normal content
    root = etree.fromstring(reply.body, etree.XMLParser(huge_tree=True))
    assert root.tag == "availableSlots"


async def test_fault_oversized_chunked(sim: Sim) -> None:
    await sim.fault(path="/capacity/", kind="oversized", size=300_000, chunked=True)
    reply = await sim.ece("capacity")
    assert reply.status == 200
    assert "Content-Length" not in reply.headers
    assert reply.headers["Transfer-Encoding"] == "chunked"
    assert len(reply.body) == 300_000


async def test_fault_malformed(sim: Sim) -> None:
    normal = (await sim.ece("capacity")).body
    await sim.fault(path="/capacity/", kind="malformed")
    reply = await sim.ece("capacity")
    assert reply.status == 200
    assert 0 < len(reply.body) < len(normal)
    assert normal.startswith(reply.body)
    with pytest.raises(etree.XMLSyntaxError):
        parse(reply.body)


async def test_faults_are_generic_for_json_vendors() -> None:
    # a JSON vendor route added next to ECE gets the same faults
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response({"totalItems": "12", "items": [{"id": 1}, {"id": 2}]})

    app = build_app(tick=0)
    app.router.add_get("/json/contextCookies/settings", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as session:
            sim = Sim(f"http://{host}:{port}", session, runner)
            url = "/json/contextCookies/settings"
            normal = (await sim.get(url)).body
            await sim.fault(path="/json/", kind="malformed", count=1)
            with pytest.raises(json.JSONDecodeError):
                json.loads((await sim.get(url)).body)
            await sim.fault(path="/json/", kind="oversized", size=100_000, count=1)
            big = await sim.get(url)
            assert len(big.body) == 100_000
            assert big.headers["Content-Type"] == "application/json"
            assert json.loads(big.body)["totalItems"] == "12"
            await sim.fault(path="/json/", kind="oversized", size=5000, chunked=True, count=1)
            assert json.loads((await sim.get(url)).body)["items"] == [{"id": 1}, {"id": 2}]
            await sim.fault(path="/json/", kind="unknown_entry_point", count=1)
            assert (await sim.get(url)).body == normal  # no notion of ids: no effect
            await sim.fault(path="/json/", kind="status", status=401, count=1)
            assert (await sim.get(url)).status == 401
            assert (await sim.get(url)).body == normal
    finally:
        await runner.cleanup()


async def test_fault_html(sim: Sim) -> None:
    await sim.fault(path="/agentAvailability/", kind="html")
    reply = await sim.ece("agentAvailability")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"<h1>Service Unavailable</h1>" in reply.body


async def test_fault_content_type(sim: Sim) -> None:
    normal = (await sim.ece("agentAvailability")).body
    await sim.fault(path="/agentAvailability/", kind="content_type", count=1)
    reply = await sim.ece("agentAvailability")
    assert reply.headers["Content-Type"] == "text/plain"
    assert reply.body == normal
    await sim.fault(path="/agentAvailability/", kind="content_type", content_type="text/json")
    assert (await sim.ece("agentAvailability")).headers["Content-Type"] == "text/json"


async def test_fault_reset(sim: Sim) -> None:
    fault_id = await sim.fault(path="/chatAllowed/", kind="reset")
    with pytest.raises(aiohttp.ClientError):
        await sim.ece("chatAllowed")
    assert (await sim.ece("capacity")).status == 200  # the server is fine
    assert (await sim.request("DELETE", f"/-/sim/faults/{fault_id}")).status == 200
    assert (await sim.ece("chatAllowed")).status == 200


async def test_fault_unknown_entry_point(sim: Sim) -> None:
    await sim.fault(path=ECE, kind="unknown_entry_point")
    assert (await sim.ece("capacity")).status == 500
    reply = await sim.ece("chatAllowed")
    assert reply.status == 200
    assert parse(reply.body).get("reason") == "invalid_entry_point"


async def test_fault_count_expires(sim: Sim) -> None:
    await sim.fault(path="/capacity/1000", kind="status", status=503, count=2)
    assert (await sim.ece("capacity", 1001)).status == 200  # not matching: not counted
    assert (await sim.ece("capacity")).status == 503
    assert (await sim.ece("capacity")).status == 503
    assert (await sim.ece("capacity")).status == 200
    assert (await sim.get("/-/sim/faults")).json() == {"faults": []}


async def test_faults_list_delete_and_clear(sim: Sim) -> None:
    a = await sim.fault(path="/capacity/", kind="status", status=500, count=3)
    b = await sim.fault(path="/chatAllowed/", kind="slow", delay=0.01)
    listed = (await sim.get("/-/sim/faults")).json()["faults"]
    assert [f["id"] for f in listed] == [a, b]
    assert listed[0] == {
        "id": a,
        "path": "/capacity/",
        "kind": "status",
        "count": 3,
        "hits": 0,
        "status": 500,
        "body": None,
        "headers": {},
    }
    assert (await sim.request("DELETE", f"/-/sim/faults/{a}")).status == 200
    assert (await sim.request("DELETE", f"/-/sim/faults/{a}")).status == 404
    assert (await sim.ece("capacity")).status == 200
    await sim.fault(path="/capacity/", kind="status", status=500)
    reply = await sim.request("DELETE", "/-/sim/faults")
    assert reply.json() == {"deleted": 2}
    assert (await sim.ece("capacity")).status == 200


async def test_control_routes_are_never_faulted(sim: Sim) -> None:
    await sim.fault(path="", kind="status", status=500)
    await sim.fault(path="/-/sim", kind="reset")
    assert (await sim.ece("capacity")).status == 500
    assert "ece" in await sim.state()
    assert (await sim.put_state(active=False)).status == 200
    assert (await sim.request("DELETE", "/-/sim/faults")).status == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "/x", "kind": "nope"},
        {"path": "/x"},
        {"path": "/x", "kind": "status"},
        {"path": "/x", "kind": "status", "status": "500"},
        {"path": "/x", "kind": "status", "status": 99},
        {"path": "/x", "kind": "slow", "delay": -1},
        {"path": "/x", "kind": "slow", "bogus": 1},
        {"path": "/x", "kind": "reset", "count": 0},
        {"path": 5, "kind": "reset"},
        {"path": "/x", "kind": "status", "status": 500, "headers": {"a": 1}},
        {"path": "/x", "kind": "number", "value": 5},
        {"path": "/x", "kind": "gzip_bomb", "encoding": "br"},
        {"path": "/x", "kind": "gzip_bomb", "size": 0},
        {"path": "/x", "kind": "gzip_bomb", "chunked": "yes"},
        [1],
    ],
)
async def test_fault_validation(sim: Sim, spec: Any) -> None:
    reply = await sim.request("POST", "/-/sim/faults", json=spec)
    assert reply.status == 400
    assert "error" in reply.json()


# --------------------------------------------------------------------------- number faults

NINES = "9" * 400


async def test_fault_number_replaces_every_number_in_xml(sim: Sim) -> None:
    await sim.put_state(**BASE_STATE)
    normal = {name: (await sim.ece(name)).body for name in ENDPOINTS}
    await sim.fault(path=ECE, kind="number")  # the default: 400 nines
    faulty = {name: await sim.ece(name) for name in ENDPOINTS}
    nines = NINES.encode()
    expected = {
        "capacity": normal["capacity"].replace(b">4<", b">" + nines + b"<"),
        "liveSessionStatus": normal["liveSessionStatus"]
        .replace(b">3.0<", b">" + nines + b"<")
        .replace(b">1<", b">" + nines + b"<"),
        # the unquoted attribute stays unquoted
        "checkEligibility": normal["checkEligibility"].replace(
            b"responseType=0 ", b"responseType=" + nines + b" "
        ),
        # no number: unchanged (the XML declaration's version is no attribute)
        "agentAvailability": normal["agentAvailability"],
        "chatAllowed": normal["chatAllowed"],
    }
    for name, reply in faulty.items():
        assert reply.status == 200, name
        assert reply.headers["Content-Type"] == "application/xml", name
        assert reply.body == expected[name], name
        assert reply.body != normal[name] or name in ("agentAvailability", "chatAllowed")
    assert parse(faulty["capacity"].body).findtext(f"{CHAT_NS}count") == NINES
    # what ccwatch makes of it: a parse failure, not a crash
    with pytest.raises(ParseFailure):
        ece.parse_capacity(faulty["capacity"].body)
    with pytest.raises(ParseFailure):
        ece.parse_check_eligibility(faulty["checkEligibility"].body)


async def test_fault_number_writes_the_value_as_it_is(sim: Sim) -> None:
    await sim.put_state(**BASE_STATE)
    await sim.fault(path="/capacity/", kind="number", value="٤")
    body = (await sim.ece("capacity")).body
    assert "<ns2:count>٤</ns2:count>".encode() in body
    await sim.clear_faults()
    await sim.fault(path="/checkEligibility/", kind="number", value="1e400")
    assert b" responseType=1e400 />" in (await sim.ece("checkEligibility")).body
    await sim.clear_faults()
    # a value that is no XML text is escaped: the document stays well-formed
    await sim.fault(path="/liveSessionStatus/", kind="number", value="<1&2>")
    root = parse((await sim.ece("liveSessionStatus")).body)
    assert root.findtext(f"{CHAT_NS}queueDepth") == "<1&2>"


async def test_fault_number_keeps_the_status(sim: Sim) -> None:
    await sim.fault(path=ECE, kind="number", value="x")
    reply = await sim.ece("chatAllowed", 4242)  # unknown: still 200, no number in it
    assert reply.status == 200
    assert b'reason="invalid_entry_point"' in reply.body
    reply = await sim.ece("capacity", 4242)  # unknown: a 500 text answer
    assert reply.status == 500
    assert reply.headers["Content-Type"].startswith("text/plain")


# --------------------------------------------------------------------------- gzip bombs

MIB = 1024 * 1024


async def raw_get(sim: Sim, path: str) -> tuple[int, dict[str, str], bytes]:
    """A GET that leaves the body as sent: no automatic decompression."""
    async with sim.session.get(sim.url + path, auto_decompress=False) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def decompress(raw: bytes, encoding: str) -> bytes:
    return zlib.decompress(raw, 31 if encoding == "gzip" else 15)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_fault_gzip_bomb(sim: Sim, chunked: bool, encoding: str) -> None:
    await sim.put_state(**BASE_STATE)
    normal = (await sim.ece("capacity")).body
    size = 3 * MIB
    await sim.fault(
        path="/capacity/", kind="gzip_bomb", size=size, chunked=chunked, encoding=encoding
    )
    status, headers, raw = await raw_get(sim, f"{ECE}/capacity/1000")
    assert status == 200
    assert headers["Content-Encoding"] == encoding  # ours, not aiohttp's
    assert headers["Content-Type"] == "application/xml"
    if chunked:
        assert "Content-Length" not in headers
        assert headers["Transfer-Encoding"] == "chunked"
    else:
        assert headers["Content-Length"] == str(len(raw))
        assert "Transfer-Encoding" not in headers
    assert len(raw) < size // 500  # deflate's best ratio is about 1032:1
    body = decompress(raw, encoding)
    assert len(body) == size
    assert body.startswith(DECL + b"<!-- ")  # the normal document, padded
    root = parse(body)  # and still one
    assert root.tag == "availableSlots"
    assert root.findtext(f"{CHAT_NS}count") == "4"
    assert body.endswith(normal[len(DECL) :])
    # a client that decompresses without a cap reads it all
    reply = await sim.ece("capacity")
    assert len(reply.body) == size
    assert reply.body == body


async def test_fault_gzip_bomb_default_is_200_mib_in_about_200_kb(sim: Sim) -> None:
    await sim.fault(path="/capacity/", kind="gzip_bomb")
    status, headers, raw = await raw_get(sim, f"{ECE}/capacity/1000")
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Length"] == str(len(raw))
    assert len(raw) < 300_000
    # decoded piece by piece, never all 200 MiB at once
    decoder = zlib.decompressobj(31)
    head = decoder.decompress(raw[:4096], 4096)
    assert head.startswith(DECL + b"<!-- ")
    total = len(head)
    data = decoder.unconsumed_tail + raw[4096:]
    while data:
        total += len(decoder.decompress(data, MIB))
        data = decoder.unconsumed_tail
    total += len(decoder.flush())
    assert decoder.eof
    assert total == 200 * MIB
    # the same answer again comes from the store's cache
    assert (await raw_get(sim, f"{ECE}/capacity/1000"))[2] == raw


async def test_gzip_bomb_bodies_are_cached_per_store_within_a_bound(sim: Sim) -> None:
    store = sim.runner.app[FAULTS_KEY]
    first = await store.compressed_padding(b"<a>1</a>", "application/xml", 1000, "gzip")
    assert await store.compressed_padding(b"<a>1</a>", "application/xml", 1000, "gzip") is first
    for size in range(2000, 2000 + 2 * BOMB_CACHE_SIZE):
        body = await store.compressed_padding(b'{"n": 1}', "application/json", size, "deflate")
        decoded = zlib.decompress(body)
        assert len(decoded) == size
        assert json.loads(decoded)["n"] == 1
    assert len(store._bombs) == BOMB_CACHE_SIZE
    # another store, another cache
    assert build_app(tick=0)[FAULTS_KEY]._bombs == {}


# --------------------------------------------------------------------------- entry point


async def test_run_simulator_serves_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(run_simulator("127.0.0.1", port, tick=0))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(500):
                try:
                    url = f"http://127.0.0.1:{port}{ECE}/capacity/1000"
                    async with session.get(url) as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert not task.done()
                    await asyncio.sleep(0.01)
            else:
                pytest.fail("the simulator did not start")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
