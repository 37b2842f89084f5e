"""Optional retraining schedule: every N minutes, or after M new events.

Where it runs. On one host, one process: `tastemaker serve` hands the schedule to worker 0 only
(`retrain_schedule_here` is false in the others; a worker 0 that dies is started again with it),
and with one worker, the worker runs it. Across replicas, each host's process checks, and the
store decides: the database's single-run slot (a unique `training_run.active_slot`: at most one
run queued or running) lets only one request start a run, and "when was the last run
requested" is read from the store, so the replicas agree on timing. That guarantee holds on
SQLite and PostgreSQL alike, so no PostgreSQL advisory lock is taken. A replica can be kept out
of the schedule with `TASTEMAKER_RETRAIN_SCHEDULE_HERE=false`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import pop_after_commit, utcnow
from app.training import repository, service
from app.training.models import TrainingRun

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
        new = repository.events_after(session, _trained_up_to(session, last))
        if new >= settings.retrain_after_events and (last is None or last.active_slot is None):
            return f"{new} new events since the active model"
    return None


def _trained_up_to(session: Session, last: TrainingRun | None) -> int:
    """The newest event id the active version or the last finished run was trained on.

    The last run counts even when the quality gate kept its version inactive: otherwise the
    same events would request a retrain again at every check.
    """
    ids = [0]
    active = repository.active_version(session)
    if active is not None:
        ids.append(int((active.metrics or {}).get("data", {}).get("last_event_id", 0)))
    if last is not None:
        ids.append(int((last.metrics or {}).get("data", {}).get("last_event_id", 0)))
    return max(ids)


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


def _interval(settings: Settings) -> float:
    """Seconds between checks: a quarter of the period, within [1 s, CHECK_SECONDS]."""
    if not settings.retrain_every_minutes:
        return CHECK_SECONDS
    return min(CHECK_SECONDS, max(1.0, settings.retrain_every_minutes * 60 / 4))


async def run_schedule(factory: sessionmaker[Session], settings: Settings) -> None:
    """Check every few seconds whether a retrain is due, and request one."""
    log.info("retrain schedule runs in this process [%d]", os.getpid())
    while True:
        await asyncio.sleep(_interval(settings))
        try:
            reason, start = await run_in_threadpool(_check_and_request, factory, settings)
        except Exception:  # the schedule must survive a store outage
            log.warning("retrain schedule check failed", exc_info=True)
            continue
        for callback in start:
            await callback()
        if reason:
            log.info("retrain requested: %s", reason)
