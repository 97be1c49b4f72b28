"""Sharding: the assignment (stable, balanced, consistent), where the shard comes from, and
real ccwatch processes that together poll every job exactly once, as 3 shards and as 4.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from ccwatch.errors import ConfigError
from ccwatch.sharding import Sharding, jump_hash, parse_shard, resolve, unit_key
from tests.harness import Scrape, Sim, daemon, reload, reloadable_daemon, simulator

# --------------------------------------------------------------------------- assignment


def test_jump_hash_gives_the_published_buckets() -> None:
    # the values of Lamping and Veach's reference implementation
    assert jump_hash(1, 1) == 0
    assert jump_hash(42, 57) == 43
    assert jump_hash(256, 1024) == 520
    assert jump_hash(0xDEAD10CC, 666) == 361


#: Pinned: a change here moves every installation's units between its replicas.
PINNED = [
    ("ece-east", {"entry_point": "1000"}, 0x8ABFCABA5EFB77ED, [1, 1, 1, 8]),
    ("ece-east", {"entry_point": "1001"}, 0xC65FD7F70D9F74BF, [1, 1, 1, 1]),
    ("ece-east", {"entry_point": "1002"}, 0x54D6C98BE86130BC, [0, 2, 2, 9]),
    ("cs", {}, 0x3B8B91C75627BEE5, [0, 0, 0, 0]),
    ("genesys", {"customer_id": "ABC1234"}, 0xFB23255D698530C6, [1, 1, 1, 8]),
]


@pytest.mark.parametrize(("target", "subject", "key", "shards"), PINNED)
def test_units_get_known_shards(
    target: str, subject: dict[str, str], key: int, shards: list[int]
) -> None:
    assert unit_key(target, subject) == key
    assert [jump_hash(key, n) for n in (2, 3, 4, 10)] == shards


def test_the_key_does_not_depend_on_label_order_or_the_process() -> None:
    a = unit_key("genesys", {"customer_id": "ABC", "contact_key": ""})
    b = unit_key("genesys", {"contact_key": "", "customer_id": "ABC"})
    assert a == b
    assert unit_key("t", {"entry_point": "1"}) != unit_key("t", {"entry_point": "10"})
    assert unit_key("t1", {"entry_point": "0"}) != unit_key("t", {"entry_point": "10"})


UNITS = [("ece-" + str(i // 100), {"entry_point": str(1000 + i)}) for i in range(3000)]


def test_3000_units_over_3_shards_are_balanced_within_10_percent() -> None:
    counts = [0, 0, 0]
    for target, subject in UNITS:
        counts[jump_hash(unit_key(target, subject), 3)] += 1
    for count in counts:
        assert abs(count - 1000) <= 100, counts


def test_growing_from_3_to_4_shards_moves_at_most_30_percent() -> None:
    moved = sum(jump_hash(unit_key(t, s), 3) != jump_hash(unit_key(t, s), 4) for t, s in UNITS)
    assert moved <= 0.30 * len(UNITS), moved
    assert moved >= 0.15 * len(UNITS)  # about a quarter: it does move some


def test_one_shard_owns_everything() -> None:
    assert all(Sharding(0, 1).owns(t, s) for t, s in UNITS[:100])
    owners = [sum(Sharding(i, 5).owns(t, s) for i in range(5)) for t, s in UNITS[:300]]
    assert set(owners) == {1}


# --------------------------------------------------------------------------- where it comes from


def test_pod_names_and_ordinals() -> None:
    assert parse_shard("ccwatch-2", "x") == 2
    assert parse_shard("ccwatch-shard-10", "x") == 10
    assert parse_shard("7", "x") == 7
    assert parse_shard(3, "x") == 3
    for bad in ("ccwatch", "ccwatch-", "-", "ccwatch-two", ""):
        with pytest.raises(ConfigError, match="neither a shard number nor a pod name"):
            parse_shard(bad, "--shard")


def test_flags_win_over_the_environment_which_wins_over_the_file() -> None:
    env = {"CCWATCH_SHARDING__SHARD": "ccwatch-1", "CCWATCH_SHARDING__TOTAL_SHARDS": "3"}
    assert resolve(0, 2, environ={}) == Sharding(0, 2)
    assert resolve(0, 2, environ=env) == Sharding(1, 3)
    assert resolve(0, 2, flag_shard="2", flag_total="4", environ=env) == Sharding(2, 4)
    assert resolve("ccwatch-1", 2, environ={}) == Sharding(1, 2)


@pytest.mark.parametrize(
    ("shard", "total", "env", "message"),
    [
        ("3", "3", {}, r"--shard: shard 3 is outside 0\.\.2"),
        (None, None, {"CCWATCH_SHARDING__SHARD": "ccwatch-5"}, "CCWATCH_SHARDING__SHARD"),
        ("ccwatch", "2", {}, "neither a shard number nor a pod name"),
        ("0", "0", {}, "--total-shards: total shards must be 1"),
        ("0", "two", {}, "--total-shards: expected a whole number"),
    ],
)
def test_bad_shards_are_config_errors(
    shard: str | None, total: str | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(0, 2, flag_shard=shard, flag_total=total, environ=env)


def config_file(tmp_path: Path, sim_url: str, **sharding: object) -> Path:
    data = {
        "web": {"listen_address": "127.0.0.1:0"},
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": f"{sim_url}/system",
                "entry_points": [1000, 1001, 1002, 1003],
            }
        ],
    }
    if sharding:
        data["sharding"] = sharding
    path = tmp_path / "ccwatch.yml"
    path.write_text(yaml.safe_dump(data))
    return path


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ccwatch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")},
            **(env or {}),
        },
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_shard_out_of_range_exits_non_zero(tmp_path: Path) -> None:
    path = config_file(tmp_path, "http://127.0.0.1:1")
    code, out = await run_cli(
        "run", "--config.file", str(path), "--shard", "4", "--total-shards", "4"
    )
    assert code == 1
    assert "shard 4 is outside 0..3" in out
    code, out = await run_cli(
        "run", "--config.file", str(path), env={"CCWATCH_SHARDING__SHARD": "ccwatch"}
    )
    assert code == 1
    assert "CCWATCH_SHARDING__SHARD" in out


async def test_check_config_says_what_a_shard_owns(tmp_path: Path) -> None:
    path = config_file(tmp_path, "http://127.0.0.1:1")
    owned = 0
    for shard in range(3):
        code, out = await run_cli(
            "check-config", "--shard", f"ccwatch-{shard}", "--total-shards", "3", str(path)
        )
        assert code == 0, out
        match = re.search(rf"shard {shard} of 3: \d of 1 targets, (\d+) of 20 poll jobs", out)
        assert match, out
        owned += int(match.group(1))
    assert owned == 20


# --------------------------------------------------------------------------- one daemon


async def test_metrics_say_the_shard_and_count_its_jobs(sim: Sim) -> None:
    entry_points = list(range(1000, 1004))
    config = {
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": entry_points,
            }
        ],
        "sharding": {"shard": "ccwatch-1", "total_shards": 3},
    }
    sharding = Sharding(1, 3)
    mine = [ep for ep in entry_points if sharding.owns("ece", {"entry_point": str(ep)})]
    async with daemon(config) as d:
        scrape = await d.scrape()
    assert scrape.value("ccwatch_shard_ordinal") == 1
    assert scrape.value("ccwatch_total_shards") == 3
    assert scrape.value("ccwatch_jobs", source="ece") == 5 * len(mine)


async def test_a_reload_that_changes_the_total_is_refused(sim: Sim, tmp_path: Path) -> None:
    base = {
        "targets": [
            {
                "name": "ece",
                "source": "ece",
                "url": f"{sim.url}/system",
                "entry_points": [1000, 1001],
            }
        ],
        "sharding": {"shard": 0, "total_shards": 2},
    }
    path = tmp_path / "ccwatch.yml"
    async with reloadable_daemon(path, base) as d:
        before = await d.scrape()
        changed = {**base, "sharding": {"shard": 0, "total_shards": 3}}
        path.write_text(yaml.safe_dump({**changed, "web": {"listen_address": "127.0.0.1:0"}}))
        async with d.session.post(f"{d.url}/-/reload") as resp:
            assert resp.status == 500
            assert "takes a restart" in await resp.text()
        after = await d.scrape()
        assert after.value("ccwatch_total_shards") == 2
        assert after.value("ccwatch_jobs", source="ece") == before.value(
            "ccwatch_jobs", source="ece"
        )
        # the same total, another shard: the assignment is recomputed
        other = {**base, "sharding": {"shard": 1, "total_shards": 2}}
        path.write_text(yaml.safe_dump({**other, "web": {"listen_address": "127.0.0.1:0"}}))
        await reload(d)
        assert (await d.scrape()).value("ccwatch_shard_ordinal") == 1


# --------------------------------------------------------------------------- real processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def shards(path: Path, total: int) -> AsyncIterator[list[str]]:
    """``total`` ccwatch processes on one config, shards 0 .. total-1; their /metrics URLs."""
    processes = []
    urls = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
    try:
        for shard in range(total):
            port = free_port()
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "ccwatch",
                    "run",
                    f"--config.file={path}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--shard=ccwatch-{shard}",
                    f"--total-shards={total}",
                    "--log.level=warning",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env=env,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)


async def polled_jobs(urls: list[str]) -> list[set[tuple[str, str, str]]]:
    """Per process, the jobs it has polled (target, endpoint, entry point), once all are
    ready."""
    out: list[set[tuple[str, str, str]]] = []
    async with aiohttp.ClientSession() as session:
        for url in urls:
            for _ in range(150):
                try:
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{url} did not get ready")
            async with session.get(f"{url}/metrics") as resp:
                scrape = Scrape(await resp.text())
            out.append(
                {
                    (s.labels["target"], s.labels["endpoint"], s.labels["entry_point"])
                    for s in scrape.series("ccwatch_poll_success")
                }
            )
    return out


async def test_real_shards_poll_every_job_exactly_once_as_3_and_as_4(tmp_path: Path) -> None:
    entry_points = list(range(1000, 1040))
    async with simulator(ece_entry_points=entry_points) as sim:
        path = tmp_path / "ccwatch.yml"
        path.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"interval": "1s", "timeout": "500ms"},
                    "targets": [
                        {
                            "name": "ece",
                            "source": "ece",
                            "url": f"{sim.url}/system",
                            "entry_points": entry_points,
                        }
                    ],
                }
            )
        )
        every = {
            ("ece", endpoint, str(ep))
            for ep in entry_points
            for endpoint in (
                "agentAvailability",
                "capacity",
                "liveSessionStatus",
                "checkEligibility",
                "chatAllowed",
            )
        }
        for total in (3, 4):
            async with shards(path, total) as urls:
                polled = await polled_jobs(urls)
            assert len(polled) == total
            assert all(polled), "every shard owns some of 40 entry points"
            union = set().union(*polled)
            assert union == every, f"{total} shards: missing {sorted(every - union)[:5]}"
            assert sum(len(p) for p in polled) == len(every), f"{total} shards: polled twice"
            # an entry point's five endpoints stay together on one shard
            for jobs in polled:
                eps = {ep for _, _, ep in jobs}
                assert len(jobs) == 5 * len(eps)


async def test_a_target_state_is_exported_by_its_owning_shard_only() -> None:
    from tests.integration.test_alvaria_daemon import (
        API_KEY,
        CLIENT_ID,
        SECRET,
        TOKEN_FAILURES,
        alvaria_target,
    )

    async with simulator(
        alvaria_orgs=["orgA"],
        alvaria_client_id=CLIENT_ID,
        alvaria_client_secret=SECRET,
        alvaria_api_key=API_KEY,
    ) as sim:
        owner = next(i for i in range(2) if Sharding(i, 2).owns("alv", {}))
        for shard in range(2):
            config = {
                "targets": [alvaria_target(sim, "alv")],
                "sharding": {"shard": shard, "total_shards": 2},
            }
            async with daemon(config) as d:
                if shard == owner:
                    scrape = await d.wait_for(
                        lambda s: s.value(TOKEN_FAILURES, target="alv") is not None
                    )
                    assert scrape.value("ccwatch_jobs", source="alvaria_context_cookies") == 4
                else:
                    await asyncio.sleep(0.6)  # a few of the owner's intervals
                    scrape = await d.scrape()
                    assert scrape.series(TOKEN_FAILURES) == []
                    assert scrape.series("ccwatch_poll_success") == []
                    assert scrape.value("ccwatch_jobs", source="alvaria_context_cookies") == 0
