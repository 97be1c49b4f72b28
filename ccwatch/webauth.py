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
- **no user enumeration**: an unknown user's password is checked against a dummy hash
  of the same cost, so the answer takes as long as for a known user.
- **malformed input is a 401**: a missing or malformed ``Authorization`` header, bad
  base64, no colon, a password over 72 bytes (which bcrypt 5 refuses with
  ``ValueError``): 401, never 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
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
        self._key = secrets.token_bytes(32)
        self._good = _LRU(cache_size)
        self._bad = _LRU(cache_size)
        self._waiting = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccwatch-bcrypt")
        costs = [int(h[4:6]) for h in self._users.values() if h[4:6].isdigit()]
        self._dummy_cost = max(costs, default=10)
        self._dummy: bytes | None = None
        self.stats = AuthStats()
        # made in the worker before any check runs, so that even the first unknown user
        # costs one bcrypt check, as a known one does
        self._worker.submit(self._make_dummy)

    def _make_dummy(self) -> None:
        self._dummy = bcrypt.hashpw(_DUMMY_PASSWORD, bcrypt.gensalt(self._dummy_cost))

    @property
    def usernames(self) -> list[str]:
        return sorted(self._users)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _cache_key(self, user: str, stored: bytes, password: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user.encode("utf-8"), stored, password):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    def _check(self, password: bytes, stored: bytes | None) -> bool:
        """In the worker: one bcrypt check (against the dummy hash for an unknown user)."""
        started = time.perf_counter()
        if stored is None:
            if self._dummy is None:
                self._make_dummy()
            assert self._dummy is not None
            stored = self._dummy
        try:
            return bcrypt.checkpw(password, stored)
        except ValueError:  # a malformed hash (refused at load) or password: no entry
            return False
        finally:
            self.stats.bcrypt_runs += 1
            self.stats.bcrypt_seconds += time.perf_counter() - started

    async def check(self, header: str | None) -> bool:
        """True if the ``Authorization`` header names a user and their password."""
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        if len(password) > MAX_PASSWORD_BYTES:
            return False
        stored = self._users.get(user)
        key = self._cache_key(user, stored if stored is not None else b"", password)
        if key in self._good:
            self.stats.cached += 1
            return True
        if key in self._bad:
            self.stats.cached += 1
            return False
        if self._waiting >= self.max_waiting:
            self.stats.refused_busy += 1
            return False
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(self._worker, self._check, password, stored)
        finally:
            self._waiting -= 1
        ok = ok and stored is not None
        (self._good if ok else self._bad).add(key)
        return ok


class RateLimit:
    """A token bucket: one request per ``interval`` seconds, bursts of ``burst``."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = max(burst, 1)
        self._tokens = float(self.burst)
        self._at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


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

    def replace_with(self, other: WebSecurity) -> None:
        """Take ``other``'s settings (a reload): requests from now on use them."""
        old = self.auth
        self.auth = other.auth
        self.public_paths = other.public_paths
        self.headers = other.headers
        self.allowed_sans = other.allowed_sans
        self.rate_limit = other.rate_limit
        if old is not None and old is not other.auth:
            old.close()


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
    "MAX_PASSWORD_BYTES",
    "MAX_WAITING",
    "REALM",
    "AuthStats",
    "BasicAuth",
    "RateLimit",
    "WebSecurity",
    "parse_basic",
    "peer_names",
]
