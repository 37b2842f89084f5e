"""Bulk loaders from files into the store, through the one ingest path.

Every file row becomes the API's event input (:class:`EventIn`) and meets the same rules
(:func:`app.events.service.event_errors`); rows that fail are counted by reason and field and
dropped before batching, and each batch is written by :func:`app.events.service.ingest_events`
in one transaction, with the same duplicate/conflict handling and cache invalidation as
`POST /events`. Streaming and idempotent when re-run.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app.cache import make_cache
from app.config import Settings
from app.datasets.files import CountingFile, open_text
from app.datasets.online_retail import OnlineRetailRow, read_online_retail
from app.db import make_engine, make_sessionmaker, pop_after_commit, unit_of_work, utcnow
from app.events import service
from app.events.schemas import EventIn, IngestResult

BATCH_SIZE = 5000
#: Called after each batch with its number of rows and the bytes of the file read so far.
Progress = Callable[[int, int], None]


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

    def add(self, result: IngestResult) -> None:
        """Count a written batch; its conflicts are dropped rows (`conflict:event_id`)."""
        self.inserted += result.accepted
        self.already_stored += result.duplicates
        if result.conflicts:
            self.dropped["conflict:event_id"] += len(result.conflicts)


def to_event(record: dict[str, Any], rules: service.Rules) -> EventIn | str:
    """The row as an event, or why it is refused: `<type>:<field>` as the API's first error.

    The type and field are those `POST /events` reports in `fields` for the same event.
    """
    try:
        event = EventIn.model_validate(record)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        return f"{error['type']}:{'.'.join(str(p) for p in error['loc']) or 'event'}"
    _, problems = service.check_event(event, rules)
    if problems:
        return f"{problems[0].type}:{problems[0].field}"
    return event


class EventWriter:
    """Writes validated batches through the one ingest path, from outside the server.

    Each batch is one transaction; after it commits, the users' cached answers are invalidated
    as a request's are (Redis from this process; with the in-process cache, a change logged in
    the store that every server worker applies at its next model poll).
    """

    def __init__(self, settings: Settings, factory: sessionmaker[Session] | None = None) -> None:
        self.settings = settings
        self.engine = None
        if factory is None:
            self.engine = make_engine(settings.resolved_database_url)
            factory = make_sessionmaker(self.engine)
        self.factory = factory
        self.cache = make_cache(settings)
        self.loop = asyncio.new_event_loop()

    def write(
        self,
        events: list[EventIn],
        now: datetime,
        users: dict[str, dict[str, Any]] | None = None,
        items: dict[str, dict[str, Any]] | None = None,
    ) -> IngestResult:
        """Store one batch (all or nothing) and run its after-commit invalidation."""
        with unit_of_work(self.factory) as session:
            result = service.ingest_events(
                session,
                self.cache,
                events,
                self.settings,
                now=now,
                users=users,
                items=items,
                out_of_process=True,
            )
        for callback in pop_after_commit(session):
            self.loop.run_until_complete(callback())
        return result

    def close(self) -> None:
        """Release the cache, the loop and the engine."""
        self.loop.run_until_complete(self.cache.close())
        self.loop.close()
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def import_online_retail(
    settings: Settings, path: Path, progress: Progress | None = None
) -> ImportSummary:
    """Load the UCI Online Retail file: purchases with value = quantity × unit price."""
    reader = read_online_retail(path)
    summary = ImportSummary()
    with EventWriter(settings) as writer:
        for batch in _batches(reader, BATCH_SIZE):
            now = utcnow()
            rules = service.Rules.at(settings, now)
            users: dict[str, dict[str, Any]] = {}
            items: dict[str, dict[str, Any]] = {}
            events = []
            for row in batch:
                event = to_event(
                    {
                        "event_id": row.event_id,
                        "user_id": row.user_id,
                        "item_id": row.item_id,
                        "type": "purchase",
                        "value": row.value,
                        "order_id": row.invoice,
                        "occurred_at": row.occurred_at,
                    },
                    rules,
                )
                if isinstance(event, str):
                    summary.dropped[event] += 1
                    continue
                users.setdefault(
                    row.user_id, {"id": row.user_id, "attributes": {"country": row.country}}
                )
                items.setdefault(row.item_id, _item_of(row))
                events.append(event)
            if events:
                summary.add(writer.write(events, now, users, items))
            if progress:
                progress(len(batch), reader.bytes_read)
    summary.read = reader.kept + sum(reader.dropped.values())
    summary.dropped.update(reader.dropped)
    return summary


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


class _Rows:
    """The rows of an events file, with the bytes of the file read so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counter: CountingFile | None = None

    @property
    def bytes_read(self) -> int:
        return self.counter.bytes_read if self.counter is not None else 0

    def __iter__(self) -> Iterator[dict[str, Any] | str]:
        handle, self.counter = open_text(self.path)
        with handle:
            yield from _parse_rows(self.path, handle)


def _parse_rows(path: Path, handle: IO[str]) -> Iterator[dict[str, Any] | str]:
    """JSON lines as the API would decode them, or CSV rows with numbers parsed (else why not)."""
    if path.suffix in {".jsonl", ".ndjson"}:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    yield "invalid_json"
                    continue
                yield row if isinstance(row, dict) else "invalid_json"
    else:
        yield from csv.DictReader(handle)


def _csv_number(text: str) -> float | str:
    # A CSV cell is text: the importer reads numbers itself (the API takes only JSON numbers),
    # then the same validation refuses what is still not a finite number.
    try:
        return float(text)
    except ValueError:
        return text


def import_events_file(
    settings: Settings,
    path: Path,
    mapping: dict[str, str],
    progress: Progress | None = None,
) -> ImportSummary:
    """Load a CSV or JSON-lines file of events; `mapping` renames file columns to event fields.

    JSON lines are validated as the API validates a JSON body; in CSV an empty cell is an
    absent field and `value` is parsed as a number first.
    """
    is_csv = path.suffix not in {".jsonl", ".ndjson"}
    summary = ImportSummary()
    rows = _Rows(path)
    with EventWriter(settings) as writer:
        for batch in _batches(rows, BATCH_SIZE):
            now = utcnow()
            rules = service.Rules.at(settings, now)
            events = []
            for raw in batch:
                summary.read += 1
                if isinstance(raw, str):
                    summary.dropped[raw] += 1
                    continue
                record = {
                    target: raw[source] for target, source in mapping.items() if source in raw
                }
                if is_csv:
                    record = {k: v for k, v in record.items() if v not in (None, "")}
                    if "value" in record:
                        record["value"] = _csv_number(record["value"])
                # Rows without a client id get one from their content, so a re-run adds nothing.
                if record.get("event_id") is None:
                    record["event_id"] = _content_id(raw)
                event = to_event(record, rules)
                if isinstance(event, str):
                    summary.dropped[event] += 1
                    continue
                events.append(event)
            if events:
                summary.add(writer.write(events, now))
            if progress:
                progress(len(batch), rows.bytes_read)
    return summary
