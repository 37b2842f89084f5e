"""Non-personalised models: popular, trending (recent, decayed) and popular in a segment.

All of them count people, not events: a user counts at most once per item
(:func:`capped_counts`), so one client sending a thousand views of an item weighs what one
customer viewing it once does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Self

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.interactions import SECONDS_PER_DAY
from app.ml.ranking import descending_order, first_kept, top_n


def capped_counts(
    users: NDArray[np.int64],
    items: NDArray[np.int64],
    credits: NDArray[np.floating] | None = None,
    *,
    n_items: int,
) -> NDArray[np.float64]:
    """Count each user at most once per item: the one counting rule of popularity and trending.

    Parameters
    ----------
    users, items : ndarray of shape (n_events,), int64; one (user, item) per event
    credits : ndarray of shape (n_events,), optional
        What each event is worth (a recency decay, say); 1 each when None. A user's
        contribution to an item is the largest credit among their events of it.
    n_items : int

    Returns
    -------
    ndarray of shape (n_items,), float64; the sum over users of their contribution
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if credits is None:
        credits = np.ones(len(items), dtype=np.float64)
    if len(items) == 0:
        return np.zeros(n_items, dtype=np.float64)
    pairs = users * np.int64(n_items) + items
    # Sort by pair, then by credit: the last event of each pair carries its largest credit.
    order = np.lexsort((credits, pairs))
    sorted_pairs = pairs[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sorted_pairs[1:] != sorted_pairs[:-1]
    best = order[last]
    return np.bincount(items[best], weights=credits[best], minlength=n_items).astype(np.float64)


class Popularity(BaseScorer):
    """Items ranked by the number of distinct users who interacted with them.

    Attributes
    ----------
    scores_ : ndarray of shape (n_items,), float32
        Distinct users per item divided by the maximum (in [0, 1]).
    counts_ : ndarray of shape (n_items,), float32
        Distinct users per item.
    """

    _fitted_attr = "scores_"

    def fit(self, X: sparse.spmatrix, /, **context: Any) -> Self:
        """Fit on a user x item matrix of shape (n_users, n_items)."""
        X = sparse.csr_matrix(X)
        X.eliminate_zeros()
        users = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))
        counts = capped_counts(users, X.indices, n_items=X.shape[1])
        self._set_counts(counts.astype(np.float32))
        return self

    @classmethod
    def from_counts(cls, counts: NDArray[np.floating]) -> Self:
        """A fitted model ranking items by ``counts``, shape (n_items,)."""
        model = cls()
        model._set_counts(np.asarray(counts, dtype=np.float32))
        return model

    def _set_counts(self, counts: NDArray[np.float32]) -> None:
        self.counts_ = np.asarray(counts, dtype=np.float32)
        top = float(self.counts_.max()) if len(self.counts_) else 0.0
        self.scores_ = self.counts_ / top if top > 0 else np.zeros_like(self.counts_)
        self.n_items_ = len(self.counts_)
        self._order = descending_order(self.scores_)

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return the same popularity scores for every history, shape (n_items,)."""
        self._check_fitted()
        return self.scores_.copy()

    def score_rows(self, histories: sparse.spmatrix) -> NDArray[np.float32]:
        """Return the popularity scores once per history, shape (n_histories, n_items)."""
        self._check_fitted()
        return np.tile(self.scores_, (histories.shape[0], 1))

    def static_scores(self) -> NDArray[np.float32]:
        """The scores of every history: ``scores_``."""
        self._check_fitted()
        return self.scores_

    @property
    def order_(self) -> NDArray[np.int64]:
        """The items with a positive score, most popular first (ties by index)."""
        self._check_fitted()
        return self._order

    def ranking(self, n: int, mask: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
        """Return the ``n`` most popular items allowed by ``mask``."""
        self._check_fitted()
        return top_n(self.scores_, n, mask)

    def ranking_where(
        self, n: int, keep: Callable[[NDArray[np.int64]], NDArray[np.bool_]]
    ) -> NDArray[np.int64]:
        """:meth:`ranking` with ``keep(indices)`` instead of a mask (reads only a prefix)."""
        return first_kept(self.order_, n, keep)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta."""
        self._check_fitted()
        return {"counts": self.counts_}, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model._set_counts(arrays["counts"])
        return model


class TimedEvents(NamedTuple):
    """Events as index arrays over ``n_items`` items: what :meth:`Trending.fit` learns from.

    Attributes
    ----------
    users : ndarray of shape (n_events,), int64
    items : ndarray of shape (n_events,), int64 (negative = unknown, ignored)
    occurred_at : ndarray of shape (n_events,), float64; epoch seconds
    n_items : int
    """

    users: NDArray[np.int64]
    items: NDArray[np.int64]
    occurred_at: NDArray[np.float64]
    n_items: int


class Trending(BaseScorer):
    """Items ranked by recent users, each user's latest event of an item decayed.

    A user counts at most once per item (:func:`capped_counts`), with the decay of their
    latest event of it in the window: many events of one user do not make an item trend.

    Parameters
    ----------
    window_days : float
        Only events this recent (before ``now``) count.
    half_life_days : float
        A user whose latest event of the item is ``half_life_days`` old counts half.

    Attributes
    ----------
    popularity_ : Popularity
        Ranks items by the decayed counts (``counts_``, ``scores_`` and ``ranking`` are its).
    now_ : float
        The reference time of the decay, epoch seconds.
    """

    _fitted_attr = "popularity_"

    def __init__(self, *, window_days: float = 30.0, half_life_days: float = 7.0) -> None:
        self.window_days = window_days
        self.half_life_days = half_life_days

    def fit(self, X: TimedEvents, /, *, now: float | None = None, **context: Any) -> Self:
        """Fit on timed events.

        Parameters
        ----------
        X : TimedEvents
        now : float, optional
            The reference time of the decay, epoch seconds; default the latest event time.
        """
        users = np.asarray(X.users, dtype=np.int64)
        items = np.asarray(X.items, dtype=np.int64)
        times = np.asarray(X.occurred_at, dtype=np.float64)
        if not len(users) == len(items) == len(times):
            raise ValueError("users, items and occurred_at must have one entry per event")
        if now is None:
            now = float(times.max()) if len(times) else 0.0
        age_days = (now - times) / SECONDS_PER_DAY
        keep = (items >= 0) & (age_days >= 0) & (age_days <= self.window_days)
        decay = np.exp2(-age_days[keep] / self.half_life_days)
        counts = capped_counts(users[keep], items[keep], decay, n_items=X.n_items)
        self.popularity_ = Popularity.from_counts(counts)
        self.now_ = float(now)
        return self

    @property
    def counts_(self) -> NDArray[np.float32]:
        """Decayed distinct recent users per item, shape (n_items,)."""
        return self.popularity_.counts_

    @property
    def scores_(self) -> NDArray[np.float32]:
        """``counts_`` divided by its maximum (in [0, 1]), shape (n_items,)."""
        return self.popularity_.scores_

    @property
    def n_items_(self) -> int:
        """The number of items."""
        return self.popularity_.n_items_

    def has_signal(self) -> bool:
        """Return True when some item had events in the window."""
        self._check_fitted()
        return bool(np.any(self.counts_ > 0))

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return the same trending scores for every history, shape (n_items,)."""
        self._check_fitted()
        return self.popularity_.score(items, weights)

    def score_rows(self, histories: sparse.spmatrix) -> NDArray[np.float32]:
        """Return the trending scores once per history, shape (n_histories, n_items)."""
        self._check_fitted()
        return self.popularity_.score_rows(histories)

    def static_scores(self) -> NDArray[np.float32]:
        """The scores of every history: ``scores_``."""
        self._check_fitted()
        return self.popularity_.scores_

    @property
    def order_(self) -> NDArray[np.int64]:
        """The items with a positive score, most trending first (ties by index)."""
        self._check_fitted()
        return self.popularity_.order_

    def ranking(self, n: int, mask: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
        """Return the ``n`` most trending items allowed by ``mask``."""
        self._check_fitted()
        return self.popularity_.ranking(n, mask)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta (the reference time in it)."""
        self._check_fitted()
        return {"counts": self.counts_}, {**self._state_meta(), "now": self.now_}

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model.popularity_ = Popularity.from_counts(arrays["counts"])
        model.now_ = float(meta.get("now", 0.0))
        return model


class SegmentPopularity(BaseScorer):
    """Items ranked by distinct users within each customer segment.

    Attributes
    ----------
    segments_ : ndarray of shape (n_segments,), int64
        The segment labels, in row order of ``scores_``.
    scores_ : ndarray of shape (n_segments, n_items), float32
        Per-segment popularity divided by each segment's maximum.
    """

    _fitted_attr = "scores_"

    def fit(
        self,
        X: sparse.spmatrix,
        /,
        segments: NDArray[np.int64] | None = None,
        **context: Any,
    ) -> Self:
        """Fit on a user x item matrix and one segment label per user (-1 = none).

        Parameters
        ----------
        X : sparse matrix of shape (n_users, n_items)
        segments : ndarray of shape (n_users,), int64; required
        """
        if segments is None:
            raise TypeError("SegmentPopularity.fit needs the users' segments")
        X = sparse.csr_matrix(X)
        X.eliminate_zeros()
        segments = np.asarray(segments, dtype=np.int64)
        labels = np.unique(segments[segments >= 0])
        scores = np.zeros((len(labels), X.shape[1]), dtype=np.float32)
        user_rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        seg_of_entry = segments[user_rows]
        for row, label in enumerate(labels.tolist()):
            counts = np.bincount(X.indices[seg_of_entry == label], minlength=X.shape[1])
            top = counts.max() if len(counts) else 0
            if top > 0:
                scores[row] = counts / top
        self._set_state(labels, scores)
        return self

    def _set_state(self, segments: NDArray[np.int64], scores: NDArray[np.float32]) -> None:
        self.segments_ = np.asarray(segments, dtype=np.int64)
        self.scores_ = scores
        self.n_items_ = scores.shape[1]
        self.__dict__.pop("_orders", None)
        self._row = {int(s): i for i, s in enumerate(self.segments_.tolist())}

    def has_segment(self, segment: int) -> bool:
        """Return True when ``segment`` was seen in training."""
        self._check_fitted()
        return int(segment) in self._row

    def score_segment(self, segment: int) -> NDArray[np.float32]:
        """Return the popularity scores within ``segment``, shape (n_items,)."""
        self._check_fitted()
        row = self._row.get(int(segment))
        if row is None:
            return np.zeros(self.n_items_, dtype=np.float32)
        return np.asarray(self.scores_[row], dtype=np.float32)

    def segment_order(self, segment: int) -> NDArray[np.int64]:
        """The items popular in ``segment``, best first (ties by index); built once per segment."""
        self._check_fitted()
        cache: dict[int, NDArray[np.int64]] = self.__dict__.setdefault("_orders", {})
        order = cache.get(int(segment))
        if order is None:
            order = cache[int(segment)] = descending_order(self.score_segment(segment))
        return order

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return the overall mean of the segment scores (segment unknown), (n_items,)."""
        self._check_fitted()
        if len(self.segments_) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        return np.asarray(self.scores_, dtype=np.float32).mean(axis=0)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta."""
        self._check_fitted()
        return {"segments": self.segments_, "scores": self.scores_}, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model._set_state(arrays["segments"], arrays["scores"])
        return model
