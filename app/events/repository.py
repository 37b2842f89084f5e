"""Every SQL statement about events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.catalog.models import Item
from app.customers.models import User
from app.events.models import Event


def _insert(session: Session, model: Any) -> Any:
    # Core inserts on the table: the ORM's bulk path costs more than the database on ingest.
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model.__table__)


def _among(session: Session, column: Any, values: list[Any]) -> ColumnElement[bool]:
    # `column IN (...)`; on PostgreSQL as one array parameter: a batch's 500 bind parameters
    # cost more to render and send than the index look-up itself.
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def _missing(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Read first: an INSERT .. ON CONFLICT of a key another open transaction just inserted
    # waits for that transaction, which serialises concurrent batches of the same users.
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    existing = set(session.scalars(select(model.id).where(_among(session, model.id, ids))))
    return [row for row in rows if row["id"] not in existing]


def ensure_users(session: Session, users: Sequence[str | dict[str, Any]]) -> None:
    """Create the users that do not exist yet (ids, or dicts with attributes); never update."""
    rows = _missing(session, User, [u if isinstance(u, dict) else {"id": u} for u in users])
    if rows:
        stmt = _insert(session, User).on_conflict_do_nothing(index_elements=["id"])
        session.execute(stmt, [{"attributes": {}, **row} for row in rows])


def ensure_items(session: Session, items: Sequence[str | dict[str, Any]]) -> None:
    """Create items the catalogue does not know yet (ids, or dicts with catalogue fields)."""
    rows = _missing(session, Item, [i if isinstance(i, dict) else {"id": i} for i in items])
    if rows:
        defaults = {"title": "", "description": "", "categories": [], "attributes": {}}
        stmt = _insert(session, Item).on_conflict_do_nothing(index_elements=["id"])
        session.execute(stmt, [{**defaults, **row} for row in rows])


def insert_events(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert events, skipping any whose event_id is already stored; return how many landed."""
    if not rows:
        return 0
    ids = [r["event_id"] for r in rows if r["event_id"] is not None]
    if ids:
        stored = set(
            session.scalars(select(Event.event_id).where(_among(session, Event.event_id, ids)))
        )
        rows = [r for r in rows if r["event_id"] is None or r["event_id"] not in stored]
    if not rows:
        return 0
    # ON CONFLICT still guards the race with a concurrent batch carrying the same ids; the
    # row count says how many landed (RETURNING would cost half as much again as the insert).
    stmt = _insert(session, Event).on_conflict_do_nothing(index_elements=["event_id"])
    result = session.execute(stmt, rows)
    return result.rowcount if result.rowcount is not None and result.rowcount >= 0 else len(rows)


def recent_events(session: Session, user_id: str, limit: int) -> Sequence[Event]:
    """A user's most recent events, newest first (served by the user/time index)."""
    stmt = (
        select(Event)
        .where(Event.user_id == user_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def delete_user_events(session: Session, user_id: str) -> int:
    """Delete every event of a user; return how many."""
    return session.execute(delete(Event).where(Event.user_id == user_id)).rowcount or 0


def count_events(session: Session) -> int:
    """How many events are stored."""
    return session.scalar(select(func.count()).select_from(Event)) or 0


def stream_events(session: Session, batch_size: int = 50_000) -> Iterator[Sequence[Any]]:
    """All events as (id, user_id, item_id, type, value, order_id, occurred_at) rows, by id."""
    last_id = 0
    while True:
        rows = session.execute(
            select(
                Event.id,
                Event.user_id,
                Event.item_id,
                Event.type,
                Event.value,
                Event.order_id,
                Event.occurred_at,
            )
            .where(Event.id > last_id)
            .order_by(Event.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        yield rows
