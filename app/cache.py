"""The cache: Redis in production, an in-process dict by default, a small local tier in front.

Every call degrades instead of raising: a Redis error or timeout opens a circuit breaker for a
few seconds, during which calls return "miss" at once, so a dead Redis costs no per-request
timeout. Callers read `degraded` to say so in their answers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.config import Settings

log = logging.getLogger(__name__)


class Cache(Protocol):
    """What the service needs from a cache; implementations never raise to callers."""

    @property
    def degraded(self) -> bool: ...

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int | None: ...

    async def incr_many(self, keys: list[str], ttl: float) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class LocalCache:
    """A bounded in-process LRU with per-entry TTLs."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes | int]] = OrderedDict()

    @property
    def degraded(self) -> bool:
        """An in-process cache is never degraded."""
        return False

    def _get(self, key: str) -> bytes | int | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        return value

    def _put(self, key: str, value: bytes | int, ttl: float) -> None:
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, or None."""
        value = self._get(key)
        if isinstance(value, int):
            return str(value).encode()
        return value

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values under `keys`, None where missing."""
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds."""
        self._put(key, value, ttl)

    async def delete(self, *keys: str) -> None:
        """Remove keys if present."""
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int | None:
        """Increment a counter and refresh its TTL."""
        current = self._get(key)
        value = (int(current) if current is not None else 0) + 1
        self._put(key, value, ttl)
        return value

    async def incr_many(self, keys: list[str], ttl: float) -> None:
        """Increment several counters."""
        for key in keys:
            await self.incr(key, ttl)

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def close(self) -> None:
        """Drop everything."""
        self._data.clear()


# INCR and PEXPIRE every key; ARGV[1] is the TTL in milliseconds.
_INCR_MANY = """
for _, key in ipairs(KEYS) do
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""


class RedisCache:
    """Redis behind a circuit breaker: failures become misses, never exceptions."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.05,
        breaker_seconds: float = 5.0,
        prefix: str = "tm:",
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.breaker_seconds = breaker_seconds
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=0,
        )
        self._open_until = 0.0
        self._incr_many = self._client.register_script(_INCR_MANY)

    @property
    def degraded(self) -> bool:
        """True while the breaker is open after a Redis failure."""
        return self._open_until > time.monotonic()

    async def _failed(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning("redis unavailable, degrading for %.0fs: %s", self.breaker_seconds, exc)
        self._open_until = time.monotonic() + self.breaker_seconds
        # Pooled connections to a crashed Redis are dead; without this the first calls after
        # it returns pick them up, fail, and reopen the breaker for another window.
        with contextlib.suppress(RedisError, OSError):
            await self._client.connection_pool.disconnect(inuse_connections=True)

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, or None on a miss or a failure."""
        if self.degraded:
            return None
        try:
            return await self._client.get(self.prefix + key)
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return None

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values under `keys` in one round trip; all None on a failure."""
        if self.degraded:
            return [None] * len(keys)
        try:
            return list(await self._client.mget([self.prefix + k for k in keys]))
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return [None] * len(keys)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` with a TTL (everything in Redis expires)."""
        if self.degraded:
            return
        try:
            await self._client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            await self._failed(exc)

    async def delete(self, *keys: str) -> None:
        """Remove keys; a failure is logged and the breaker opens."""
        if not keys or self.degraded:
            return
        try:
            await self._client.delete(*(self.prefix + k for k in keys))
        except (RedisError, OSError) as exc:
            await self._failed(exc)

    async def incr(self, key: str, ttl: float) -> int | None:
        """Increment a counter and refresh its TTL; None when Redis is down."""
        if self.degraded:
            return None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(self.prefix + key)
                pipe.pexpire(self.prefix + key, max(1, int(ttl * 1000)))
                value, _ = await pipe.execute()
            return int(value)
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return None

    async def incr_many(self, keys: list[str], ttl: float) -> None:
        """Increment several counters and refresh their TTLs in one command (a Lua script).

        A pipeline of INCR + PEXPIRE per key cost a third of a 500-event ingest in redis-py's
        command packing alone; the script sends the keys once.
        """
        if not keys or self.degraded:
            return
        try:
            await self._incr_many(
                keys=[self.prefix + k for k in keys], args=[max(1, int(ttl * 1000))]
            )
        except (RedisError, OSError) as exc:
            await self._failed(exc)

    async def ping(self) -> bool:
        """Whether Redis answers now (bypasses the breaker, closes it on success)."""
        try:
            ok = bool(await self._client.ping())
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return False
        self._open_until = 0.0
        return ok

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class TieredCache:
    """A small short-lived per-worker tier in front of a shared cache.

    A Redis round trip costs more CPU than computing an item-CF answer, so hot keys are
    served from process memory for `local_ttl` seconds; keys embed versions, so a short TTL
    bounds staleness only for readers in other workers.
    """

    def __init__(self, shared: Cache, *, local_ttl: float, local_size: int) -> None:
        self.shared = shared
        self.local = LocalCache(max_entries=max(local_size, 1))
        self.local_ttl = local_ttl

    @property
    def degraded(self) -> bool:
        """Whether the shared tier is failing."""
        return self.shared.degraded

    async def get(self, key: str) -> bytes | None:
        """Local tier first, then the shared one (filling the local tier)."""
        if self.local_ttl > 0:
            value = await self.local.get(key)
            if value is not None:
                return value
        value = await self.shared.get(key)
        if value is not None and self.local_ttl > 0:
            await self.local.set(key, value, self.local_ttl)
        return value

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Local tier first; whatever it lacks from the shared tier in one round trip."""
        values = await self.local.get_many(keys) if self.local_ttl > 0 else [None] * len(keys)
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            fetched = await self.shared.get_many([keys[i] for i in missing])
            for i, value in zip(missing, fetched, strict=True):
                values[i] = value
                if value is not None and self.local_ttl > 0:
                    await self.local.set(keys[i], value, self.local_ttl)
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Write both tiers."""
        if self.local_ttl > 0:
            await self.local.set(key, value, min(ttl, self.local_ttl))
        await self.shared.set(key, value, ttl)

    async def delete(self, *keys: str) -> None:
        """Delete from both tiers."""
        await self.local.delete(*keys)
        await self.shared.delete(*keys)

    async def incr(self, key: str, ttl: float) -> int | None:
        """Counters live in the shared tier only; the local copy is dropped."""
        await self.local.delete(key)
        return await self.shared.incr(key, ttl)

    async def incr_many(self, keys: list[str], ttl: float) -> None:
        """Counters live in the shared tier only; the local copies are dropped."""
        await self.local.delete(*keys)
        await self.shared.incr_many(keys, ttl)

    async def ping(self) -> bool:
        """Whether the shared tier answers."""
        return await self.shared.ping()

    async def close(self) -> None:
        """Close both tiers."""
        await self.local.close()
        await self.shared.close()


def make_cache(settings: Settings) -> Cache:
    """Redis with a local tier when a URL is set, else the in-process cache alone."""
    if not settings.redis_url:
        return LocalCache(max_entries=max(settings.local_cache_size * 10, 1000))
    shared = RedisCache(
        settings.redis_url, timeout=settings.redis_timeout_seconds, prefix=settings.cache_prefix
    )
    return TieredCache(
        shared, local_ttl=settings.local_cache_ttl_seconds, local_size=settings.local_cache_size
    )
