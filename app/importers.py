"""Bulk loaders from files into the store: streaming, batched, idempotent when re-run."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.online_retail import OnlineRetailRow, read_online_retail
from app.events import repository
from app.events.schemas import EventIn

BATCH_SIZE = 5000
Progress = Callable[[int], None]


@dataclass
class ImportSummary:
    """What an import kept, skipped as already stored, and dropped (by reason)."""

    read: int = 0
    inserted: int = 0
    already_stored: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "read": self.read,
            "inserted": self.inserted,
            "already_stored": self.already_stored,
            "dropped": dict(self.dropped),
        }


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def write_event_batch(
    session: Session,
    events: list[dict[str, Any]],
    users: list[dict[str, Any]] | None = None,
    items: list[dict[str, Any]] | None = None,
) -> int:
    """Create missing users and items, insert events (skipping stored event ids), return count."""
    repository.ensure_users(session, users or sorted({e["user_id"] for e in events}))
    repository.ensure_items(session, items or sorted({e["item_id"] for e in events}))
    return repository.insert_events(session, events)


def import_online_retail(
    factory: sessionmaker[Session], path: Path, progress: Progress | None = None
) -> ImportSummary:
    """Load the UCI Online Retail file: purchases with value = quantity × unit price."""
    reader = read_online_retail(path)
    summary = ImportSummary()
    received_at = datetime.now(UTC)
    for batch in _batches(reader, BATCH_SIZE):
        users: dict[str, dict[str, Any]] = {}
        items: dict[str, dict[str, Any]] = {}
        events = []
        for row in batch:
            users.setdefault(
                row.user_id, {"id": row.user_id, "attributes": {"country": row.country}}
            )
            items.setdefault(row.item_id, _item_of(row))
            events.append(
                {
                    "event_id": row.event_id,
                    "user_id": row.user_id,
                    "item_id": row.item_id,
                    "type": "purchase",
                    "value": row.value,
                    "order_id": row.invoice,
                    "occurred_at": row.occurred_at,
                    "received_at": received_at,
                }
            )
        with factory.begin() as session:
            inserted = write_event_batch(
                session, events, sorted(users.values(), key=_id), sorted(items.values(), key=_id)
            )
        summary.inserted += inserted
        summary.already_stored += len(events) - inserted
        if progress:
            progress(len(batch))
    summary.read = reader.kept + sum(reader.dropped.values())
    summary.dropped = Counter(reader.dropped)
    return summary


def _id(row: dict[str, Any]) -> str:
    return row["id"]


def _item_of(row: OnlineRetailRow) -> dict[str, Any]:
    return {
        "id": row.item_id,
        "title": row.description,
        "description": row.description,
        "price": row.unit_price,
    }


def _content_id(raw: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"f-{digest[:32]}"


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix in {".jsonl", ".ndjson"}:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        yield {"__invalid__": "invalid_json"}
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)


def import_events_file(
    factory: sessionmaker[Session],
    path: Path,
    mapping: dict[str, str],
    allowed_types: Iterable[str],
    progress: Progress | None = None,
) -> ImportSummary:
    """Load a CSV or JSON-lines file of events; `mapping` renames file columns to event fields."""
    allowed = set(allowed_types)
    summary = ImportSummary()
    received_at = datetime.now(UTC)
    for batch in _batches(_read_rows(path), BATCH_SIZE):
        events = []
        for raw in batch:
            summary.read += 1
            if "__invalid__" in raw:
                summary.dropped[raw["__invalid__"]] += 1
                continue
            record = {target: raw.get(source) for target, source in mapping.items()}
            record = {k: v for k, v in record.items() if v not in (None, "")}
            # Rows without a client id get one from their content, so a re-run adds nothing.
            record.setdefault("event_id", _content_id(raw))
            try:
                event = EventIn.model_validate(record)
            except ValidationError as exc:
                summary.dropped[f"invalid_{exc.errors()[0]['loc'][0]}"] += 1
                continue
            if event.type not in allowed:
                summary.dropped["unknown_type"] += 1
                continue
            occurred_at = event.occurred_at or received_at
            if occurred_at.tzinfo is None:
                occurred_at = occurred_at.replace(tzinfo=UTC)
            events.append(
                {**event.model_dump(), "occurred_at": occurred_at, "received_at": received_at}
            )
        if events:
            with factory.begin() as session:
                inserted = write_event_batch(session, events)
            summary.inserted += inserted
            summary.already_stored += len(events) - inserted
        if progress:
            progress(len(batch))
    return summary
