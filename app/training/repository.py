"""Every SQL statement about training runs and model versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.events.models import Event
from app.training.models import ModelVersion, RunStatus, StoreIdentity, TrainingRun


def active_run(session: Session) -> TrainingRun | None:
    """The queued or running run, if any."""
    return session.scalar(select(TrainingRun).where(TrainingRun.active_slot == 1))


def create_run(session: Session) -> TrainingRun | None:
    """Queue a run; None when another is queued or running (the unique slot decides)."""
    run = TrainingRun(status="queued", active_slot=1, requested_at=utcnow())
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        return None
    return run


def get_run(session: Session, run_id: int, *, for_update: bool = False) -> TrainingRun | None:
    """The run with this id (row-locked until commit with `for_update`)."""
    return session.get(
        TrainingRun, run_id, with_for_update=for_update, populate_existing=for_update
    )


def finish_run(session: Session, run: TrainingRun, status: RunStatus, **fields: Any) -> None:
    """Mark a run succeeded or failed and free the single-run slot."""
    run.status = status
    run.active_slot = None
    run.finished_at = utcnow()
    for name, value in fields.items():
        setattr(run, name, value)
    session.flush()


def touch_run(session: Session, run_id: int, at: datetime) -> None:
    """Record a heartbeat of the process training this run."""
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(heartbeat_at=at))


def last_run(session: Session) -> TrainingRun | None:
    """The most recently requested run."""
    return session.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1))


def run_times(session: Session) -> list[tuple[str, datetime | None, datetime | None]]:
    """(status, started, finished) of every run, for the training metrics."""
    rows = session.execute(
        select(TrainingRun.status, TrainingRun.started_at, TrainingRun.finished_at)
    )
    return [(status, started, finished) for status, started, finished in rows]


def events_after(session: Session, event_id: int) -> int:
    """How many events were stored after the event with this id."""
    return session.scalar(select(func.count()).select_from(Event).where(Event.id > event_id)) or 0


def active_version(session: Session) -> ModelVersion | None:
    """The active model version, if any."""
    return session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def versions(session: Session) -> Sequence[ModelVersion]:
    """Every model version, newest first."""
    return session.scalars(select(ModelVersion).order_by(ModelVersion.version.desc())).all()


def get_version(session: Session, version: int) -> ModelVersion | None:
    """The model version with this number."""
    return session.get(ModelVersion, version)


def next_version(session: Session) -> int:
    """The number the next bundle gets."""
    return (session.scalar(select(func.max(ModelVersion.version))) or 0) + 1


def activate(session: Session, version: ModelVersion) -> None:
    """Make `version` the only active one."""
    session.execute(
        update(ModelVersion).where(ModelVersion.is_active.is_(True)).values(is_active=False)
    )
    session.flush()
    version.is_active = True
    session.flush()


IDENTITY_ROW = 1


def store_identity(session: Session) -> str:
    """This store's id, created (random) the first time it is asked for; the caller commits."""
    row = session.get(StoreIdentity, IDENTITY_ROW)
    if row is not None:
        return row.store_id
    try:
        with session.begin_nested():
            session.add(StoreIdentity(id=IDENTITY_ROW, store_id=uuid.uuid4().hex))
            session.flush()
    except IntegrityError:  # another process created it first: theirs stands
        pass
    return session.get(StoreIdentity, IDENTITY_ROW, populate_existing=True).store_id  # type: ignore[union-attr]
