"""Blending, filtering, cold-start rules, reasons and weight tuning."""

import numpy as np
import pytest
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.collaborative import ItemKNN
from app.ml.content import ContentTfidf
from app.ml.hybrid import Blender, candidate_mask, normalize_scores
from app.ml.popularity import Popularity, SegmentPopularity, TimedEvents, Trending
from app.ml.tuning import tune_weights

DAY = 86_400.0


def test_candidate_mask_combines_allowed_and_exclusions() -> None:
    allowed = np.array([True, True, False, True])
    np.testing.assert_array_equal(
        candidate_mask(4, allowed=allowed, exclude=[0, 7, -1]), [False, True, False, True]
    )
    np.testing.assert_array_equal(candidate_mask(3), [True, True, True])
    with pytest.raises(ValueError, match="shape"):
        candidate_mask(3, allowed=np.ones(4, dtype=bool))


def test_normalize_scores_uses_the_candidates_maximum() -> None:
    scores = np.array([4.0, 2.0, -1.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(normalize_scores(scores), [1.0, 0.5, 0.0, 0.25])
    mask = np.array([False, True, True, True])
    np.testing.assert_allclose(normalize_scores(scores, mask), [2.0, 1.0, 0.0, 0.5])
    assert normalize_scores(np.zeros(3, dtype=np.float32)).sum() == 0


@pytest.fixture
def shop() -> dict:
    # items 0-2 bought together, 3-4 bought together, 5 never bought (only text).
    X = sparse.csr_matrix(
        np.array(
            [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]],
            dtype=np.float32,
        )
    )
    texts = ["red mug", "red plate", "red bowl", "green lamp", "green shade", "red mug deluxe"]
    popularity = Popularity().fit(X)
    trending = Trending(window_days=10, half_life_days=5).fit(
        TimedEvents(
            np.array([3, 3, 2]), np.array([3, 4, 4]), np.array([9 * DAY, 10 * DAY, 10 * DAY]), 6
        )
    )
    segments = SegmentPopularity().fit(X, segments=np.array([0, 0, 0, 1]))
    models = {
        "item_knn": ItemKNN(k=5).fit(X),
        "content": ContentTfidf(k=5, max_df=0.9).fit(texts),
    }
    return {"X": X, "models": models, "pop": popularity, "trend": trending, "seg": segments}


def _blender(shop: dict, weights: dict, **kw: object) -> Blender:
    return Blender(shop["models"], weights, popularity=shop["pop"], **kw)


def test_cold_start_rules_in_order(shop: dict) -> None:
    mask = np.ones(6, dtype=bool)
    full = _blender(shop, {"item_knn": 1.0}, trending=shop["trend"], segment_popularity=shop["seg"])
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    seg = full.recommend(*empty, n=2, mask=mask, segment=1)
    assert seg.source == "cold_start"
    assert set(seg.reason_kinds) == {"popular_in_segment"}
    assert set(seg.items.tolist()) == {3, 4}
    trend = full.recommend(*empty, n=1, mask=mask, segment=42)  # unknown segment -> trending
    assert trend.reason_kinds == ["trending"] and trend.items.tolist() == [4]
    plain = _blender(shop, {"item_knn": 1.0}).recommend(*empty, n=1, mask=mask)
    assert plain.reason_kinds == ["popular"] and plain.items.tolist() == [1]


def test_personalised_reasons_name_the_contributing_history_item(shop: dict) -> None:
    blender = _blender(shop, {"item_knn": 1.0, "content": 0.1})
    items, weights = np.array([0]), np.array([1.0], dtype=np.float32)
    mask = candidate_mask(6, exclude=items)
    ranked = blender.recommend(items, weights, n=3, mask=mask)
    assert ranked.source == "personalized"
    assert ranked.items.tolist()[:2] == [1, 2]
    assert ranked.reason_kinds[:2] == ["similar_to", "similar_to"]
    assert ranked.reason_items.tolist()[:2] == [0, 0]
    # Item 5 has no interactions: only content reaches it.
    assert 5 in ranked.items.tolist()
    pos = ranked.items.tolist().index(5)
    assert ranked.reason_kinds[pos] == "content_match"
    assert ranked.reason_items[pos] == 0


def test_short_lists_are_filled_with_popular_items(shop: dict) -> None:
    blender = _blender(shop, {"item_knn": 1.0})
    items, weights = np.array([3]), np.array([1.0], dtype=np.float32)
    ranked = blender.recommend(items, weights, n=4, mask=candidate_mask(6, exclude=items))
    assert ranked.items[0] == 4 and ranked.reason_kinds[0] == "similar_to"
    assert ranked.reason_kinds[1:] == ["popular"] * 3
    assert 3 not in ranked.items.tolist()


def test_weights_for_unknown_models_are_rejected(shop: dict) -> None:
    with pytest.raises(ValueError, match="unknown models"):
        _blender(shop, {"ease": 1.0})


class _Lookup(BaseScorer):
    """Scores looked up by history (a stand-in model with known quality)."""

    def __init__(self, table: dict[bytes, np.ndarray], n_items: int) -> None:
        self.table, self.n_items_ = table, n_items

    def fit(self, X: object, /, **context: object) -> "_Lookup":
        return self  # the table is the fitted state

    def score(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.table.get(
            np.asarray(items, np.int64).tobytes(), np.zeros(self.n_items_, np.float32)
        )


def test_tune_weights_prefers_the_informative_model() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 40
    train = sparse.random(
        n_users, n_items, density=0.1, format="csr", random_state=1, dtype=np.float32
    )
    train.data[:] = 1.0
    validation = sparse.lil_matrix((n_users, n_items), dtype=np.float32)
    good, noise = {}, {}
    for u in range(n_users):
        seen = set(train.getrow(u).indices.tolist())
        target = [i for i in rng.permutation(n_items) if i not in seen][:2]
        for i in target:
            validation[u, i] = 1.0
        key = train.getrow(u).indices.astype(np.int64).tobytes()
        g = rng.random(n_items).astype(np.float32) * 0.5
        g[target] += 0.6
        good[key] = g
        noise[key] = rng.random(n_items).astype(np.float32)
    models = {"good": _Lookup(good, n_items), "noise": _Lookup(noise, n_items)}
    tuned = tune_weights(models, train, validation.tocsr(), k=5, candidates=20)
    weights, report = tuned.weights, tuned.report
    assert weights["good"] > 0
    assert weights["noise"] < weights["good"] / 4
    assert report["users"] == n_users


def test_top_n_rows_equals_top_n_with_ties() -> None:
    from app.ml.ranking import top_n, top_n_rows

    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(30, 12)).astype(np.float32)  # many ties
    masks = rng.random((30, 12)) > 0.2
    for n in (1, 3, 12, 20):
        batch = top_n_rows(scores, n, masks)
        for r in range(30):
            np.testing.assert_array_equal(batch[r], top_n(scores[r], n, masks[r]))
