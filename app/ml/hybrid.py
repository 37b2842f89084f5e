"""Blending of model scores, cold-start rules, filtering and the reason of every item (serving).

Models only score; everything the service needs around scores (normalising and weighting them,
excluding seen or filtered items, the cold-start fallbacks and the reason each item is shown)
is written once here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from app.ml.base import BaseScorer, Votes
from app.ml.gather import best_owners, distinct
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.ranking import descending_order, first_kept, member

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


#: A candidate rule asked about a few items at a time: indices -> whether each may be returned.
Keep = Callable[[NDArray[np.int64]], NDArray[np.bool_]]


def keeper(mask: NDArray[np.bool_] | Keep) -> Keep:
    """The rule of a dense mask (``mask[indices]``), or the rule itself when given one."""
    if callable(mask):
        return mask
    dense = np.asarray(mask, dtype=bool)
    return lambda indices: dense[indices]


@dataclass(frozen=True, eq=False)
class Scored:
    """The blend on one history's candidate set (serving's unit of work).

    Attributes
    ----------
    items : ndarray of shape (c,), int64; the candidates: every item a history item (or a
        nearest user) votes for that the rules keep, plus the popular head the global
        models could rank
    total : ndarray of shape (c,), float32; the blended score of each
    parts : name -> ndarray of shape (c,), float32; each model's weighted normalised part
    """

    items: NDArray[np.int64]
    total: NDArray[np.float32]
    parts: dict[str, NDArray[np.float32]]
    gathered: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    inverse: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    voted: dict[str, tuple[int, Votes]] = field(default_factory=dict)

    def explain(self, name: str, targets: NDArray[np.int64]) -> NDArray[np.int64] | None:
        """Per target, the history position whose entry of model ``name`` is largest (-1: none).

        Read from the entries already gathered (None when the model's entries have no
        history owners): :meth:`BaseScorer.explain` without a second pass over the rows.
        """
        found = self.voted.get(name)
        if found is None or found[1].owners is None:
            return None
        lo, votes = found
        assert votes.owners is not None
        slot_of = np.full(len(self.gathered), -1, dtype=np.int64)
        if len(self.gathered):
            at = np.minimum(np.searchsorted(self.gathered, targets), len(self.gathered) - 1)
            hit = self.gathered[at] == targets
            slot_of[at[hit]] = np.flatnonzero(hit)
        slots = slot_of[self.inverse[lo : lo + len(votes.vals)]]
        chosen = slots >= 0
        return best_owners(slots[chosen], votes.vals[chosen], votes.owners[chosen], len(targets))


def _best(items: NDArray[np.int64], scores: NDArray[np.float32], n: int) -> NDArray[np.int64]:
    """Positions of the ``n`` best positive scores, best first, ties by item index."""
    positive = np.flatnonzero(scores > 0)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(positive) > n:
        # Every score at least the n-th largest (ties at the cut included), then sort those.
        cut = np.partition(scores[positive], len(positive) - n)[len(positive) - n]
        positive = positive[scores[positive] >= cut]
    order = np.lexsort((items[positive], -scores[positive]))
    return positive[order][:n].astype(np.int64)


def _normalised(raw: NDArray[np.float32], top: float) -> NDArray[np.float32]:
    """:func:`normalize_scores` given the maximum over the candidates (the same arithmetic)."""
    if top <= 0:
        return np.zeros(len(raw), dtype=np.float32)
    return np.maximum(raw, 0.0, dtype=np.float32) * np.float32(1.0 / top)


@dataclass(frozen=True, eq=False)
class _Static:
    """A model scoring every history the same (popularity, trending) and its ranking."""

    name: str
    weight: float
    scores: NDArray[np.float32]
    order: NDArray[np.int64]


class Blender:
    """Weighted sum of max-normalised model scores plus the cold-start rules.

    Each model's scores are divided by their maximum over the answer's candidates, weighted
    and summed; the ``n`` best positive sums are the answer. Nothing is computed per item of
    the catalogue: the item-item and user-kNN models give the entries of the history's rows
    (:meth:`BaseScorer.votes`), which are summed over the items they name; every other item
    scores 0 in them, so the maximum over those items *is* the maximum over the candidates.
    The global models (popularity, trending) add their head, read in their precomputed order
    until no item further down could enter the answer. The answer is the one the dense blend
    over every item gives (up to ties at the cut).

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
        self._active = [(n, m, w) for n, m, w in self._weighted() if w > 0]
        self._statics: dict[str, _Static] = {}
        for name, model, w in self._active:
            static = model.static_scores()
            if static is not None:
                order = getattr(model, "order_", None)
                if order is None:
                    order = descending_order(static)
                self._statics[name] = _Static(name, w, static, order)

    def _weighted(self) -> list[tuple[str, BaseScorer, float]]:
        return [(name, model, self.weights[name]) for name, model in self.models.items()]

    @property
    def active_models(self) -> dict[str, BaseScorer]:
        """The models with a positive weight (the only ones scored)."""
        return {name: model for name, model, _ in self._active}

    def score_candidates(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        mask: NDArray[np.bool_] | Keep,
        n: int,
        share: float = 1.0,
    ) -> Scored:
        """Blend the models over the candidates of a history (see the class docstring).

        Parameters
        ----------
        items, weights : the aggregated history, ndarray of shape (h,)
        mask : the candidate rule (seen items already left out), or its dense mask
        n : how many items the answer needs (how deep the global models' heads are read)
        share : the part of each history item's row the item-item models read, strongest
            entries first (:meth:`BaseScorer.votes`)
        """
        keep = keeper(mask)
        voted: dict[str, tuple[int, Votes]] = {}
        lo = 0
        for name, model, _ in self._active:
            if name not in self._statics:
                votes = model.votes(items, weights, share)
                voted[name] = (lo, votes)
                lo += len(votes.cols)
        cols = np.concatenate([np.zeros(0, np.int64), *(v.cols for _, v in voted.values())])
        gathered, inverse = distinct(cols, self.n_items)
        kept = keep(gathered) if len(gathered) else np.zeros(0, dtype=bool)
        # A global model's maximum over the candidates: its first item the rules keep.
        tops = {}
        for name, head in self._statics.items():
            first = first_kept(head.order, 1, keep)
            tops[name] = float(head.scores[first[0]]) if len(first) else 0.0
        extra = self._static_head(gathered, keep, n, tops)
        candidates = np.concatenate([gathered[kept], extra]).astype(np.int64)
        total = np.zeros(len(candidates), dtype=np.float32)
        parts: dict[str, NDArray[np.float32]] = {}
        n_kept = int(kept.sum())
        for name, _, w in self._active:
            static = self._statics.get(name)
            if static is None:
                lo, votes = voted[name]
                summed = np.bincount(
                    inverse[lo : lo + len(votes.vals)], weights=votes.vals, minlength=len(gathered)
                ).astype(np.float32)
                raw = np.zeros(len(candidates), dtype=np.float32)
                raw[:n_kept] = summed[kept]
                top = float(np.max(raw, initial=0.0))
            else:
                raw = np.asarray(static.scores[candidates], dtype=np.float32)
                top = tops[name]
            part = _normalised(raw, top)
            part *= np.float32(w)
            total += part
            parts[name] = part
        return Scored(candidates, total, parts, gathered, inverse, voted)

    def _static_head(
        self, gathered: NDArray[np.int64], keep: Keep, n: int, tops: Mapping[str, float]
    ) -> NDArray[np.int64]:
        """The items outside ``gathered`` the global models could put in the top ``n``.

        Only the global models score them, so their rank is the rank of their weighted sum
        of global scores: one model's first ``n`` kept items, or for several Fagin's threshold
        algorithm (read every order a chunk deeper until the ``n``-th best sum read beats any
        sum below the depth read).
        """
        statics = list(self._statics.values())
        if not statics or n <= 0:
            return np.zeros(0, dtype=np.int64)

        def outside(indices: NDArray[np.int64]) -> NDArray[np.bool_]:
            return keep(indices) & ~member(indices, gathered)

        if len(statics) == 1:
            return first_kept(statics[0].order, n, outside)
        read = [np.zeros(0, dtype=np.int64)]
        depth, size = 0, max(64, 2 * n)
        while True:
            for static in statics:
                chunk = np.asarray(static.order[depth : depth + size], dtype=np.int64)
                read.append(chunk[outside(chunk)])
            depth += size
            pool = np.unique(np.concatenate(read))
            sums = np.zeros(len(pool))
            bound = 0.0
            for static in statics:
                top = tops[static.name]
                if top <= 0:
                    continue
                sums += static.weight * static.scores[pool] / top
                if depth < len(static.order):
                    bound += static.weight * float(static.scores[static.order[depth]]) / top
            exhausted = all(depth >= len(static.order) for static in statics)
            if exhausted or (len(pool) >= n and np.sort(sums)[-n] > bound):
                return pool
            size *= 2

    def _fill(self, ranked: NDArray[np.int64], n: int, keep: Keep) -> NDArray[np.int64]:
        taken = np.sort(ranked)

        def rest(indices: NDArray[np.int64]) -> NDArray[np.bool_]:
            return keep(indices) & ~member(indices, taken)

        return np.concatenate([ranked, self.popularity.ranking_where(n - len(ranked), rest)])

    def recommend(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        *,
        n: int,
        mask: NDArray[np.bool_] | Keep,
        segment: int | None = None,
        share: float = 1.0,
    ) -> Ranked:
        """Rank items for a history; with no history, apply the cold-start rules.

        Parameters
        ----------
        items, weights : the aggregated history, ndarray of shape (h,)
        n : number of items wanted
        mask : the candidates (seen items already removed): a rule asked about a few items
            at a time (:meth:`Candidates.explore_at`), or a dense mask of shape (n_items,)
        segment : the user's segment, for the cold-start rule
        share : see :meth:`score_candidates`
        """
        keep = keeper(mask)
        if len(items) == 0:
            return self.cold_start(n=n, mask=keep, segment=segment)
        scored = self.score_candidates(items, weights, keep, n, share)
        best = _best(scored.items, scored.total, n)
        ranked = scored.items[best]
        contributions = {name: part[best] for name, part in scored.parts.items()}
        kinds, reason_items = self._reasons(items, weights, ranked, contributions, scored)
        out_scores = scored.total[best]
        if len(ranked) < n:
            extra = self._fill(ranked, n, keep)[len(ranked) :]
            ranked = np.concatenate([ranked, extra])
            kinds += ["popular"] * len(extra)
            reason_items = np.concatenate([reason_items, np.full(len(extra), -1)])
            out_scores = np.concatenate([out_scores, np.zeros(len(extra), dtype=np.float32)])
        return Ranked(
            items=ranked.astype(np.int64),
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
        contributions: Mapping[str, NDArray[np.float32]],
        scored: Scored | None = None,
    ) -> tuple[list[str], NDArray[np.int64]]:
        """Each returned item's reason, from each model's part in its score (returned items only)."""
        reason_items = np.full(len(ranked), -1, dtype=np.int64)
        if len(ranked) == 0 or not contributions:
            return ["popular"] * len(ranked), reason_items
        names = list(contributions)
        contrib = np.stack([contributions[name] for name in names])
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
                    known = None if scored is None else scored.explain(names[j], ranked)
                    if known is None:
                        known = self.models[names[j]].explain(items, weights, ranked)
                    explained[j] = known
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

    def cold_start(
        self, *, n: int, mask: NDArray[np.bool_] | Keep, segment: int | None = None
    ) -> Ranked:
        """Rank items with no history: popular in segment, else trending, else popular."""
        keep = keeper(mask)
        sp, tr = self.segment_popularity, self.trending
        if segment is not None and sp is not None and sp.has_segment(segment):
            scores, order = sp.score_segment(segment), sp.segment_order(segment)
            kind = "popular_in_segment"
        elif tr is not None and tr.has_signal():
            scores, order, kind = tr.scores_, tr.order_, "trending"
        else:
            scores, order, kind = self.popularity.scores_, self.popularity.order_, "popular"
        ranked = first_kept(order, n, keep)
        kinds = [kind] * len(ranked)
        out_scores = np.asarray(scores[ranked], dtype=np.float32)
        if len(ranked) < n and kind != "popular":
            extra = self._fill(ranked, n, keep)[len(ranked) :]
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
