"""The Alvaria Context Cookies simulator and its token service over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import zlib
from typing import Any

import orjson
import pytest

from ccwatch.errors import ParseFailure
from ccwatch.simulator import build_app
from ccwatch.simulator.alvaria import (
    ALVARIA_KEY,
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    TOKEN_PATH,
    iso,
)
from ccwatch.simulator.faults import _replace_numbers
from ccwatch.sources import alvaria_context_cookies as alvaria
from tests.harness import Sim, simulator
from tests.simulator.conftest import SimClient, StartSim

API = "/via/v2/organizations/{org}/customerexperience/contextCookies/{collection}"
CREDS = {
    "grant_type": "client_credentials",
    "client_id": DEFAULT_CLIENT_ID,
    "client_secret": DEFAULT_CLIENT_SECRET,
}


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    return await start_sim(SimClient, tick=0, seed=1, alvaria_orgs=["orgA", "orgB"])


async def token(sim: Sim, form: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any]:
    async with sim.session.post(sim.url + TOKEN_PATH, data=form or CREDS, **kw) as resp:
        return resp.status, orjson.loads(await resp.read())


async def access_token(sim: Sim) -> str:
    status, body = await token(sim)
    assert status == 200
    value = body["access_token"]
    assert isinstance(value, str)
    return value


async def api(
    sim: Sim,
    collection: str = "settings",
    org: str = "orgA",
    *,
    bearer: str | None = None,
    api_key: str | None = DEFAULT_API_KEY,
    method: str = "GET",
    **headers: str,
) -> tuple[int, str, bytes]:
    if bearer is None:
        bearer = await access_token(sim)
    all_headers = {"Authorization": f"Bearer {bearer}", **headers}
    if api_key is not None:
        all_headers["x-api-key"] = api_key
    url = sim.url + API.format(org=org, collection=collection)
    async with sim.session.request(method, url, headers=all_headers) as resp:
        return resp.status, resp.content_type, await resp.read()


async def control(sim: Sim, path: str) -> Any:
    async with sim.session.get(f"{sim.url}/-/sim/alvaria/{path}") as resp:
        assert resp.status == 200
        return await resp.json()


# --------------------------------------------------------------------------- token service


async def test_token_with_form_credentials(sim: Sim) -> None:
    status, body = await token(sim, {**CREDS, "scope": "customerexperienceapi.contextcookies"})
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "customerexperienceapi.contextcookies"
    assert body["access_token"] in await control(sim, "tokens")


async def test_token_with_basic_credentials(sim: Sim) -> None:
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    status, _ = await token(
        sim, {"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert status == 200


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**CREDS, "client_secret": "wrong"}, 401, "invalid_client"),
        ({**CREDS, "client_id": "someone"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({**CREDS, "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({**CREDS, "scope": "everything"}, 400, "invalid_scope"),
    ],
)
async def test_token_refusals(sim: Sim, form: dict[str, str], status: int, error: str) -> None:
    assert await token(sim, form) == (status, {"error": error})


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("collection", ["settings", "customers", "services", "channels"])
async def test_collections_have_the_documented_shape(sim: Sim, collection: str) -> None:
    status, ctype, body = await api(sim, collection)
    assert status == 200
    assert ctype == "application/json"
    data = orjson.loads(body)
    assert set(data) == {"kind", collection, "totalItems"}
    assert data["kind"] == alvaria.KINDS[collection]
    assert isinstance(data["totalItems"], str)  # as in the spec's examples
    assert int(data["totalItems"]) == len(data[collection])
    if collection == "settings":
        keys = {
            "customerId",
            "key",
            "content",
            "channel",
            "service",
            "creationTime",
            "lastModifiedTime",
        }
        assert all(keys <= set(item) for item in data["settings"])
        alvaria.parse_settings(body, now=time.time(), stale_after=86400.0)
    else:
        assert all(set(item) == {"id"} for item in data[collection])
        alvaria.parse_collection(body, collection)


async def test_total_items_as_integer(sim: Sim) -> None:
    await sim.put("alvaria/config", {"total_items_as": "int"})
    data = orjson.loads((await api(sim, "channels"))[2])
    assert isinstance(data["totalItems"], int)


# --------------------------------------------------------------------------- faults

NINES = "9" * 400
CUSTOMERS = "/contextCookies/customers"


async def test_fault_number_in_json_strings_of_digits(sim: Sim) -> None:
    normal = (await api(sim, "customers"))[2]
    total = f'"totalItems":"{orjson.loads(normal)["totalItems"]}"'.encode()
    assert total in normal
    await sim.fault(CUSTOMERS, "number", value="٤")
    status, ctype, body = await api(sim, "customers")
    assert (status, ctype) == (200, "application/json")
    # a string stays a string; nothing else changed (ids like "customer1" are no numbers)
    assert body == normal.replace(total, '"totalItems":"٤"'.encode())
    with pytest.raises(ParseFailure):
        alvaria.parse_collection(body, "customers")


async def test_fault_number_in_json_numbers_is_written_raw(sim: Sim) -> None:
    await sim.put("alvaria/config", {"total_items_as": "int"})
    normal = (await api(sim, "channels"))[2]
    total = f'"totalItems":{orjson.loads(normal)["totalItems"]}'.encode()
    assert total in normal
    await sim.fault("/contextCookies/channels", "number")  # the default: 400 nines
    status, ctype, body = await api(sim, "channels")
    assert (status, ctype) == (200, "application/json")
    assert body == normal.replace(total, b'"totalItems":' + NINES.encode())
    assert json.loads(body)["totalItems"] == int(NINES)  # valid JSON, for Python's json
    with pytest.raises(orjson.JSONDecodeError):  # ... but no double can hold it
        orjson.loads(body)
    with pytest.raises(ParseFailure):
        alvaria.parse_collection(body, "channels")
    await sim.clear_faults()
    await sim.fault("/contextCookies/channels", "number", value="٤")
    body = (await api(sim, "channels"))[2]
    assert '"totalItems":٤'.encode() in body  # unquoted, as it was: no JSON any more
    with pytest.raises(ParseFailure, match="invalid JSON"):
        alvaria.parse_collection(body, "channels")


def test_fault_number_leaves_keys_and_other_strings_alone() -> None:
    body = b'{"2": [1, -2.5e3, "3", "x4", true, null], "s": "a\\"5", "n": 0}'
    assert _replace_numbers(body, "application/json", "X") == (
        b'{"2": [X, X, "X", "x4", true, null], "s": "a\\"5", "n": X}'
    )


async def test_fault_gzip_bomb_on_json(sim: Sim) -> None:
    normal = orjson.loads((await api(sim, "settings"))[2])
    size = 2 * 1024 * 1024
    await sim.fault("/contextCookies/settings", "gzip_bomb", size=size, encoding="deflate")
    url = sim.url + API.format(org="orgA", collection="settings")
    headers = {"Authorization": f"Bearer {await access_token(sim)}", "x-api-key": DEFAULT_API_KEY}
    async with sim.session.get(url, headers=headers, auto_decompress=False) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Encoding"] == "deflate"
        assert resp.content_type == "application/json"
        raw = await resp.read()
    assert len(raw) < size // 500
    body = zlib.decompress(raw)  # deflate is the zlib format
    assert len(body) == size
    data = orjson.loads(body)  # still the collection, padded
    assert data["totalItems"] == normal["totalItems"]
    assert data["settings"] == normal["settings"]
    # an uncapped client reads it all and its value
    status, _, decoded = await api(sim, "settings")
    assert status == 200
    assert decoded == body


async def test_refusals(sim: Sim) -> None:
    assert (await api(sim, api_key=None))[0] == 403
    assert (await api(sim, api_key="wrong"))[0] == 403
    status, _, body = await api(sim, bearer="forged")
    assert (status, body) == (401, b"")
    assert (await api(sim, org="orgC"))[0] == 404
    assert (await api(sim, Accept="text/html"))[0] == 406
    assert (await api(sim, Accept="application/json, text/plain"))[0] == 200
    stats = await control(sim, "stats")
    assert stats["forbidden"] == 2
    assert stats["unauthorized"] == 1


async def test_revoked_and_expired_tokens_are_401(sim: Sim) -> None:
    bearer = await access_token(sim)
    assert (await api(sim, bearer=bearer))[0] == 200
    await sim.delete("alvaria/tokens")
    assert (await api(sim, bearer=bearer))[0] == 401
    await sim.put("alvaria/config", {"token_ttl": 0.05})
    _, body = await token(sim)
    assert body["expires_in"] == 0.05
    await asyncio.sleep(0.1)
    assert (await api(sim, bearer=body["access_token"]))[0] == 401


async def test_settings_can_be_set_exactly(sim: Sim) -> None:
    now = time.time()
    settings = [
        {"customerId": "c1", "channel": "voice", "service": "", "expiresOnTime": now - 60},
        {
            "customerId": "c2",
            "channel": "chat",
            "service": "sales",
            "creationTime": iso(now - 40 * 86400),
        },
        {"customerId": "c1", "channel": "voice", "service": "sales"},
    ]
    await sim.put("alvaria/orgs/orgA/settings", {"settings": settings})
    body = (await api(sim, "settings"))[2]
    reading = alvaria.parse_settings(body, now=time.time(), stale_after=30 * 86400)
    assert reading == alvaria.SettingsReading(total_items=3, expired=1, stale=1)
    counts = {
        c: alvaria.parse_collection((await api(sim, c))[2], c).total_items
        for c in ("customers", "services", "channels")
    }
    assert counts == {"customers": 2, "services": 2, "channels": 2}
    state = await sim.state()
    assert state["alvaria"]["orgs"]["orgA"] == {"settings": 3, "expired": 1, "frozen": True}
    await sim.delete("alvaria/orgs/orgA/settings/freeze")
    assert not (await sim.state())["alvaria"]["orgs"]["orgA"]["frozen"]


async def test_writes_change_nothing_and_are_counted(sim: Sim) -> None:
    before = (await api(sim, "settings"))[2]
    assert (await api(sim, "settings", method="DELETE"))[0] == 204
    assert (await api(sim, "settings", method="POST"))[0] == 204
    assert (await api(sim, "settings"))[2] == before
    assert (await control(sim, "stats"))["writes"] == 2


async def test_request_log_includes_fault_answers(sim: Sim) -> None:
    await sim.fault("/organizations/orgA/", "status", status=429, headers={"Retry-After": "3"})
    started = time.time()
    assert (await api(sim, "customers"))[0] == 429
    assert (await api(sim, "customers", org="orgB"))[0] == 200
    log = await control(sim, "requests")
    assert [(e["method"], e["path"], e["status"]) for e in log[-4:]] == [
        ("POST", TOKEN_PATH, 200),
        ("GET", API.format(org="orgA", collection="customers"), 429),
        ("POST", TOKEN_PATH, 200),
        ("GET", API.format(org="orgB", collection="customers"), 200),
    ]
    assert all(e["time"] >= started - 1 for e in log[-4:])


async def test_bad_control_requests(sim: Sim) -> None:
    for path, data in [
        ("alvaria/config", {"token_ttl": 0}),
        ("alvaria/config", {"total_items_as": "float"}),
        ("alvaria/config", {"api_key": 5}),
        ("alvaria/config", {"colour": "blue"}),
        ("alvaria/orgs/orgA/settings", {"settings": "none"}),
        ("alvaria/orgs/orgA/settings", {"settings": [{"expiresOnTime": "soon"}]}),
    ]:
        async with sim.session.put(f"{sim.url}/-/sim/{path}", json=data) as resp:
            assert resp.status == 400, (path, data)
    async with sim.session.put(
        f"{sim.url}/-/sim/alvaria/orgs/orgZ/settings", json={"settings": []}
    ) as resp:
        assert resp.status == 404


async def test_settings_move_with_ticks() -> None:
    async with simulator(tick=0.01, seed=5) as s:
        status, _, first = await api(s, "settings", org="orgId")
        assert status == 200
        for _ in range(200):
            await asyncio.sleep(0.02)
            if (await api(s, "settings", org="orgId"))[2] != first:
                break
        else:
            pytest.fail("the settings did not change")


def test_options() -> None:
    with pytest.raises(TypeError, match="alvaria_colour"):
        build_app(alvaria_colour="blue")
    app = build_app(tick=0, alvaria_orgs=["x"], alvaria_settings=3, alvaria_token_ttl=5)
    model = app[ALVARIA_KEY]
    assert list(model.orgs) == ["x"]
    assert len(model.orgs["x"].settings) == 3
    assert model.token_ttl == 5
