"""Cache keys for a user's recent history and its version.

The version is bumped after every committed write about the user. Histories are cached under
keys that embed it; answers are stamped with it (:func:`read_stamped`), so a new event
invalidates without scanning.
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


async def read_stamped(cache: Cache, user_id: str, key: str) -> tuple[int, bytes | None]:
    """The user's history version and the value under `key` if it was stamped at that version.

    One round trip for both. Values are written as :func:`stamped` bytes.
    """
    raw_version, cached = await cache.get_many([version_key(user_id), key])
    version = int(raw_version) if raw_version else 0
    if cached is not None:
        stamp, _, body = cached.partition(b"\n")
        if stamp == str(version).encode():
            return version, body
    return version, None


def stamped(version: int, body: bytes) -> bytes:
    """`body` stamped with the history version it was computed at (see :func:`read_stamped`)."""
    return str(version).encode() + b"\n" + body
