"""Offline evaluation and tuning through the serving path.

Every figure of the served answers comes from :meth:`Recommender.rank_user`, the code behind
``GET /recommend``, given each test user's :class:`UserHistory` built from the training events
as the service would read it from the store (:func:`app.ml.history.histories_of`). Per-model
figures, beside them, score the same aggregated histories in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.evaluation import ranking_metrics
from app.ml.history import UserHistory
from app.ml.hybrid import Ranked
from app.ml.placements import mix
from app.ml.ranking import top_n_rows
from app.ml.tuning import TunedWeights, tune_weights

if TYPE_CHECKING:
    from app.ml.recommender import Recommender

#: Shares of repeat slots tried for the ``home`` placement.
HOME_SHARES = tuple(round(0.1 * i, 1) for i in range(11))


def served_rows(rec: Recommender, histories: Sequence[UserHistory]) -> sparse.csr_matrix:
    """Each history aggregated as ``explore`` scores it, one csr row per history."""
    indptr, indices, data = [0], [], []
    for history in histories:
        items, values = rec.served_history(history)
        indices.append(items)
        data.append(values)
        indptr.append(indptr[-1] + len(items))
    return sparse.csr_matrix(
        (
            np.concatenate([np.zeros(0, np.float32), *data]),
            np.concatenate([np.zeros(0, np.int64), *indices]),
            np.asarray(indptr, dtype=np.int64),
        ),
        shape=(len(histories), rec.n_items),
    )


def seen_rows(rec: Recommender, histories: Sequence[UserHistory]) -> sparse.csr_matrix:
    """1 for every item each user ever had (what ``exclude_seen`` leaves out)."""
    rows, cols = [], []
    for r, history in enumerate(histories):
        seen = rec.item_vocab.indices(sorted(history.seen_items()))
        seen = seen[seen >= 0]
        cols.append(seen)
        rows.append(np.full(len(seen), r, dtype=np.int64))
    cols_all = np.concatenate([np.zeros(0, np.int64), *cols])
    rows_all = np.concatenate([np.zeros(0, np.int64), *rows])
    out = sparse.csr_matrix(
        (np.ones(len(cols_all), np.float32), (rows_all, cols_all)),
        shape=(len(histories), rec.n_items),
    )
    out.sum_duplicates()
    return out


def rank_all(
    rec: Recommender, histories: Sequence[UserHistory], placement: str, k: int
) -> list[Ranked]:
    """The served answer of each history (the catalogue's availability, no other filter)."""
    return [
        rec.rank_user(h, n=k, placement=placement, candidates=rec.candidates(h)) for h in histories
    ]


def targets_of(matrix: sparse.csr_matrix, rows: NDArray[np.int64]) -> dict[int, set[int]]:
    """Row position -> set of target item indices, for the given user rows."""
    sub = matrix[rows]
    return {
        r: set(sub.indices[sub.indptr[r] : sub.indptr[r + 1]].tolist()) for r in range(len(rows))
    }


def _metrics(
    ranked: Sequence[NDArray[np.int64]], relevant: dict[int, set[int]], n_items: int, k: int
) -> dict[str, float]:
    return ranking_metrics(dict(enumerate(ranked)), relevant, n_items=n_items, k=k)


def evaluate_served(
    rec: Recommender,
    models: Mapping[str, BaseScorer],
    histories: Sequence[UserHistory],
    explore: dict[int, set[int]],
    next_basket: dict[int, set[int]],
    *,
    k: int,
    references: Mapping[str, BaseScorer] | None = None,
    max_batch_entries: int = 1 << 22,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of each model and of the served placements on both targets.

    Parameters
    ----------
    rec : the Recommender under test (fitted on the training part)
    models : name -> fitted scorer, scored in batch on the served histories (explore target)
    histories : the test users' training histories, newest first
    explore, next_basket : row position -> target item indices
    references : name -> scorer given the binary history of every seen item (for example
        binary EASE), reported beside the models

    Returns
    -------
    ``{"models": {name: metrics, ..., "served": metrics}, "next_basket": {"popularity",
    "buy_again", "explore", "home"}}``; the explore-target figures are under ``models``.
    """
    n_items = rec.n_items
    references = references or {}
    served = served_rows(rec, histories)
    seen = seen_rows(rec, histories)
    ranked: dict[str, list[NDArray[np.int64]]] = {name: [] for name in [*models, *references]}
    batch = max(1, max_batch_entries // max(n_items, 1))
    for lo in range(0, len(histories), batch):
        hi = min(lo + batch, len(histories))
        masks = (seen[lo:hi].toarray() == 0) & rec.available[None, :]
        inputs = [(models, served[lo:hi]), (references, seen[lo:hi])]
        for scorers, rows in inputs:
            for name, model in scorers.items():
                ranked[name].extend(top_n_rows(model.score_rows(rows), k, masks))
    per_model = {name: _metrics(r, explore, n_items, k) for name, r in ranked.items()}
    explored = [r.items for r in rank_all(rec, histories, "explore", k)]
    per_model["served"] = _metrics(explored, explore, n_items, k)
    popular = rec.blender.popularity.ranking(k, rec.available.copy())
    placements = {
        "popularity": [popular] * len(histories),
        "buy_again": [r.items for r in rank_all(rec, histories, "buy_again", k)],
        "explore": explored,
        "home": [r.items for r in rank_all(rec, histories, "home", k)],
    }
    nb = {name: _metrics(r, next_basket, n_items, k) for name, r in placements.items()}
    return {"models": per_model, "next_basket": nb}


def tune_blend(
    rec: Recommender,
    models: Mapping[str, BaseScorer],
    histories: Sequence[UserHistory],
    explore: sparse.csr_matrix,
    *,
    k: int,
    candidates: int,
    min_coverage: float,
) -> TunedWeights:
    """Blend weights maximising explore NDCG@k on the validation users' served histories.

    ``explore`` has one row per history. The candidate pool leaves out the items within
    each history's budget (a user beyond the budget keeps older items as candidates here,
    unlike the served answer, which the evaluation then measures exactly).
    """
    rows = served_rows(rec, histories)
    return tune_weights(
        models, rows, explore, k=k, candidates=candidates, max_users=None, min_coverage=min_coverage
    )


def tune_home_share(
    rec: Recommender,
    histories: Sequence[UserHistory],
    next_basket: dict[int, set[int]],
    *,
    k: int,
) -> tuple[float, dict]:
    """The share of repeat slots maximising next-basket recall@k (then NDCG) on validation.

    The repeat and explore lists come from :meth:`Recommender.rank_user`; each share mixes
    them with :func:`app.ml.placements.mix`, exactly as the ``home`` placement does.
    """
    repeats = rank_all(rec, histories, "buy_again", k)
    explores = rank_all(rec, histories, "explore", k)
    scores: dict[float, tuple[float, float]] = {}
    for share in HOME_SHARES:
        mixed = [mix(r, e, n=k, share=share).items for r, e in zip(repeats, explores, strict=True)]
        m = _metrics(mixed, next_basket, rec.n_items, k)
        scores[share] = (m["recall"], m["ndcg"])
    best = max(HOME_SHARES, key=lambda s: (scores[s], -s))
    report = {
        "users": len(histories),
        "objective": "next-basket recall@k, then NDCG@k",
        "share": best,
        "recall_by_share": {str(s): round(v[0], 6) for s, v in scores.items()},
    }
    return best, report
