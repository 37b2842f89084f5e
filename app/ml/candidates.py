"""The items one answer may hold: built once per request, then read by every placement.

Availability (the catalogue at training, items retired since), the categories asked for,
explicit exclusions and the items the user already had are four rules; :class:`Candidates`
applies them in one place, so serving, evaluation and tuning cannot apply a different set.

The rules are kept as they are given (the availability mask by reference, the rest as index
arrays) and asked about a few items at a time (:meth:`Candidates.allowed_at`,
:meth:`Candidates.explore_at`): an answer never builds a mask over the whole catalogue. The
dense masks (:attr:`Candidates.allowed`, :attr:`Candidates.explore`) are still there for the
callers that want one, built on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from app.ml.ranking import member

_EMPTY = np.zeros(0, dtype=np.int64)


def _valid_indices(indices: Iterable[int] | NDArray[np.int64], n_items: int) -> NDArray[np.int64]:
    """The distinct indices in ``[0, n_items)``, sorted (-1, unknown items, dropped)."""
    array = indices if isinstance(indices, np.ndarray) else np.fromiter(indices, dtype=np.int64)
    array = np.asarray(array, dtype=np.int64)
    return np.unique(array[(array >= 0) & (array < n_items)])


@dataclass(frozen=True, eq=False)
class Candidates:
    """Which item indices an answer may contain.

    Attributes
    ----------
    available : ndarray of shape (n_items,), bool; the caller's availability mask (read only)
    within : sorted distinct indices of the requested categories' items, or None (no filter)
    excluded : sorted distinct indices never to return
    seen : sorted distinct indices of the items the user ever had, left out of new-item
        (``explore``) answers; None when the caller keeps them (``exclude_seen=false``).
    """

    available: NDArray[np.bool_]
    within: NDArray[np.int64] | None = None
    excluded: NDArray[np.int64] = field(default_factory=lambda: _EMPTY)
    seen: NDArray[np.int64] | None = None

    @classmethod
    def build(
        cls,
        available: NDArray[np.bool_],
        *,
        within: Sequence[NDArray[np.int64]] | None = None,
        exclude: Iterable[int] = (),
        seen: Iterable[int] | None = None,
    ) -> Candidates:
        """Apply the four rules.

        Parameters
        ----------
        available : ndarray of shape (n_items,), bool; the items that may be recommended at all
        within : index arrays of the requested categories (an item in any of them passes);
            None: no category filter
        exclude : item indices never to return (-1, an unknown item, is ignored)
        seen : item indices the user had (-1 ignored); None keeps them in explore answers
        """
        available = np.asarray(available, dtype=bool)
        if available.ndim != 1:
            raise ValueError(f"available must be one-dimensional, got shape {available.shape}")
        n = len(available)
        in_categories = None
        if within is not None:
            parts = [np.asarray(indices, dtype=np.int64) for indices in within]
            in_categories = _valid_indices(np.concatenate([_EMPTY, *parts]), n)
        seen_indices = None if seen is None else _valid_indices(seen, n)
        return cls(available, in_categories, _valid_indices(exclude, n), seen_indices)

    @property
    def n_items(self) -> int:
        """The size of the catalogue the indices refer to."""
        return len(self.available)

    @property
    def excludes_seen(self) -> bool:
        """Whether explore answers leave out the user's own items."""
        return self.seen is not None

    def allowed_at(self, indices: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each of ``indices`` may be in a repeat (``buy_again``) answer."""
        indices = np.asarray(indices, dtype=np.int64)
        keep = self.available[indices]
        if self.within is not None:
            keep &= member(indices, self.within)
        if len(self.excluded):
            keep &= ~member(indices, self.excluded)
        return keep

    def explore_at(self, indices: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each of ``indices`` may be in a new-item (``explore``) answer."""
        keep = self.allowed_at(indices)
        if self.seen is not None and len(self.seen):
            keep &= ~member(np.asarray(indices, dtype=np.int64), self.seen)
        return keep

    @cached_property
    def allowed(self) -> NDArray[np.bool_]:
        """The dense mask of :meth:`allowed_at`, shape (n_items,) (a fresh array)."""
        if self.within is None:
            allowed = self.available.copy()
        else:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self.within] = self.available[self.within]
        allowed[self.excluded] = False
        return allowed

    @cached_property
    def explore(self) -> NDArray[np.bool_]:
        """The dense mask of :meth:`explore_at`, shape (n_items,)."""
        if self.seen is None or not self.seen.size:
            return self.allowed
        explore = self.allowed.copy()
        explore[self.seen] = False
        return explore
