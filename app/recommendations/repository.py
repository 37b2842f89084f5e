"""SQL a recommendation needs on a cache miss: who the user is, what they did, all they ever had."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.models import Event, User


@dataclass(frozen=True)
class UserContext:
    """A user's existence, attributes, recent events and every item they ever had.

    `history` holds (item, type, value, epoch s) newest first; `seen` is None when `history`
    is the user's whole history, else the distinct item ids of all their events.
    """

    exists: bool
    attributes: dict[str, Any]
    history: list[tuple[str, str, float | None, float]]
    seen: list[str] | None = None


def user_context(session: Session, user_id: str, limit: int) -> UserContext:
    """Read the user row, their `limit` most recent events and, past `limit`, all their items.

    Every read is served by the primary key or by ``ix_event_user_id_occurred_at_item_id``
    (the distinct items from the index alone); they are read only for a user with more than
    `limit` events.
    """
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
    seen = None
    if len(history) >= limit:
        seen = list(
            session.scalars(select(Event.item_id).where(Event.user_id == user_id).distinct())
        )
    return UserContext(True, dict(user.attributes or {}), history, seen)
