"""Event ingestion: the one path every writer of events takes.

`POST /events`, the signed webhook, the file importers and the demo loader all call
:func:`ingest_events`: the same rules (:func:`event_errors`), the same all-or-nothing batch,
the same duplicate and conflict handling, the same cache invalidation after commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app import metrics
from app.cache import Cache
from app.config import Settings
from app.db import after_commit, utcnow
from app.errors import InvalidInput, PayloadTooLarge
from app.events import repository, user_record
from app.events.models import Event
from app.events.schemas import EventBatchIn, EventIn, IngestResult
from app.security.tokens import WrongCustomer
from app.subscriptions import repository as subscriptions_repository

# The fields that make two events with one event_id the same event.
PAYLOAD = ("user_id", "item_id", "type", "value", "order_id", "occurred_at")
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule of one event: the field, a sentence, and a stable type."""

    field: str
    message: str
    type: str


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Rules:
    """The domain rules at one moment, computed once per batch."""

    settings: Settings
    now: datetime
    types: frozenset[str]
    signed: frozenset[str]
    latest: datetime
    earliest: datetime

    @classmethod
    def at(cls, settings: Settings, now: datetime) -> Rules:
        """The rules of `settings` for events received at `now`."""
        return cls(
            settings=settings,
            now=now,
            types=frozenset(settings.event_types),
            signed=frozenset(settings.signed_value_types),
            latest=now + timedelta(seconds=settings.max_future_seconds),
            earliest=now - timedelta(days=settings.max_past_years * DAYS_PER_YEAR),
        )


def check_event(event: EventIn, rules: Rules) -> tuple[dict[str, Any], list[FieldProblem]]:
    """The event as a row to store, and the domain rules it breaks (empty: it may be stored).

    Every caller applies them after the schema: the API refuses the batch, importers drop
    the row.
    """
    occurred_at = rules.now
    if event.occurred_at is not None:
        moment = event.occurred_at
        occurred_at = (
            moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        )
    row = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "item_id": event.item_id,
        "type": event.type,
        "value": event.value,
        "order_id": event.order_id,
        "occurred_at": occurred_at,
        "received_at": rules.now,
    }
    if (
        event.type in rules.types
        and rules.earliest <= occurred_at <= rules.latest
        and (event.value is None or event.value >= 0 or event.type in rules.signed)
    ):
        return row, []
    return row, _problems(event, occurred_at, rules)


def _problems(event: EventIn, occurred_at: datetime, rules: Rules) -> list[FieldProblem]:
    settings = rules.settings
    problems = []
    if event.type not in rules.types:
        problems.append(
            FieldProblem(
                "type",
                f"unknown event type {event.type!r}; expected one of "
                + ", ".join(sorted(rules.types)),
                "event_type",
            )
        )
    if occurred_at > rules.latest:
        problems.append(
            FieldProblem(
                "occurred_at",
                f"occurred_at lies more than {settings.max_future_seconds} seconds in the future",
                "future_timestamp",
            )
        )
    elif occurred_at < rules.earliest:
        problems.append(
            FieldProblem(
                "occurred_at",
                f"occurred_at lies more than {settings.max_past_years} years in the past",
                "past_timestamp",
            )
        )
    if event.value is not None and event.value < 0 and event.type not in rules.signed:
        problems.append(
            FieldProblem(
                "value",
                f"a {event.type} value must not be negative (only "
                + ", ".join(sorted(rules.signed) or ["no type"])
                + " may be)",
                "negative_value",
            )
        )
    return problems


def validate_events(
    events: Sequence[EventIn], settings: Settings, now: datetime
) -> list[dict[str, Any]]:
    """Check every event; raise one error listing every bad field, else return the rows."""
    rules = Rules.at(settings, now)
    rows = []
    errors: list[dict[str, str]] = []
    for i, event in enumerate(events):
        row, problems = check_event(event, rules)
        rows.append(row)
        errors.extend(
            {"path": f"events.{i}.{p.field}", "message": p.message, "type": p.type}
            for p in problems
        )
    if errors:
        raise InvalidInput(
            f"{len(errors)} event(s) are invalid; nothing was stored: {errors[0]['message']}",
            fields=errors,
        )
    return rows


def _same(row: dict[str, Any], payload: tuple[Any, ...], given_time: bool) -> bool:
    # A server-filled occurred_at (the client sent none) is not part of what the client said,
    # so a retry without one still matches.
    for name, stored in zip(PAYLOAD, payload, strict=True):
        if name == "occurred_at":
            if given_time and _as_utc(stored) != row[name]:
                return False
        elif row[name] != stored:
            return False
    return True


def _payload(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in PAYLOAD)


def _split(
    session: Session, rows: list[dict[str, Any]], timed: list[bool]
) -> tuple[list[dict[str, Any]], int, list[int]]:
    """(rows to insert, duplicates, indexes of conflicts): one look-up of the stored ids."""
    stored = repository.stored_payloads(
        session, sorted({r["event_id"] for r in rows if r["event_id"] is not None})
    )
    fresh: list[dict[str, Any]] = []
    duplicates = 0
    conflicts: list[int] = []
    first: dict[str, tuple[Any, ...]] = {}
    for i, row in enumerate(rows):
        event_id = row["event_id"]
        if event_id is None:
            fresh.append(row)
            continue
        reference = stored.get(event_id) or first.get(event_id)
        if reference is None:
            first[event_id] = _payload(row)
            fresh.append(row)
        elif _same(row, reference, timed[i]):
            duplicates += 1
        else:
            conflicts.append(i)
    return fresh, duplicates, conflicts


def records_changes(settings: Settings, *, out_of_process: bool = True) -> bool:
    """Whether a writer logs the users it changed in the store for server workers to apply.

    With Redis every writer bumps the shared history versions itself. The in-process cache
    lives in each server worker: a writer outside the server (an importer), or one worker
    among several, logs the users, and every worker reads the log at its model poll (see
    ModelRegistry).
    """
    return settings.redis_url is None and (out_of_process or settings.workers > 1)


def log_changed_users(
    session: Session, user_ids: list[str], settings: Settings, *, out_of_process: bool = False
) -> None:
    """Log `user_ids` for the other workers' in-process caches, when they need it."""
    if user_ids and records_changes(settings, out_of_process=out_of_process):
        repository.record_ingest_change(session, user_ids, settings.cache_ttl_seconds)


def ingest_events(
    session: Session,
    cache: Cache,
    events: Sequence[EventIn],
    settings: Settings,
    *,
    now: datetime | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    items: dict[str, dict[str, Any]] | None = None,
    out_of_process: bool = False,
) -> IngestResult:
    """Validate, deduplicate and write a batch in the session's unit of work (all or nothing).

    Repeats of a stored or earlier event_id with the same payload are `duplicates`; with
    another payload they are `conflicts` (their indexes) and nothing of them is stored. Users
    and items the kept events name are created (`users`/`items` may carry their attributes or
    catalogue fields); the users' cached answers are invalidated once the caller commits.
    With the in-process cache, importers (`out_of_process`) and each of several workers also
    log the users in the store, so that the other workers invalidate theirs.
    """
    now = now or utcnow()
    rows = validate_events(events, settings, now)
    timed = [event.occurred_at is not None for event in events]
    fresh, duplicates, conflicts = _split(session, rows, timed)
    user_ids = sorted({r["user_id"] for r in fresh})
    item_ids = sorted({r["item_id"] for r in fresh})
    users = users or {}
    items = items or {}
    repository.ensure_users(session, [users.get(u, u) for u in user_ids])
    repository.ensure_items(session, [items.get(i, i) for i in item_ids])
    accepted = repository.insert_events(session, fresh)
    log_changed_users(session, user_ids, settings, out_of_process=out_of_process)
    # Their segments may move: noted with the events, published by the webhook dispatcher.
    subscriptions_repository.mark_changed(session, user_ids)
    session.flush()

    # A concurrent batch may have stored some of the same ids between our look-up and insert.
    result = IngestResult(
        accepted=accepted, duplicates=duplicates + len(fresh) - accepted, conflicts=conflicts
    )

    async def _committed() -> None:
        metrics.count_events(result.accepted, result.duplicates, len(result.conflicts))
        if user_ids:
            await user_record.bump_versions(cache, user_ids, settings.cache_ttl_seconds)

    after_commit(session, _committed)
    return result


def ingest(
    session: Session,
    cache: Cache,
    batch: EventBatchIn,
    settings: Settings,
    *,
    owner: str | None = None,
) -> IngestResult:
    """Store a request's batch (POST /events, the webhook): its size bound, then the one path.

    With an `owner` (a customer token's id) every event must be the owner's, or nothing is
    stored. Importers write batches larger than a request's through :func:`ingest_events`.
    """
    if len(batch.events) > settings.max_batch_size:
        raise PayloadTooLarge(
            f"a batch holds at most {settings.max_batch_size} events; got {len(batch.events)}"
        )
    if owner is not None:
        others = [i for i, event in enumerate(batch.events) if event.user_id != owner]
        if others:
            raise WrongCustomer(
                f"{len(others)} event(s) (first: events.{others[0]}) name another user than "
                "this token's; a customer token posts its own events only, nothing was stored"
            )
    return ingest_events(session, cache, batch.events, settings)


def recent(session: Session, user_id: str, limit: int) -> list[Event]:
    """A user's recent events, newest first."""
    return list(repository.recent_events(session, user_id, limit))


def change_listener(
    cache: Cache, settings: Settings
) -> Callable[[list[str]], Awaitable[None]] | None:
    """What a server worker runs for users an importer logged (None when importers need none)."""
    if not records_changes(settings):
        return None

    async def invalidate(user_ids: list[str]) -> None:
        await user_record.bump_versions(cache, user_ids, settings.cache_ttl_seconds)

    return invalidate
