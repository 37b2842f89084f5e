"""Items and users: CRUD, GDPR delete and export, error shapes."""

from __future__ import annotations


def test_item_put_get_and_retire(client):
    body = {"title": "Red mug", "description": "A mug", "categories": ["kitchen"], "price": 4.5}
    assert client.put("/items/m1", json=body).status_code == 200
    item = client.get("/items/m1").json()
    assert item["title"] == "Red mug" and item["categories"] == ["kitchen"]
    assert client.put("/items/m1", json={**body, "price": 5}).json()["price"] == 5
    # Out of stock: still readable. Retired: gone from the API until the catalogue sends it again.
    client.put("/items/m1", json={**body, "is_available": False})
    assert client.get("/items/m1").json()["is_available"] is False
    assert client.delete("/items/m1").status_code == 204
    gone = client.get("/items/m1")
    assert gone.status_code == 404 and "retired" in gone.json()["detail"]
    assert client.delete("/items/m1").status_code == 404
    assert client.put("/items/m1", json=body).status_code == 200
    assert client.get("/items/m1").json()["is_available"] is True


def test_item_batch_upsert(client):
    items = [{"id": f"b{i}", "title": f"Item {i}"} for i in range(10)]
    assert client.post("/items", json={"items": items}).json() == {"upserted": 10}
    assert client.get("/items/b7").json()["title"] == "Item 7"
    too_many = {"items": [{"id": f"x{i}"} for i in range(1001)]}
    assert client.post("/items", json=too_many).status_code == 413


def test_item_validation(client):
    assert client.put("/items/m1", json={"price": -1}).status_code == 422
    assert client.put("/items/m1", json={"categories": ["x"] * 21}).status_code == 422
    assert (
        client.put("/items/m1", json={"attributes": {f"k{i}": i for i in range(51)}}).status_code
        == 422
    )
    assert client.put("/items/bad%20id", json={}).status_code == 422
    assert client.put("/items/m1", json={"is_available": 0}).status_code == 422  # not a boolean


def test_unknown_ids_are_404_with_a_sentence(client):
    for path in ("/items/nope", "/users/nope", "/users/nope/events", "/users/nope/export"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
        assert "nope" in response.json()["detail"]
    assert client.delete("/items/nope").status_code == 404
    assert client.delete("/users/nope").status_code == 404


def test_user_attributes_and_events_limit(client):
    assert client.put("/users/u9", json={"attributes": {"country": "FR"}}).status_code == 200
    assert client.get("/users/u9").json()["attributes"] == {"country": "FR"}
    events = [{"user_id": "u9", "item_id": f"i{i}", "type": "view"} for i in range(7)]
    client.post("/events", json={"events": events})
    assert len(client.get("/users/u9/events", params={"limit": 3}).json()) == 3
    assert client.get("/users/u9/events", params={"limit": 0}).status_code == 422
    assert client.get("/users/u9/events", params={"limit": "x"}).status_code == 422


def test_gdpr_export_then_delete(client):
    client.put("/users/g1", json={"attributes": {"email_opt_in": True}})
    events = [
        {"event_id": f"g{i}", "user_id": "g1", "item_id": "i1", "type": "view"} for i in range(3)
    ]
    client.post("/events", json={"events": events})
    client.post("/events", json={"events": [{"user_id": "other", "item_id": "i1", "type": "view"}]})
    export = client.get("/users/g1/export").json()
    assert export["user"]["attributes"] == {"email_opt_in": True}
    assert {e["event_id"] for e in export["events"]} == {"g0", "g1", "g2"}
    assert client.delete("/users/g1").status_code == 204
    assert client.get("/users/g1").status_code == 404
    assert client.get("/users/g1/export").status_code == 404
    # The other user's data is untouched, and the deleted user's event ids may be reused.
    assert len(client.get("/users/other/events").json()) == 1
    assert client.post("/events", json={"events": events}).json()["accepted"] == 3


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["store"] == "ok" and checks["cache"] == "ok"
    assert "model" in checks


def test_unknown_route_and_method_are_json(client):
    response = client.get("/nowhere")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    response = client.patch("/events")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_a_method_not_allowed_names_every_method_of_the_path(client):
    response = client.patch("/items/m1", json={})
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert set(response.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}
    users = client.options("/users/u1")
    assert set(users.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}


def test_attribute_rules_are_enforced_as_published(client):
    long_name = {"x" * 65: 1}
    assert client.put("/users/u1", json={"attributes": long_name}).status_code == 422
    assert client.put("/users/u1", json={"attributes": {"": 1}}).status_code == 422
    schema = client.get("/openapi.json").json()["components"]["schemas"]["UserIn"]
    attributes = schema["properties"]["attributes"]
    assert attributes["propertyNames"] == {"minLength": 1, "maxLength": 64}
    assert attributes["maxProperties"] == 50
