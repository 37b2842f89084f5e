"""The blend served on a candidate set equals the dense blend over every item (same scales)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.bundle import read_component, write_component
from app.ml.candidates import Candidates
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.hybrid import Blender, normalize_scores
from app.ml.popularity import Popularity, TimedEvents, Trending
from app.ml.similarity import ItemItemScorer, strongest_first

N_USERS, N_ITEMS = 80, 120


def _matrix(seed: int = 0) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    # Clustered purchases: users mostly buy within one of four item groups.
    rows, cols = [], []
    for u in range(N_USERS):
        group = u % 4
        own = rng.choice(np.arange(group * 30, group * 30 + 30), size=rng.integers(3, 12))
        other = rng.choice(N_ITEMS, size=rng.integers(0, 4))
        for i in np.concatenate([own, other]).tolist():
            rows.append(u)
            cols.append(i)
    values = rng.random(len(rows)).astype(np.float32) + 0.5
    X = sparse.csr_matrix((values, (rows, cols)), shape=(N_USERS, N_ITEMS), dtype=np.float32)
    X.sum_duplicates()
    return X


@pytest.fixture(scope="module")
def fitted() -> dict[str, BaseScorer]:
    X = _matrix()
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(N_USERS), np.diff(X.indptr))
    times = rng.random(len(users)) * 20 * 86_400.0
    return {
        "item_knn": ItemKNN(k=15).fit(X),
        "user_knn": UserKNN(k=10).fit(X),
        "ease": EASE(l2=5.0, k=12).fit(X),
        "ease_dense": EASE(l2=5.0, k=None).fit(X),
        "rp3beta": RP3beta(k=15).fit(X),
        "popularity": Popularity().fit(X),
        "trending": Trending(window_days=10, half_life_days=3).fit(
            TimedEvents(users, X.indices.astype(np.int64), times, N_ITEMS)
        ),
    }


def _top_n_exact(
    scores: NDArray[np.floating], n: int, mask: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """top_n's rule (positive scores, best first, ties by index) with ties at the cut too."""
    positive = np.flatnonzero((scores > 0) & mask)
    return positive[np.lexsort((positive, -scores[positive]))][:n].astype(np.int64)


def _dense_reference(
    blender: Blender,
    items: NDArray[np.int64],
    weights: NDArray[np.float32],
    mask: NDArray[np.bool_],
    n: int,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The blend as it was computed before candidate scoring: dense vectors over every item."""
    total = np.zeros(N_ITEMS, dtype=np.float32)
    for name, model in blender.active_models.items():
        part = normalize_scores(model.score(items, weights), mask)
        part *= np.float32(blender.weights[name])
        total += part
    ranked = _top_n_exact(total, n, mask)
    if len(ranked) < n:
        rest = mask.copy()
        rest[ranked] = False
        popular = _top_n_exact(blender.popularity.scores_, n - len(ranked), rest)
        ranked = np.concatenate([ranked, popular])
    scores = np.zeros(len(ranked), dtype=np.float32)
    scores[: len(ranked)] = np.where(total[ranked] > 0, total[ranked], 0.0)
    return ranked, scores


BLENDS = [
    {"item_knn": 1.0},
    {"item_knn": 0.7, "ease": 1.0, "popularity": 0.05},
    {"ease_dense": 1.0, "rp3beta": 0.3},
    {"user_knn": 1.0, "item_knn": 0.4, "trending": 0.2},
    {"item_knn": 0.3, "rp3beta": 0.6, "popularity": 0.4, "trending": 0.5},  # two global models
    {"popularity": 1.0, "trending": 0.35},
]


@pytest.mark.parametrize("weights", BLENDS, ids=lambda w: "+".join(w))
def test_the_served_blend_equals_the_dense_blend(
    fitted: dict[str, BaseScorer], weights: dict[str, float]
) -> None:
    models = {name: fitted[name] for name in weights}
    popularity = fitted["popularity"]
    assert isinstance(popularity, Popularity)
    blender = Blender(models, weights, popularity=popularity)
    rng = np.random.default_rng(7)
    checked = 0
    for trial in range(40):
        h = int(rng.integers(1, 15))
        items = np.unique(rng.choice(N_ITEMS, size=h)).astype(np.int64)
        history_weights = (rng.random(len(items)) + 0.1).astype(np.float32)
        available = rng.random(N_ITEMS) > 0.15
        within = [rng.choice(N_ITEMS, size=70)] if trial % 3 == 0 else None
        candidates = Candidates.build(
            available, within=within, exclude=rng.choice(N_ITEMS, size=5).tolist(), seen=items
        )
        n = int(rng.integers(1, 30))
        served = blender.recommend(items, history_weights, n=n, mask=candidates.explore_at)
        want_items, want_scores = _dense_reference(
            blender, items, history_weights, candidates.explore, n
        )
        np.testing.assert_array_equal(served.items, want_items)
        np.testing.assert_array_equal(served.scores, want_scores)
        assert candidates.explore[served.items].all()
        checked += len(served.items)
    assert checked > 200


def test_reasons_are_those_of_the_dense_parts(fitted: dict[str, BaseScorer]) -> None:
    weights = {"item_knn": 1.0, "ease": 0.8, "popularity": 0.3}
    popularity = fitted["popularity"]
    assert isinstance(popularity, Popularity)
    blender = Blender({name: fitted[name] for name in weights}, weights, popularity=popularity)
    items = np.array([1, 2, 5, 40], dtype=np.int64)
    history_weights = np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32)
    mask = np.ones(N_ITEMS, dtype=bool)
    mask[items] = False
    ranked = blender.recommend(items, history_weights, n=15, mask=mask)
    for item, kind, source in zip(
        ranked.items.tolist(), ranked.reason_kinds, ranked.reason_items.tolist(), strict=True
    ):
        parts = {
            name: float(normalize_scores(model.score(items, history_weights), mask)[item])
            * weights[name]
            for name, model in blender.active_models.items()
        }
        best = max(parts, key=lambda name: parts[name])
        assert kind == ("popular" if best == "popularity" else "similar_to")
        if kind == "similar_to":
            model = blender.models[best]
            contrib = [
                float(model.score(items[j : j + 1], history_weights[j : j + 1])[item])
                for j in range(len(items))
            ]
            assert source == items[int(np.argmax(contrib))]


def test_candidate_rules_asked_per_item_equal_the_dense_masks() -> None:
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(1, 200))
        available = rng.random(n) > 0.3
        within = None if rng.random() < 0.3 else [rng.choice(n, size=5) for _ in range(3)]
        candidates = Candidates.build(
            available,
            within=within,
            exclude=rng.integers(-1, n + 3, size=4).tolist(),
            seen=None if rng.random() < 0.3 else rng.integers(-1, n, size=6).tolist(),
        )
        everything = np.arange(n, dtype=np.int64)
        np.testing.assert_array_equal(candidates.allowed_at(everything), candidates.allowed)
        np.testing.assert_array_equal(candidates.explore_at(everything), candidates.explore)
        picked = rng.integers(0, n, size=10).astype(np.int64)  # repeats, any order
        np.testing.assert_array_equal(candidates.explore_at(picked), candidates.explore[picked])


def test_cold_start_and_fill_read_the_popular_order_as_the_dense_ranking(
    fitted: dict[str, BaseScorer],
) -> None:
    popularity = fitted["popularity"]
    assert isinstance(popularity, Popularity)
    blender = Blender({"item_knn": fitted["item_knn"]}, {"item_knn": 1.0}, popularity=popularity)
    rng = np.random.default_rng(5)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    for _ in range(20):
        mask = rng.random(N_ITEMS) > 0.5
        n = int(rng.integers(1, 80))
        cold = blender.recommend(*empty, n=n, mask=mask)
        np.testing.assert_array_equal(cold.items, _top_n_exact(popularity.scores_, n, mask))
        assert cold.reason_kinds == ["popular"] * len(cold.items)


def test_ease_rows_are_pruned_and_an_older_bundle_still_loads(
    fitted: dict[str, BaseScorer], tmp_path: Path
) -> None:
    ease = fitted["ease"]
    assert isinstance(ease, EASE) and ease.similarity_ is not None
    counts = np.diff(ease.similarity_.indptr)
    assert counts.max() <= 12
    for row in (0, 7, 50):  # the kept weights are the row's largest in absolute value
        kept = ease.similarity_.indices[
            ease.similarity_.indptr[row] : ease.similarity_.indptr[row + 1]
        ]
        dropped = np.setdiff1d(np.arange(N_ITEMS), kept)
        assert np.abs(ease.weights_[row, kept]).min() >= np.abs(ease.weights_[row, dropped]).max()
    assert (ease.similarity_.data < 0).any()  # negative weights are kept: they vote against
    # A bundle of the previous release: the dense weights only, and no k among the params.
    meta = {"model": "EASE", "params": {"l2": 5.0, "max_items": 8000, "n_threads": 1}}
    write_component(tmp_path / "ease", {"weights": ease.weights_}, meta)
    arrays, loaded_meta = read_component(tmp_path / "ease")
    old = EASE.from_state(arrays, loaded_meta)
    assert old.k == 400 and old.similarity_ is not None
    history = (np.array([3, 9], dtype=np.int64), np.array([1.0, 1.0], dtype=np.float32))
    top = np.argsort(-ease.weights_[3])[:5]
    assert (old.score(*history)[top] != 0).any()
    # Written now, the pruned rows travel with the bundle and load as they were.
    arrays, meta = ease.to_state()
    write_component(tmp_path / "new", arrays, meta)
    restored = EASE.from_state(*read_component(tmp_path / "new"))
    np.testing.assert_array_equal(restored.score(*history), ease.score(*history))


def test_reasons_read_from_the_gathered_entries_equal_each_models_explain(
    fitted: dict[str, BaseScorer],
) -> None:
    weights = {"item_knn": 1.0, "ease": 0.5, "rp3beta": 0.5, "user_knn": 0.3}
    popularity = fitted["popularity"]
    assert isinstance(popularity, Popularity)
    blender = Blender({name: fitted[name] for name in weights}, weights, popularity=popularity)
    rng = np.random.default_rng(2)
    for _ in range(20):
        items = np.unique(rng.choice(N_ITEMS, size=int(rng.integers(1, 20)))).astype(np.int64)
        history_weights = (rng.random(len(items)) + 0.1).astype(np.float32)
        everything = np.ones(N_ITEMS, dtype=bool)
        scored = blender.score_candidates(items, history_weights, everything, 10)
        targets = rng.choice(N_ITEMS, size=12, replace=False).astype(np.int64)
        for name in ("item_knn", "ease", "rp3beta"):
            np.testing.assert_array_equal(
                scored.explain(name, targets),
                blender.models[name].explain(items, history_weights, targets),
            )
        assert scored.explain("user_knn", targets) is None  # its entries have no history owner


def test_item_knn_votes_are_bounded_by_the_most_similar() -> None:
    X = _matrix(1)
    free = ItemKNN(k=15, max_votes=None).fit(X)
    bounded = ItemKNN(k=15, max_votes=6).fit(X)
    np.testing.assert_array_equal(free.neighbours_.toarray(), bounded.neighbours_.toarray())
    assert np.diff(free.similarity_.indptr).max() > 6  # popular items are listed by many
    assert np.diff(bounded.similarity_.indptr).max() <= 6
    for row in range(N_ITEMS):
        lo, hi = free.similarity_.indptr[row], free.similarity_.indptr[row + 1]
        kept = bounded.similarity_[row].toarray().ravel()
        values = np.sort(free.similarity_.data[lo:hi])[::-1]
        if hi - lo > 6:  # the kept votes are the row's largest
            assert np.sort(kept[kept > 0])[::-1].tolist() == values[:6].tolist()
        else:
            assert np.count_nonzero(kept) == hi - lo


def test_rows_are_kept_strongest_first_and_an_ordered_matrix_is_not_copied() -> None:
    matrix = sparse.csr_matrix(
        np.array([[0.0, -3.0, 1.0, 3.0, 0.5], [2.0, 0.0, 0.0, 2.0, -2.0], [0, 0, 0, 0, 0]]),
        dtype=np.float32,
    )
    ordered = strongest_first(matrix)
    np.testing.assert_array_equal(ordered.toarray(), matrix.toarray())
    rows = [ordered.indices[ordered.indptr[r] : ordered.indptr[r + 1]].tolist() for r in range(3)]
    assert rows == [[1, 3, 2, 4], [0, 3, 4], []]  # by magnitude, ties by column
    again = strongest_first(ordered)
    assert np.shares_memory(again.data, ordered.data)  # a loaded bundle's arrays stay shared
    assert np.shares_memory(again.indices, ordered.indices)


@pytest.mark.parametrize("name", ["item_knn", "ease", "rp3beta"])
def test_a_bundle_with_rows_ordered_by_column_is_ordered_at_load(
    fitted: dict[str, BaseScorer], name: str, tmp_path: Path
) -> None:
    model = fitted[name]
    assert isinstance(model, ItemItemScorer)
    arrays, meta = model.to_state()
    old = {key: value.sorted_indices() for key, value in arrays.items() if key != "weights"}
    write_component(tmp_path / name, {**arrays, **old}, meta)
    loaded = type(model).from_state(*read_component(tmp_path / name))
    np.testing.assert_array_equal(loaded.similarity_.indices, model.similarity_.indices)
    np.testing.assert_array_equal(loaded.similarity_.data, model.similarity_.data)


def _rows_cut(matrix: sparse.csr_matrix, share: float) -> sparse.csr_matrix:
    """Each row's first ``ceil(share * length)`` entries (the strongest, as rows are kept)."""
    cut = matrix.tolil()
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        keep = int(np.ceil((hi - lo) * share))
        cut[r, matrix.indices[lo + keep : hi]] = 0
    out = sparse.csr_matrix(cut, dtype=np.float32)
    out.eliminate_zeros()
    return out


@pytest.mark.parametrize("share", [0.25, 0.5, 0.8])
def test_a_long_history_reads_each_rows_strongest_share(
    fitted: dict[str, BaseScorer], share: float
) -> None:
    """``share`` < 1 is the dense blend of models whose rows keep only their strongest share."""
    weights = {"item_knn": 0.7, "ease": 1.0, "rp3beta": 0.4, "user_knn": 0.3, "popularity": 0.05}
    popularity = fitted["popularity"]
    assert isinstance(popularity, Popularity)
    blender = Blender({name: fitted[name] for name in weights}, weights, popularity=popularity)
    cut: dict[str, BaseScorer] = {}
    for name in weights:
        model = fitted[name]
        if isinstance(model, ItemItemScorer):
            model = copy.copy(model)
            model.similarity_ = _rows_cut(model.similarity_, share)
        cut[name] = model
    reference = Blender(cut, weights, popularity=popularity)
    rng = np.random.default_rng(11)
    for _ in range(20):
        items = np.unique(rng.choice(N_ITEMS, size=int(rng.integers(8, 30)))).astype(np.int64)
        history_weights = (rng.random(len(items)) + 0.1).astype(np.float32)
        mask = np.ones(N_ITEMS, dtype=bool)
        mask[items] = False
        served = blender.recommend(items, history_weights, n=12, mask=mask, share=share)
        want_items, want_scores = _dense_reference(reference, items, history_weights, mask, 12)
        np.testing.assert_array_equal(served.items, want_items)
        np.testing.assert_allclose(served.scores, want_scores, rtol=1e-6)
        whole = blender.recommend(items, history_weights, n=12, mask=mask)
        assert share == 1.0 or not np.array_equal(whole.scores, served.scores)
