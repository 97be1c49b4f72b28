"""ccwatch.webauth on its own: the bcrypt cache and worker across a reload, the dummy
hash's cost, and the per-client rate limit. The same over real sockets, with the daemon,
is in tests/test_web_security.py."""

from __future__ import annotations

import asyncio
import base64

import bcrypt
import pytest

from ccwatch.webauth import (
    DEFAULT_COST,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    BasicAuth,
    RateLimit,
    WebSecurity,
    bcrypt_cost,
    client_key,
    dummy_cost,
)

PASSWORD = b"scrape-me-please"


def hashed(cost: int, password: bytes = PASSWORD) -> bytes:
    return bcrypt.hashpw(password, bcrypt.gensalt(cost))


def basic(user: str, password: bytes = PASSWORD) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


# --------------------------------------------------------------------------- the dummy's cost


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        ([4], 4),
        ([4, 4, 6], 4),  # the most common
        ([4, 6, 6], 6),
        ([5, 4], 4),  # equally common: the lowest
        ([12, 4, 12, 4, 8], 4),
        ([], DEFAULT_COST),
    ],
)
def test_the_dummy_cost_is_the_most_common_then_the_lowest(costs: list[int], expected: int) -> None:
    stored = [f"$2b${cost:02d}$".encode() + b"x" * 53 for cost in costs]
    assert dummy_cost(stored) == expected


def test_bcrypt_cost_reads_the_hash() -> None:
    assert bcrypt_cost(hashed(5)) == 5
    assert bcrypt_cost(b"$2b$xx$...") is None
    assert bcrypt_cost(b"") is None


async def test_an_unknown_user_is_checked_at_the_cost_of_the_known_ones() -> None:
    # two users at cost 4, one at cost 6: before, the dummy hash had the highest cost (6),
    # so an unknown user took four times as long as a cost-4 one
    auth = BasicAuth({"prometheus": hashed(4), "grafana": hashed(4), "admin": hashed(6)})
    try:
        assert auth.dummy_cost == 4
        assert not await auth.check(basic("mallory"))
        assert auth.stats.runs_by_cost == {4: 1}
        assert await auth.check(basic("prometheus"))
        assert await auth.check(basic("admin"))
        assert auth.stats.runs_by_cost == {4: 2, 6: 1}
        assert auth.stats.dummies_made == 1
    finally:
        auth.close()


# --------------------------------------------------------------------------- across a reload


async def test_the_cache_survives_a_reload_for_unchanged_users_only() -> None:
    prometheus = hashed(4)
    security = WebSecurity(auth=BasicAuth({"prometheus": prometheus, "grafana": hashed(4)}))
    assert security.auth is not None
    try:
        assert await security.auth.check(basic("prometheus"))
        assert await security.auth.check(basic("grafana"))
        runs = security.auth.stats.bcrypt_runs
        # a reload: prometheus unchanged, grafana's password changed
        new = BasicAuth({"prometheus": prometheus, "grafana": hashed(4, b"new")})
        security.replace_with(WebSecurity(auth=new))
        assert security.auth is new
        assert await new.check(basic("prometheus"))
        assert new.stats.bcrypt_runs == runs  # from the cache: no bcrypt run
        # grafana's old password is not taken from the cache: checked, and refused
        assert not await new.check(basic("grafana"))
        assert new.stats.bcrypt_runs == runs + 1
        assert await new.check(basic("grafana", b"new"))
    finally:
        assert security.auth is not None
        security.auth.close()


async def test_checks_queued_across_a_reload_are_answered_with_the_old_users() -> None:
    old_hash = hashed(10)  # about 60 ms a check: the queue is still full at the reload
    security = WebSecurity(auth=BasicAuth({"prometheus": old_hash}))
    auth = security.auth
    assert auth is not None
    try:
        queued = [
            asyncio.ensure_future(auth.check(basic("prometheus", f"guess-{i}".encode())))
            for i in range(5)
        ]
        right = asyncio.ensure_future(auth.check(basic("prometheus")))
        await asyncio.sleep(0)  # all of them in the worker's queue
        # the reload changes prometheus's password: the queued checks still get the old
        # configuration's answer, none is cancelled
        new = BasicAuth({"prometheus": hashed(4, b"rotated")})
        security.replace_with(WebSecurity(auth=new))
        answers = await asyncio.wait_for(asyncio.gather(*queued, right), 30)
        assert answers == [False] * 5 + [True]
        # requests from now on get the new configuration's
        assert not await new.check(basic("prometheus"))
        assert await new.check(basic("prometheus", b"rotated"))
    finally:
        assert security.auth is not None
        security.auth.close()


async def test_checks_queued_when_a_reload_turns_basic_auth_off_are_answered() -> None:
    security = WebSecurity(auth=BasicAuth({"prometheus": hashed(10)}))
    auth = security.auth
    assert auth is not None
    queued = [asyncio.ensure_future(auth.check(basic("prometheus"))) for _ in range(3)]
    await asyncio.sleep(0)
    security.replace_with(WebSecurity())
    assert security.auth is None
    assert await asyncio.wait_for(asyncio.gather(*queued), 30) == [True, True, True]
    assert not await auth.check(basic("prometheus", b"other"))  # retired: refused at once
    assert auth.stats.refused_busy == 1


# --------------------------------------------------------------------------- rate limit


def test_users_and_addresses_have_buckets_of_their_own() -> None:
    limit = RateLimit(3600.0, 2)
    assert limit.allow_address("192.0.2.1")
    assert limit.allow_address("192.0.2.1")
    assert not limit.allow_address("192.0.2.1")
    assert limit.allow_address("192.0.2.2")  # another address
    assert limit.allow_user("prometheus")  # users are not charged to an address
    assert limit.allow_user("prometheus")
    assert not limit.allow_user("prometheus")
    assert limit.allow_user("grafana")


def test_an_ipv6_host_is_one_client_per_64() -> None:
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == ("2001:db8:1:2::/64")
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == ""
    limit = RateLimit(3600.0, 1)
    assert limit.allow_address("2001:db8:1:2::1")
    assert not limit.allow_address("2001:db8:1:2::2")  # same /64


def test_address_buckets_are_bounded_and_share_an_overflow_when_all_are_in_use() -> None:
    limit = RateLimit(3600.0, 2, max_clients=3)
    for i in range(3):
        assert limit.allow_address(f"192.0.2.{i}")
    assert limit.addresses == 3
    # every bucket in use (none full again): new addresses share the overflow bucket
    assert limit.allow_address("198.51.100.1")
    assert limit.allow_address("198.51.100.2")
    assert not limit.allow_address("198.51.100.3")
    assert limit.addresses == 3


def test_a_full_again_bucket_is_forgotten_for_a_new_address() -> None:
    limit = RateLimit(0.01, 1, max_clients=2)
    assert limit.allow_address("192.0.2.1")
    assert limit.allow_address("192.0.2.2")
    limit._addresses["192.0.2.1"].at -= 1.0  # quiet for a second: full again
    assert limit.allow_address("198.51.100.1")  # takes the forgotten one's place
    assert limit.addresses == 2
    assert "192.0.2.1" not in limit._addresses


def test_a_reload_keeps_the_buckets_if_the_limit_is_unchanged() -> None:
    security = WebSecurity(rate_limit=RateLimit(3600.0, 1))
    assert security.rate_limit is not None
    assert security.rate_limit.allow_address("192.0.2.1")
    security.replace_with(WebSecurity(rate_limit=RateLimit(3600.0, 1)))
    assert not security.rate_limit.allow_address("192.0.2.1")
    security.replace_with(WebSecurity(rate_limit=RateLimit(3600.0, 2)))  # changed: anew
    assert security.rate_limit.allow_address("192.0.2.1")


async def test_admit_charges_authenticated_requests_to_their_user_only() -> None:
    security = WebSecurity(
        auth=BasicAuth({"prometheus": hashed(4)}),
        rate_limit=RateLimit(3600.0, 2),
        public_paths=frozenset({"/-/healthy"}),
    )
    assert security.auth is not None
    try:
        address = "192.0.2.1"
        # the first scrape is checked with bcrypt: charged to the address, then given back
        assert await security.admit("/metrics", basic("prometheus"), address) is None
        # the address's bucket is emptied by wrong and missing credentials
        assert await security.admit("/metrics", basic("prometheus", b"x"), address) == (
            UNAUTHORIZED
        )
        assert await security.admit("/metrics", None, address) == UNAUTHORIZED
        assert await security.admit("/metrics", None, address) == TOO_MANY_REQUESTS
        assert await security.admit("/metrics", basic("mallory"), address) == (TOO_MANY_REQUESTS)
        # the authenticated scrape has its own bucket (one token left of two)
        assert await security.admit("/metrics", basic("prometheus"), address) is None
        assert await security.admit("/metrics", basic("prometheus"), address) == (TOO_MANY_REQUESTS)
        # health and readiness are never limited: public, or authenticated
        for _ in range(5):
            assert await security.admit("/-/healthy", None, address) is None
            assert await security.admit("/-/ready", basic("prometheus"), address) is None
            assert await security.admit("/-/ready", None, address) == UNAUTHORIZED
    finally:
        security.auth.close()
