"""Both cache implementations against the same contract; a dead Redis degrades, never raises."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from app.cache import LocalCache, RedisCache, TieredCache


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["local", "redis", "tiered"])
def cache(request: pytest.FixtureRequest):
    if request.param == "local":
        return LocalCache(max_entries=100)
    url = request.getfixturevalue("redis_url")
    redis = RedisCache(url, timeout=0.5, prefix=f"tmtest:{uuid.uuid4().hex[:8]}:")
    if request.param == "redis":
        return redis
    return TieredCache(redis, local_ttl=0.2, local_size=100)


def run(coro):
    return asyncio.run(coro)


def test_get_set_delete(cache):
    async def scenario():
        assert await cache.get("k") is None
        await cache.set("k", b"v", ttl=10)
        assert await cache.get("k") == b"v"
        await cache.delete("k")
        assert await cache.get("k") is None
        assert await cache.ping()
        await cache.close()

    run(scenario())


def test_entries_expire(cache):
    async def scenario():
        await cache.set("short", b"v", ttl=0.3)
        assert await cache.get("short") == b"v"
        await asyncio.sleep(0.5)
        assert await cache.get("short") is None
        await cache.close()

    run(scenario())


def test_counters(cache):
    async def scenario():
        assert await cache.incr("c", ttl=10) == 1
        assert await cache.incr("c", ttl=10) == 2
        assert await cache.get("c") == b"2"
        await cache.close()

    run(scenario())


def test_everything_in_redis_has_a_ttl(redis_url):
    import redis

    prefix = f"tmtest:{uuid.uuid4().hex[:8]}:"

    async def scenario():
        cache = RedisCache(redis_url, prefix=prefix, timeout=0.5)
        await cache.set("a", b"1", ttl=60)
        await cache.incr("b", ttl=60)
        await cache.close()

    run(scenario())
    client = redis.Redis.from_url(redis_url)
    keys = client.keys(prefix + "*")
    assert len(keys) == 2
    assert all(0 < client.ttl(k) <= 60 for k in keys)
    client.delete(*keys)


def test_local_cache_is_bounded():
    async def scenario():
        cache = LocalCache(max_entries=3)
        for i in range(10):
            await cache.set(f"k{i}", b"v", ttl=10)
        assert [await cache.get(f"k{i}") for i in range(7)] == [None] * 7
        assert await cache.get("k9") == b"v"

    run(scenario())


def test_dead_redis_opens_the_breaker_and_costs_no_timeouts():
    port = _free_port()  # nothing listens here

    async def scenario():
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.2, breaker_seconds=30)
        assert await cache.get("k") is None
        assert cache.degraded
        started = time.perf_counter()
        for _ in range(100):
            assert await cache.get("k") is None
            await cache.set("k", b"v", ttl=1)
            assert await cache.incr("c", ttl=1) is None
        assert time.perf_counter() - started < 0.5  # short-circuited, not 300 timeouts
        assert not await cache.ping()
        await cache.close()

    run(scenario())


def test_get_many_in_one_call(cache):
    async def scenario():
        await cache.set("a", b"1", ttl=10)
        await cache.set("c", b"3", ttl=10)
        assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
        assert await cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]  # local tier warm
        await cache.close()

    run(scenario())


def test_incr_many(cache):
    async def scenario():
        await cache.incr("x", ttl=10)
        await cache.incr_many(["x", "y"], ttl=10)
        assert await cache.get_many(["x", "y"]) == [b"2", b"1"]
        await cache.close()

    run(scenario())
