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


def test_records_claim_write_read_and_delete(cache):
    async def scenario():
        version, value = await cache.claim("user:a", "h", ttl=10)
        assert version and value is None
        assert await cache.claim("user:a", "h", ttl=10) == (version, None)  # the same record
        assert await cache.set_fields("user:a", version, {"h": b"hist", "r": b"answer"})
        assert await cache.get_field("user:a", "r") == b"answer"
        assert await cache.claim("user:a", "h", ttl=10) == (version, b"hist")
        assert await cache.claim("user:a", None, ttl=10) == (version, None)
        await cache.delete("user:a")
        assert await cache.get_field("user:a", "r") is None
        again, value = await cache.claim("user:a", "h", ttl=10)
        assert again != version and value is None  # a new record at a new version
        await cache.close()

    run(scenario())


def test_a_write_at_a_version_claimed_before_a_delete_is_refused(cache):
    """The stale-write race: computed from data read before an event (or an erasure) dropped
    the record, written after — it must be neither stored nor served, nor recreate the record."""

    async def scenario():
        version, _ = await cache.claim("user:b", "h", ttl=10)
        await cache.delete("user:b")
        assert not await cache.set_fields("user:b", version, {"r": b"stale"})
        assert await cache.get_field("user:b", "r") is None
        fresh, _ = await cache.claim("user:b", "h", ttl=10)
        assert not await cache.set_fields("user:b", version, {"r": b"stale"})
        assert await cache.get_field("user:b", "r") is None
        assert await cache.set_fields("user:b", fresh, {"r": b"fresh"})
        assert await cache.get_field("user:b", "r") == b"fresh"
        await cache.close()

    run(scenario())


def test_a_refused_write_leaves_no_key_in_redis(redis_url):
    import redis

    prefix = f"tmtest:{uuid.uuid4().hex[:8]}:"

    async def scenario():
        cache = TieredCache(
            RedisCache(redis_url, prefix=prefix, timeout=0.5), local_ttl=2, local_size=100
        )
        version, _ = await cache.claim("user:c", "h", ttl=60)
        await cache.delete("user:c")
        await cache.set_fields("user:c", version, {"h": b"history of c"})
        assert cache.local.live_keys() == []
        await cache.close()

    run(scenario())
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(prefix + "*")) == []


def test_records_in_redis_have_the_ttl_of_their_claim(redis_url):
    import redis

    prefix = f"tmtest:{uuid.uuid4().hex[:8]}:"

    async def scenario():
        cache = RedisCache(redis_url, prefix=prefix, timeout=0.5)
        version, _ = await cache.claim("user:d", None, ttl=60)
        assert await cache.set_fields("user:d", version, {"r": b"x"})
        await cache.close()

    run(scenario())
    client = redis.Redis.from_url(redis_url)
    assert client.hgetall(prefix + "user:d")[b"r"] == b"x"
    assert 0 < client.ttl(prefix + "user:d") <= 60
    client.delete(prefix + "user:d")


def test_local_cache_counts_every_field_of_a_record():
    async def scenario():
        cache = LocalCache(max_entries=10)
        version, _ = await cache.claim("user:e", None, ttl=10)
        assert await cache.set_fields("user:e", version, {f"f{i}": b"v" for i in range(5)})
        for i in range(5):
            await cache.set(f"k{i}", b"v", ttl=10)
        assert await cache.get_field("user:e", "f0") is None  # evicted: 6 + 5 entries > 10
        assert await cache.get("k4") == b"v"

    run(scenario())


def test_the_local_tier_forgets_a_deleted_record_at_once(redis_url):
    """Erasure in this worker drops its local copy; the shared tier holds nothing either."""

    async def scenario():
        shared = RedisCache(redis_url, prefix=f"tmtest:{uuid.uuid4().hex[:8]}:", timeout=0.5)
        cache = TieredCache(shared, local_ttl=60, local_size=100)
        version, _ = await cache.claim("user:f", "h", ttl=60)
        assert await cache.set_fields("user:f", version, {"h": b"hist", "r": b"answer"})
        assert cache.local.live_keys() == ["user:f"]
        await cache.delete("user:f")
        assert cache.local.live_keys() == []
        assert await cache.get_field("user:f", "r") is None
        await cache.close()

    run(scenario())


def test_a_value_read_while_this_worker_deletes_is_not_copied_locally(redis_url):
    """A read in flight when this worker drops a record must not copy the old value into its
    local tier, where it would outlive the delete."""

    async def scenario():
        shared = RedisCache(redis_url, prefix=f"tmtest:{uuid.uuid4().hex[:8]}:", timeout=0.5)
        writer = TieredCache(shared, local_ttl=60, local_size=100)
        version, _ = await writer.claim("user:g", None, ttl=60)
        assert await writer.set_fields("user:g", version, {"r": b"old"})
        cache = TieredCache(shared, local_ttl=60, local_size=100)  # a worker with a cold tier
        read, _ = await asyncio.gather(cache.get_field("user:g", "r"), cache.delete("user:g"))
        assert read == b"old"  # read before the delete reached Redis...
        assert cache.local.live_keys() == []  # ...and not kept past it
        assert await cache.get_field("user:g", "r") is None
        await cache.close()

    run(scenario())


def test_records_are_kept_in_the_outage_tier_while_redis_is_down():
    async def scenario():
        shared = RedisCache(f"redis://127.0.0.1:{_free_port()}/0", timeout=0.2, breaker_seconds=30)
        cache = TieredCache(shared, local_ttl=60, local_size=100)
        assert await cache.get_field("user:h", "r") is None
        assert cache.degraded
        version, _ = await cache.claim("user:h", "h", ttl=60)
        assert version is not None
        assert await cache.set_fields("user:h", version, {"h": b"hist", "r": b"answer"})
        assert await cache.get_field("user:h", "r") == b"answer"
        assert await cache.claim("user:h", "h", ttl=60) == (version, b"hist")
        assert cache.local.live_keys() == []  # never served without asking the shared tier
        await cache.delete("user:h")
        assert await cache.get_field("user:h", "r") is None
        await cache.close()

    run(scenario())
