"""The time split protocol, and the ranking metrics on hand-made rankings."""

import math

import numpy as np
import pytest
from scipy import sparse

from app.ml.evaluation import (
    average_precision_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    time_split,
)
from app.ml.interactions import EventLog
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


def _log(rows: list[tuple[str, str, float, str]]) -> EventLog:
    """An event log from (user, item, time, order id) rows."""
    users, items, times, orders = zip(*rows, strict=True)
    return EventLog.from_lists(users, items, "purchase", None, times, orders)


def _split(rows: list[tuple[str, str, float, str]], **kwargs: float) -> tuple:
    events = _log(rows)
    users = Vocabulary.from_unique(events.user_ids.tolist())
    items = Vocabulary.from_unique(events.item_ids.tolist())
    return events, users, items, time_split(events, users, items, **kwargs)


def _row_items(matrix: sparse.csr_matrix, items: Vocabulary, user: int) -> set[str]:
    return set(items.lookup(matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]))


def test_a_same_time_basket_stays_together_and_may_hold_more_than_the_fraction() -> None:
    # Five items, so one is held out; d and e share the basket of the newest item.
    rows = [("u", "a", 1, ""), ("u", "b", 2, ""), ("u", "c", 3, ""), ("u", "d", 4, "")]
    _, _, items, split = _split([*rows, ("u", "e", 4, "")])
    assert split.cutoff[0] == 4
    np.testing.assert_array_equal(split.train_mask, [True, True, True, False, False])
    assert _row_items(split.explore, items, 0) == {"d", "e"}
    assert _row_items(split.next_basket, items, 0) == {"d", "e"}


def test_an_order_whose_lines_have_different_times_stays_together() -> None:
    rows = [("u", "a", 1, "o1"), ("u", "b", 2, "o2"), ("u", "c", 3, "o3"), ("u", "d", 4, "o4")]
    # e is the newest line, but its order started at 4: d and e are one basket.
    _, _, items, split = _split([*rows, ("u", "e", 5, "o4")])
    assert split.cutoff[0] == 4
    np.testing.assert_array_equal(split.train_mask, [True, True, True, False, False])
    assert _row_items(split.explore, items, 0) == {"d", "e"}
    assert _row_items(split.next_basket, items, 0) == {"d", "e"}


def test_events_sharing_a_time_with_an_order_line_join_that_order() -> None:
    # f has no order but shares t=3 with c, a line of the order o2 that started at 2: one
    # basket from t=2. (Timing f by its own order alone would put the cutoff at 3, with c
    # in training and f, bought at the same moment, held out.)
    rows = [("u", "a", 1, "o1"), ("u", "b", 2, "o2"), ("u", "c", 3, "o2"), ("u", "f", 3, "")]
    rows += [("u", "g", 4, ""), ("u", "h", 5, "")]
    _, _, items, split = _split(rows, fraction=0.5)
    # Six items, three held out: first basket times 1, 2, 2, 2, 4, 5 put the cutoff at 2.
    assert split.cutoff[0] == 2
    np.testing.assert_array_equal(split.train_mask, [True] + [False] * 5)
    assert _row_items(split.next_basket, items, 0) == {"b", "c", "f"}


def test_order_ids_link_events_of_one_user_only() -> None:
    rows = [("u", "a", 1, "o"), ("u", "b", 2, ""), ("v", "a", 1, ""), ("v", "b", 2, "o")]
    _, _, _, split = _split(rows)
    # v's "o" is not u's: v's b stays a basket of its own at t=2, so v is tested at 2.
    np.testing.assert_array_equal(split.cutoff, [2.0, 2.0])
    np.testing.assert_array_equal(split.train_mask, [True, False, True, False])


def test_training_drops_later_repeats_of_older_items() -> None:
    rows = [("u", item, t, "") for t, item in enumerate("abcde", start=1)]
    rows += [("u", "a", 5, ""), ("u", "b", 6, ""), ("u", "c", 0.5, "")]
    _, _, items, split = _split(rows)
    assert split.cutoff[0] == 5
    # The repeats of a and b at and after the cutoff are not training data; c at 0.5 is.
    np.testing.assert_array_equal(
        split.train_mask, [True, True, True, True, False, False, False, True]
    )
    assert _row_items(split.explore, items, 0) == {"e"}
    # The next basket is the one at the cutoff, repeats included; b's later repeat is not.
    assert _row_items(split.next_basket, items, 0) == {"a", "e"}


def test_users_with_one_basket_or_too_few_items_are_not_tested() -> None:
    rows = [("one", "a", 1, ""), ("one", "b", 1, ""), ("one", "c", 1, "")]  # one basket
    rows += [("few", "a", 1, ""), ("few", "a", 2, "")]  # one distinct item
    rows += [("two", "a", 1, ""), ("two", "b", 2, "")]  # two items: tested by default
    events, users, items, split = _split(rows)
    np.testing.assert_array_equal(split.cutoff[:2], [np.nan, np.nan])
    assert split.cutoff[2] == 2
    np.testing.assert_array_equal(split.train_mask, [True] * 5 + [True, False])
    assert np.diff(split.explore.indptr).tolist() == [0, 0, 1]
    assert np.diff(split.next_basket.indptr).tolist() == [0, 0, 1]
    assert split.protocol["n_test_users"] == 1
    strict = time_split(events, users, items, min_interactions=3)
    assert np.isnan(strict.cutoff).all()
    assert strict.train_mask.all()
    assert strict.explore.nnz == strict.next_basket.nnz == 0


def test_events_outside_the_vocabularies_are_dropped() -> None:
    events = _log(
        [("u", "a", 1, ""), ("u", "gone", 2, ""), ("u", "b", 3, ""), ("ghost", "a", 1, "")]
    )
    users, items = Vocabulary(["u"]), Vocabulary(["a", "b"])
    split = time_split(events, users, items)
    # The unknown item neither counts as an item nor trains; u holds out b at t=3.
    assert split.cutoff.tolist() == [3.0]
    np.testing.assert_array_equal(split.train_mask, [True, False, False, False])
    assert split.explore.shape == split.next_basket.shape == (1, 2)
    assert split.protocol["n_events"] == 2


@pytest.mark.parametrize(
    ("n_items", "fraction", "n_held"),
    # 100 x 0.55 is 55.00000000000001 in floating point: still 55 items.
    [(10, 0.2, 2), (7, 0.2, 2), (4, 0.2, 1), (100, 0.55, 55)],
)
def test_the_newest_fraction_of_items_is_held_out(
    n_items: int, fraction: float, n_held: int
) -> None:
    rows = [("u", f"i{t}", float(t), f"o{t}") for t in range(n_items)]
    _, _, items, split = _split(rows, fraction=fraction)
    held = {f"i{t}" for t in range(n_items - n_held, n_items)}
    assert _row_items(split.explore, items, 0) == held
    assert _row_items(split.next_basket, items, 0) == {f"i{n_items - n_held}"}
    assert split.train_mask.sum() == n_items - n_held
    assert split.protocol["n_explore_items"] == n_held


def test_fraction_must_be_a_proper_share() -> None:
    events = _log([("u", "a", 1, ""), ("u", "b", 2, "")])
    vocab = Vocabulary(["u"]), Vocabulary(["a", "b"])
    for fraction in (0.0, 1.0):
        with pytest.raises(ValueError, match="fraction"):
            time_split(events, *vocab, fraction=fraction)


def test_an_empty_log_splits_into_nothing() -> None:
    split = time_split(
        _log([("u", "a", 1, "")]).subset(np.zeros(1, dtype=bool)),
        Vocabulary(["u"]),
        Vocabulary(["a"]),
    )
    assert len(split.train_mask) == 0
    assert split.explore.nnz == split.next_basket.nnz == 0
    assert np.isnan(split.cutoff).all()


def _random_log(seed: int) -> EventLog:
    """Many ties in time, orders with lines at different times, order ids shared by users.

    Users 0-39 share 600 events, users 40-59 share 30 (many of them untested).
    """
    rng = np.random.default_rng(seed)
    n = 630
    users = np.concatenate([rng.integers(0, 40, 600), rng.integers(40, 60, 30)])
    times = rng.integers(0, 30, n).astype(np.float64)
    orders = np.where(rng.random(n) < 0.5, "", np.char.add("o", rng.integers(0, 25, n).astype(str)))
    return EventLog.from_lists(
        [f"u{u}" for u in users],
        [f"i{i}" for i in rng.integers(0, 25, n)],
        "purchase",
        None,
        times,
        orders.tolist(),
    )


def _reference_basket_times(times: list[float], orders: list[str]) -> list[float]:
    """One user's basket times by union-find over pairs sharing a time or an order."""
    parent = list(range(len(times)))

    def root(e: int) -> int:
        while parent[e] != e:
            e = parent[e]
        return e

    for a in range(len(times)):
        for b in range(a):
            if times[a] == times[b] or (orders[a] != "" and orders[a] == orders[b]):
                parent[root(a)] = root(b)
    start: dict[int, float] = {}
    for e, t in enumerate(times):
        start[root(e)] = min(start.get(root(e), math.inf), t)
    return [start[root(e)] for e in range(len(times))]


def _reference_split(events: EventLog, fraction: float, min_interactions: int) -> dict:
    """The protocol written per user in plain Python."""
    out: dict = {}
    for user in sorted(set(events.user_ids.tolist())):
        idx = np.flatnonzero(events.user_ids == user).tolist()
        times = _reference_basket_times(
            [events.occurred_at[e] for e in idx], [events.order_ids[e] for e in idx]
        )
        basket = dict(zip(idx, times, strict=True))
        first: dict[str, float] = {}
        for e in idx:
            item = events.item_ids[e]
            first[item] = min(first.get(item, math.inf), basket[e])
        ranked = sorted(first.values())
        cutoff = math.nan
        if len(ranked) >= min_interactions:
            n_held = max(math.ceil(fraction * len(ranked) - 1e-9), 1)
            candidate = ranked[len(ranked) - n_held]
            if ranked[0] < candidate:
                cutoff = candidate
        out[user] = {
            "cutoff": cutoff,
            "train": {e for e in idx if math.isnan(cutoff) or basket[e] < cutoff},
            "explore": {item for item, t in first.items() if t >= cutoff},
            "next_basket": {events.item_ids[e] for e in idx if basket[e] == cutoff},
        }
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_a_random_log_follows_a_plain_per_user_reference(seed: int, fraction: float) -> None:
    events = _random_log(seed)
    users = Vocabulary(sorted(set(events.user_ids.tolist())))
    items = Vocabulary(sorted(set(events.item_ids.tolist())))
    split = time_split(events, users, items, fraction=fraction)
    expected = _reference_split(events, fraction, 2)
    assert 0 < split.protocol["n_test_users"] < len(users)
    for user, want in expected.items():
        u = users.index(user)
        np.testing.assert_array_equal(split.cutoff[u], want["cutoff"])
        mine = np.flatnonzero(events.user_ids == user)
        assert set(mine[split.train_mask[mine]].tolist()) == want["train"]
        assert _row_items(split.explore, items, u) == want["explore"]
        assert _row_items(split.next_basket, items, u) == want["next_basket"]
        trained = set(events.item_ids[mine[split.train_mask[mine]]].tolist())
        assert not trained & want["explore"]


def test_the_split_ignores_the_order_of_the_log() -> None:
    events = _random_log(3)
    users = Vocabulary(sorted(set(events.user_ids.tolist())))
    items = Vocabulary(sorted(set(events.item_ids.tolist())))
    split = time_split(events, users, items)
    again = time_split(events, users, items)
    perm = np.random.default_rng(4).permutation(len(events))
    shuffled = time_split(events.subset(perm), users, items)
    for other in (again, shuffled):
        np.testing.assert_array_equal(other.cutoff, split.cutoff)
        assert (other.explore != split.explore).nnz == 0
        assert (other.next_basket != split.next_basket).nnz == 0
        assert other.protocol == split.protocol
    np.testing.assert_array_equal(again.train_mask, split.train_mask)
    np.testing.assert_array_equal(shuffled.train_mask, split.train_mask[perm])
