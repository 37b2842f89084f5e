"""The outbox dispatcher: delivers changes to subscribers, signed, in order per customer.

Every worker runs one, but only the holder of the store's lease delivers, so one dispatcher
delivers at a time across every replica; another takes over once a holder stops renewing it.
The holder renews the lease while a batch is in flight (a hanging receiver cannot outlast it),
and takes and records deliveries only while the lease still has its generation (a fencing
token): a dispatcher that lost the lease stops sending and cannot record what it sent, so the
next holder sends those deliveries again. A delivery is recorded only after the receiver
answered: a worker stopped or killed in between delivers the same event (same event id) again
later, so delivery is at least once. Per subscription and customer only the oldest pending
delivery is due, so a customer's changes arrive in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import unit_of_work, utcnow
from app.security.signing import sign
from app.subscriptions import repository, service
from app.subscriptions.service import Evaluate

log = logging.getLogger(__name__)
LEASE = "outbox"
BATCH = 64
# Deliveries in flight at once. Each may hold a thread of the worker's shared pool (name
# look-ups, recording), so a slow receiver must not take the threads requests need.
CONCURRENCY = 8
EVENT_ID_HEADER = "X-Tastemaker-Event-Id"
TIMESTAMP_HEADER = "X-Tastemaker-Timestamp"
SIGNATURE_HEADER = "X-Tastemaker-Signature"


@dataclass(frozen=True)
class Attempt:
    """One delivery to make: what to POST where, and how to sign it."""

    id: int
    event_id: str
    url: str
    secret: str
    payload: dict[str, Any]


def backoff(settings: Settings, attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: doubling, capped, half jittered
    (between half and all of the capped delay)."""
    ceiling = min(
        settings.webhook_backoff_max_seconds, settings.webhook_backoff_seconds * 2 ** (attempts - 1)
    )
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def schedule(settings: Settings, rng: random.Random | None = None) -> list[float]:
    """The waits between a delivery's attempts until it is dead, as the dispatcher draws them."""
    return [backoff(settings, n, rng) for n in range(1, settings.webhook_max_attempts)]


def signed_request(attempt: Attempt, now: float) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery, signed as inbound webhooks are."""
    body = orjson.dumps(attempt.payload)
    timestamp = str(int(now))
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "Tastemaker-Webhooks",
        EVENT_ID_HEADER: attempt.event_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(attempt.secret, timestamp, body),
    }


class Dispatcher:
    """Polls the outbox while holding the lease and delivers what is due.

    `clock` (the time the store is compared with) and `rng` (the jitter's draws) are there for
    tests that move time or fix the draws.
    """

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        evaluate: Evaluate | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        # The live assignment of customers an ingest noted (None: only retrains publish).
        self.evaluate = evaluate
        self.clock = clock
        self.rng = rng
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop at once (a delivery in flight stays pending) and give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        with suppress(SQLAlchemyError):
            await run_in_threadpool(self._release)

    async def _run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            while True:
                try:
                    await self.deliver_due(client)
                except Exception:  # the store may be down: try again at the next poll
                    log.exception("outbound webhook dispatch failed")
                await asyncio.sleep(self.settings.webhook_poll_seconds)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Deliver every due delivery while holding the lease; how many were attempted."""
        attempted = 0
        while (generation := await run_in_threadpool(self._take_lease)) is not None:
            await run_in_threadpool(self._publish_ingested)
            due = await run_in_threadpool(self._due, generation)
            attempted += len(due)
            if not due or not await self._send(client, due, generation) or len(due) < BATCH:
                break
        return attempted

    async def _send(self, client: httpx.AsyncClient, due: list[Attempt], generation: int) -> bool:
        """Deliver a batch, renewing the lease while it runs; False, the rest of the batch
        cancelled, once the lease is lost (its unrecorded deliveries stay pending)."""
        slots = asyncio.Semaphore(CONCURRENCY)
        batch = asyncio.gather(*(self._deliver(client, a, slots, generation) for a in due))
        try:
            while True:
                done, _ = await asyncio.wait(
                    {batch}, timeout=self.settings.webhook_lease_seconds / 3
                )
                if done:
                    batch.result()  # what a delivery raised (the store down) goes to _run's log
                    return True
                if not await run_in_threadpool(self._renew, generation):
                    log.warning("the webhook lease was lost mid-batch; its deliveries stay pending")
                    return False
        finally:
            if not batch.done():
                batch.cancel()
                with suppress(asyncio.CancelledError):
                    await batch

    def _take_lease(self) -> int | None:
        try:
            with unit_of_work(self.factory) as session:
                # Shops without subscriptions pay one cheap read per poll, and no write.
                if not repository.any_subscription(session):
                    return None
                return repository.take_lease(
                    session, LEASE, self.holder, self.clock(), self.settings.webhook_lease_seconds
                )
        except IntegrityError:  # another dispatcher created the lease first
            return None

    def _renewed(self, session: Session, generation: int) -> bool:
        """Renew the lease in `session` if this dispatcher still holds it at `generation`."""
        return repository.renew_lease(
            session,
            LEASE,
            self.holder,
            generation,
            self.clock(),
            self.settings.webhook_lease_seconds,
        )

    def _renew(self, generation: int) -> bool:
        try:
            with unit_of_work(self.factory) as session:
                return self._renewed(session, generation)
        except SQLAlchemyError:  # not known to hold it: stop sending
            log.exception("the webhook lease could not be renewed")
            return False

    def _publish_ingested(self) -> None:
        if self.evaluate is not None:
            with unit_of_work(self.factory) as session:
                service.publish_ingested(session, self.evaluate)

    def _release(self) -> None:
        with unit_of_work(self.factory) as session:
            repository.release_lease(session, LEASE, self.holder, self.clock())

    def _due(self, generation: int) -> list[Attempt]:
        with unit_of_work(self.factory) as session:
            # Renewed in the transaction that takes the rows: a lost lease takes none, and the
            # batch starts with a whole lease ahead of it.
            if not self._renewed(session, generation):
                return []
            return [
                Attempt(row.id, row.event_id, sub.url, sub.secret, row.payload)
                for row, sub in repository.due(session, self.clock(), BATCH)
            ]

    async def _deliver(
        self, client: httpx.AsyncClient, attempt: Attempt, slots: asyncio.Semaphore, generation: int
    ) -> None:
        async with slots:
            body, headers = signed_request(attempt, time.time())
            error: str | None = None
            try:
                response = await client.post(attempt.url, content=body, headers=headers)
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except Exception as exc:  # refused, timed out, an unusable URL: one failed attempt
                error = f"{type(exc).__name__}: {exc}"[:500]
            # Recording is not cancelled with the dispatcher: a stop once it began changes nothing.
            await asyncio.shield(run_in_threadpool(self.record, attempt.id, error, generation))

    def record(self, delivery_id: int, error: str | None, generation: int) -> bool:
        """Record one attempt's outcome (`error` None: delivered) if this dispatcher still holds
        the lease in `generation`; whether it was recorded (a delivery not recorded stays
        pending, and is sent again with its event id)."""
        with unit_of_work(self.factory) as session:
            if not repository.hold_lease(session, LEASE, self.holder, generation):
                return False  # another dispatcher owns the outbox now
            row = repository.get_delivery(session, delivery_id)
            if row is None or row.status != "pending":
                return False  # its subscription or customer was deleted meanwhile
            now = self.clock()
            row.attempts += 1
            row.last_error = error
            if error is None:
                row.status, row.delivered_at = "delivered", now
            elif row.attempts >= self.settings.webhook_max_attempts:
                row.status = "dead"
                log.warning("outbound delivery %s is dead after %s attempts", row.id, row.attempts)
            else:
                delay = backoff(self.settings, row.attempts, self.rng)
                row.next_attempt_at = now + timedelta(seconds=delay)
            return True
