"""HTTP routes of the events API."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.deps import CacheDep, SessionDep, SettingsDep, WriteKey
from app.events import service
from app.events.schemas import EventBatchIn, IngestResult

router = APIRouter(tags=["events"], dependencies=[WriteKey])


@router.post("/events", status_code=status.HTTP_200_OK)
def post_events(
    batch: EventBatchIn, session: SessionDep, cache: CacheDep, settings: SettingsDep
) -> IngestResult:
    """Ingest a batch of events (all or nothing; repeats skipped, conflicts reported)."""
    return service.ingest(session, cache, batch, settings)
