"""Who may talk to ccwatch's own endpoint: basic auth, allowed client certificate names,
a rate limit and the configured response headers (the web config file, see
:mod:`ccwatch.webconfig`).

Basic auth, as exporter-toolkit does it, with what a daemon that must keep polling needs:

- **bcrypt off the event loop, one check at a time**: checks run in one worker thread
  (bcrypt releases the GIL), so a scrape never stalls polling and a burst of checks
  never takes more than one core.
- **a bounded queue**: at most :data:`MAX_WAITING` checks wait or run; a request beyond
  that is answered 401 at once, so a flood of wrong passwords costs neither memory nor
  polling.
- **a cache of verified credentials**: a repeated scrape with the right password costs
  a keyed hash, not a bcrypt run. The key is an HMAC (with a key made at start) of the
  user name, the stored hash and the password, each length-prefixed: unambiguous, so no
  choice of user name and password can produce another pair's key, and a key can only
  be made with the password itself; knowing a stored hash lets no one in (the mistake
  behind CVE-2022-46146 was an ambiguous key). Wrong credentials are cached too, apart,
  so a repeated wrong password costs no bcrypt run either and cannot push out the right
  ones.
- **the cache, the worker and its queue survive a reload** (:meth:`BasicAuth.continue_from`):
  an entry holds the stored hash it was checked against, so it answers only for a user
  whose hash the reload left unchanged, and a scrape whose password is cached never
  waits behind a flood after a reload. Checks queued before a reload are answered
  against the users they were admitted with (the configuration in force when their
  request arrived), never dropped.
- **no user enumeration**: an unknown user's password is checked against a dummy hash
  whose cost is the most common cost of the configured hashes (the lowest of equally
  common ones, see :func:`dummy_cost`), so the answer takes as long as for a known user
  of that cost.
- **malformed input is a 401**: a missing or malformed ``Authorization`` header, bad
  base64, no colon, a password over 72 bytes (which bcrypt 5 refuses with
  ``ValueError``): 401, never 500.

The rate limit (:class:`RateLimit`) is applied per client, after basic auth
(:meth:`WebSecurity.admit`): a bucket per authenticated user, and one per remote address
for every request that is not authenticated, so a flood without credentials never
refuses an authenticated scrape; ``/-/healthy`` and ``/-/ready`` are never limited.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

import bcrypt

#: Checks waiting for, or in, the bcrypt worker; a request beyond this is refused at once.
MAX_WAITING: Final = 16
#: Credentials remembered, right ones and wrong ones apart.
CACHE_SIZE: Final = 1024
#: bcrypt reads at most this many bytes of a password (bcrypt 5 refuses longer ones).
MAX_PASSWORD_BYTES: Final = 72
REALM: Final = "ccwatch"
#: The password of the dummy hash unknown users are checked against.
_DUMMY_PASSWORD: Final = b"ccwatch: a user that does not exist"
#: The cost of the dummy hash when no configured hash says one (hash-password's default).
DEFAULT_COST: Final = 10
#: Paths the rate limit never refuses: a liveness or readiness probe must not fail, and
#: restart the pod, because someone else sent too many requests.
UNLIMITED_PATHS: Final = frozenset({"/-/healthy", "/-/ready"})
#: Remote addresses (IPv6: /64 networks) with a rate limit bucket of their own; beyond
#: this many active ones, a new address shares one overflow bucket.
MAX_CLIENTS: Final = 4096


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """User and password of a ``Basic`` Authorization header; None if it is not one."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


def bcrypt_cost(stored: bytes) -> int | None:
    """The cost of a bcrypt hash (``$2b$12$...``: 12); None if it shows none."""
    digits = stored[4:6]
    return int(digits) if len(digits) == 2 and digits.isdigit() else None


def dummy_cost(hashes: Iterable[bytes]) -> int:
    """The cost of the dummy hash an unknown user is checked against: the most common
    cost of ``hashes`` (the lowest of equally common ones), :data:`DEFAULT_COST` if none.

    An unknown user then answers as fast as the known users of that cost (the most users
    one cost can hide), and a flood of unknown users costs no more than one of known
    ones. A user whose hash has another cost can be told from an unknown one by timing:
    give every user the same cost to hide them all.
    """
    counts = Counter(cost for stored in hashes if (cost := bcrypt_cost(stored)) is not None)
    if not counts:
        return DEFAULT_COST
    return min(counts, key=lambda cost: (-counts[cost], cost))


class _LRU:
    """A bounded set of keys, least recently used out first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: bytes) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        self._trim()

    def resize(self, size: int) -> None:
        self._size = size
        self._trim()

    def _trim(self) -> None:
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class AuthStats:
    """What the checks cost: for the benchmark and the tests."""

    bcrypt_runs: int = 0
    bcrypt_seconds: float = 0.0
    cached: int = 0
    refused_busy: int = 0
    #: bcrypt runs of checks by the cost of the hash checked (the dummy's for unknown users)
    runs_by_cost: Counter[int] = field(default_factory=Counter)
    #: dummy hashes made (one per cost, for the life of the process's worker)
    dummies_made: int = 0


class _Checker:
    """What outlives a reload: the bcrypt worker and its queue, the cache key and the
    caches, the dummy hashes and the stats."""

    def __init__(self, cache_size: int) -> None:
        self.key = secrets.token_bytes(32)
        self.good = _LRU(cache_size)
        self.bad = _LRU(cache_size)
        self.waiting = 0
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccwatch-bcrypt")
        #: cost -> dummy hash; written and read in the worker only
        self.dummies: dict[int, bytes] = {}
        self.stats = AuthStats()
        self.closed = False

    def dummy(self, cost: int) -> bytes:
        """In the worker: the dummy hash of ``cost``, made the first time."""
        dummy = self.dummies.get(cost)
        if dummy is None:
            dummy = bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(cost))
            self.dummies[cost] = dummy
            self.stats.dummies_made += 1
        return dummy

    def check(self, password: bytes, stored: bytes | None, cost: int) -> bool:
        """In the worker: one bcrypt check (against the dummy hash of ``cost`` for an
        unknown user)."""
        if stored is None:
            stored = self.dummy(cost)
        started = time.perf_counter()
        try:
            return bcrypt.checkpw(password, stored)
        except ValueError:  # a malformed hash (refused at load) or password: no entry
            return False
        finally:
            self.stats.bcrypt_runs += 1
            self.stats.bcrypt_seconds += time.perf_counter() - started
            self.stats.runs_by_cost[bcrypt_cost(stored) or 0] += 1


@dataclass(frozen=True)
class Credentials:
    """A parsed ``Authorization`` header, looked up in the users."""

    user: str
    password: bytes = field(repr=False)
    #: the user's hash; None for an unknown user
    stored: bytes | None = field(repr=False)
    #: the cache key of (user, stored hash, password)
    key: bytes = field(repr=False)


class BasicAuth:
    """The users of ``basic_auth_users`` (name -> bcrypt hash) and their checks."""

    def __init__(
        self,
        users: Mapping[str, bytes],
        *,
        max_waiting: int = MAX_WAITING,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._users = dict(users)
        self.max_waiting = max_waiting
        self._cache_size = cache_size
        self._checker = _Checker(cache_size)
        #: the cost of the dummy hash unknown users are checked against (see dummy_cost)
        self.dummy_cost = dummy_cost(self._users.values())
        self._dummy_queued = False
        self._handed_over = False

    @property
    def usernames(self) -> list[str]:
        return sorted(self._users)

    @property
    def stats(self) -> AuthStats:
        return self._checker.stats

    def continue_from(self, previous: BasicAuth) -> None:
        """Take over ``previous``'s worker, queue, caches and stats (a reload): call it
        before this one's first check. Cached answers stay right: each was keyed with
        the hash it was checked against, so one for a changed or removed user never
        matches again. Checks queued in ``previous`` are answered with its users."""
        if previous is self or previous._checker.closed:
            return
        checker = previous._checker
        checker.good.resize(self._cache_size)
        checker.bad.resize(self._cache_size)
        self._checker.worker.shutdown(wait=False)  # never used: no thread to stop
        self._checker = checker
        previous._handed_over = True

    def close(self) -> None:
        """Stop the worker, dropping queued checks (the daemon stopping); a no-op once
        another :class:`BasicAuth` has taken the worker over."""
        if not self._handed_over:
            self._checker.closed = True
            self._checker.worker.shutdown(wait=False, cancel_futures=True)

    def retire(self) -> None:
        """Stop the worker once the queued checks are answered (a reload that turns
        basic auth off); a no-op once another :class:`BasicAuth` has taken it over."""
        if not self._handed_over:
            self._checker.closed = True
            self._checker.worker.shutdown(wait=False, cancel_futures=False)

    def _cache_key(self, user: str, stored: bytes, password: bytes) -> bytes:
        mac = hmac.new(self._checker.key, digestmod=hashlib.sha256)
        for part in (user.encode("utf-8"), stored, password):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    def credentials(self, header: str | None) -> Credentials | None:
        """The credentials of an ``Authorization`` header; None if it has none that
        could be right (missing, malformed, a password over 72 bytes)."""
        parsed = parse_basic(header)
        if parsed is None:
            return None
        user, password = parsed
        if len(password) > MAX_PASSWORD_BYTES:
            return None
        stored = self._users.get(user)
        key = self._cache_key(user, stored if stored is not None else b"", password)
        return Credentials(user, password, stored, key)

    def cached(self, credentials: Credentials) -> bool | None:
        """The cached answer for ``credentials``; None if a bcrypt check must tell."""
        checker = self._checker
        if credentials.key in checker.good:
            checker.stats.cached += 1
            return True
        if credentials.key in checker.bad:
            checker.stats.cached += 1
            return False
        return None

    async def verify(self, credentials: Credentials) -> bool:
        """True if ``credentials`` name a user and their password: from the cache, else
        with a bcrypt check in the worker (False at once when its queue is full)."""
        known = self.cached(credentials)
        if known is not None:
            return known
        checker = self._checker
        if checker.closed or checker.waiting >= self.max_waiting:
            checker.stats.refused_busy += 1
            return False
        checker.waiting += 1
        try:
            if not self._dummy_queued:
                # made before this instance's first check, known user or not, so that
                # an unknown user never costs more than a known one
                self._dummy_queued = True
                checker.worker.submit(checker.dummy, self.dummy_cost)
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(
                checker.worker,
                checker.check,
                credentials.password,
                credentials.stored,
                self.dummy_cost,
            )
        finally:
            checker.waiting -= 1
        ok = ok and credentials.stored is not None
        (checker.good if ok else checker.bad).add(credentials.key)
        return ok

    async def check(self, header: str | None) -> bool:
        """True if the ``Authorization`` header names a user and their password."""
        credentials = self.credentials(header)
        return credentials is not None and await self.verify(credentials)


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


def client_key(remote: str | None) -> str:
    """The rate limit's name for a remote address: the address, an IPv6 one's /64 network
    (one host usually has a whole /64), an IPv4-mapped IPv6 one's IPv4 address."""
    if not remote:
        return ""
    try:
        address = ipaddress.ip_address(remote.partition("%")[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimit:
    """Token buckets of one request per ``interval`` seconds, bursts of ``burst``: one per
    authenticated user, one per remote address (:func:`client_key`) for the requests that
    are not authenticated.

    At most ``max_clients`` address buckets are kept; an address that has been quiet long
    enough for its bucket to fill again is forgotten first, and while all of them are in
    use, new addresses share one overflow bucket, so that neither memory nor the number
    of addresses an attacker has lifts the limit.
    """

    def __init__(self, interval: float, burst: int, *, max_clients: int = MAX_CLIENTS) -> None:
        self.interval = interval
        self.burst = max(burst, 1)
        self.max_clients = max(max_clients, 1)
        self._users: dict[str, _Bucket] = {}
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._overflow = _Bucket(float(self.burst), time.monotonic())

    def _refill(self, bucket: _Bucket, now: float) -> None:
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) / self.interval)
        bucket.at = now

    def _take(self, bucket: _Bucket) -> bool:
        self._refill(bucket, time.monotonic())
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    def _address_bucket(self, remote: str | None) -> _Bucket:
        key = client_key(remote)
        bucket = self._addresses.get(key)
        if bucket is not None:
            self._addresses.move_to_end(key)
            return bucket
        now = time.monotonic()
        if len(self._addresses) >= self.max_clients:
            oldest_key, oldest = next(iter(self._addresses.items()))
            self._refill(oldest, now)
            if oldest.tokens < self.burst:
                return self._overflow  # every bucket in use: share one
            del self._addresses[oldest_key]  # full again: nothing to remember
        bucket = _Bucket(float(self.burst), now)
        self._addresses[key] = bucket
        return bucket

    def allow_address(self, remote: str | None) -> bool:
        """Take a token from the bucket of ``remote`` (an unauthenticated request)."""
        return self._take(self._address_bucket(remote))

    def refund_address(self, remote: str | None) -> None:
        """Give back the token :meth:`allow_address` took for a request that then proved
        authenticated: authenticated requests are never charged to an address."""
        bucket = self._address_bucket(remote)
        bucket.tokens = min(float(self.burst), bucket.tokens + 1)

    def allow_user(self, user: str) -> bool:
        """Take a token from the bucket of ``user`` (an authenticated request)."""
        bucket = self._users.get(user)
        if bucket is None:
            bucket = self._users[user] = _Bucket(float(self.burst), time.monotonic())
        return self._take(bucket)

    @property
    def addresses(self) -> int:
        """How many address buckets are kept."""
        return len(self._addresses)

    def continue_from(self, previous: RateLimit) -> None:
        """Keep ``previous``'s buckets (a reload), if it had the same interval and burst."""
        if (previous.interval, previous.burst) != (self.interval, self.burst):
            return
        self._users = previous._users
        self._addresses = previous._addresses
        self._overflow = previous._overflow
        while len(self._addresses) > self.max_clients:
            self._addresses.popitem(last=False)


@dataclass(frozen=True)
class Refusal:
    """An answer instead of the handler's."""

    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)


TOO_MANY_REQUESTS: Final = Refusal(429, "Too Many Requests")
UNAUTHORIZED: Final = Refusal(401, "Unauthorized", {"WWW-Authenticate": f'Basic realm="{REALM}"'})


@dataclass
class WebSecurity:
    """What the web layer enforces, swapped as a whole on reload (see ccwatch.web)."""

    auth: BasicAuth | None = None
    #: paths served without basic auth (``web.public_paths``)
    public_paths: frozenset[str] = frozenset()
    #: the web config's headers: on every response, over ccwatch's own
    headers: Mapping[str, str] = field(default_factory=dict)
    #: client certificate names allowed (``client_allowed_sans``); empty: any
    allowed_sans: frozenset[str] = frozenset()
    rate_limit: RateLimit | None = None

    async def admit(
        self, path: str, authorization: str | None, remote: str | None
    ) -> Refusal | None:
        """Basic auth, then the client's rate limit: None to serve the request.

        - An authenticated request is charged to its user's bucket only.
        - Any other request (no basic auth configured, a public path, no or wrong
          credentials) is charged to its remote address's bucket.
        - Credentials the cache does not know are charged to the address *before* their
          bcrypt check (so that one address cannot fill the bcrypt queue), and the token
          is given back when they prove right.
        - ``/-/healthy`` and ``/-/ready`` (:data:`UNLIMITED_PATHS`) are never refused with
          429, but for credentials that would need a bcrypt check.
        """
        limit = self.rate_limit
        exempt = path in UNLIMITED_PATHS
        auth = self.auth
        if auth is None or path in self.public_paths:
            if limit is not None and not exempt and not limit.allow_address(remote):
                return TOO_MANY_REQUESTS
            return None
        credentials = auth.credentials(authorization)
        known = auth.cached(credentials) if credentials is not None else False
        if known is False or credentials is None:  # refused without a bcrypt check
            if limit is not None and not exempt and not limit.allow_address(remote):
                return TOO_MANY_REQUESTS
            return UNAUTHORIZED
        if known is None:
            if limit is not None and not limit.allow_address(remote):
                return TOO_MANY_REQUESTS
            if not await auth.verify(credentials):
                return UNAUTHORIZED
            if limit is not None:
                limit.refund_address(remote)
        if limit is not None and not exempt and not limit.allow_user(credentials.user):
            return TOO_MANY_REQUESTS
        return None

    def replace_with(self, other: WebSecurity) -> None:
        """Take ``other``'s settings (a reload): requests from now on use them.

        ``other``'s basic auth continues from the running one (its bcrypt worker, queue
        and caches, see :meth:`BasicAuth.continue_from`), and its rate limit keeps the
        running buckets when interval and burst are unchanged. Checks already queued are
        answered with the users they were admitted with."""
        old = self.auth
        new = other.auth
        if new is not None and old is not None and new is not old:
            new.continue_from(old)
        elif new is None and old is not None:
            old.retire()
        limit, running = other.rate_limit, self.rate_limit
        if limit is not None and running is not None and limit is not running:
            limit.continue_from(running)
        self.auth = new
        self.public_paths = other.public_paths
        self.headers = other.headers
        self.allowed_sans = other.allowed_sans
        self.rate_limit = other.rate_limit


def peer_names(peercert: object) -> set[str]:
    """The subject alternative names of a verified peer certificate (``getpeercert()``)."""
    names: set[str] = set()
    if isinstance(peercert, dict):
        for entry in peercert.get("subjectAltName", ()):
            if isinstance(entry, tuple) and len(entry) == 2:
                names.add(str(entry[1]))
    return names


__all__ = [
    "CACHE_SIZE",
    "DEFAULT_COST",
    "MAX_CLIENTS",
    "MAX_PASSWORD_BYTES",
    "MAX_WAITING",
    "REALM",
    "TOO_MANY_REQUESTS",
    "UNAUTHORIZED",
    "UNLIMITED_PATHS",
    "AuthStats",
    "BasicAuth",
    "Credentials",
    "RateLimit",
    "Refusal",
    "WebSecurity",
    "bcrypt_cost",
    "client_key",
    "dummy_cost",
    "parse_basic",
    "peer_names",
]
