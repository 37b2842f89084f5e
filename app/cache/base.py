"""The cache: Redis in production, an in-process dict by default, a small local tier in front.

Every call degrades instead of raising: a Redis error or timeout opens a circuit breaker for a
few seconds, during which calls return "miss" at once, so a dead Redis costs no per-request
timeout. Callers read `degraded` to say so in their answers.

Besides plain keys the cache holds *records*: a key whose fields are all valid for one version
(a random token, a Redis hash in Redis). :meth:`Cache.claim` reads the version, creating the
record (and its TTL) when missing; :meth:`Cache.set_fields` writes only while the record still
holds the version the writer claimed; :meth:`Cache.delete` drops a record with every field.
So a value computed before a delete is never written after it, and a field read back is
always current without comparing versions on the read path.
"""

from __future__ import annotations

import os
from typing import Protocol


class Cache(Protocol):
    """What the service needs from a cache; implementations never raise to callers."""

    @property
    def degraded(self) -> bool: ...

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def get_field(self, key: str, field: str) -> bytes | None: ...

    async def claim(
        self, key: str, field: str | None, ttl: float
    ) -> tuple[str | None, bytes | None]: ...

    async def set_fields(self, key: str, version: str, values: dict[str, bytes]) -> bool: ...

    async def incr(self, key: str, ttl: float) -> int | None: ...

    async def incr_many(self, keys: list[str], ttl: float) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def new_version() -> str:
    """A fresh record version: random, so a record created again never repeats an old one."""
    return os.urandom(8).hex()
