"""A small short-lived per-worker tier in front of a shared cache, and the factory that picks
the cache the settings ask for."""

from __future__ import annotations

from app.cache.base import Cache
from app.cache.local import LocalCache
from app.cache.redis_cache import RedisCache
from app.config import Settings


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
        values: list[bytes | None] = (
            await self.local.get_many(keys) if self.local_ttl > 0 else [None] * len(keys)
        )
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
