"""Customer use cases: profiles, GDPR deletion and export."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from app.cache import Cache
from app.config import Settings
from app.customers import repository
from app.customers.schemas import MergeOut, UserExport, UserIn, UserOut
from app.db import after_commit, utcnow
from app.errors import NotFound, ServiceUnavailable
from app.events import repository as events_repository
from app.events import service as events_service
from app.events import user_record
from app.events.models import User
from app.events.schemas import EventOut
from app.serving_state import ServingState
from app.subscriptions import repository as subscriptions_repository

log = logging.getLogger(__name__)


def get_or_404(session: Session, user_id: str) -> User:
    """The user, or NotFound."""
    user = repository.get(session, user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} does not exist")
    return user


def put(session: Session, cache: Cache, user_id: str, data: UserIn, settings: Settings) -> User:
    """Create a user or replace their attributes (which may change their cold-start segment)."""
    user = repository.get(session, user_id)
    if user is None:
        user = User(id=user_id, attributes=data.attributes)
        session.add(user)
    else:
        user.attributes = data.attributes
        user.updated_at = utcnow()
    events_service.log_changed_users(session, [user_id], settings)
    session.flush()

    async def _invalidate() -> None:
        await user_record.bump_versions(cache, [user_id], settings.cache_ttl_seconds)

    after_commit(session, _invalidate)
    return user


def delete(
    session: Session, cache: Cache, user_id: str, settings: Settings, state: ServingState
) -> None:
    """Erase a user: events, attributes, every cache entry, bundle look-ups in every worker.

    Anonymous visitors merged into the user are erased with them (what came under a visitor's
    token after the merge, and the visitor's look-ups in bundles trained before it). The store's
    rows go with the request's commit, which also records the erasures for the other workers'
    registries; then the users' cache records are dropped (both tiers of this worker) and this
    worker's bundle forgets them. Refused while the cache is known to be down, since the
    user's cached entries could not be dropped.
    """
    get_or_404(session, user_id)
    if cache.degraded:
        raise ServiceUnavailable(
            "the cache is unavailable, so this user's cached entries cannot be erased; retry later"
        )
    erased = [user_id, *repository.merged_into(session, user_id)]
    for erased_id in erased:
        # Undelivered webhooks must not keep the customer's data: gone in the same transaction.
        subscriptions_repository.forget_customer(session, erased_id)
        repository.delete_user(session, erased_id)
    repository.forget_merges(session, erased)
    session.flush()

    async def _purge() -> None:
        for erased_id in erased:
            state.forget_user(erased_id)
        await user_record.bump_versions(cache, erased, settings.cache_ttl_seconds)
        if cache.degraded:
            log.error(
                "an erasure could not reach the cache: the user's entries expire within %ss",
                settings.cache_ttl_seconds,
            )

    after_commit(session, _purge)


def merge(
    session: Session, cache: Cache, user_id: str, visitor_id: str, settings: Settings
) -> MergeOut:
    """Make an anonymous visitor's events the customer's (on sign-in), each exactly once.

    The events move in one UPDATE (a repeat, or a concurrent merge, finds none left); the
    customer is created when new; both users' cached answers, histories and seen sets are
    dropped after commit by the invalidation ingest uses, and logged for the other workers.
    The merge is recorded, so that erasing the customer erases the visitor too. The visitor's
    profile stays (without events): deleting it could race with an event still arriving under
    the visitor's token.
    """
    # The same id twice: its events are already the customer's (a schema-valid no-op).
    events_repository.ensure_users(session, [user_id])
    moved = repository.move_events(session, visitor_id, user_id) if visitor_id != user_id else 0
    if not moved:  # nothing left to move (a repeat): nothing changed either
        return MergeOut(user_id=user_id, visitor_id=visitor_id, merged=0)
    repository.record_merge(session, user_id, visitor_id, moved)
    changed = [user_id, visitor_id]  # both exist: the visitor had events
    events_service.log_changed_users(session, changed, settings)
    # Both segments may move: noted like an ingest's, published by the webhook dispatcher.
    subscriptions_repository.mark_changed(session, changed)
    session.flush()

    async def _invalidate() -> None:
        await user_record.bump_versions(cache, changed, settings.cache_ttl_seconds)

    after_commit(session, _invalidate)
    return MergeOut(user_id=user_id, visitor_id=visitor_id, merged=moved)


def export(session: Session, user_id: str) -> UserExport:
    """Everything stored about a user."""
    user = get_or_404(session, user_id)
    events = repository.all_events(session, user_id)
    return UserExport(
        user=UserOut.model_validate(user),
        events=[EventOut.model_validate(e) for e in events],
        exported_at=utcnow(),
    )
