"""Blending of model scores, cold-start rules, filtering and the reason of every item.

Models only score; everything the service needs around scores (normalising and weighting them,
excluding seen or filtered items, the cold-start fallbacks and the reason each item is shown)
is written once here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.similarity import BaseScorer, top_n

REASON_KINDS = ("similar_to", "content_match", "popular_in_segment", "trending", "popular")
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
DEFAULT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
SOURCE_PERSONALIZED = "personalized"
SOURCE_COLD_START = "cold_start"


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

    def rank(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        n: int,
        mask: NDArray[np.bool_],
        model_scores: Mapping[str, NDArray[np.float32]] | None = None,
    ) -> NDArray[np.int64]:
        """Return the top ``n`` item indices for a history (no reasons; used by evaluation).

        ``model_scores`` (name -> raw scores) saves re-scoring when the caller has them.
        """
        if model_scores is None:
            scores, _ = self.blend(items, weights, mask)
        else:
            scores, _ = self.combine(model_scores, mask)
        ranked = top_n(scores, n, mask)
        if len(ranked) < n:
            ranked = self._fill(ranked, n, mask)
        return ranked

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
        if len(ranked) == 0 or not parts:
            return ["popular"] * len(ranked), np.full(len(ranked), -1, dtype=np.int64)
        names = list(parts)
        contrib = np.stack([parts[name][ranked] for name in names])
        best = contrib.argmax(axis=0)
        kinds = [MODEL_REASONS.get(names[b], "popular") for b in best.tolist()]
        reason_items = np.full(len(ranked), -1, dtype=np.int64)
        explained: dict[str, NDArray[np.int64] | None] = {}
        for pos, kind in enumerate(kinds):
            if kind not in ("similar_to", "content_match"):
                continue
            # Explain with the dominating model, else the next models by contribution.
            for b in np.argsort(-contrib[:, pos], kind="stable").tolist():
                name = names[b]
                if MODEL_REASONS.get(name) not in ("similar_to", "content_match"):
                    continue
                if name not in explained:
                    explained[name] = self.models[name].explain(items, weights, ranked)
                positions = explained[name]
                if positions is not None and positions[pos] >= 0:
                    reason_items[pos] = items[positions[pos]]
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


@dataclass(frozen=True, eq=False)
class _TuningData:
    parts: NDArray[np.float32]  # (n_models, n_users, width) normalised scores of candidates
    relevant: NDArray[np.bool_]  # (n_users, width)
    valid: NDArray[np.bool_]  # (n_users, width) False for padding
    candidates: NDArray[np.int64]  # (n_users, width), -1 for padding
    idcg: NDArray[np.float64]  # (n_users,)


def _tuning_data(
    models: Mapping[str, BaseScorer],
    train: sparse.csr_matrix,
    test: sparse.csr_matrix,
    users: NDArray[np.int64],
    *,
    k: int,
    candidates: int,
    history: sparse.csr_matrix,
) -> _TuningData:
    names = list(models)
    n_items = train.shape[1]
    per_user: list[tuple[NDArray[np.int64], list[NDArray[np.float32]], NDArray[np.bool_]]] = []
    idcg = np.zeros(len(users))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for row, u in enumerate(users.tolist()):
        lo, hi = train.indptr[u], train.indptr[u + 1]
        items = train.indices[lo:hi].astype(np.int64)
        weights = history.data[lo:hi].astype(np.float32)
        mask = np.ones(n_items, dtype=bool)
        mask[items] = False
        scores = [normalize_scores(models[name].score(items, weights), mask) for name in names]
        cand = np.unique(np.concatenate([top_n(s, candidates, mask) for s in scores]))
        rel_items = test.indices[test.indptr[u] : test.indptr[u + 1]]
        idcg[row] = discounts[: min(len(rel_items), k)].sum()
        per_user.append((cand, [s[cand] for s in scores], np.isin(cand, rel_items)))
    width = max((len(c) for c, _, _ in per_user), default=0)
    width = max(width, k)
    parts = np.zeros((len(names), len(users), width), dtype=np.float32)
    relevant = np.zeros((len(users), width), dtype=bool)
    valid = np.zeros((len(users), width), dtype=bool)
    cands = np.full((len(users), width), -1, dtype=np.int64)
    for row, (cand, scores, rel) in enumerate(per_user):
        m = len(cand)
        for j, s in enumerate(scores):
            parts[j, row, :m] = s
        relevant[row, :m] = rel
        valid[row, :m] = True
        cands[row, :m] = cand
    return _TuningData(parts, relevant, valid, cands, idcg)


def _objective(
    data: _TuningData, w: NDArray[np.float32], k: int, n_items: int, min_coverage: float
) -> tuple[float, float]:
    blended = np.tensordot(w, data.parts, axes=1)
    blended[~data.valid] = -np.inf
    top = np.argpartition(-blended, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(blended, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    hits = np.take_along_axis(data.relevant, top, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ndcg = float(np.mean(np.divide(dcg, data.idcg, out=np.zeros_like(dcg), where=data.idcg > 0)))
    chosen = np.take_along_axis(data.candidates, top, axis=1)
    coverage = len(np.unique(chosen[chosen >= 0])) / max(n_items, 1)
    penalty = max(0.0, min_coverage - coverage)
    return ndcg - penalty, coverage


def tune_weights(
    models: Mapping[str, BaseScorer],
    train: sparse.csr_matrix,
    validation: sparse.csr_matrix,
    *,
    k: int = 10,
    candidates: int = 100,
    grid: Sequence[float] = DEFAULT_GRID,
    rounds: int = 3,
    max_users: int | None = 5000,
    min_coverage: float = 0.0,
    seed: int = 0,
    history: sparse.csr_matrix | None = None,
) -> tuple[dict[str, float], dict]:
    """Choose blend weights by coordinate search maximising NDCG@k on a validation split.

    Each user's candidates are the union of every model's top ``candidates`` items, so a weight
    vector is scored with a few array operations; coverage below ``min_coverage`` is subtracted
    from the objective.

    Parameters
    ----------
    models : name -> scorer fitted on ``train``
    train : csr_matrix of shape (n_users, n_items); rows are the histories
    validation : csr_matrix of shape (n_users, n_items); held-out pairs (relevant items)
    max_users : validation users sampled (seeded) to bound the cost
    history : csr_matrix like ``train`` (same sparsity) holding the history weights, optional

    Returns
    -------
    (weights, report) : name -> weight, and a JSON-able summary of the search.
    """
    names = list(models)
    users = np.flatnonzero(np.diff(validation.indptr) > 0)
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    if not names or len(users) == 0:
        return dict.fromkeys(names, 1.0), {"users": len(users), "ndcg": None}
    if history is None:
        history = train
    elif not np.array_equal(history.indptr, train.indptr):
        raise ValueError("history must have the same sparsity pattern as train")
    data = _tuning_data(
        models, train, validation, users, k=k, candidates=candidates, history=history
    )
    n_items = train.shape[1]
    w = np.ones(len(names), dtype=np.float32)
    best, best_cov = _objective(data, w, k, n_items, min_coverage)
    for _ in range(rounds):
        improved = False
        for j in range(len(names)):
            for value in grid:
                trial = w.copy()
                trial[j] = value
                if not trial.any():
                    continue
                obj, cov = _objective(data, trial, k, n_items, min_coverage)
                if obj > best + 1e-6:
                    best, best_cov, w, improved = obj, cov, trial, True
        if not improved:
            break
    weights = {name: float(v) for name, v in zip(names, w.tolist(), strict=True)}
    report = {
        "users": len(users),
        "objective": round(best, 6),
        "coverage": round(best_cov, 6),
        "min_coverage": min_coverage,
    }
    return weights, report
