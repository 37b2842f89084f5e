"""POST /events on both shapes: acceptance, idempotency, validation, all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import override


def _event(i: int, **over: object) -> dict:
    return {"event_id": f"e{i}", "user_id": "u1", "item_id": f"i{i % 3}", "type": "view", **over}


def _count(client, user_id: str = "u1") -> int:
    response = client.get(f"/users/{user_id}/events", params={"limit": 1000})
    return len(response.json()) if response.status_code == 200 else 0


def test_batch_is_stored_and_unknown_users_and_items_are_created(client):
    response = client.post("/events", json={"events": [_event(i) for i in range(5)]})
    assert response.status_code == 200
    assert response.json() == {"accepted": 5, "duplicates": 0, "conflicts": []}
    assert _count(client) == 5
    assert client.get("/users/u1").status_code == 200
    item = client.get("/items/i2").json()
    assert item["is_available"] is True and item["is_placeholder"] is True


def test_repeated_event_ids_are_reported_as_duplicates_and_not_stored_twice(client):
    batch = {"events": [_event(i) for i in range(4)]}
    assert client.post("/events", json=batch).json()["accepted"] == 4
    mixed = {"events": [_event(2), _event(3), _event(4), _event(4)]}
    assert client.post("/events", json=mixed).json() == {
        "accepted": 1,
        "duplicates": 3,
        "conflicts": [],
    }
    assert _count(client) == 5


def test_events_without_ids_are_all_stored(client):
    batch = {"events": [{"user_id": "u1", "item_id": "i1", "type": "click"}] * 3}
    assert client.post("/events", json=batch).json()["accepted"] == 3


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


def test_a_reused_event_id_with_another_payload_is_a_conflict_and_stores_nothing(client):
    first = _event(0, type="purchase", value=10.0, occurred_at="2024-03-01T10:00:00Z")
    assert client.post("/events", json={"events": [first]}).json()["accepted"] == 1
    batch = [
        {**first, "user_id": "u2", "item_id": "fresh1"},  # stored id, other user and item
        {**first, "value": 11.0},  # stored id, other value
        dict(first),  # identical repeat: a duplicate
        _event(7, user_id="u3", item_id="fresh2"),  # new id
        _event(7, user_id="u4", item_id="fresh3"),  # the same id again, another payload
        _event(7, user_id="u3", item_id="fresh2"),  # identical to the first in this batch
        _event(8, user_id="u5"),
    ]
    response = client.post("/events", json={"events": batch})
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "duplicates": 2, "conflicts": [0, 1, 4]}
    # Nothing of a conflicting event: no user, no item.
    assert client.get("/users/u2").status_code == 404
    assert client.get("/users/u4").status_code == 404
    assert client.get("/items/fresh1").status_code == 404
    assert client.get("/items/fresh3").status_code == 404
    assert client.get("/users/u3").status_code == 200
    assert client.get("/items/fresh2").status_code == 200
    stored = client.get("/users/u1/events").json()
    assert [(e["event_id"], e["value"]) for e in stored] == [("e0", 10.0)]


def test_a_retry_without_occurred_at_is_a_duplicate_not_a_conflict(client):
    event = _event(0)  # no occurred_at: the server fills it in, at another time on the retry
    assert client.post("/events", json={"events": [event]}).json()["accepted"] == 1
    assert client.post("/events", json={"events": [event]}).json() == {
        "accepted": 0,
        "duplicates": 1,
        "conflicts": [],
    }


def _refusal(client, **fields) -> tuple[int, list]:
    response = client.post("/events", json={"events": [_event(0, **fields)]})
    return response.status_code, [(f["path"], f["type"]) for f in response.json().get("fields", [])]


def test_negative_values_are_refused_except_for_ratings(client):
    assert _refusal(client, type="purchase", value=-5.0) == (
        422,
        [("events.0.value", "negative_value")],
    )
    assert _refusal(client, type="view", value=-1) == (422, [("events.0.value", "negative_value")])
    assert _refusal(client, type="purchase", value=0)[0] == 200
    assert (
        client.post("/events", json={"events": [_event(5, type="rating", value=-2.0)]}).status_code
        == 200
    )
    assert _count(client) == 2


def test_timestamps_older_than_the_horizon_are_refused(client, settings):
    old = (datetime.now(UTC) - timedelta(days=365.25 * 20 + 2)).isoformat()
    recent_enough = (datetime.now(UTC) - timedelta(days=365.25 * 20 - 2)).isoformat()
    assert _refusal(client, occurred_at=old) == (422, [("events.0.occurred_at", "past_timestamp")])
    assert _refusal(client, occurred_at="1900-01-01T00:00:00Z")[0] == 422
    assert _refusal(client, occurred_at=recent_enough)[0] == 200
    with TestClient(create_app(override(settings, max_past_years=30))) as wider:
        assert _refusal(wider, occurred_at=old)[0] == 200


@pytest.mark.parametrize("value", ["12", "12.5", True, False, [1], {"n": 1}])
def test_values_must_be_json_numbers(client, value):
    status, fields = _refusal(client, type="purchase", value=value)
    assert status == 422 and fields and fields[0][0].endswith("events.0.value")
    assert _count(client) == 0


def test_integer_and_float_values_are_numbers(client):
    assert _refusal(client, type="purchase", value=12)[0] == 200
    assert client.get("/users/u1/events").json()[0]["value"] == 12.0
