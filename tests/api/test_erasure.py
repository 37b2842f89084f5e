"""Erasure that erases: after DELETE /users/{id} no cache entry names the user, in Redis or in
any worker's memory, and every worker drops them from its bundle look-ups."""

from __future__ import annotations

import socket

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.test_serving import _buyer, trained  # noqa: F401 - `trained` is a fixture
from tests.conftest import override


def _keys_naming(client: TestClient, user_id: str) -> list[str]:
    """Every cache key that contains the user id: this worker's memory and, with Redis, Redis
    itself (SCAN is fine in a test; the service never scans)."""
    cache = client.app.state.cache
    in_process = [cache.local, cache.outage] if hasattr(cache, "local") else [cache]
    keys = [key for tier in in_process for key in tier.live_keys() if user_id in key]
    settings = client.app.state.settings
    if settings.redis_url:
        server = redis.Redis.from_url(settings.redis_url)
        keys += [
            key.decode()
            for key in server.scan_iter(match=settings.cache_prefix + "*", count=1000)
            if user_id.encode() in key
        ]
        server.close()
    return keys


def _members(client: TestClient, segment: int) -> list[str]:
    members: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/segments/{segment}/users", params=params).json()
        members += page["users"]
        if not (cursor := page["next_cursor"]):
            return members


def test_erasure_drops_every_cached_entry_naming_the_user(client):
    user, other = "erase-me-7", "keep-me-7"
    assert client.put(f"/users/{user}", json={"attributes": {"country": "FR"}}).status_code == 200
    events = [
        {"user_id": u, "item_id": f"i{i}", "type": "purchase", "value": 2.0}
        for u in (user, other)
        for i in range(5)
    ]
    assert client.post("/events", json={"events": events}).json()["accepted"] == 10
    for params in ({}, {"n": 3}, {"exclude_seen": False}):  # three answers, one history
        assert client.get(f"/recommend/{user}", params=params).status_code == 200
    assert client.get(f"/recommend/{other}").status_code == 200
    assert _keys_naming(client, user)  # what the check below looks at is there

    assert client.delete(f"/users/{user}").status_code == 204

    assert _keys_naming(client, user) == []
    assert _keys_naming(client, other)  # only the erased user's entries went


def test_erasure_reaches_the_cache_and_bundle_of_every_worker(trained, settings):  # noqa: F811
    user = _buyer()
    with TestClient(create_app(settings)) as other_worker:
        first = {}
        for worker in (trained, other_worker):  # both workers have the user's answers cached
            first[worker] = worker.get(f"/recommend/{user}").json()
            assert first[worker]["source"] == "personalized"
            segment = worker.get(f"/segment/{user}").json()["segment"]["id"]
        assert _keys_naming(trained, user) and _keys_naming(other_worker, user)
        assert user in _members(other_worker, segment)

        assert trained.delete(f"/users/{user}").status_code == 204

        # The worker that erased: no entry anywhere, no look-up, at once.
        assert _keys_naming(trained, user) == []
        assert trained.app.state.registry.current.recommender.user_index(user) is None
        # The other worker, at its next poll of the store (run here rather than waited for).
        registry = other_worker.app.state.registry
        other_worker.portal.call(registry.refresh)
        assert _keys_naming(other_worker, user) == []
        assert registry.current.recommender.user_index(user) is None
        assert user not in _members(other_worker, segment)
        assert other_worker.get(f"/recommend/{user}").json()["source"] == "cold_start"
        assert other_worker.get(f"/segment/{user}").status_code == 404

    # A worker started after the erasure never serves the user from the bundle.
    with TestClient(create_app(settings)) as late_worker:
        assert late_worker.app.state.registry.current.recommender.user_index(user) is None
        assert user not in _members(late_worker, segment)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_erasure_is_refused_while_redis_is_known_to_be_down(settings):
    if settings.redis_url is None:
        pytest.skip("the in-process cache cannot be down")
    dead = override(settings, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    with TestClient(create_app(dead)) as client:
        assert client.put("/users/u1", json={}).status_code == 200
        assert client.get("/recommend/u1").json()["degraded"] is True  # the breaker opens
        response = client.delete("/users/u1")
        assert response.status_code == 503 and "Retry-After" in response.headers
        assert response.json()["error"] == "service_unavailable"
        assert client.get("/users/u1").status_code == 200  # nothing erased: retry later
