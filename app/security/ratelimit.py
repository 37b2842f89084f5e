"""Rate limits per key (or client address) and scope, with the `limits` library.

Memory storage counts in each worker, with no per-request round trip (with N workers a client
gets up to N× the limit); Redis storage is exact across replicas at one round trip a request.
A failing Redis lets requests through: a limiter outage must not become a service outage.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from app.config import Settings
from app.errors import AppError
from app.security.keys import Principal

log = logging.getLogger(__name__)


class RateLimited(AppError):
    """Too many requests in the current window."""

    status_code = 429
    code = "rate_limited"


class Limiter:
    """Checks and counts one request of a principal against its scope's limit."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[str, RateLimitItem] = {
            scope: parse(limit) for scope, limit in settings.rate_limits.items()
        }
        storage: Storage
        if settings.rate_limit_storage == "redis" and settings.redis_url:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=settings.cache_prefix + "limits",
                wrap_exceptions=True,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
        else:
            storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    async def hit(self, principal: Principal, scope: str) -> None:
        """Count a request; raise RateLimited with Retry-After and RateLimit-* headers."""
        item = self.items.get(scope)
        if item is None:
            return
        try:
            allowed = await self.limiter.hit(item, scope, principal.name)
            if allowed:
                return
            stats = await self.limiter.get_window_stats(item, scope, principal.name)
        except StorageError as exc:
            log.warning("rate limit storage unavailable, letting the request through: %s", exc)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"rate limit of {item} for scope {scope!r} exceeded; retry in {retry_after}s",
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(item.amount),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry_after),
            },
        )
