"""Catalogue use cases."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.catalog import repository
from app.catalog.models import Item
from app.catalog.schemas import ItemBatchIn, ItemIn
from app.config import Settings
from app.db import after_commit
from app.errors import NotFound, PayloadTooLarge
from app.serving_state import ServingState


def get_or_404(session: Session, item_id: str) -> Item:
    """The item, or NotFound."""
    item = repository.get(session, item_id)
    if item is None:
        raise NotFound(f"item {item_id!r} does not exist")
    if item.retired_at is not None:
        raise NotFound(f"item {item_id!r} was retired; PUT /items/{item_id} brings it back")
    return item


def put(session: Session, item_id: str, data: ItemIn) -> Item:
    """Create or replace one item."""
    repository.upsert_many(session, [{"id": item_id, **data.model_dump()}])
    session.flush()
    return get_or_404(session, item_id)


def upsert_batch(session: Session, batch: ItemBatchIn, settings: Settings) -> int:
    """Create or replace a batch of items; the last entry wins when an id repeats."""
    if len(batch.items) > settings.max_batch_size:
        raise PayloadTooLarge(
            f"a batch holds at most {settings.max_batch_size} items; got {len(batch.items)}"
        )
    rows = {item.id: item.model_dump() for item in batch.items}
    repository.upsert_many(session, list(rows.values()))
    session.flush()
    return len(rows)


def retire(session: Session, item_id: str, state: ServingState) -> None:
    """Mark an item unavailable so it is never recommended again (this worker at once)."""
    if not repository.retire(session, item_id):
        get_or_404(session, item_id)  # says whether it never existed or is retired already
    session.flush()

    async def _apply() -> None:
        state.mark_unavailable(item_id)

    after_commit(session, _apply)
