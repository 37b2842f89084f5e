"""Everything cached about a user lives in one record, `user:{id}`, so it can be dropped at once.

The record (a Redis hash; a dict in process memory) holds its version, the user's history at
that version (their most recent events up to a model's budget, and every item they ever had when
they have more), `/recommend` answers per model version and options, and `/segment` answers per
model version and algorithm. Every key follows from the user id, so a new event
about the user, or their erasure, drops it all with one delete (:func:`bump_versions`): no scan,
nothing stale or erased left behind.

A reader that misses claims the record's version *before* it reads the store and stores what it
computed only while the record still holds that version (:func:`claim`, :func:`store`). So an
answer computed from data that changed, or was erased, meanwhile is never written: it cannot be
served, and it cannot bring an erased user's entries back.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.cache import Cache

# Bump when the cached history's shape changes, so a rolling deploy never reads the old shape.
HISTORY_FORMAT = 3


def user_key(user_id: str) -> str:
    """Key of the record holding everything cached about a user."""
    return f"user:{user_id}"


def history_field(limit: int) -> str:
    """Field of the user's history read up to `limit` events (a model's budget)."""
    return f"hist{HISTORY_FORMAT}:{limit}"


def answer_field(model: int | str, options: str) -> str:
    """Field of a `/recommend` answer for a model version (or "fallback") and options hash."""
    return f"rec:{model}:{options}"


def segment_field(model_version: int, algorithm: str) -> str:
    """Field of a `/segment` answer for a model version and clustering algorithm."""
    return f"seg:{model_version}:{algorithm}"


async def bump_versions(cache: Cache, user_ids: Iterable[str], ttl: float) -> None:
    """Drop everything cached about these users (after a write about them, or their erasure).

    One delete of their records; the next reader starts a record at a new version. `ttl` is
    kept for callers: nothing is written, so nothing needs one.
    """
    del ttl
    keys = [user_key(user_id) for user_id in user_ids]
    if keys:
        await cache.delete(*keys)


async def cached(cache: Cache, user_id: str, field: str) -> bytes | None:
    """A cached answer about the user, current by construction (one round trip)."""
    return await cache.get_field(user_key(user_id), field)


async def claim(
    cache: Cache, user_id: str, field: str | None, ttl: float
) -> tuple[str | None, bytes | None]:
    """The version of the user's record and `field` at it; call before reading the store.

    The version is None when the cache is down (nothing will be stored).
    """
    return await cache.claim(user_key(user_id), field, ttl)


async def store(cache: Cache, user_id: str, version: str | None, values: dict[str, bytes]) -> None:
    """Cache values computed at `version`, unless the user's record was dropped since."""
    if version is not None and values:
        await cache.set_fields(user_key(user_id), version, values)
