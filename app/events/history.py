"""Cache keys for a user's recent history and its version.

The version is bumped after every committed write about the user; answers are cached under
keys that embed it, so a new event invalidates without scanning.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.cache import Cache


def version_key(user_id: str) -> str:
    """Key of the user's history version counter."""
    return f"uver:{user_id}"


# Bump when the cached history's shape changes, so a rolling deploy never reads the old shape.
HISTORY_FORMAT = 2


def history_key(user_id: str, version: int) -> str:
    """Key of the user's cached recent history at a version."""
    return f"hist{HISTORY_FORMAT}:{user_id}:{version}"


async def bump_versions(cache: Cache, user_ids: Iterable[str], ttl: float) -> None:
    """Invalidate every cached answer and history of these users."""
    await cache.incr_many([version_key(user_id) for user_id in user_ids], ttl)
