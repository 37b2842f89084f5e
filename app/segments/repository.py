"""SQL behind live segment assignment: one customer's events with their items' categories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.models import Item
from app.events.models import Event, User


def user_exists(session: Session, user_id: str) -> bool:
    """Whether the customer is known."""
    return session.get(User, user_id) is not None


#: What segmentation reads of an event: (item_id, type, value, order_id, occurred_at, categories).
_EVENT_COLUMNS = (
    Event.item_id,
    Event.type,
    Event.value,
    Event.order_id,
    Event.occurred_at,
    Item.categories,
)


def user_events(session: Session, user_id: str) -> Sequence[Any]:
    """(item_id, type, value, order_id, occurred_at, categories) of every event of a user."""
    return session.execute(
        select(*_EVENT_COLUMNS)
        .join(Item, Item.id == Event.item_id)
        .where(Event.user_id == user_id)
        .order_by(Event.occurred_at)
    ).all()


def users_events(session: Session, user_ids: Sequence[str]) -> list[Any]:
    """(user_id, *what :func:`user_events` reads) of every event of these users, in chunks."""
    rows: list[Any] = []
    for start in range(0, len(user_ids), 500):
        rows.extend(
            session.execute(
                select(Event.user_id, *_EVENT_COLUMNS)
                .join(Item, Item.id == Event.item_id)
                .where(Event.user_id.in_(user_ids[start : start + 500]))
                .order_by(Event.occurred_at)
            ).all()
        )
    return rows
