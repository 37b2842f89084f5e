"""Candidates: the four rules of what an answer may hold, applied in one place."""

from __future__ import annotations

import numpy as np

from app.ml.candidates import Candidates


def test_each_rule_removes_what_it_names_and_nothing_else() -> None:
    available = np.array([True, True, True, True, False, True])
    candidates = Candidates.build(
        available,
        within=[np.array([0, 1, 2]), np.array([4, 5])],
        exclude=[1, -1],
        seen=[2, 5, -1, 99],
    )
    # 3: no category asked holds it; 4: unavailable; 1: excluded.
    np.testing.assert_array_equal(candidates.allowed, [True, False, True, False, False, True])
    # Repeats may hold the seen items; explore may not.
    np.testing.assert_array_equal(candidates.explore, [True, False, False, False, False, False])
    assert candidates.excludes_seen
    np.testing.assert_array_equal(candidates.seen, [2, 5])


def test_keeping_the_seen_items_and_no_category_filter() -> None:
    available = np.array([True, False, True])
    candidates = Candidates.build(available)
    assert not candidates.excludes_seen
    np.testing.assert_array_equal(candidates.explore, available)
    assert candidates.allowed is not available  # the caller's mask is never written to
    Candidates.build(available, exclude=[0], seen=[2])
    np.testing.assert_array_equal(available, [True, False, True])


def test_a_category_that_holds_nothing_leaves_nothing() -> None:
    candidates = Candidates.build(np.ones(4, dtype=bool), within=[np.zeros(0, np.int64)])
    assert not candidates.allowed.any()
