"""Every SQL statement about events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from app.catalog import repository as catalog_repository
from app.catalog.models import Item
from app.db import utcnow
from app.events.models import Event, IngestChange, User

# What an event says, in the order importers, conflict checks and training read it.
PAYLOAD = (
    Event.user_id,
    Event.item_id,
    Event.type,
    Event.value,
    Event.order_id,
    Event.occurred_at,
)


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


PLACEHOLDER_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "categories": [],
    "attributes": {},
}


def ensure_items(session: Session, items: Sequence[str | dict[str, Any]]) -> None:
    """Create the items an ingest names that do not exist yet, in one look-up.

    A bare id becomes a placeholder (never recommended: see
    :func:`app.catalog.repository.recommendable`); a dict carries catalogue fields from an
    import, creates a described item, and describes a placeholder already there. A described
    item is never changed.
    """
    rows = [i if isinstance(i, dict) else {"id": i} for i in items]
    if not rows:
        return
    ids = [row["id"] for row in rows]
    existing: dict[str, bool] = {
        item_id: placeholder
        for item_id, placeholder in session.execute(
            select(Item.id, Item.is_placeholder).where(_among(session, Item.id, ids))
        )
    }
    missing = [row for row in rows if row["id"] not in existing]
    if missing:
        stmt = _insert(session, Item).on_conflict_do_nothing(index_elements=["id"])
        session.execute(
            stmt,
            [{**PLACEHOLDER_DEFAULTS, **row, "is_placeholder": len(row) == 1} for row in missing],
        )
    described = [row for row in rows if len(row) > 1 and existing.get(row["id"]) is True]
    for row in described:
        session.execute(
            update(Item)
            .where(Item.id == row["id"], Item.is_placeholder.is_(True))
            .values(**{k: v for k, v in row.items() if k != "id"}, is_placeholder=False)
        )


def stored_payloads(session: Session, event_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """The stored payload of each of these client event ids that exists, in one look-up.

    A payload is the :data:`PAYLOAD` columns.
    """
    if not event_ids:
        return {}
    rows = session.execute(
        select(Event.event_id, *PAYLOAD).where(_among(session, Event.event_id, event_ids))
    ).all()
    return {row[0]: tuple(row[1:]) for row in rows if row[0] is not None}


def insert_events(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert events whose event ids are not stored (the caller checked); return how many landed."""
    if not rows:
        return 0
    # ON CONFLICT guards the race with a concurrent batch carrying the same ids; the row count
    # says how many landed (RETURNING would cost half as much again as the insert).
    stmt = _insert(session, Event).on_conflict_do_nothing(index_elements=["event_id"])
    count = cast(CursorResult[Any], session.execute(stmt, rows)).rowcount
    return count if count is not None and count >= 0 else len(rows)


def record_ingest_change(session: Session, user_ids: list[str], keep_seconds: float) -> None:
    """Append the users a batch changed to the change log; drop entries older than needed.

    Epochs are handed out under a table lock on PostgreSQL (SQLite serialises writers), so
    they become visible in increasing order and a reader never skips one.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE ingest_change IN EXCLUSIVE MODE"))
    now = utcnow()
    epoch = (session.scalar(select(func.max(IngestChange.epoch))) or 0) + 1
    session.execute(
        delete(IngestChange).where(IngestChange.created_at < now - timedelta(seconds=keep_seconds))
    )
    session.add(IngestChange(epoch=epoch, user_ids=user_ids, created_at=now))
    session.flush()


def ingest_changes_since(session: Session, epoch: int | None) -> tuple[int, list[str]]:
    """The latest epoch and the users changed after `epoch` (None: just the latest epoch)."""
    if epoch is None:
        return session.scalar(select(func.max(IngestChange.epoch))) or 0, []
    rows = session.execute(
        select(IngestChange.epoch, IngestChange.user_ids)
        .where(IngestChange.epoch > epoch)
        .order_by(IngestChange.epoch)
    ).all()
    if not rows:
        return epoch, []
    users = sorted({user for _, user_ids in rows for user in user_ids})
    return rows[-1][0], users


def recent_events(session: Session, user_id: str, limit: int) -> Sequence[Event]:
    """A user's most recent events, newest first (served by the user/time index)."""
    stmt = (
        select(Event)
        .where(Event.user_id == user_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def stream_events(session: Session, batch_size: int = 50_000) -> Iterator[Sequence[Any]]:
    """All events as (id, user_id, item_id, type, value, order_id, occurred_at) rows, by id."""
    last_id = 0
    while True:
        rows = session.execute(
            select(Event.id, *PAYLOAD)
            .where(Event.id > last_id)
            .order_by(Event.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        yield rows


def popular_items(session: Session, limit: int) -> list[tuple[str, float, list[str]]]:
    """The `limit` recommendable items most customers had, as (item id, customers, categories).

    The models' counting rule (app.ml.popularity.capped_counts): distinct users per item, so
    one client's burst of events does not make an item the most popular.
    """
    users = func.count(Event.user_id.distinct())
    counts = (
        select(Event.item_id, users.label("n"))
        .group_by(Event.item_id)
        .order_by(users.desc(), Event.item_id)
        .limit(limit)
        .subquery()
    )
    rows = session.execute(
        select(counts.c.item_id, counts.c.n, Item.categories)
        .join(Item, Item.id == counts.c.item_id)
        .where(catalog_repository.recommendable())
        .order_by(counts.c.n.desc(), counts.c.item_id)
    ).all()
    return [(item_id, float(n), list(categories or [])) for item_id, n, categories in rows]
