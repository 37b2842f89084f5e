"""POST /events on both shapes: acceptance, idempotency, validation, all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def _event(i: int, **over: object) -> dict:
    return {"event_id": f"e{i}", "user_id": "u1", "item_id": f"i{i % 3}", "type": "view", **over}


def _count(client, user_id: str = "u1") -> int:
    response = client.get(f"/users/{user_id}/events", params={"limit": 1000})
    return len(response.json()) if response.status_code == 200 else 0


def test_batch_is_stored_and_unknown_users_and_items_are_created(client):
    response = client.post("/events", json={"events": [_event(i) for i in range(5)]})
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0}
    assert _count(client) == 5
    assert client.get("/users/u1").status_code == 200
    assert client.get("/items/i2").json()["is_available"] is True


def test_repeated_event_ids_are_reported_as_duplicates_and_not_stored_twice(client):
    batch = {"events": [_event(i) for i in range(4)]}
    assert client.post("/events", json=batch).json() == {"accepted": 4, "duplicates": 0}
    mixed = {"events": [_event(2), _event(3), _event(4), _event(4)]}
    assert client.post("/events", json=mixed).json() == {"accepted": 1, "duplicates": 3}
    assert _count(client) == 5


def test_events_without_ids_are_all_stored(client):
    batch = {"events": [{"user_id": "u1", "item_id": "i1", "type": "click"}] * 3}
    assert client.post("/events", json=batch).json() == {"accepted": 3, "duplicates": 0}


def test_one_bad_event_rejects_the_whole_batch(client):
    batch = {"events": [_event(0), _event(1, type="teleport"), _event(2)]}
    response = client.post("/events", json=batch)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["fields"][0]["path"] == "events.1.type"
    assert _count(client) == 0


def test_future_timestamps_are_refused_but_recent_ones_pass(client):
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.post("/events", json={"events": [_event(0, occurred_at=soon)]}).status_code == 200
    response = client.post("/events", json={"events": [_event(1, occurred_at=later)]})
    assert response.status_code == 422
    assert response.json()["fields"][0]["path"] == "events.0.occurred_at"


def test_naive_timestamps_are_read_as_utc(client):
    client.post("/events", json={"events": [_event(0, occurred_at="2024-03-01T10:00:00")]})
    stored = client.get("/users/u1/events").json()[0]
    assert stored["occurred_at"].startswith("2024-03-01T10:00:00")


def test_schema_errors_name_the_field(client):
    cases = [
        {"events": [{"user_id": "u1", "type": "view"}]},
        {"events": [_event(0, user_id="has space")]},
        {"events": [_event(0, user_id="x" * 129)]},
        {"events": [_event(0, value="lots")]},
        {"events": [_event(0, extra_field=1)]},
        {"events": []},
        {"events": "nope"},
        [1, 2, 3],
    ]
    for body in cases:
        response = client.post("/events", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "validation_error"
        assert response.json()["fields"], body
    assert _count(client) == 0


def test_non_finite_values_are_refused(client):
    response = client.post(
        "/events",
        content=b'{"events": [{"user_id": "u1", "item_id": "i1", "type": "rating", "value": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_oversize_batch_is_413(client):
    batch = {"events": [_event(i) for i in range(1001)]}
    response = client.post("/events", json=batch)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert _count(client) == 0


def test_oversize_body_is_413(client):
    response = client.post(
        "/events", content=b" " * 5_000_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_malformed_json_is_422(client):
    response = client.post(
        "/events", content=b'{"events": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
