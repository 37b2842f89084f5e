"""Every SQL statement about API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.security.models import ApiKey


def all_keys(session: Session) -> Sequence[ApiKey]:
    """Every key, revoked ones included, by name."""
    return session.scalars(select(ApiKey).order_by(ApiKey.name)).all()


def active_by_name(session: Session, name: str) -> ApiKey | None:
    """The active (not revoked) key called `name`."""
    return session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))


def add(session: Session, key: ApiKey) -> None:
    """Store a new key."""
    session.add(key)
    session.flush()


def revoke(session: Session, key: ApiKey) -> None:
    """Revoke a key from now on."""
    key.revoked_at = utcnow()
    session.flush()
