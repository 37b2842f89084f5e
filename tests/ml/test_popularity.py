"""Popular, trending and popular-in-segment."""

import numpy as np
import pytest
from scipy import sparse

from app.ml.popularity import Popularity, SegmentPopularity, Trending

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
    items = np.array([0, 1, 1, 2])
    times = np.array([100 * DAY, 100 * DAY, 93 * DAY, 10 * DAY])
    model = Trending(window_days=30, half_life_days=7).fit(items, times, n_items=3)
    np.testing.assert_allclose(model.counts_, [1.0, 1.5, 0.0])
    assert model.has_signal()
    old = Trending(window_days=1, half_life_days=1).fit(items, times, n_items=3, now=500 * DAY)
    assert not old.has_signal()


def test_segment_popularity_per_segment() -> None:
    X = sparse.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32))
    model = SegmentPopularity().fit(X, np.array([7, 7, 9, -1]))
    np.testing.assert_allclose(model.score_segment(7), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(model.score_segment(9), [0.0, 0.0, 1.0])
    assert model.has_segment(9) and not model.has_segment(3)
    assert model.score_segment(3).sum() == 0


def test_trending_state_keeps_reference_time() -> None:
    model = Trending().fit(np.array([0]), np.array([5 * DAY]), n_items=2)
    arrays, meta = model.to_state()
    assert Trending.from_state(arrays, meta).now_ == pytest.approx(5 * DAY)
