"""Outbound webhooks when a dispatcher hangs, loses its lease or dies, with a real receiver.

A batch that outlasts the lease (a receiver holding every request) keeps it: a second
dispatcher sends nothing meanwhile. A dispatcher whose lease was taken stops and records
nothing; the new holder sends the same events again. A service killed with SIGKILL mid-delivery
loses nothing: once its lease expires, the next process sends the interrupted event again.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from app.demo import import_shop
from app.subscriptions import repository, service
from app.subscriptions.dispatcher import LEASE, Dispatcher
from app.subscriptions.models import DispatcherLease, Outbox
from tests.conftest import override
from tests.faults.servers import ServiceProcess
from tests.receiver import Received, Receiver

SHOP = generate_shop(n_users=20, n_items=10, n_events=300, seed=3)
USERS = sorted(set(SHOP.events.user_id))[:6]
SECRET = "s3cret-shared-with-the-receiver"
LEASE_SECONDS = 1.5


class HangingReceiver(Receiver):
    """A receiver that also holds every request while `hanging` is set, until `release`."""

    def __init__(self) -> None:
        self.hanging = False
        super().__init__()

    def _answer(self, got: Received) -> int:
        if not self.hanging:
            return super()._answer(got)
        with self._lock:
            self.received.append(got)
        self.release.wait(30)
        return 200


@pytest.fixture
def receiver() -> Iterator[HangingReceiver]:
    r = HangingReceiver()
    yield r
    r.release.set()
    r.stop()


@pytest.fixture
def store(settings: Settings) -> Settings:
    """A short lease, receivers waited for longer than it, on a store holding a small shop."""
    short = override(
        settings,
        webhook_lease_seconds=LEASE_SECONDS,
        webhook_timeout_seconds=10.0,
        webhook_poll_seconds=0.1,
    )
    import_shop(_factory(short), SHOP)
    return short


def _factory(settings: Settings):
    return _factory_of(settings.resolved_database_url)


@functools.cache
def _factory_of(url: str):
    # One engine per store for the whole run: the tests read it in loops.
    return make_sessionmaker(make_engine(url))


def _seed(settings: Settings, url: str, per_user: int) -> dict[str, list[str]]:
    """`per_user` pending deliveries per customer of USERS; their event ids by customer, in
    delivery order."""
    with unit_of_work(_factory(settings)) as session:
        sub = repository.add_subscription(session, url, ["segment.entered"], SECRET)
        now = utcnow()
        rows = [
            service.delivery(sub.id, u, "segment.entered", {"segment": {"id": n}}, 1, now)
            for u in USERS
            for n in range(per_user)
        ]
        repository.add_outbox(session, rows)
    order: dict[str, list[str]] = {}
    for row in rows:
        order.setdefault(row["user_id"], []).append(row["event_id"])
    return order


def _rows(settings: Settings) -> dict[str, Outbox]:
    with _factory(settings)() as session:
        return {row.event_id: row for row in session.scalars(select(Outbox))}


def _lease(settings: Settings) -> DispatcherLease:
    with _factory(settings)() as session:
        row = session.get(DispatcherLease, LEASE)
        assert row is not None
        return row


def _replica(settings: Settings) -> Dispatcher:
    """A dispatcher as another replica runs it: its own engine, its own holder name."""
    return Dispatcher(settings, make_sessionmaker(make_engine(settings.resolved_database_url)))


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(settings.webhook_timeout_seconds))


def _seed_held(settings: Settings, receiver) -> tuple[dict[str, list[str]], set[str]]:
    """Two pending events per customer, and a receiver that holds every request open.

    Returns each customer's event ids in order, and the first of each (what a batch sends).
    """
    order = _seed(settings, receiver.url, 2)
    receiver.hanging = True
    return order, {ids[0] for ids in order.values()}


async def _held_batch(
    dispatcher: Dispatcher, client: httpx.AsyncClient, receiver, heads: set[str]
) -> asyncio.Task[int]:
    """`dispatcher`'s batch, started and waiting on the receiver with every head sent."""
    batch = asyncio.create_task(dispatcher.deliver_due(client))
    await _until(lambda: len(receiver.received) == len(heads))
    return batch


def test_a_batch_that_outlasts_the_lease_keeps_it(store, receiver):
    order, heads = _seed_held(store, receiver)

    async def scenario() -> None:
        first, second = _replica(store), _replica(store)
        async with _client(store) as client:
            batch = await _held_batch(first, client, receiver, heads)
            # The receiver holds the batch for twice the lease: the holder keeps renewing it.
            deadline = time.monotonic() + 2 * LEASE_SECONDS
            while time.monotonic() < deadline:
                assert await second.deliver_due(client) == 0
                assert _lease(store).holder == first.holder
                await asyncio.sleep(0.1)
            receiver.hanging = False
            receiver.release.set()
            assert await batch == len(heads)
            assert await first.deliver_due(client) == len(heads)  # the second of each

    asyncio.run(scenario())
    by_event = receiver.by_event()
    assert set(by_event) == {e for ids in order.values() for e in ids}
    assert all(len(attempts) == 1 for attempts in by_event.values())
    rows = _rows(store)
    assert {(r.status, r.attempts) for r in rows.values()} == {("delivered", 1)}


def test_a_dispatcher_that_lost_the_lease_stops_and_records_nothing(store, receiver):
    order, heads = _seed_held(store, receiver)

    async def scenario() -> None:
        first, second = _replica(store), _replica(store)
        async with _client(store) as client:
            batch = await _held_batch(first, client, receiver, heads)
            lost = _lease(store).generation
            # The first dispatcher stalls past its lease (a paused process, a slow store): the
            # second takes the lease as it does once the first's has expired by its clock.
            later = utcnow() + timedelta(seconds=10 * LEASE_SECONDS)
            with unit_of_work(_factory(store)) as session:
                taken = repository.take_lease(session, LEASE, second.holder, later, LEASE_SECONDS)
            assert taken == lost + 1
            receiver.hanging = False  # the second's requests are answered at once
            assert await second.deliver_due(client) == len(heads)
            rows = _rows(store)
            assert {(rows[e].status, rows[e].attempts) for e in heads} == {("delivered", 1)}
            # An answer to the first dispatcher cannot be recorded any more: it is fenced out.
            waiting = rows[next(iter(order.values()))[1]]
            assert not first.record(waiting.id, None, lost)
            assert _rows(store)[waiting.event_id].status == "pending"
            receiver.release.set()
            await batch  # cancelled by its failed renewal, or its records refused
            assert await first.deliver_due(client) == 0
            assert await second.deliver_due(client) == len(heads)

    asyncio.run(scenario())
    rows = _rows(store)
    assert {(r.status, r.attempts, r.last_error) for r in rows.values()} == {("delivered", 1, None)}
    by_event = receiver.by_event()
    for event_id, attempts in by_event.items():
        # Each head twice (the lost holder's, then the new one's), the same event both times.
        assert len(attempts) == (2 if event_id in heads else 1)
        assert len({a.body for a in attempts}) == 1
    assert set(by_event) == set(rows)


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
def test_a_service_killed_mid_delivery_loses_nothing(store, receiver, tmp_path: Path):
    lease = 6.0  # longer than a restart: the next process waits for the old lease to expire
    served = override(store, webhook_lease_seconds=lease, workers=1)
    order = _seed(served, receiver.url, 3)
    receiver.hold.set()  # the first request is received, then its answer never comes
    first = ServiceProcess(served, tmp_path)
    try:
        first.start()
        deadline = time.monotonic() + 20
        while receiver.held is None:
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.02)
    finally:
        if first.process is not None:  # SIGKILL: no lifespan shutdown, no lease released
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
    killed = _lease(served)
    expires_in = (killed.expires_at - utcnow()).total_seconds()
    expired = time.monotonic() + expires_in
    held = receiver.held
    assert held is not None and _rows(served)[held.event_id].status == "pending"
    receiver.release.set()

    second = ServiceProcess(served, tmp_path)
    try:
        second.start()
        deadline = time.monotonic() + lease + 15
        while {r.status for r in _rows(served).values()} != {"delivered"}:
            assert time.monotonic() < deadline, second.log_tail()
            time.sleep(0.1)
    finally:
        second.stop()

    again = receiver.by_event()[held.event_id]
    assert len(again) == 2 and again[0].body == again[1].body  # the same event, sent again
    assert again[1].at >= expired - 0.5  # not before the killed process's lease ran out
    assert _lease(served).generation > killed.generation
    # Every event arrived, each customer's in order (a repeat right after the first try).
    received = [r.event_id for r in receiver.received]
    for ids in order.values():
        mine = [e for e in received if e in ids]
        assert [e for i, e in enumerate(mine) if i == 0 or mine[i - 1] != e] == ids
