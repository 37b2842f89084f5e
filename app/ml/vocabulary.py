"""External string ids <-> contiguous matrix indices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from itertools import repeat

import numpy as np
from numpy.typing import NDArray


class Vocabulary:
    """An immutable, ordered mapping between external string ids and indices ``0..n-1``.

    Parameters
    ----------
    ids : iterable of str
        The ids in index order; duplicates are rejected (use :meth:`from_unique` to drop them).
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = [str(i) for i in ids]
        self._index: dict[str, int] = {item: pos for pos, item in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError("vocabulary ids must be unique")

    @classmethod
    def from_unique(cls, ids: Iterable[str]) -> Vocabulary:
        """Build a vocabulary from ids that may repeat, keeping first-seen order."""
        return cls(dict.fromkeys(str(i) for i in ids))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(tuple(self._ids))

    def __repr__(self) -> str:
        return f"Vocabulary(n={len(self._ids)})"

    @property
    def ids(self) -> Sequence[str]:
        """The ids in index order (read-only view)."""
        return tuple(self._ids)

    def index(self, item_id: str) -> int:
        """Return the index of ``item_id``; raise ``KeyError`` when it is unknown."""
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(f"unknown id {item_id!r}") from None

    def get(self, item_id: str, default: int | None = None) -> int | None:
        """Return the index of ``item_id`` or ``default`` when it is unknown."""
        return self._index.get(item_id, default)

    def id(self, index: int) -> str:
        """Return the external id at ``index``."""
        return self._ids[index]

    def indices(self, ids: Iterable[str], *, missing: int = -1) -> NDArray[np.int64]:
        """Map many ids to indices, ``missing`` for unknown ones.

        Returns
        -------
        ndarray of shape (n_ids,), int64
        """
        ids = ids if isinstance(ids, Sized) else list(ids)
        # map() over dict.get runs in C: about 3x a generator expression on the hot path.
        found = map(self._index.get, ids, repeat(missing, len(ids)))
        return np.fromiter(found, dtype=np.int64, count=len(ids))

    def lookup(self, indices: Iterable[int]) -> list[str]:
        """Map indices back to external ids."""
        ids = self._ids
        return [ids[i] for i in indices]

    def union(self, ids: Iterable[str]) -> Vocabulary:
        """Return a new vocabulary: these ids, then unseen ``ids`` in first-seen order."""
        extra = [i for i in dict.fromkeys(str(i) for i in ids) if i not in self._index]
        return Vocabulary([*self._ids, *extra])

    def to_json(self) -> list[str]:
        """Return the ids as a JSON-able list in index order."""
        return list(self._ids)

    @classmethod
    def from_json(cls, data: object) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_json` output, validating it."""
        if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
            raise ValueError("a vocabulary must be a JSON list of strings")
        return cls(data)
