"""Optional retraining schedule: every N minutes, or after M new events.

Every replica runs the check; the database's single-run slot makes sure only one run starts,
and "when was the last run requested" is read from the store, so replicas agree on timing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import pop_after_commit, utcnow
from app.training import repository, service

log = logging.getLogger(__name__)
CHECK_SECONDS = 30.0


def is_due(session: Session, settings: Settings) -> str | None:
    """Why a retrain is due now, or None."""
    last = repository.last_run(session)
    if settings.retrain_every_minutes:
        period = timedelta(minutes=settings.retrain_every_minutes)
        if last is None or utcnow() - last.requested_at >= period:
            return f"schedule: every {settings.retrain_every_minutes} minutes"
    if settings.retrain_after_events:
        active = repository.active_version(session)
        since = 0
        if active is not None:
            since = int(active.metrics.get("data", {}).get("last_event_id", 0))
        new = repository.events_after(session, since)
        if new >= settings.retrain_after_events and (last is None or last.active_slot is None):
            return f"{new} new events since the active model"
    return None


def _check_and_request(
    factory: sessionmaker[Session], settings: Settings
) -> tuple[str | None, list]:
    with factory.begin() as session:
        reason = is_due(session, settings)
        if reason is None:
            return None, []
        accepted = service.request_retrain(session, settings)
        if accepted.already_running:
            return None, []
        session.flush()
        return reason, pop_after_commit(session)


async def run_schedule(factory: sessionmaker[Session], settings: Settings) -> None:
    """Check every few seconds whether a retrain is due, and request one."""
    while True:
        await asyncio.sleep(min(CHECK_SECONDS, max(1.0, settings.retrain_every_minutes * 60 / 4)))
        try:
            reason, start = await run_in_threadpool(_check_and_request, factory, settings)
        except Exception:  # the schedule must survive a store outage
            log.warning("retrain schedule check failed", exc_info=True)
            continue
        for callback in start:
            await callback()
        if reason:
            log.info("retrain requested: %s", reason)
