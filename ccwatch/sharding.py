"""Sharding: N replicas of one config, each polling its share of the jobs.

The unit of assignment is one subject of one target (an ECE entry point, a Genesys
customer or contact key, a GMS probe): all endpoints of a subject stay together, so an
entry point's state sets and alerts are never split. A target whose jobs have no subject
(Context Service, Alvaria: one token for the whole target) is one unit; a large ECE
target splits across shards.

A unit's shard is the jump consistent hash (Lamping and Veach, 2014) of a stable 64-bit
key: the first 8 bytes of the SHA-256 of the target name and the subject's label pairs.
Every process on every machine and Python version agrees (Python's ``hash()`` is salted
per process), and growing from N to N+1 shards moves about 1/(N+1) of the units.

Where the shard comes from, first found wins: ``--shard``/``--total-shards``, then the
environment (``CCWATCH_SHARDING__SHARD``, ``CCWATCH_SHARDING__TOTAL_SHARDS``), then the
config file's ``sharding:``. The shard is an ordinal (``2``) or a StatefulSet pod name
whose trailing ``-<ordinal>`` is the shard (``ccwatch-2``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ccwatch.errors import ConfigError

ENV_SHARD: Final = "CCWATCH_SHARDING__SHARD"
ENV_TOTAL: Final = "CCWATCH_SHARDING__TOTAL_SHARDS"
#: The most shards ccwatch accepts.
MAX_SHARDS: Final = 10_000
_ORDINAL = re.compile(r"^(?:.*-)?(\d{1,9})$")
_JUMP_MULTIPLIER: Final = 2862933555777941757
_MASK: Final = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket, in ``0 .. buckets - 1``, of a 64-bit ``key``."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    key &= _MASK
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def unit_key(target: str, subject: Mapping[str, str]) -> int:
    """The stable 64-bit key of one subject of one target (the target alone when the
    subject is empty)."""
    digest = hashlib.sha256(target.encode("utf-8"))
    for name, value in sorted(subject.items()):
        digest.update(b"\0" + name.encode("utf-8") + b"=" + value.encode("utf-8"))
    return int.from_bytes(digest.digest()[:8], "big")


def parse_shard(value: int | str, where: str) -> int:
    """An ordinal, or the trailing ordinal of a pod name (``ccwatch-2`` -> 2)."""
    if isinstance(value, bool):
        raise ConfigError([f"{where}: expected a shard number or a pod name, got {value!r}"])
    if isinstance(value, int):
        return value
    match = _ORDINAL.match(value.strip())
    if match is None:
        raise ConfigError(
            [
                f"{where}: {value[:80]!r} is neither a shard number nor a pod name ending "
                "in -<ordinal> (like ccwatch-2)"
            ]
        )
    return int(match.group(1))


def _total(value: int | str, where: str) -> int:
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise ConfigError([f"{where}: expected a whole number of shards, got {value[:40]!r}"])
        value = int(value)
    if isinstance(value, bool) or not 1 <= value <= MAX_SHARDS:
        raise ConfigError([f"{where}: total shards must be 1 to {MAX_SHARDS}, got {value!r}"])
    return value


@dataclass(frozen=True)
class Sharding:
    """This process's shard ``shard`` of ``total``."""

    shard: int = 0
    total: int = 1

    def owns(self, target: str, subject: Mapping[str, str]) -> bool:
        """Whether this shard polls that subject of that target."""
        return self.total == 1 or jump_hash(unit_key(target, subject), self.total) == self.shard

    def __str__(self) -> str:
        return f"shard {self.shard} of {self.total}"


def resolve(
    file_shard: int | str,
    file_total: int,
    *,
    flag_shard: str | None = None,
    flag_total: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Sharding:
    """The shard from the flags, else the environment, else the config file; a
    ConfigError naming where the bad value came from."""
    env = os.environ if environ is None else environ
    if flag_shard is not None:
        shard_value: int | str = flag_shard
        shard_where = "--shard"
    elif env.get(ENV_SHARD):
        shard_value, shard_where = env[ENV_SHARD], ENV_SHARD
    else:
        shard_value, shard_where = file_shard, "sharding.shard"
    if flag_total is not None:
        total = _total(flag_total, "--total-shards")
        total_where = "--total-shards"
    elif env.get(ENV_TOTAL):
        total = _total(env[ENV_TOTAL], ENV_TOTAL)
        total_where = ENV_TOTAL
    else:
        total = _total(file_total, "sharding.total_shards")
        total_where = "sharding.total_shards"
    shard = parse_shard(shard_value, shard_where)
    if not 0 <= shard < total:
        raise ConfigError(
            [
                f"{shard_where}: shard {shard} is outside 0..{total - 1} "
                f"({total} shards, from {total_where})"
            ]
        )
    return Sharding(shard, total)


__all__ = [
    "ENV_SHARD",
    "ENV_TOTAL",
    "MAX_SHARDS",
    "Sharding",
    "jump_hash",
    "parse_shard",
    "resolve",
    "unit_key",
]
