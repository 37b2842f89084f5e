"""POST /users/{id}/merge: a visitor's events become the customer's, each exactly once, on
SQLite and PostgreSQL; a repeat or a concurrent merge moves nothing twice; the customer's cached
answers and seen items follow at once."""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from app.cache import LocalCache
from app.customers import service
from app.db import make_engine, make_sessionmaker, unit_of_work
from app.events.models import Event
from app.main import create_app
from tests.api.test_serving import _buyer, _retrain, _seed
from tests.api.test_tokens import WRITE_KEY, _bearer, _secured
from tests.conftest import wait_for_version

BACKEND = _bearer(WRITE_KEY)


def _visitor(client: TestClient) -> tuple[str, dict[str, str]]:
    minted = client.post("/tokens", json={"visitor": True}, headers=BACKEND).json()
    return minted["user_id"], _bearer(minted["token"])


def _events(client: TestClient, user: str) -> list[dict]:
    answer = client.get(f"/users/{user}/events?limit=1000", headers=BACKEND)
    return answer.json() if answer.status_code == 200 else []


def _ids(events: list[dict]) -> list[tuple]:
    return sorted((e["item_id"], e["type"], e["occurred_at"]) for e in events)


@pytest.fixture
def secured(settings):
    with TestClient(create_app(_secured(settings))) as client:
        yield client


def test_merge_moves_every_event_exactly_once(secured):
    visitor, token = _visitor(secured)
    customer = f"c{uuid.uuid4().hex[:8]}"
    browsing = [
        {"event_id": f"{visitor}-1", "user_id": visitor, "item_id": "i1", "type": "view"},
        {"event_id": f"{visitor}-2", "user_id": visitor, "item_id": "i2", "type": "click"},
        {"user_id": visitor, "item_id": "i3", "type": "add_to_cart"},
        {"user_id": visitor, "item_id": "i3", "type": "view"},
    ]
    assert secured.post("/events", json={"events": browsing}, headers=token).json()["accepted"] == 4
    own = [{"event_id": f"{customer}-1", "user_id": customer, "item_id": "i9", "type": "purchase"}]
    assert secured.post("/events", json={"events": own}, headers=BACKEND).json()["accepted"] == 1
    before = _ids(_events(secured, visitor)) + _ids(_events(secured, customer))

    merged = secured.post(f"/users/{customer}/merge", json={"visitor_id": visitor}, headers=BACKEND)
    assert merged.status_code == 200, merged.text
    assert merged.json() == {"user_id": customer, "visitor_id": visitor, "merged": 4}
    after = _events(secured, customer)
    assert _ids(after) == sorted(before) and len(after) == 5
    assert _events(secured, visitor) == []
    # A repeat (a retried sign-in) moves nothing, and the events stay once.
    again = secured.post(f"/users/{customer}/merge", json={"visitor_id": visitor}, headers=BACKEND)
    assert again.json()["merged"] == 0 and len(_events(secured, customer)) == 5
    # The visitor's browser retrying an event already merged does not store it a second time.
    retried = secured.post("/events", json={"events": browsing[:1]}, headers=token).json()
    assert retried["accepted"] == 0 and retried["conflicts"] == [0]
    assert len(_events(secured, customer)) == 5
    # The customer can use their new token on what was the visitor's history.
    customer_token = secured.post("/tokens", json={"user_id": customer}, headers=BACKEND).json()
    assert secured.get(
        f"/recommend/{customer}", headers=_bearer(customer_token["token"])
    ).is_success


def test_merge_of_itself_is_a_no_op_and_tokens_and_read_keys_are_refused(secured):
    from tests.api.test_tokens import ADMIN_KEY, READ_KEY

    # With a subscriber, changed customers are noted: an unknown visitor is no such customer.
    subscription = {
        "url": "https://crm.example/h",
        "events": ["segment.entered"],
        "secret": "s" * 20,
    }
    assert (
        secured.post("/subscriptions", json=subscription, headers=_bearer(ADMIN_KEY)).status_code
        == 201
    )
    unknown = secured.post("/users/c1/merge", json={"visitor_id": "v-nobody"}, headers=BACKEND)
    assert unknown.status_code == 200 and unknown.json()["merged"] == 0

    own = {"events": [{"user_id": "c1", "item_id": "i1", "type": "view"}]}
    assert secured.post("/events", json=own, headers=BACKEND).json()["accepted"] == 1
    itself = secured.post("/users/c1/merge", json={"visitor_id": "c1"}, headers=BACKEND)
    assert itself.status_code == 200 and itself.json()["merged"] == 0
    assert len(_events(secured, "c1")) == 1
    bad = secured.post("/users/c1/merge", json={"visitor_id": "has space"}, headers=BACKEND)
    assert bad.status_code == 422
    _, token = _visitor(secured)
    assert (
        secured.post("/users/c1/merge", json={"visitor_id": "v"}, headers=token).status_code == 403
    )
    read = _bearer(READ_KEY)
    assert (
        secured.post("/users/c1/merge", json={"visitor_id": "v"}, headers=read).status_code == 403
    )


def test_concurrent_merges_move_each_event_once(secured, settings):
    visitor, token = _visitor(secured)
    batch = [{"user_id": visitor, "item_id": f"i{n}", "type": "view"} for n in range(50)]
    assert secured.post("/events", json={"events": batch}, headers=token).json()["accepted"] == 50
    engine = make_engine(settings.resolved_database_url)
    factory = make_sessionmaker(engine)
    customers = [f"c{uuid.uuid4().hex[:8]}", f"c{uuid.uuid4().hex[:8]}"]
    moved: list[int] = []
    start = threading.Barrier(4)

    def merge(customer: str) -> None:
        start.wait()
        while True:  # a client retries a 503 (SQLite refuses a second writer's upgrade)
            try:
                with unit_of_work(factory) as session:
                    result = service.merge(session, LocalCache(), customer, visitor, settings)
                moved.append(result.merged)
                return
            except OperationalError:
                continue

    threads = [threading.Thread(target=merge, args=(c,)) for c in customers * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(moved) == 4 and sum(moved) == 50  # however the rows fell between them
    with factory() as session:
        counts = dict(
            session.execute(
                select(Event.user_id, func.count())
                .where(Event.user_id.in_([visitor, *customers]))
                .group_by(Event.user_id)
            ).all()
        )
    assert sum(counts.values()) == 50 and visitor not in counts
    engine.dispose()


def test_merge_drops_cached_answers_and_adds_the_visitor_items_to_seen(client, settings):
    _seed(settings)
    run = _retrain(client)
    assert run["status"] == "succeeded", run["error"]
    with TestClient(create_app(_secured(settings))) as app:
        wait_for_version(app, 1)
        customer = _buyer()
        read = {**BACKEND}
        first = app.get(f"/recommend/{customer}?n=5", headers=read).json()["items"]
        assert app.get(f"/recommend/{customer}?n=5", headers=read).json()["items"] == first
        shown = [item["item_id"] for item in first[:2]]
        visitor, token = _visitor(app)
        browsing = [{"user_id": visitor, "item_id": i, "type": "purchase"} for i in shown]
        assert app.post("/events", json={"events": browsing}, headers=token).json()["accepted"] == 2
        merged = app.post(f"/users/{customer}/merge", json={"visitor_id": visitor}, headers=read)
        assert merged.json()["merged"] == 2
        # The cached answer is gone and what the visitor bought is now seen: not shown again.
        now = [
            item["item_id"]
            for item in app.get(f"/recommend/{customer}?n=5", headers=read).json()["items"]
        ]
        assert not set(shown) & set(now), (shown, now)


def test_erasing_the_customer_erases_the_visitors_merged_into_them(secured, settings):
    from app.customers.models import Erasure, UserMerge
    from tests.api.test_tokens import ADMIN_KEY

    visitor, token = _visitor(secured)
    customer = f"c{uuid.uuid4().hex[:8]}"
    browsing = {
        "events": [{"user_id": visitor, "item_id": f"i{n}", "type": "view"} for n in (1, 2)]
    }
    assert secured.post("/events", json=browsing, headers=token).json()["accepted"] == 2
    merged = secured.post(f"/users/{customer}/merge", json={"visitor_id": visitor}, headers=BACKEND)
    assert merged.json()["merged"] == 2
    # The visitor's tab is still open: an event arrives under the visitor after the merge.
    later = {"events": [{"user_id": visitor, "item_id": "i3", "type": "view"}]}
    assert secured.post("/events", json=later, headers=token).json()["accepted"] == 1
    bystander, bystander_token = _visitor(secured)
    other = {"events": [{"user_id": bystander, "item_id": "i1", "type": "view"}]}
    assert secured.post("/events", json=other, headers=bystander_token).json()["accepted"] == 1

    erased = secured.delete(f"/users/{customer}", headers=_bearer(ADMIN_KEY))
    assert erased.status_code == 204
    for user in (customer, visitor):
        assert secured.get(f"/users/{user}/events", headers=BACKEND).status_code == 404
    assert len(_events(secured, bystander)) == 1  # nobody else's data went with them
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(UserMerge)) == 0
        erasures = set(session.scalars(select(Erasure.user_id)))
    engine.dispose()
    assert {customer, visitor} <= erasures and bystander not in erasures
