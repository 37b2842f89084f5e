"""SQL a recommendation needs on a cache miss: who the user is and what they did lately."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.customers.models import User
from app.events.models import Event


@dataclass(frozen=True)
class UserContext:
    """A user's existence, attributes and recent (item, type, value, epoch s) events, newest first."""

    exists: bool
    attributes: dict[str, Any]
    history: list[tuple[str, str, float | None, float]]


def user_context(session: Session, user_id: str, limit: int) -> UserContext:
    """Read the user row and their `limit` most recent events (two indexed reads)."""
    user = session.get(User, user_id)
    if user is None:
        return UserContext(False, {}, [])
    rows = session.execute(
        select(Event.item_id, Event.type, Event.value, Event.occurred_at)
        .where(Event.user_id == user_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit)
    ).all()
    history = [(item, type_, value, at.timestamp()) for item, type_, value, at in rows]
    return UserContext(True, dict(user.attributes or {}), history)
