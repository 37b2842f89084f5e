"""Every SQL statement about the catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, any_, bindparam, not_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.catalog.models import Item
from app.db import utcnow


def get(session: Session, item_id: str) -> Item | None:
    """The item with this id, or None."""
    return session.get(Item, item_id)


def upsert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert items or replace their catalogue fields."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Item)
    fields = (
        "title",
        "description",
        "categories",
        "price",
        "attributes",
        "is_available",
        "is_placeholder",
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={**{f: getattr(stmt.excluded, f) for f in fields}, "updated_at": utcnow()},
    )
    now = utcnow()
    # Whatever the catalogue sends describes the item: a placeholder stops being one.
    session.execute(
        stmt,
        [{**row, "is_placeholder": False, "created_at": now, "updated_at": now} for row in rows],
    )
    session.expire_all()


PLACEHOLDER_DEFAULTS: dict[str, Any] = {
    "title": "",
    "description": "",
    "categories": [],
    "attributes": {},
}


def ensure_items(session: Session, items: Sequence[str | dict[str, Any]]) -> None:
    """Create the items an ingest names that do not exist yet, in one look-up.

    A bare id becomes a placeholder (never recommended, see :func:`recommendable`); a dict
    carries catalogue fields from an import, creates a described item, and describes a
    placeholder already there. A described item is never changed.
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
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(Item.__table__).on_conflict_do_nothing(index_elements=["id"])
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


def _among(session: Session, column: Any, values: list[Any]) -> ColumnElement[bool]:
    # `column IN (...)`; on PostgreSQL as one array parameter (cheaper to render and send).
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def mark_unavailable(session: Session, item_id: str) -> bool:
    """Flag an item as never to be recommended again; False when it does not exist."""
    result = session.execute(
        update(Item).where(Item.id == item_id).values(is_available=False, updated_at=utcnow())
    )
    return bool(result.rowcount)


def all_items(session: Session) -> Sequence[Item]:
    """The whole catalogue, in id order."""
    return session.scalars(select(Item).order_by(Item.id)).all()


def recommendable() -> ColumnElement[bool]:
    """The one rule for "may this item be recommended": available and described.

    Training (the bundle's availability), serving (:func:`unavailable_ids`) and the store
    popularity fallback all filter with it.
    """
    return and_(Item.is_available.is_(True), Item.is_placeholder.is_(False))


def unavailable_ids(session: Session) -> list[str]:
    """Ids of items that must not be recommended (retired, or placeholders)."""
    return list(session.scalars(select(Item.id).where(not_(recommendable()))))
