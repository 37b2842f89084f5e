"""Blending of model scores, cold-start rules, filtering and the reason of every item (serving).

Models only score; everything the service needs around scores (normalising and weighting them,
excluding seen or filtered items, the cold-start fallbacks and the reason each item is shown)
is written once here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from app.ml.base import BaseScorer
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.ranking import top_n

ReasonKind = Literal[
    "similar_to", "content_match", "popular_in_segment", "trending", "popular", "bought_before"
]
REASON_KINDS: tuple[ReasonKind, ...] = get_args(ReasonKind)
#: Where an answer comes from: the user's history, or the rules for users without one.
Source = Literal["personalized", "cold_start"]
# The reason an item gets when a model dominates its blended score.
MODEL_REASONS: Mapping[str, str] = {
    "item_knn": "similar_to",
    "user_knn": "similar_to",
    "ease": "similar_to",
    "rp3beta": "similar_to",
    "content": "content_match",
    "popularity": "popular",
    "trending": "trending",
}
_ITEM_KINDS = ("similar_to", "content_match")
SOURCE_PERSONALIZED: Source = "personalized"
SOURCE_COLD_START: Source = "cold_start"


@dataclass(frozen=True)
class Reason:
    """Why an item is recommended: ``kind`` in :data:`REASON_KINDS`, and the history item."""

    kind: str
    item_id: str | None = None


@dataclass(frozen=True, eq=False)
class Ranked:
    """A ranked answer in index space.

    Attributes
    ----------
    items : ndarray of shape (n,), int64
    scores : ndarray of shape (n,), float32
    reason_kinds : list of str, length n
    reason_items : ndarray of shape (n,), int64; the history item index behind each reason or -1
    source : ``"personalized"`` or ``"cold_start"``
    """

    items: NDArray[np.int64]
    scores: NDArray[np.float32]
    reason_kinds: list[str]
    reason_items: NDArray[np.int64]
    source: str


def candidate_mask(
    n_items: int,
    *,
    allowed: NDArray[np.bool_] | None = None,
    exclude: Iterable[int] | NDArray[np.int64] = (),
) -> NDArray[np.bool_]:
    """Return the boolean mask of items that may be recommended.

    Parameters
    ----------
    n_items : int
    allowed : ndarray of shape (n_items,), bool, optional
        Availability / category filter; everything allowed when None.
    exclude : item indices never to recommend (seen items, explicit exclusions).

    Returns
    -------
    ndarray of shape (n_items,), bool
    """
    if allowed is None:
        mask = np.ones(n_items, dtype=bool)
    else:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (n_items,):
            raise ValueError(f"allowed must have shape ({n_items},), got {allowed.shape}")
        mask = allowed.copy()
    exclude = np.asarray(list(exclude) if not isinstance(exclude, np.ndarray) else exclude)
    if exclude.size:
        exclude = exclude.astype(np.int64)
        mask[exclude[(exclude >= 0) & (exclude < n_items)]] = False
    return mask


def normalize_scores(
    scores: NDArray[np.float32], mask: NDArray[np.bool_] | None = None
) -> NDArray[np.float32]:
    """Divide scores by their maximum over the candidates (so every model spans [0, 1]).

    Negative scores become 0: the blend only adds evidence for an item.
    """
    if mask is None:
        top = float(scores.max(initial=0.0))
    else:
        top = float(np.max(scores, where=mask, initial=0.0))
    if top <= 0:
        return np.zeros_like(scores, dtype=np.float32)
    return np.maximum(scores, 0.0, dtype=np.float32) * np.float32(1.0 / top)


def normalize_rows(scores: NDArray[np.float32], masks: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Apply :func:`normalize_scores` to every row (same arithmetic, so the same bits).

    Parameters
    ----------
    scores, masks : ndarrays of shape (n_rows, n_items)
    """
    top = np.max(scores, axis=1, where=masks, initial=0.0).astype(np.float64)
    inv = np.divide(1.0, top, out=np.zeros_like(top), where=top > 0).astype(np.float32)
    return np.maximum(scores, 0.0, dtype=np.float32) * inv[:, None]


class Blender:
    """Weighted sum of max-normalised model scores plus the cold-start rules.

    Parameters
    ----------
    models : mapping of name -> fitted scorer (names as in :data:`MODEL_REASONS`)
    weights : mapping of name -> blend weight (missing names weigh 0)
    popularity : fitted Popularity, the last fallback and the filler of short lists
    trending : fitted Trending, optional
    segment_popularity : fitted SegmentPopularity, optional
    """

    def __init__(
        self,
        models: Mapping[str, BaseScorer],
        weights: Mapping[str, float],
        *,
        popularity: Popularity,
        trending: Trending | None = None,
        segment_popularity: SegmentPopularity | None = None,
    ) -> None:
        unknown = set(weights) - set(models)
        if unknown:
            raise ValueError(f"weights for unknown models: {sorted(unknown)}")
        self.models = dict(models)
        self.weights = {name: float(weights.get(name, 0.0)) for name in models}
        self.popularity = popularity
        self.trending = trending
        self.segment_popularity = segment_popularity
        self.n_items = popularity.n_items_
        self._active = [(n, m, w) for n, m in self.models.items() if (w := self.weights[n]) > 0]

    @property
    def active_models(self) -> dict[str, BaseScorer]:
        """The models with a positive weight (the only ones scored)."""
        return {name: model for name, model, _ in self._active}

    def blend(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        mask: NDArray[np.bool_],
    ) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
        """Return the blended scores and each model's weighted normalised part.

        Returns
        -------
        (scores, parts) : ndarray of shape (n_items,) float32, and name -> ndarray (n_items,)
        """
        raw = {name: model.score(items, weights) for name, model, _ in self._active}
        return self.combine(raw, mask)

    def combine(
        self, model_scores: Mapping[str, NDArray[np.float32]], mask: NDArray[np.bool_]
    ) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
        """Blend raw model scores (name -> ndarray of shape (n_items,)); see :meth:`blend`."""
        total = np.zeros(self.n_items, dtype=np.float32)
        parts: dict[str, NDArray[np.float32]] = {}
        for name, _, w in self._active:
            part = normalize_scores(model_scores[name], mask)
            part *= np.float32(w)
            total += part
            parts[name] = part
        return total, parts

    def _fill(
        self, ranked: NDArray[np.int64], n: int, mask: NDArray[np.bool_]
    ) -> NDArray[np.int64]:
        rest = mask.copy()
        rest[ranked] = False
        return np.concatenate([ranked, self.popularity.ranking(n - len(ranked), rest)])

    def recommend(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        *,
        n: int,
        mask: NDArray[np.bool_],
        segment: int | None = None,
    ) -> Ranked:
        """Rank items for a history; with no history, apply the cold-start rules.

        Parameters
        ----------
        items, weights : the aggregated history, ndarray of shape (h,)
        n : number of items wanted
        mask : ndarray of shape (n_items,), bool; candidates (seen items already removed)
        segment : the user's segment, for the cold-start rule
        """
        if len(items) == 0:
            return self.cold_start(n=n, mask=mask, segment=segment)
        scores, parts = self.blend(items, weights, mask)
        ranked = top_n(scores, n, mask)
        kinds, reason_items = self._reasons(items, weights, ranked, parts)
        out_scores = scores[ranked]
        if len(ranked) < n:
            extra = self._fill(ranked, n, mask)[len(ranked) :]
            ranked = np.concatenate([ranked, extra])
            kinds += ["popular"] * len(extra)
            reason_items = np.concatenate([reason_items, np.full(len(extra), -1)])
            out_scores = np.concatenate([out_scores, np.zeros(len(extra), dtype=np.float32)])
        return Ranked(
            items=ranked,
            scores=out_scores.astype(np.float32),
            reason_kinds=kinds,
            reason_items=reason_items.astype(np.int64),
            source=SOURCE_PERSONALIZED,
        )

    def _reasons(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        ranked: NDArray[np.int64],
        parts: Mapping[str, NDArray[np.float32]],
    ) -> tuple[list[str], NDArray[np.int64]]:
        reason_items = np.full(len(ranked), -1, dtype=np.int64)
        if len(ranked) == 0 or not parts:
            return ["popular"] * len(ranked), reason_items
        names = list(parts)
        contrib = np.stack([parts[name][ranked] for name in names])
        kinds = [MODEL_REASONS.get(names[b], "popular") for b in contrib.argmax(axis=0).tolist()]
        # The history item behind an item-based reason: ask the dominating model, then the
        # next item-based models by contribution, until one names a history item.
        explainers = [j for j, name in enumerate(names) if MODEL_REASONS.get(name) in _ITEM_KINDS]
        pending = np.array([k in _ITEM_KINDS for k in kinds])
        if not explainers or not pending.any():
            return kinds, reason_items
        sub = contrib[explainers]
        order = np.argsort(-sub, axis=0, kind="stable")
        explained: dict[int, NDArray[np.int64] | None] = {}
        for step in range(len(explainers)):
            choice = np.asarray(explainers)[order[step]]
            for j in np.unique(choice[pending]).tolist():
                if j not in explained:
                    explained[j] = self.models[names[j]].explain(items, weights, ranked)
                positions = explained[j]
                if positions is None:
                    continue
                hit = pending & (choice == j) & (positions >= 0)
                hit &= sub[explainers.index(j)] > 0
                reason_items[hit] = items[positions[hit]]
                pending &= ~hit
            if not pending.any():
                break
        return kinds, reason_items

    def cold_start(self, *, n: int, mask: NDArray[np.bool_], segment: int | None = None) -> Ranked:
        """Rank items with no history: popular in segment, else trending, else popular."""
        sp, tr = self.segment_popularity, self.trending
        if segment is not None and sp is not None and sp.has_segment(segment):
            scores, kind = sp.score_segment(segment), "popular_in_segment"
        elif tr is not None and tr.has_signal():
            scores, kind = tr.scores_, "trending"
        else:
            scores, kind = self.popularity.scores_, "popular"
        ranked = top_n(scores, n, mask)
        kinds = [kind] * len(ranked)
        out_scores = np.asarray(scores[ranked], dtype=np.float32)
        if len(ranked) < n and kind != "popular":
            extra = self._fill(ranked, n, mask)[len(ranked) :]
            ranked = np.concatenate([ranked, extra])
            kinds += ["popular"] * len(extra)
            out_scores = np.concatenate([out_scores, self.popularity.scores_[extra]])
        return Ranked(
            items=ranked.astype(np.int64),
            scores=out_scores.astype(np.float32),
            reason_kinds=kinds,
            reason_items=np.full(len(ranked), -1, dtype=np.int64),
            source=SOURCE_COLD_START,
        )
