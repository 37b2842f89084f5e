"""The items one answer may hold: built once per request, then read by every placement.

Availability (the catalogue at training, items retired since), the categories asked for,
explicit exclusions and the items the user already had are four rules; :class:`Candidates`
applies them in one place, so serving, evaluation and tuning cannot apply a different set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from app.ml.hybrid import candidate_mask


@dataclass(frozen=True)
class Candidates:
    """Which item indices an answer may contain.

    Attributes
    ----------
    allowed : ndarray of shape (n_items,), bool
        Available, in a requested category (if any) and not explicitly excluded: what a
        repeat (``buy_again``) answer may hold.
    seen : ndarray of item indices, or None
        The items the user ever had, left out of new-item (``explore``) answers; None when
        the caller keeps them (``exclude_seen=false``).
    """

    allowed: NDArray[np.bool_]
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
        allowed = candidate_mask(len(available), allowed=available, exclude=exclude)
        if within is not None:
            in_category = np.zeros_like(allowed)
            for indices in within:
                in_category[indices] = True
            allowed &= in_category
        seen_indices = None
        if seen is not None:
            seen_indices = np.fromiter(seen, dtype=np.int64)
            seen_indices = seen_indices[(seen_indices >= 0) & (seen_indices < len(available))]
        return cls(allowed, seen_indices)

    @property
    def excludes_seen(self) -> bool:
        """Whether explore answers leave out the user's own items."""
        return self.seen is not None

    @cached_property
    def explore(self) -> NDArray[np.bool_]:
        """The mask of new-item answers: allowed, minus the seen items when they are left out."""
        if self.seen is None or not self.seen.size:
            return self.allowed
        explore = self.allowed.copy()
        explore[self.seen] = False
        return explore
