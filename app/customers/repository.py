"""Every SQL statement about customers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.customers.models import Erasure, UserMerge
from app.events.models import Event, User


def get(session: Session, user_id: str) -> User | None:
    """The user with this id, or None."""
    return session.get(User, user_id)


def delete_user(session: Session, user_id: str) -> None:
    """Delete a user and, explicitly (SQLite may run without cascades), all their events;
    record the erasure in the same transaction, for every worker's bundle look-ups."""
    session.execute(delete(Event).where(Event.user_id == user_id))
    session.execute(delete(User).where(User.id == user_id))
    session.add(Erasure(user_id=user_id))


def erasures_since(session: Session, last_id: int, since: datetime) -> list[tuple[int, str]]:
    """(id, user id) of the erasures after `last_id` or recorded since `since`, by id.

    Ids are handed out at insert, not at commit: an erasure whose transaction commits after a
    later one's is found by its time.
    """
    rows = session.execute(
        select(Erasure.id, Erasure.user_id)
        .where(or_(Erasure.id > last_id, Erasure.erased_at >= since))
        .order_by(Erasure.id)
    )
    return [(row_id, user_id) for row_id, user_id in rows]


def all_events(session: Session, user_id: str) -> Sequence[Event]:
    """Every event of a user, oldest first."""
    return session.scalars(
        select(Event).where(Event.user_id == user_id).order_by(Event.occurred_at, Event.id)
    ).all()


def move_events(session: Session, from_user: str, to_user: str) -> int:
    """Give every event of `from_user` to `to_user` in one UPDATE; how many moved.

    Each row moves once: a concurrent merge of the same visitor waits for this one's row locks
    (PostgreSQL) or its write lock (SQLite), then finds those rows no longer the visitor's.
    """
    result = session.execute(
        update(Event).where(Event.user_id == from_user).values(user_id=to_user),
        execution_options={"synchronize_session": False},
    )
    return cast(CursorResult[Any], result).rowcount


def record_merge(session: Session, user_id: str, visitor_id: str, events: int) -> None:
    """Remember that `visitor_id`'s events became `user_id`'s (for the customer's erasure)."""
    session.add(UserMerge(user_id=user_id, visitor_id=visitor_id, events=events))


#: How deep merges into merged customers are followed when erasing (a bound, not a real depth).
MAX_MERGE_DEPTH = 16


def merged_into(session: Session, user_id: str) -> list[str]:
    """Every visitor merged into `user_id`, and into those, and so on (sorted)."""
    found: set[str] = set()
    frontier = {user_id}
    for _ in range(MAX_MERGE_DEPTH):
        visitors = set(
            session.scalars(select(UserMerge.visitor_id).where(UserMerge.user_id.in_(frontier)))
        )
        frontier = visitors - found - {user_id}
        if not frontier:
            break
        found |= frontier
    return sorted(found)


def forget_merges(session: Session, user_ids: list[str]) -> None:
    """Drop every merge record naming these users, on either side (they are being erased)."""
    session.execute(
        delete(UserMerge).where(
            or_(UserMerge.user_id.in_(user_ids), UserMerge.visitor_id.in_(user_ids))
        )
    )
