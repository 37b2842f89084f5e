"""Outbound webhooks over HTTP with a real local receiver, embedded and PostgreSQL + Redis.

A retrain's changes of customers' segments, RFM groups and churn risks reach subscribers signed
as inbound webhooks are, in order per customer; failures are retried with growing gaps under
the same event id, then dead and re-drivable; the default retries outlast a receiver down for
ten minutes (with a clock the test moves); a stop mid-delivery loses nothing; two apps on one
store deliver each event once; an erasure drops a customer's undelivered payloads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from app.demo import import_shop
from app.events.webhooks import verify
from app.main import create_app
from app.subscriptions import repository, service
from app.subscriptions.dispatcher import Dispatcher, schedule
from app.subscriptions.models import CustomerChange, CustomerState, DispatcherLease, Outbox
from app.training.runner import train_now
from tests.conftest import override, wait_for_version
from tests.receiver import Receiver

SHOP = generate_shop(n_users=150, n_items=60, n_events=4_000, seed=11)
SECRET = "s3cret-shared-with-the-receiver"
ALL = ["segment.entered", "segment.exited", "rfm_group.changed", "churn_risk.changed"]


@pytest.fixture
def hooks(settings):
    """Settings with fast polls and short backoffs, on a store holding the shop."""
    fast = override(
        settings,
        webhook_poll_seconds=0.05,
        webhook_backoff_seconds=0.2,
        webhook_backoff_max_seconds=2.0,
        webhook_max_attempts=3,
        webhook_lease_seconds=2.0,
    )
    import_shop(make_sessionmaker(make_engine(fast.resolved_database_url)), SHOP)
    return fast


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.stop()


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _subscribe(client: TestClient, receiver: Receiver, events: list[str] | None = None) -> int:
    response = client.post(
        "/subscriptions", json={"url": receiver.url, "events": events or ALL, "secret": SECRET}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _counts(client: TestClient, subscription_id: int) -> dict[str, int]:
    (sub,) = [s for s in client.get("/subscriptions").json() if s["id"] == subscription_id]
    return sub["deliveries"]


def _store(settings):
    return make_sessionmaker(make_engine(settings.resolved_database_url))


def test_the_subscription_api_validates_and_never_shows_the_secret(hooks):
    with TestClient(create_app(hooks)) as client:
        bad = [
            {"url": "ftp://example.com/x", "events": ["segment.entered"], "secret": SECRET},
            {"url": "http:///nohost", "events": ["segment.entered"], "secret": SECRET},
            {"url": "https://example.com/x", "events": [], "secret": SECRET},
            {"url": "https://example.com/x", "events": ["segment.moved"], "secret": SECRET},
            {"url": "https://example.com/x", "events": ["segment.entered"] * 2, "secret": SECRET},
            {"url": "https://example.com/x", "events": ["segment.entered"], "secret": "short"},
            {"url": "https://example.com/x", "events": ALL, "secret": SECRET, "extra": 1},
        ]
        for body in bad:
            response = client.post("/subscriptions", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"] == "validation_error"
        response = client.post(
            "/subscriptions", json={"url": "https://example.com/x", "events": ALL, "secret": SECRET}
        )
        assert response.status_code == 201
        created = response.json()
        assert "secret" not in created and SECRET not in response.text
        listed = client.get("/subscriptions")
        assert [s["id"] for s in listed.json()] == [created["id"]]
        assert SECRET not in listed.text
        assert client.get(f"/subscriptions/{created['id']}/deliveries").json() == {
            "deliveries": [],
            "next_after": None,
        }
        assert (
            client.get(f"/subscriptions/{created['id']}/deliveries?status=lost").status_code == 422
        )
        assert client.delete(f"/subscriptions/{created['id']}").status_code == 204
        assert client.delete(f"/subscriptions/{created['id']}").status_code == 404
        assert client.get(f"/subscriptions/{created['id']}/deliveries").status_code == 404
        assert client.post("/subscriptions/0/deliveries/redrive").status_code == 422


def test_a_retrain_delivers_signed_changes_in_order_per_customer(hooks, receiver):
    with TestClient(create_app(hooks)) as client:
        sid = _subscribe(client, receiver)
        train_now(hooks)
        _wait(lambda: _counts(client, sid).get("pending", 0) == 0 and _counts(client, sid))
        counts = _counts(client, sid)
        assert set(counts) == {"delivered"}
        delivered = []
        after = None
        while True:
            page = client.get(
                f"/subscriptions/{sid}/deliveries",
                params={"status": "delivered", "limit": 200, **({"after": after} if after else {})},
            ).json()
            delivered += page["deliveries"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert len(delivered) == counts["delivered"]
    by_event = receiver.by_event()
    assert set(by_event) == {d["event_id"] for d in delivered}
    entered = [d["user_id"] for d in delivered if d["type"] == "segment.entered"]
    with _store(hooks)() as session:
        published = session.scalar(select(func.count()).select_from(CustomerState))
    # The first publication: every customer the model assigned enters their segment, once.
    assert len(entered) == len(set(entered)) == published > 100
    for request in receiver.received:
        timestamp = request.headers["x-tastemaker-timestamp"]
        signature = request.headers["x-tastemaker-signature"]
        expected = hmac.new(
            SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        )
        assert signature == "sha256=" + expected.hexdigest()
        verify(SECRET, timestamp, signature, request.body, time.time(), 300)  # the inbound rule
        payload = request.payload
        assert payload["event_id"] == request.event_id
        assert payload["model_version"] == 1 and payload["type"] in ALL
    # In order per customer: the receiver saw each customer's events in outbox order.
    order = {d["event_id"]: d["id"] for d in delivered}
    seen: dict[str, list[int]] = {}
    for request in receiver.received:
        seen.setdefault(request.payload["user_id"], []).append(order[request.event_id])
    assert all(ids == sorted(ids) for ids in seen.values())
    assert any(len(ids) > 1 for ids in seen.values())
    sample = next(d for d in delivered if d["type"] == "segment.entered")
    assert set(sample["payload"]) == {
        "event_id",
        "type",
        "occurred_at",
        "user_id",
        "model_version",
        "data",
    }
    assert set(sample["payload"]["data"]["segment"]) == {"id", "label"}


def test_failures_are_retried_with_growing_gaps_then_dead_and_redriven(hooks, receiver):
    receiver.failing = True
    with TestClient(create_app(hooks)) as client:
        sid = _subscribe(client, receiver, ["segment.entered"])
        train_now(hooks)
        _wait(
            lambda: (
                _counts(client, sid).get("dead", 0) > 0 and not _counts(client, sid).get("pending")
            )
        )
        dead = _counts(client, sid)["dead"]
        by_event = receiver.by_event()
        assert len(by_event) == dead
        for attempts in by_event.values():
            assert len(attempts) == 3  # webhook_max_attempts, all with one event id
            first, second = (attempts[i + 1].at - attempts[i].at for i in (0, 1))
            # Doubling with jitter: at least half of 0.2 s, then at least the 0.2 s ceiling.
            assert first >= 0.1 and second >= 0.2 - 0.02, (first, second)
        page = client.get(f"/subscriptions/{sid}/deliveries", params={"status": "dead"}).json()
        assert page["deliveries"][0]["attempts"] == 3
        assert page["deliveries"][0]["last_error"] == "HTTP 503"

        receiver.failing = False
        one = page["deliveries"][0]["id"]
        response = client.post(
            f"/subscriptions/{sid}/deliveries/redrive", params={"delivery_id": one}
        )
        assert response.json() == {"redriven": 1}
        _wait(lambda: _counts(client, sid).get("delivered") == 1)
        response = client.post(f"/subscriptions/{sid}/deliveries/redrive")
        assert response.json() == {"redriven": dead - 1}
        _wait(lambda: _counts(client, sid) == {"delivered": dead})
        missing = client.post(
            f"/subscriptions/{sid}/deliveries/redrive", params={"delivery_id": one}
        )
        assert missing.status_code == 404
    assert all(len(attempts) == 4 for attempts in receiver.by_event().values())


def test_a_receiver_down_for_a_while_gets_everything_afterwards(hooks, receiver):
    receiver.stop()
    with TestClient(create_app(override(hooks, webhook_max_attempts=50))) as client:
        sid = _subscribe(client, receiver)
        train_now(hooks)
        _wait(lambda: _counts(client, sid).get("pending", 0) > 0)
        time.sleep(1.0)  # every delivery fails, with backoff: refused connections
        assert set(_counts(client, sid)) == {"pending"}
        total = _counts(client, sid)["pending"]
        receiver.start()
        _wait(lambda: _counts(client, sid) == {"delivered": total})
    assert len(receiver.by_event()) == total


class Draw(random.Random):
    """A "random" generator whose every draw is the lowest (or highest) value allowed."""

    def __init__(self, highest: bool) -> None:
        super().__init__()
        self.highest = highest

    def uniform(self, a: float, b: float) -> float:
        return b if self.highest else a


def test_the_default_retries_outlast_a_ten_minute_outage_and_the_jitter_varies():
    defaults = Settings.model_fields
    settings = Settings()
    for name in ("webhook_max_attempts", "webhook_backoff_seconds", "webhook_backoff_max_seconds"):
        assert getattr(settings, name) == defaults[name].default  # no test value here
    # Each wait is between half and all of 5 s doubling, capped at 10 minutes (the README).
    ceilings = [min(600.0, 5.0 * 2**n) for n in range(11)]
    shortest, longest = schedule(settings, Draw(False)), schedule(settings, Draw(True))
    assert shortest == [c / 2 for c in ceilings] and longest == ceilings
    # Even with the shortest draws the last attempt comes some 25 minutes after the first: a
    # delivery first tried as the receiver goes down is tried again once it is back ten
    # minutes later (at most one capped wait after), with attempts to spare.
    assert sum(shortest) > 600 + 600
    drawn = [schedule(settings, random.Random(seed)) for seed in (1, 2)]
    assert drawn[0] != drawn[1]
    for waits in drawn:
        assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
        assert len(set(waits)) == len(waits)


class Clock:
    """The dispatcher's time, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


@pytest.fixture
def shop_store(settings):
    """The default webhook settings on a store holding the shop."""
    import_shop(_store(settings), SHOP)
    return settings


def test_a_receiver_down_for_ten_minutes_gets_everything_afterwards_in_order(shop_store, receiver):
    clock = Clock()
    users = sorted(set(SHOP.events.user_id))[:5]

    def add(session, sid: int, n: int) -> None:
        data = {"segment": {"id": n, "label": f"s{n}"}}
        rows = [service.delivery(sid, u, "segment.entered", data, 1, clock.now) for u in users]
        repository.add_outbox(session, rows)

    factory = _store(shop_store)
    with unit_of_work(factory) as session:
        sid = repository.add_subscription(session, receiver.url, ALL, SECRET).id
        add(session, sid, 0)
        add(session, sid, 1)
    dispatcher = Dispatcher(shop_store, factory, clock=clock)

    async def run_for(seconds: float, client: httpx.AsyncClient) -> None:
        end = clock.now + timedelta(seconds=seconds)
        while clock.now < end:
            await dispatcher.deliver_due(client)
            clock.now += timedelta(seconds=5)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            receiver.stop()  # refused connections for ten minutes
            await run_for(300, client)
            with unit_of_work(factory) as session:
                add(session, sid, 2)  # changes found during the outage
            await run_for(300, client)
            with factory() as session:
                rows = session.scalars(select(Outbox)).all()
                assert {r.status for r in rows} == {"pending"}
                tries = sorted({r.attempts for r in rows})
                # Backed off: a few tries each (not one per 5 s), far from dead (12).
                assert tries[0] == 0 and 4 <= tries[-1] <= 8, tries
            receiver.start()
            # Within one capped wait (10 minutes) every head is tried again, then the rest.
            await run_for(600 + 30, client)

    asyncio.run(scenario())
    with factory() as session:
        rows = session.scalars(select(Outbox).order_by(Outbox.id)).all()
    assert {r.status for r in rows} == {"delivered"} and len(rows) == 3 * len(users)
    by_event = receiver.by_event()
    assert set(by_event) == {r.event_id for r in rows}
    assert all(len(attempts) == 1 for attempts in by_event.values())
    for user_id in users:
        mine = [r.event_id for r in rows if r.user_id == user_id]
        assert [r.event_id for r in receiver.received if r.payload["user_id"] == user_id] == mine


def test_a_stop_in_the_middle_of_a_delivery_loses_nothing(hooks, receiver):
    receiver.hold.set()  # the first request is received, then its answer never arrives
    with TestClient(create_app(hooks)) as client:
        sid = _subscribe(client, receiver, ["segment.entered"])
        train_now(hooks)
        _wait(lambda: receiver.held is not None)
    held = receiver.held
    assert held is not None
    with _store(hooks)() as session:
        row = session.scalar(select(Outbox).where(Outbox.event_id == held.event_id))
        assert row is not None and row.status == "pending" and row.attempts == 0
    receiver.release.set()
    with TestClient(create_app(hooks)) as client:
        _wait(lambda: set(_counts(client, sid)) == {"delivered"})
    again = receiver.by_event()[held.event_id]
    assert len(again) == 2 and again[0].body == again[1].body  # the same event, sent again


def test_one_dispatcher_delivers_across_apps_on_one_store(hooks, receiver):
    with TestClient(create_app(hooks)) as first, TestClient(create_app(hooks)) as second:
        sid = _subscribe(first, receiver)
        train_now(hooks)
        _wait(lambda: set(_counts(first, sid)) == {"delivered"})
        assert all(len(attempts) == 1 for attempts in receiver.by_event().values())
        with _store(hooks)() as session:
            holder = session.scalar(select(DispatcherLease.holder))
        holders = {first.app.state.dispatcher.holder, second.app.state.dispatcher.holder}
        assert holder in holders


def test_an_erasure_drops_the_customers_undelivered_payloads(hooks, receiver):
    receiver.failing = True
    with TestClient(create_app(override(hooks, webhook_max_attempts=50))) as client:
        sid = _subscribe(client, receiver)
        train_now(hooks)
        page = client.get(f"/subscriptions/{sid}/deliveries", params={"limit": 1}).json()
        user_id = page["deliveries"][0]["user_id"]
        assert client.delete(f"/users/{user_id}").status_code == 204
        with _store(hooks)() as session:
            left = session.scalar(select(func.count()).where(Outbox.user_id == user_id))
            state = session.get(CustomerState, user_id)
        assert left == 0 and state is None


def test_an_ingest_that_moves_a_customer_delivers_what_get_segment_now_says(hooks, receiver):
    with TestClient(create_app(hooks)) as client:
        post = client.post(
            "/events", json={"events": [{"user_id": "u-new", "item_id": "i-x", "type": "view"}]}
        )
        assert post.status_code == 200, post.text
        with _store(hooks)() as session:  # no subscription: an ingest notes nothing
            assert session.scalar(select(func.count()).select_from(CustomerChange)) == 0
        sid = _subscribe(client, receiver)
        train_now(hooks)
        wait_for_version(client, 1)
        _wait(lambda: set(_counts(client, sid)) == {"delivered"})
        before = len(receiver.received)
        users = sorted({r.payload["user_id"] for r in receiver.received})
        buyer = next(
            (u for u in users if client.get(f"/segment/{u}").json()["segment"]["id"] == -1), None
        )
        assert buyer is not None, "the shop has no customer without a purchase"
        items = [i.item_id for i in SHOP.items[:3]]
        events = [
            {
                "user_id": buyer,
                "item_id": item,
                "type": "purchase",
                "value": 80.0,
                "order_id": f"o-{n}",
            }
            for n, item in enumerate(items)
        ]
        assert client.post("/events", json={"events": events}).status_code == 200
        _wait(lambda: any(r.payload["user_id"] == buyer for r in receiver.received[before:]))
        _wait(lambda: set(_counts(client, sid)) == {"delivered"})
        now = client.get(f"/segment/{buyer}").json()
    moved = [r.payload for r in receiver.received[before:] if r.payload["user_id"] == buyer]
    kinds = [p["type"] for p in moved]
    assert kinds[:2] == ["segment.exited", "segment.entered"], kinds
    assert moved[0]["data"]["segment"]["id"] == -1
    assert moved[1]["data"]["segment"] == {
        "id": now["segment"]["id"],
        "label": now["segment"]["label"],
    }
    rfm = [p["data"] for p in moved if p["type"] == "rfm_group.changed"]
    assert rfm and rfm[-1]["to"] == now["rfm"]["group"]
    assert all(r.payload["user_id"] == buyer for r in receiver.received[before:])
