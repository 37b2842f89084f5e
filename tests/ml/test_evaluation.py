"""The holdout protocol and the ranking metrics, on hand-made rankings."""

import math

import numpy as np
import pytest
from scipy import sparse

from app.ml.evaluation import (
    average_precision_at_k,
    evaluate_ranker,
    holdout_split,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)
from app.ml.interactions import EventLog, build_interactions
from app.ml.vocabulary import Vocabulary


def test_metrics_on_a_hand_made_ranking() -> None:
    ranked = np.array([4, 1, 7, 2, 9])
    relevant = {1, 2, 3}
    assert precision_at_k(ranked, relevant, 5) == pytest.approx(2 / 5)
    assert recall_at_k(ranked, relevant, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, relevant, 5) == pytest.approx(dcg / idcg)
    assert average_precision_at_k(ranked, relevant, 5) == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_perfect_and_empty_rankings() -> None:
    assert ndcg_at_k(np.array([3, 1]), {1, 3}, 10) == pytest.approx(1.0)
    assert average_precision_at_k(np.array([3, 1]), {1, 3}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([], dtype=np.int64), {1}, 10) == 0.0


def test_ranking_metrics_averages_users_and_counts_coverage() -> None:
    rankings = {0: np.array([1, 2]), 1: np.array([2, 3])}
    relevant = {0: {1}, 1: {5}}
    m = ranking_metrics(rankings, relevant, n_items=10, k=2)
    assert m["precision"] == pytest.approx(0.25)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(0.5)
    assert m["map"] == pytest.approx(0.5)
    assert m["coverage"] == pytest.approx(3 / 10)


def _split_events() -> EventLog:
    # u1: 6 distinct items (a twice), u2: 2 items bought together, u3: 1 item.
    return EventLog.from_lists(
        ["u1"] * 7 + ["u2", "u2", "u3"],
        ["a", "b", "c", "d", "a", "e", "f", "y", "x", "a"],
        "purchase",
        None,
        [1, 2, 3, 4, 10, 5, 6, 7, 7, 1],
    )


def test_holdout_split_follows_the_protocol() -> None:
    events = _split_events()
    users = Vocabulary(["u1", "u2", "u3"])
    items = Vocabulary(["a", "b", "c", "d", "e", "f", "x", "y"])
    split = holdout_split(events, users, items)
    test = split.test.toarray()
    # u1: 6 interactions -> ceil(1.2) = 2 held out, the most recent by first event (e, f);
    # the repeat of "a" at t=10 does not make "a" recent.
    assert {items.id(i) for i in np.flatnonzero(test[0])} == {"e", "f"}
    # u2: a tie in time breaks by position in the log: "x" came last.
    assert {items.id(i) for i in np.flatnonzero(test[1])} == {"x"}
    # u3: one interaction -> training only.
    assert test[2].sum() == 0
    np.testing.assert_array_equal(
        split.train_mask, [True, True, True, True, True, False, False, True, False, True]
    )
    assert split.protocol["n_test_users"] == 2
    assert split.protocol["n_test_interactions"] == 3


def test_evaluate_ranker_excludes_nothing_itself_and_scores_an_oracle() -> None:
    events = _split_events()
    users = Vocabulary(["u1", "u2", "u3"])
    items = Vocabulary(["a", "b", "c", "d", "e", "f", "x", "y"])
    split = holdout_split(events, users, items)
    X = build_interactions(events.subset(split.train_mask), users=users, items=items).matrix
    test = split.test

    def oracle(history: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
        for u in range(test.shape[0]):
            row = X.getrow(u)
            if np.array_equal(row.indices, history):
                return test.getrow(u).indices[:k].astype(np.int64)
        raise AssertionError("unknown history")

    m = evaluate_ranker(oracle, X, test, k=10)
    assert m["recall"] == pytest.approx(1.0)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["hit_rate"] == pytest.approx(1.0)


def test_history_must_share_the_training_pattern() -> None:
    X = sparse.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="sparsity"):
        evaluate_ranker(lambda h, w, k: h, X, X, history=sparse.csr_matrix(np.ones((3, 3))))
