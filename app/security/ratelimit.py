"""Rate limits per key (or client address) and scope, with the `limits` library.

Memory storage counts in each worker, with no per-request round trip (with N workers a client
gets up to N× the limit), through the library's synchronous API (nothing to wait for: its
asynchronous one cost twice the CPU); Redis storage is exact across replicas at one round trip a request.
A failing Redis lets requests through: a limiter outage must not become a service outage.

Failed authentications (no key, a wrong key, a bad webhook signature) are counted per client
address with the same limiter; an address past `TASTEMAKER_AUTH_FAILURE_LIMIT` is answered 429
before its key is even looked at, so keys cannot be guessed at full speed.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, WindowStats, parse, storage, strategies
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from app import metrics
from app.config import Settings
from app.errors import AppError

log = logging.getLogger(__name__)
# Past this many blocked addresses, expired ones are dropped (bounds the memory an attacker
# with many addresses can claim).
MAX_BLOCKED = 10_000


class RateLimited(AppError):
    """Too many requests in the current window."""

    status_code = 429
    code = "rate_limited"


class Limiter:
    """Counts requests per identity and scope, and failed authentications per client address."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[str, RateLimitItem] = {
            scope: parse(limit) for scope, limit in settings.rate_limits.items()
        }
        self.failures = parse(settings.auth_failure_limit)
        self.limiter: SlidingWindowCounterRateLimiter | None = None
        self.local: strategies.SlidingWindowCounterRateLimiter | None = None
        if settings.rate_limit_storage == "redis" and settings.redis_url:
            redis = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=settings.cache_prefix + "limits",
                wrap_exceptions=True,
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
            self.limiter = SlidingWindowCounterRateLimiter(redis)
        else:
            self.local = strategies.SlidingWindowCounterRateLimiter(storage.MemoryStorage())
        # Addresses past their failure limit, with the unix time their window frees up: the
        # check every request makes is one dict lookup, whatever the storage.
        self._blocked: dict[str, float] = {}
        self._failures_what = f"the limit of {self.failures} failed authentications per address"

    async def hit(self, identity: str, scope: str) -> None:
        """Count a request of `identity` (a key's name or a client address) against `scope`."""
        item = self.items.get(scope)
        if item is None:
            return
        if not await self._hit(item, scope, identity):
            metrics.RATE_LIMITED.labels(scope).inc()
            await self._refuse(item, scope, identity, f"rate limit of {item} for scope {scope!r}")

    def check_failures(self, client: str) -> None:
        """Refuse (429) an address past its failed-authentication limit, before any key check."""
        until = self._blocked.get(client)
        if until is None:
            return
        retry_after = math.ceil(until - time.time())
        if retry_after <= 0:
            self._blocked.pop(client, None)
            return
        metrics.RATE_LIMITED.labels("auth_failures").inc()
        raise self._limited(self.failures, retry_after, self._failures_what)

    async def failed(self, client: str) -> None:
        """Count a failed authentication of `client`; past the limit, refuse it (429) for a while."""
        if await self._hit(self.failures, "auth_failure", client):
            return
        metrics.RATE_LIMITED.labels("auth_failures").inc()
        await self._refuse(self.failures, "auth_failure", client, self._failures_what)

    async def _hit(self, item: RateLimitItem, scope: str, identity: str) -> bool:
        if self.local is not None:
            return self.local.hit(item, scope, identity)
        try:
            assert self.limiter is not None
            return await self.limiter.hit(item, scope, identity)
        except StorageError as exc:
            log.warning("rate limit storage unavailable, letting the request through: %s", exc)
            return True

    async def _refuse(self, item: RateLimitItem, scope: str, identity: str, what: str) -> None:
        try:
            stats = await self._window(item, scope, identity)
            reset_at = stats.reset_time
        except StorageError:
            reset_at = time.time() + item.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        if scope == "auth_failure":
            if len(self._blocked) > MAX_BLOCKED:
                now = time.time()
                self._blocked = {k: v for k, v in self._blocked.items() if v > now}
            self._blocked[identity] = time.time() + retry_after
        raise self._limited(item, retry_after, what)

    async def _window(self, item: RateLimitItem, scope: str, identity: str) -> WindowStats:
        if self.local is not None:
            return self.local.get_window_stats(item, scope, identity)
        assert self.limiter is not None
        return await self.limiter.get_window_stats(item, scope, identity)

    @staticmethod
    def _limited(item: RateLimitItem, retry_after: int, what: str) -> RateLimited:
        return RateLimited(
            f"{what} exceeded; retry in {retry_after}s",
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(item.amount),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry_after),
            },
        )
