"""Every SQL statement about customers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.customers.models import User
from app.events.models import Event


def get(session: Session, user_id: str) -> User | None:
    """The user with this id, or None."""
    return session.get(User, user_id)


def delete_user(session: Session, user_id: str) -> None:
    """Delete a user and, explicitly (SQLite may run without cascades), all their events."""
    session.execute(delete(Event).where(Event.user_id == user_id))
    session.execute(delete(User).where(User.id == user_id))


def all_events(session: Session, user_id: str) -> Sequence[Event]:
    """Every event of a user, oldest first."""
    return session.scalars(
        select(Event).where(Event.user_id == user_id).order_by(Event.occurred_at, Event.id)
    ).all()
