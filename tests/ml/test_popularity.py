"""Popular, trending and popular-in-segment."""

import numpy as np
import pytest
from scipy import sparse

from app.ml.interactions import Catalog, EventLog, build_interactions
from app.ml.popularity import Popularity, SegmentPopularity, TimedEvents, Trending, capped_counts
from app.ml.recommender import RecommenderConfig, train_recommender
from app.ml.vocabulary import Vocabulary
from tests.ml.conftest import as_history

DAY = 86_400.0


def test_popularity_counts_distinct_users() -> None:
    X = sparse.csr_matrix(np.array([[5, 1, 0], [3, 0, 0], [1, 0, 2]], dtype=np.float32))
    model = Popularity().fit(X)
    np.testing.assert_allclose(model.counts_, [3, 1, 1])
    np.testing.assert_allclose(
        model.score(np.zeros(0, np.int64), np.zeros(0, np.float32)), [1, 1 / 3, 1 / 3]
    )
    np.testing.assert_array_equal(model.ranking(2), [0, 1])  # tie broken by index


def test_trending_uses_window_and_half_life() -> None:
    users = np.array([0, 1, 2, 3])
    items = np.array([0, 1, 1, 2])
    times = np.array([100 * DAY, 100 * DAY, 93 * DAY, 10 * DAY])
    model = Trending(window_days=30, half_life_days=7).fit(
        TimedEvents(users, items, times, n_items=3)
    )
    np.testing.assert_allclose(model.counts_, [1.0, 1.5, 0.0])
    assert model.has_signal()
    old = Trending(window_days=1, half_life_days=1).fit(
        TimedEvents(users, items, times, n_items=3), now=500 * DAY
    )
    assert not old.has_signal()


def test_capped_counts_count_a_user_once_per_item_with_their_best_credit() -> None:
    users = np.array([0, 0, 0, 1, 1, 2])
    items = np.array([1, 1, 1, 1, 0, 0])
    credits = np.array([0.25, 1.0, 0.5, 0.5, 0.25, 1.0])
    np.testing.assert_allclose(capped_counts(users, items, n_items=3), [2, 2, 0])
    np.testing.assert_allclose(capped_counts(users, items, credits, n_items=3), [1.25, 1.5, 0])
    assert capped_counts(users[:0], items[:0], n_items=2).tolist() == [0, 0]


def test_a_thousand_events_of_one_user_count_as_one_user() -> None:
    # Items 0 and 1 each have three customers; item 2 one client repeating 1,000 views.
    users = np.concatenate([[1, 2, 3, 4, 5, 6], np.zeros(1000, dtype=np.int64)])
    items = np.concatenate([[0, 0, 0, 1, 1, 1], np.full(1000, 2)])
    times = np.full(len(items), 100 * DAY)
    trending = Trending(window_days=30, half_life_days=7).fit(
        TimedEvents(users, items, times, n_items=3)
    )
    np.testing.assert_allclose(trending.counts_, [3, 3, 1])
    assert 2 not in trending.ranking(2).tolist()
    X = build_interactions(
        EventLog.from_lists(
            [f"u{u}" for u in users.tolist()], [f"i{i}" for i in items.tolist()], "view"
        ),
        items=Vocabulary(["i0", "i1", "i2"]),
    ).matrix
    popularity = Popularity().fit(X)
    np.testing.assert_allclose(popularity.counts_, [3, 3, 1])


def test_trending_counts_a_users_latest_event_of_an_item_in_the_window() -> None:
    users = np.array([0, 0, 0, 1])
    items = np.array([0, 0, 0, 1])
    times = np.array([1 * DAY, 93 * DAY, 86 * DAY, 100 * DAY])  # outside, 7 and 14 days old
    model = Trending(window_days=30, half_life_days=7).fit(
        TimedEvents(users, items, times, n_items=2)
    )
    np.testing.assert_allclose(model.counts_, [0.5, 1.0])


def test_segment_popularity_per_segment() -> None:
    X = sparse.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32))
    model = SegmentPopularity().fit(X, segments=np.array([7, 7, 9, -1]))
    np.testing.assert_allclose(model.score_segment(7), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(model.score_segment(9), [0.0, 0.0, 1.0])
    assert model.has_segment(9) and not model.has_segment(3)
    assert model.score_segment(3).sum() == 0


def test_trending_state_keeps_reference_time() -> None:
    model = Trending().fit(
        TimedEvents(np.array([0]), np.array([0]), np.array([5 * DAY]), n_items=2)
    )
    arrays, meta = model.to_state()
    assert Trending.from_state(arrays, meta).now_ == pytest.approx(5 * DAY)


def test_a_burst_of_one_user_does_not_make_an_item_trend_for_new_users() -> None:
    # Items h0..h3 met by 6, 5, 4 and 3 customers; one client views "spam" 1,000 times.
    users, items = [], []
    for k in range(4):
        for u in range(6 - k):
            users.append(f"c{u}")
            items.append(f"h{k}")
    users += ["bot"] * 1000
    items += ["spam"] * 1000
    events = EventLog.from_lists(users, items, "view", None, np.full(len(users), 100 * DAY))
    ids = [f"h{k}" for k in range(4)] + ["spam"]
    catalog = Catalog(ids, ids, [""] * 5, [[] for _ in ids])
    config = RecommenderConfig(models=("popularity",), evaluate=False, tune=False)
    rec = train_recommender(events, catalog, config).recommender
    out = rec.recommend_user(as_history([]), n=3)
    assert out.source == "cold_start"
    assert [r.kind for r in out.reasons] == ["trending"] * 3
    assert out.items == ["h0", "h1", "h2"]
    assert rec.blender.popularity.ranking(1).tolist() == [rec.item_index("h0")]
