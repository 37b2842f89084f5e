"""The in-process cache: a bounded LRU with per-entry TTLs, holding plain keys and records."""

from __future__ import annotations

import time
from collections import OrderedDict

from app import metrics
from app.cache.base import new_version


class _Record:
    """A record in process memory: its version and its fields, each with the version it was
    stored at (None when copied from the shared tier without one)."""

    __slots__ = ("fields", "version")

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.fields: dict[str, tuple[bytes, str | None]] = {}


def _size(value: bytes | int | _Record) -> int:
    return 1 + len(value.fields) if isinstance(value, _Record) else 1


class LocalCache:
    """A bounded in-process LRU with per-entry TTLs (a record counts one entry per field)."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes | int | _Record]] = OrderedDict()
        self._entries = 0

    @property
    def degraded(self) -> bool:
        """An in-process cache is never degraded."""
        return False

    def _get(self, key: str) -> bytes | int | _Record | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._pop(key)
            return None
        self._data.move_to_end(key)
        return value

    def _pop(self, key: str) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._entries -= _size(entry[1])

    def _put(self, key: str, value: bytes | int | _Record, ttl: float) -> None:
        self._pop(key)
        self._data[key] = (time.monotonic() + ttl, value)
        self._entries += _size(value)
        self._evict()

    def _evict(self) -> None:
        while self._entries > self.max_entries and self._data:
            _, (_, value) = self._data.popitem(last=False)
            self._entries -= _size(value)

    def _record(self, key: str) -> _Record | None:
        value = self._get(key)
        return value if isinstance(value, _Record) else None

    def _store(self, record: _Record, values: dict[str, bytes], version: str | None) -> None:
        before = len(record.fields)
        record.fields.update((field, (value, version)) for field, value in values.items())
        self._entries += len(record.fields) - before
        self._evict()

    def live_keys(self) -> list[str]:
        """The keys held now, expired ones aside (for inspection)."""
        now = time.monotonic()
        return [key for key, (expires_at, _) in self._data.items() if expires_at >= now]

    async def get(self, key: str) -> bytes | None:
        """The value under `key`, or None."""
        value = self._get(key)
        if isinstance(value, _Record):
            return None
        if isinstance(value, int):
            return str(value).encode()
        return value

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values under `keys`, None where missing."""
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds."""
        self._put(key, value, ttl)

    async def delete(self, *keys: str) -> None:
        """Remove keys (records with every field) if present."""
        for key in keys:
            self._pop(key)

    async def get_field(self, key: str, field: str) -> bytes | None:
        """A field of the record under `key`, or None."""
        record = self._record(key)
        entry = record.fields.get(field) if record is not None else None
        if entry is None:
            metrics.count_cache("local", hit=False)
            return None
        metrics.count_cache("local", hit=True)
        return entry[0]

    async def claim(
        self, key: str, field: str | None, ttl: float
    ) -> tuple[str | None, bytes | None]:
        """The record's version (creating the record for `ttl` seconds) and `field` at it."""
        record = self._record(key)
        if record is None:
            record = _Record(None)
            self._put(key, record, ttl)
        if record.version is None:
            record.version = new_version()
        return record.version, self._at_version(record, field)

    def claimed(self, key: str, field: str | None) -> tuple[str | None, bytes | None]:
        """Like :meth:`claim` when the record has a version and `field` at it; else (None, None)."""
        record = self._record(key)
        if record is None or record.version is None:
            return None, None
        value = self._at_version(record, field)
        if field is not None and value is None:
            return None, None
        return record.version, value

    @staticmethod
    def _at_version(record: _Record, field: str | None) -> bytes | None:
        entry = record.fields.get(field) if field is not None else None
        return entry[0] if entry is not None and entry[1] == record.version else None

    async def set_fields(self, key: str, version: str, values: dict[str, bytes]) -> bool:
        """Write fields if the record still holds `version`; whether they were written."""
        record = self._record(key)
        if record is None or record.version != version:
            return False
        self._store(record, values, version)
        return True

    def remember(self, key: str, version: str | None, values: dict[str, bytes], ttl: float) -> None:
        """Copy fields read from or written to a shared tier, at `version` when it is known.

        A record created here lives `ttl` seconds from now; adding to one never extends it, so
        nothing copied stays longer than `ttl` after its record was first copied.
        """
        record = self._record(key)
        if record is None:
            record = _Record(version)
            self._put(key, record, ttl)
        elif version is not None:
            record.version = version
        self._store(record, values, version)

    async def incr(self, key: str, ttl: float) -> int | None:
        """Increment a counter and refresh its TTL."""
        current = self._get(key)
        if isinstance(current, _Record):
            current = None
        value = (int(current) if current is not None else 0) + 1
        self._put(key, value, ttl)
        return value

    async def incr_many(self, keys: list[str], ttl: float) -> None:
        """Increment several counters."""
        for key in keys:
            await self.incr(key, ttl)

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def close(self) -> None:
        """Drop everything."""
        self._data.clear()
        self._entries = 0
