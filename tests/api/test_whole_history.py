"""Whole histories over HTTP: `exclude_seen` covers everything a customer ever had.

A model scores a customer's newest events up to its budget (``history_length``, read at
training), while `exclude_seen` leaves out every item of their whole history. The budget here
is tiny, so the customers below have many times more events than it; both storage shapes run.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.events import user_record
from app.events.models import Event
from app.main import create_app
from tests.conftest import override, wait_for_version

SHOP = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=3)
BUDGET = 10
N = 100  # the most one answer holds, so a seen item that slips through shows


def _events_of(user_id: str) -> list[tuple[str, float]]:
    """(item, epoch s) of every event of a customer in the shop, newest first."""
    rows = [
        (item, at)
        for user, item, at in zip(
            SHOP.events.user_id, SHOP.events.item_id, SHOP.events.occurred_at, strict=True
        )
        if user == user_id
    ]
    return sorted(rows, key=lambda row: row[1], reverse=True)


# The busiest customers: each has many times more events, and more items, than the budget.
BUSY = [user for user, _ in Counter(SHOP.events.user_id.tolist()).most_common(3)]


def _retrain(client: TestClient, version: int) -> None:
    accepted = client.post("/retrain").json()
    deadline = time.monotonic() + 120
    while (run := client.get(accepted["status_url"]).json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, "training did not finish in 120 s"
        time.sleep(0.3)
    assert run["status"] == "succeeded", run["error"]
    wait_for_version(client, version)


@pytest.fixture
def budgeted(settings):
    """Settings with a budget of BUDGET events and the shop imported."""
    # The home share is pinned: the test below needs both kinds of slot.
    budgeted = override(settings, history_length=BUDGET, recommender={"home_repeat_share": 0.5})
    factory = make_sessionmaker(make_engine(budgeted.resolved_database_url))
    import_shop(factory, SHOP, settings=budgeted)
    return budgeted


@pytest.fixture
def served(budgeted):
    """A client of an app serving model v1, trained with a budget of BUDGET events."""
    with TestClient(create_app(budgeted)) as client:
        _retrain(client, 1)
        yield client


def _items(client: TestClient, user_id: str, **params) -> list[str]:
    response = client.get(f"/recommend/{user_id}", params={"n": N, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "personalized", body
    return [item["item_id"] for item in body["items"]]


def _cached_history(client: TestClient, user_id: str, limit: int) -> dict | None:
    raw = client.portal.call(
        user_record.cached, client.app.state.cache, user_id, user_record.history_field(limit)
    )
    return None if raw is None else orjson.loads(raw)


@pytest.mark.parametrize("user_id", BUSY)
def test_no_item_the_customer_ever_had_comes_back(served, user_id):
    events = _events_of(user_id)
    ever = {item for item, _ in events}
    recent = {item for item, _ in events[:BUDGET]}
    assert len(events) > 10 * BUDGET and len(ever - recent) > 5

    fresh = _items(served, user_id)
    assert fresh and not set(fresh) & ever

    # With exclude_seen=false items older than the budget do come back: the set above is
    # not empty by accident.
    everything = _items(served, user_id, exclude_seen=False)
    assert set(everything) & (ever - recent)


def test_an_event_older_than_the_budget_is_excluded_at_once(served):
    user_id = BUSY[0]
    first = _items(served, user_id)
    target = first[0]
    oldest = _events_of(user_id)[-1][1]
    backdated = datetime.fromtimestamp(oldest, UTC) - timedelta(days=1)
    event = {
        "user_id": user_id,
        "item_id": target,
        "type": "view",
        "occurred_at": backdated.isoformat(),
        "event_id": "whole-history-backdated",
    }
    assert served.post("/events", json={"events": [event]}).json()["accepted"] == 1
    # The event is the customer's oldest, far outside the budget: only the seen set has it.
    second = _items(served, user_id)
    assert target not in second
    assert target in _cached_history(served, user_id, BUDGET)["seen"]


def test_the_second_call_reads_the_cached_history(served, budgeted):
    user_id = BUSY[1]
    ever = {item for item, _ in _events_of(user_id)}
    _items(served, user_id)
    cached = _cached_history(served, user_id, BUDGET)
    assert cached is not None and len(cached["items"]) == BUDGET
    assert set(cached["seen"]) == ever
    # Erase the events behind the service's back (no ingest, so the record stays): an answer
    # with other options, computed afresh, still leaves out what the cached record holds.
    factory = make_sessionmaker(make_engine(budgeted.resolved_database_url))
    with factory.begin() as session:
        session.execute(delete(Event).where(Event.user_id == user_id))
    second = _items(served, user_id, n=N - 1)
    assert not set(second) & ever


def test_a_retrain_with_another_budget_reads_that_many_events(served, budgeted):
    user_id = BUSY[2]
    _items(served, user_id)
    assert len(_cached_history(served, user_id, BUDGET)["items"]) == BUDGET

    wider = override(budgeted, history_length=4 * BUDGET)
    with TestClient(create_app(wider)) as client:
        _retrain(client, 2)
        assert client.app.state.registry.current.recommender.config.history_length == 4 * BUDGET
        fresh = _items(client, user_id)
        cached = _cached_history(client, user_id, 4 * BUDGET)
        assert cached is not None and len(cached["items"]) == 4 * BUDGET
        assert [item for item, _ in _events_of(user_id)[: 4 * BUDGET]] == cached["items"]
        assert not set(fresh) & {item for item, _ in _events_of(user_id)}


def test_placements(served):
    user_id = BUSY[0]
    ever = {item for item, _ in _events_of(user_id)}
    again = _items(served, user_id, placement="buy_again", n=10)
    assert again and set(again) <= ever
    home = _items(served, user_id, placement="home", n=10)
    assert set(home) & ever and set(home) - ever
    response = served.get(f"/recommend/{user_id}", params={"placement": "sideways"})
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"


def test_the_service_trains_with_the_budget_the_model_defaults_to():
    """One default budget: what a retrain writes into the model (the settings') and the
    model's own (evaluation, `tastemaker evaluate`, the quality benchmark) are the same."""
    from app.config import Settings
    from app.ml.recommender import RecommenderConfig

    service = Settings.model_fields["history_length"].default  # not read from the environment
    assert service == RecommenderConfig.model_fields["history_length"].default == 200
