"""HTTP routes of the catalogue API."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.catalog import service
from app.catalog.schemas import ItemBatchIn, ItemBatchResult, ItemIn, ItemOut
from app.deps import CatalogRead, ServingStateDep, SessionDep, SettingsDep, WriteKey
from app.schemas import ItemIdPath

router = APIRouter(tags=["catalog"])


@router.put("/items/{item_id}", dependencies=[WriteKey])
def put_item(item_id: ItemIdPath, data: ItemIn, session: SessionDep) -> ItemOut:
    """Create or replace an item."""
    return ItemOut.model_validate(service.put(session, item_id, data))


@router.post("/items", dependencies=[WriteKey])
def post_items(batch: ItemBatchIn, session: SessionDep, settings: SettingsDep) -> ItemBatchResult:
    """Create or replace a batch of items."""
    return ItemBatchResult(upserted=service.upsert_batch(session, batch, settings))


@router.get("/items/{item_id}", dependencies=[CatalogRead])
def get_item(item_id: ItemIdPath, session: SessionDep) -> ItemOut:
    """Read an item."""
    return ItemOut.model_validate(service.get_or_404(session, item_id))


@router.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[WriteKey])
def delete_item(item_id: ItemIdPath, session: SessionDep, state: ServingStateDep) -> Response:
    """Mark an item unavailable: it will never be recommended again."""
    service.retire(session, item_id, state)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
