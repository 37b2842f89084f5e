"""Through the API: one client's burst of events does not make an item #1 for new customers.

A batch of 1,000 views of one item by one user once made that item the top trending (and,
before any model, the top popular) answer for every new customer.
"""

from __future__ import annotations

from app.training.runner import train_now
from tests.conftest import wait_for_version

NORMAL = [f"n{i}" for i in range(10)]


def _traffic(client) -> None:
    items = [{"id": i, "title": f"gadget {i}"} for i in [*NORMAL, "spam"]]
    assert client.post("/items", json={"items": items}).status_code == 200
    events = []
    # Normal traffic: item n0 met by 10 customers, n1 by 8, the others by fewer; two
    # customers also viewed the spammed item once.
    for u in range(30):
        for k, item in enumerate(NORMAL):
            if u < 10 - k:
                events.append({"user_id": f"c{u}", "item_id": item, "type": "view"})
        if u % 3 == 0:
            events.append({"user_id": f"c{u}", "item_id": NORMAL[u % 10], "type": "purchase"})
    events += [{"user_id": f"c{u}", "item_id": "spam", "type": "view"} for u in (20, 21)]
    assert client.post("/events", json={"events": events}).status_code == 200
    burst = [{"user_id": "bot", "item_id": "spam", "type": "view"}] * 1000
    response = client.post("/events", json={"events": burst})
    assert response.status_code == 200 and response.json()["accepted"] == 1000


def test_a_burst_from_one_client_does_not_own_the_popularity_served_before_any_model(client):
    _traffic(client)
    registry = client.app.state.registry
    registry.fallback_items = registry._store_popularity()  # what each poll computes
    body = client.get("/recommend/newcomer", params={"n": 3}).json()
    assert body["source"] == "fallback"
    assert [it["item_id"] for it in body["items"]] == ["n0", "n1", "n2"]


def test_a_burst_from_one_client_does_not_own_trending(client, settings):
    _traffic(client)
    train_now(settings)
    wait_for_version(client, 1)
    body = client.get("/recommend/newcomer", params={"n": 3, "explain": True}).json()
    assert body["source"] == "cold_start"
    assert [it["reason"]["type"] for it in body["items"]] == ["trending"] * 3
    assert [it["item_id"] for it in body["items"]] == ["n0", "n1", "n2"]
