"""Every ingest path has the same effects seen through the API: fresh answers, placeholders."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.importers import import_events_file
from app.main import create_app
from app.training.runner import train_now
from tests.conftest import override

FIELDS = ("event_id", "user_id", "item_id", "type", "value", "order_id", "occurred_at")
MAPPING = {f: f for f in FIELDS}


def _poll(client: TestClient) -> None:
    """Run the worker's model poll now (what it does every `model_poll_seconds`)."""
    client.portal.call(client.app.state.registry.refresh)


def _items(client: TestClient, user_id: str) -> list[str]:
    response = client.get(f"/recommend/{user_id}", params={"n": 20})
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_an_import_refreshes_the_cached_answers_of_its_users(settings, tmp_path):
    # The per-worker tier in front of Redis holds entries for up to local_cache_ttl_seconds;
    # with it off, the answer after an import must already reflect it.
    settings = override(settings, local_cache_ttl_seconds=0)
    with TestClient(create_app(settings)) as client:
        catalogue = [{"id": f"p{i}", "title": f"Product {i}"} for i in range(5)]
        assert client.post("/items", json={"items": catalogue}).status_code == 200
        events = [
            {"user_id": f"v{u}", "item_id": f"p{i}", "type": "view"}
            for u in range(6)
            for i in range(5)
        ]
        events.append({"user_id": "u1", "item_id": "p0", "type": "view"})
        assert client.post("/events", json={"events": events}).status_code == 200
        _poll(client)  # no model yet: popularity from the store
        before = _items(client, "u1")
        assert "p3" in before and "p0" not in before  # cached now, seen items left out
        assert _items(client, "u1") == before

        path = tmp_path / "more.jsonl"
        path.write_text(json.dumps({"user_id": "u1", "item_id": "p3", "type": "purchase"}))
        assert import_events_file(settings, path, MAPPING).inserted == 1
        _poll(client)  # embedded: the worker applies the importer's change log here
        after = _items(client, "u1")
        assert "p3" not in after and "p0" not in after


def test_with_several_embedded_workers_a_write_to_one_refreshes_the_others(settings):
    # Two workers of one embedded service (no Redis): each in-process cache is its own only
    # tier, so an event or new attributes taken by one must reach the other's cached answers.
    if settings.redis_url is not None:
        pytest.skip("with Redis the workers share one tier, whose version bump does it")
    settings = override(settings, workers=2)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        catalogue = [{"id": f"p{i}", "title": f"Product {i}"} for i in range(5)]
        assert first.post("/items", json={"items": catalogue}).status_code == 200
        events = [
            {"user_id": f"v{u}", "item_id": f"p{i}", "type": "view"}
            for u in range(6)
            for i in range(5)
        ]
        assert first.post("/events", json={"events": events}).status_code == 200
        _poll(first)
        _poll(second)
        before = _items(second, "u1")
        assert "p3" in before and _items(second, "u1") == before  # cached in the second

        event = {"user_id": "u1", "item_id": "p3", "type": "purchase"}
        assert first.post("/events", json={"events": [event]}).status_code == 200
        _poll(second)
        assert "p3" not in _items(second, "u1")


def _shop_events(now: datetime) -> list[dict]:
    events = []
    for u in range(40):
        when = (now - timedelta(days=u % 7 + 1)).isoformat()
        events.append({"user_id": f"c{u}", "item_id": "ghost", "type": "view", "occurred_at": when})
        for k in range(3):
            item = f"d{(u + k * 3) % 10}"
            events.append(
                {
                    "user_id": f"c{u}",
                    "item_id": item,
                    "type": "purchase",
                    "value": 5.0 + k,
                    "order_id": f"o{u}",
                    "occurred_at": when,
                }
            )
    return events


def test_events_for_an_unknown_item_never_make_it_recommended_until_described(settings):
    # The gate compares two models on different catalogues; this test is about availability.
    settings = override(settings, quality_gate_tolerance=1.0)
    with TestClient(create_app(settings)) as client:
        catalogue = [
            {"id": f"d{i}", "title": f"Desk lamp {i}", "categories": [f"cat{i % 3}"]}
            for i in range(10)
        ]
        assert client.post("/items", json={"items": catalogue}).status_code == 200
        events = _shop_events(datetime.now(UTC))
        for start in range(0, len(events), 500):
            batch = {"events": events[start : start + 500]}
            assert client.post("/events", json=batch).status_code == 200
        ghost = client.get("/items/ghost").json()
        assert ghost["is_placeholder"] is True and ghost["title"] == ""

        _poll(client)  # no model yet: store popularity, where ghost is the most viewed item
        assert "ghost" not in _items(client, "newcomer")
        assert _items(client, "newcomer")

        assert train_now(settings)["status"] == "activated"
        _poll(client)
        for user in ["newcomer", *(f"c{u}" for u in range(0, 40, 5))]:
            assert "ghost" not in _items(client, user), user
        for i in range(10):
            similar = client.get(f"/items/d{i}/similar", params={"n": 20}).json()["items"]
            assert "ghost" not in [s["item_id"] for s in similar]

        described = {"title": "Ghost lamp", "categories": ["cat0"]}
        assert client.put("/items/ghost", json=described).json()["is_placeholder"] is False
        assert train_now(settings)["status"] == "activated"
        _poll(client)
        assert client.get("/recommend/newcomer").json()["model_version"] == 2
        assert _items(client, "newcomer")[0] == "ghost"
