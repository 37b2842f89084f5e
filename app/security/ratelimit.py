"""Rate limits per key (or client address) and scope, with the `limits` library.

Memory storage counts in each worker, with no per-request round trip (with N workers a client
gets up to N× the limit), in :class:`SlidingWindows`: the library's sliding-window-counter rule
on a dict (the library's memory storage started a timer thread every 10 ms under load, a fifth
of a cached request's CPU in a profile); Redis storage is exact across replicas at one round
trip a request, through the library.
A failing Redis lets requests through: a limiter outage must not become a service outage.

Failed authentications (no key, a wrong key, a bad webhook signature) are counted per client
address with the same limiter; an address past `TASTEMAKER_AUTH_FAILURE_LIMIT` is answered 429
before its key is even looked at, so keys cannot be guessed at full speed.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from app import metrics
from app.config import Settings
from app.errors import AppError

log = logging.getLogger(__name__)
# Past this many blocked addresses (or counted identities), expired ones are dropped (bounds the
# memory an attacker with many addresses can claim).
MAX_BLOCKED = 10_000


class SlidingWindows:
    """Sliding-window counters in this process's memory, as ``limits``' sliding window counter.

    Time is cut in windows of the limit's length; a hit is allowed while the current window's
    count plus the previous window's, weighted by the share of it still inside the sliding
    window, stays within the limit. Refused hits are not counted.
    """

    def __init__(self) -> None:
        # (scope, identity, amount, seconds) -> [window index, previous count, current count]
        self.counts: dict[tuple[str, str, int, int], list[int]] = {}

    def _entry(self, item: RateLimitItem, scope: str, identity: str, now: float) -> list[int]:
        seconds = item.get_expiry()
        index = int(now // seconds)
        key = (scope, identity, item.amount, seconds)
        entry = self.counts.get(key)
        if entry is None:
            if len(self.counts) > MAX_BLOCKED:
                self._sweep(now)
            entry = self.counts[key] = [index, 0, 0]
        elif entry[0] != index:
            previous = entry[2] if entry[0] == index - 1 else 0
            entry[:] = [index, previous, 0]
        return entry

    def _sweep(self, now: float) -> None:
        self.counts = {
            key: entry for key, entry in self.counts.items() if entry[0] >= int(now // key[3]) - 1
        }

    @staticmethod
    def _weighted(entry: list[int], seconds: int, now: float) -> float:
        inside = 1.0 - (now - entry[0] * seconds) / seconds
        return entry[1] * inside + entry[2]

    def hit(self, item: RateLimitItem, scope: str, identity: str) -> bool:
        """Count one request unless it would exceed the limit; whether it was allowed."""
        now = time.time()
        entry = self._entry(item, scope, identity, now)
        if math.floor(self._weighted(entry, item.get_expiry(), now)) + 1 > item.amount:
            return False
        entry[2] += 1
        return True

    def reset_at(self, item: RateLimitItem, scope: str, identity: str) -> float:
        """When the next hit will be allowed again (unix time)."""
        now = time.time()
        seconds = item.get_expiry()
        entry = self._entry(item, scope, identity, now)
        start = entry[0] * seconds
        room = item.amount - 1 - entry[2]
        if room < 0 or entry[1] == 0:
            return start + seconds
        # previous * (1 - elapsed / seconds) + current <= amount - 1, solved for elapsed.
        return start + min(seconds, max(0.0, seconds * (1 - room / entry[1])))


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
        self.local: SlidingWindows | None = None
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
            self.local = SlidingWindows()
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
            reset_at = await self._reset_at(item, scope, identity)
        except StorageError:
            reset_at = time.time() + item.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        if scope == "auth_failure":
            if len(self._blocked) > MAX_BLOCKED:
                now = time.time()
                self._blocked = {k: v for k, v in self._blocked.items() if v > now}
            self._blocked[identity] = time.time() + retry_after
        raise self._limited(item, retry_after, what)

    async def _reset_at(self, item: RateLimitItem, scope: str, identity: str) -> float:
        if self.local is not None:
            return self.local.reset_at(item, scope, identity)
        assert self.limiter is not None
        return (await self.limiter.get_window_stats(item, scope, identity)).reset_time

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
