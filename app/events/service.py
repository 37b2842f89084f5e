"""Event ingestion: validate a whole batch, then write it in one unit of work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.cache import Cache
from app.config import Settings
from app.db import after_commit, utcnow
from app.errors import InvalidInput, PayloadTooLarge
from app.events import history, repository
from app.events.models import Event
from app.events.schemas import EventBatchIn, IngestResult


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def validate_batch(batch: EventBatchIn, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Check every event against the domain rules; raise one error listing every bad field."""
    if len(batch.events) > settings.max_batch_size:
        raise PayloadTooLarge(
            f"a batch holds at most {settings.max_batch_size} events; got {len(batch.events)}"
        )
    allowed = set(settings.event_types)
    latest = now + timedelta(seconds=settings.max_future_seconds)
    errors: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, event in enumerate(batch.events):
        if event.type not in allowed:
            errors.append(
                {
                    "path": f"events.{i}.type",
                    "message": f"unknown event type {event.type!r}; expected one of "
                    + ", ".join(sorted(allowed)),
                    "type": "event_type",
                }
            )
        occurred_at = _as_utc(event.occurred_at) if event.occurred_at else now
        if occurred_at > latest:
            errors.append(
                {
                    "path": f"events.{i}.occurred_at",
                    "message": "occurred_at lies more than "
                    f"{settings.max_future_seconds} seconds in the future",
                    "type": "future_timestamp",
                }
            )
        rows.append(
            {
                "event_id": event.event_id,
                "user_id": event.user_id,
                "item_id": event.item_id,
                "type": event.type,
                "value": event.value,
                "order_id": event.order_id,
                "occurred_at": occurred_at,
                "received_at": now,
            }
        )
    if errors:
        raise InvalidInput(
            f"{len(errors)} event(s) are invalid; nothing was stored: {errors[0]['message']}",
            fields=errors,
        )
    return rows


def ingest(session: Session, cache: Cache, batch: EventBatchIn, settings: Settings) -> IngestResult:
    """Store a batch (deduplicated on event_id) and invalidate the users' cached answers."""
    rows = validate_batch(batch, settings, utcnow())
    seen: set[str] = set()
    unique_rows = []
    for row in rows:
        if row["event_id"] is not None:
            if row["event_id"] in seen:
                continue
            seen.add(row["event_id"])
        unique_rows.append(row)
    user_ids = sorted({r["user_id"] for r in unique_rows})
    repository.ensure_users(session, user_ids)
    repository.ensure_items(session, sorted({r["item_id"] for r in unique_rows}))
    accepted = repository.insert_events(session, unique_rows)
    session.flush()

    async def _invalidate() -> None:
        await history.bump_versions(cache, user_ids, settings.cache_ttl_seconds)

    after_commit(session, _invalidate)
    return IngestResult(accepted=accepted, duplicates=len(rows) - accepted)


def recent(session: Session, user_id: str, limit: int) -> list[Event]:
    """A user's recent events, newest first."""
    return list(repository.recent_events(session, user_id, limit))
