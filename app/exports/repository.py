"""SQL of campaign exports: the job rows, the customers to export, erasures since a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.customers.models import Erasure
from app.db import utcnow
from app.events.models import User
from app.exports.models import ExportJob, ExportStatus


def get(session: Session, job_id: int, *, for_update: bool = False) -> ExportJob | None:
    """The job, locked for this transaction when `for_update`."""
    return session.get(ExportJob, job_id, with_for_update=for_update)


def newest(session: Session, limit: int) -> Sequence[ExportJob]:
    """The latest jobs, newest first."""
    return session.scalars(select(ExportJob).order_by(ExportJob.id.desc()).limit(limit)).all()


def customer_ids(session: Session) -> list[str]:
    """Every known customer, in id order."""
    return list(session.scalars(select(User.id).order_by(User.id)))


def attributes_of(session: Session, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored attributes of these customers (the ones that still exist)."""
    rows = session.execute(select(User.id, User.attributes).where(User.id.in_(user_ids)))
    return {user_id: dict(attributes or {}) for user_id, attributes in rows}


def erased_since(session: Session, moment: datetime) -> bool:
    """Whether any customer was erased at or after `moment`."""
    latest = session.scalar(select(func.max(Erasure.erased_at)))
    return latest is not None and latest >= moment


def set_status(
    session: Session, job: ExportJob, status: ExportStatus, *, error: str | None = None
) -> None:
    """Move a job on: `running` stamps its start, `succeeded`/`failed` its end."""
    now = utcnow()
    job.status = status
    if status == "running":
        job.started_at = job.heartbeat_at = now
    elif status in ("succeeded", "failed"):
        job.finished_at = now
        job.error = error
