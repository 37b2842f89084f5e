"""HTTP routes of the events API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from app.deps import CacheDep, OwnWrite, SessionDep, SettingsDep
from app.events import service
from app.events.schemas import EventBatchIn, IngestResult
from app.security.keys import Principal

router = APIRouter(tags=["events"])


@router.post("/events", status_code=status.HTTP_200_OK)
def post_events(
    batch: EventBatchIn,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    principal: Annotated[Principal, OwnWrite],
) -> IngestResult:
    """Ingest a batch of events (all or nothing; repeats skipped, conflicts reported)."""
    return service.ingest(session, cache, batch, settings, owner=principal.customer)
