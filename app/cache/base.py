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

import contextlib
import logging
import os
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


class _Record:
    """A record in process memory: its version and its fields, each with the version it was
    stored at (None when copied from the shared tier without one)."""

    __slots__ = ("fields", "version")

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.fields: dict[str, tuple[bytes, str | None]] = {}


def _size(value: bytes | int | _Record) -> int:
    return 1 + len(value.fields) if isinstance(value, _Record) else 1


class LocalCache:
    """A bounded in-process LRU with per-entry TTLs (a record counts one entry per field)."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes | int | _Record]] = OrderedDict()
        self._entries = 0

    @property
    def degraded(self) -> bool:
        """An in-process cache is never degraded."""
        return False

    def _get(self, key: str) -> bytes | int | _Record | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._pop(key)
            return None
        self._data.move_to_end(key)
        return value

    def _pop(self, key: str) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._entries -= _size(entry[1])

    def _put(self, key: str, value: bytes | int | _Record, ttl: float) -> None:
        self._pop(key)
        self._data[key] = (time.monotonic() + ttl, value)
        self._entries += _size(value)
        self._evict()

    def _evict(self) -> None:
        while self._entries > self.max_entries and self._data:
            _, (_, value) = self._data.popitem(last=False)
            self._entries -= _size(value)

    def _record(self, key: str) -> _Record | None:
        value = self._get(key)
        return value if isinstance(value, _Record) else None

    def _store(self, record: _Record, values: dict[str, bytes], version: str | None) -> None:
        before = len(record.fields)
        record.fields.update((field, (value, version)) for field, value in values.items())
        self._entries += len(record.fields) - before
        self._evict()

    def live_keys(self) -> list[str]:
        """The keys held now, expired ones aside (for inspection)."""
        now = time.monotonic()
        return [key for key, (expires_at, _) in self._data.items() if expires_at >= now]

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, or None."""
        value = self._get(key)
        if isinstance(value, _Record):
            return None
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
        """Remove keys (records with every field) if present."""
        for key in keys:
            self._pop(key)

    async def get_field(self, key: str, field: str) -> bytes | None:
        """A field of the record under `key`, or None."""
        record = self._record(key)
        entry = record.fields.get(field) if record is not None else None
        return entry[0] if entry is not None else None

    async def claim(
        self, key: str, field: str | None, ttl: float
    ) -> tuple[str | None, bytes | None]:
        """The record's version (creating the record for `ttl` seconds) and `field` at it."""
        record = self._record(key)
        if record is None:
            record = _Record(None)
            self._put(key, record, ttl)
        if record.version is None:
            record.version = new_version()
        return record.version, self._at_version(record, field)

    def claimed(self, key: str, field: str | None) -> tuple[str | None, bytes | None]:
        """Like :meth:`claim` when the record has a version and `field` at it; else (None, None)."""
        record = self._record(key)
        if record is None or record.version is None:
            return None, None
        value = self._at_version(record, field)
        if field is not None and value is None:
            return None, None
        return record.version, value

    @staticmethod
    def _at_version(record: _Record, field: str | None) -> bytes | None:
        entry = record.fields.get(field) if field is not None else None
        return entry[0] if entry is not None and entry[1] == record.version else None

    async def set_fields(self, key: str, version: str, values: dict[str, bytes]) -> bool:
        """Write fields if the record still holds `version`; whether they were written."""
        record = self._record(key)
        if record is None or record.version != version:
            return False
        self._store(record, values, version)
        return True

    def remember(self, key: str, version: str | None, values: dict[str, bytes], ttl: float) -> None:
        """Copy fields read from or written to a shared tier, at `version` when it is known.

        A record created here lives `ttl` seconds from now; adding to one never extends it, so
        nothing copied stays longer than `ttl` after its record was first copied.
        """
        record = self._record(key)
        if record is None:
            record = _Record(version)
            self._put(key, record, ttl)
        elif version is not None:
            record.version = version
        self._store(record, values, version)

    async def incr(self, key: str, ttl: float) -> int | None:
        """Increment a counter and refresh its TTL."""
        current = self._get(key)
        if isinstance(current, _Record):
            current = None
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
        self._entries = 0


# INCR and PEXPIRE every key; ARGV[1] is the TTL in milliseconds.
_INCR_MANY = """
for _, key in ipairs(KEYS) do
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS
"""

# The record's version, creating the record with ARGV[1] and a TTL of ARGV[2] ms when missing;
# and the field ARGV[3] (none when empty).
_CLAIM = """
local version = redis.call('HGET', KEYS[1], 'v')
if not version then
    version = ARGV[1]
    redis.call('HSET', KEYS[1], 'v', version)
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] == '' then
    return {version}
end
return {version, redis.call('HGET', KEYS[1], ARGV[3])}
"""

# HSET ARGV[2..] (field, value pairs) only if the record still holds version ARGV[1]. The TTL set
# at creation stays: a record lives at most that long, whatever is written to it.
_SET_FIELDS = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
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
        self._claim = self._client.register_script(_CLAIM)
        self._set_fields = self._client.register_script(_SET_FIELDS)

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
        """Remove keys (records with every field) in one command; a failure opens the breaker.

        UNLINK: the keys go at once, their memory is freed off Redis's main thread.
        """
        if not keys or self.degraded:
            return
        try:
            await self._client.unlink(*(self.prefix + k for k in keys))
        except (RedisError, OSError) as exc:
            await self._failed(exc)

    async def get_field(self, key: str, field: str) -> bytes | None:
        """A field of the record under `key` (one HGET), or None on a miss or a failure."""
        if self.degraded:
            return None
        try:
            return await self._client.hget(self.prefix + key, field)
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return None

    async def claim(
        self, key: str, field: str | None, ttl: float
    ) -> tuple[str | None, bytes | None]:
        """The record's version (creating the record with a TTL) and `field`, in one command.

        (None, None) when Redis is down: nothing can then be written.
        """
        if self.degraded:
            return None, None
        try:
            reply = await self._claim(
                keys=[self.prefix + key],
                args=[new_version(), max(1, int(ttl * 1000)), field or ""],
            )
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return None, None
        return reply[0].decode(), reply[1] if len(reply) > 1 else None

    async def set_fields(self, key: str, version: str, values: dict[str, bytes]) -> bool:
        """Write fields in one command if the record still holds `version`; whether it did."""
        if not values or self.degraded:
            return False
        args: list[str | bytes] = [version]
        for field, value in values.items():
            args += [field, value]
        try:
            return bool(await self._set_fields(keys=[self.prefix + key], args=args))
        except (RedisError, OSError) as exc:
            await self._failed(exc)
            return False

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
    served from process memory for `local_ttl` seconds; this worker's own deletes reach it at
    once, so the TTL bounds staleness only for what other workers changed.

    While the shared tier is down, records are kept in a separate `outage` tier (also for
    `local_ttl` seconds), read only while it is down: a request that reads it checks the shared
    tier first, so it learns (and says) that the shared tier is still down.
    """

    def __init__(self, shared: Cache, *, local_ttl: float, local_size: int) -> None:
        self.shared = shared
        self.local = LocalCache(max_entries=max(local_size, 1))
        self.outage = LocalCache(max_entries=max(local_size, 1))
        self.local_ttl = local_ttl
        # Counts this worker's deletes: a value fetched from the shared tier while one ran may
        # predate it, and is then not copied into the local tier.
        self._deletes = 0

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
        """Delete from both tiers (this worker's local tier at once; others' expire)."""
        self._deletes += 1
        await self.local.delete(*keys)
        await self.outage.delete(*keys)
        await self.shared.delete(*keys)

    async def get_field(self, key: str, field: str) -> bytes | None:
        """Local tier first, then the shared one (one round trip), copied locally."""
        if self.local_ttl > 0:
            value = await self.local.get_field(key, field)
            if value is not None:
                return value
        deletes = self._deletes
        value = await self.shared.get_field(key, field)
        if value is None:
            if self.local_ttl > 0 and self.shared.degraded:
                return await self.outage.get_field(key, field)
            return None
        if self.local_ttl > 0 and deletes == self._deletes:
            self.local.remember(key, None, {field: value}, self.local_ttl)
        return value

    async def claim(
        self, key: str, field: str | None, ttl: float
    ) -> tuple[str | None, bytes | None]:
        """The version this worker last saw for the record (with `field` at it), else the shared
        tier's; the outage tier's while the shared one is down.

        A version up to `local_ttl` old is safe: the shared tier refuses writes at a stale one.
        """
        if self.local_ttl > 0:
            version, value = self.local.claimed(key, field)
            if version is not None:
                return version, value
        deletes = self._deletes
        version, value = await self.shared.claim(key, field, ttl)
        if version is None:
            if self.local_ttl > 0 and self.shared.degraded:
                return await self.outage.claim(key, field, self.local_ttl)
            return None, None
        if self.local_ttl > 0 and deletes == self._deletes:
            fields = {field: value} if field is not None and value is not None else {}
            self.local.remember(key, version, fields, self.local_ttl)
        return version, value

    async def set_fields(self, key: str, version: str, values: dict[str, bytes]) -> bool:
        """Write the shared tier (if still at `version`), then this worker's copy."""
        deletes = self._deletes
        written = await self.shared.set_fields(key, version, values)
        if self.local_ttl <= 0:
            return written
        if self.shared.degraded:
            return await self.outage.set_fields(key, version, values)
        if written and deletes == self._deletes:
            self.local.remember(key, version, values, self.local_ttl)
        return written

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
        """Close every tier."""
        await self.local.close()
        await self.outage.close()
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
