"""Every SQL statement about the catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, not_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
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
        # Sent again by the catalogue: a retired item is back.
        set_={
            **{f: getattr(stmt.excluded, f) for f in fields},
            "retired_at": None,
            "updated_at": utcnow(),
        },
    )
    now = utcnow()
    # Whatever the catalogue sends describes the item: a placeholder stops being one.
    session.execute(
        stmt,
        [{**row, "is_placeholder": False, "created_at": now, "updated_at": now} for row in rows],
    )
    session.expire_all()


def retire(session: Session, item_id: str) -> bool:
    """Retire an item: never recommended, 404 to the API; False when there is no such item."""
    now = utcnow()
    result = session.execute(
        update(Item)
        .where(Item.id == item_id, Item.retired_at.is_(None))
        .values(is_available=False, retired_at=now, updated_at=now)
    )
    return bool(cast(CursorResult[Any], result).rowcount)


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
