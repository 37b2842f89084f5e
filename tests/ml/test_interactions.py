"""Events -> weighted user x item matrix."""

import math

import numpy as np
import pytest

from app.ml.interactions import (
    Catalog,
    EventLog,
    aggregate_history,
    build_interactions,
    event_weights,
    item_vocabulary,
    newest_distinct,
)
from app.ml.vocabulary import Vocabulary

DAY = 86_400.0


def _events() -> EventLog:
    return EventLog.from_lists(
        ["u1", "u1", "u1", "u2", "u2", "u1"],
        ["a", "a", "b", "b", "c", "c"],
        ["view", "purchase", "add_to_cart", "rating", "click", "wishlist"],
        [np.nan, np.nan, np.nan, 4.0, np.nan, np.nan],
        [0.0, DAY, 2 * DAY, 3 * DAY, 4 * DAY, 5 * DAY],
    )


def test_event_weights_defaults_rating_and_unknown_types() -> None:
    ev = _events()
    np.testing.assert_allclose(event_weights(ev.types, ev.values), [1, 5, 3, 4, 1, 1])
    custom = event_weights(ev.types, ev.values, {"purchase": 10.0}, default_weight=0.5)
    np.testing.assert_allclose(custom, [0.5, 10, 0.5, 0.5 * 4, 0.5, 0.5])


def test_a_rating_weighs_the_rating_weight_times_its_value() -> None:
    table = {"rating": 2.0, "purchase": 5.0}
    types = ["rating", "rating", "purchase"]
    # A rating without a value weighs the rating weight; a purchase ignores its amount.
    np.testing.assert_allclose(event_weights(types, [4.0, None, 99.0], table), [8, 2, 5])
    # The default table (the settings' default too): a 5-star rating weighs 5, like a purchase.
    np.testing.assert_allclose(event_weights(["rating", "purchase"], [5.0, None]), [5, 5])


def test_weights_below_zero_count_as_zero() -> None:
    weights = event_weights(
        ["return", "view", "rating"], [None, None, -3.0], {"return": -2.0, "view": 0.0}
    )
    np.testing.assert_array_equal(weights, [0, 0, 0])
    ev = EventLog.from_lists(["u", "u", "u"], ["a", "a", "b"], ["purchase", "return", "return"])
    m = build_interactions(ev, weights={"purchase": 5.0, "return": -5.0}, aggregation="sum")
    dense = m.matrix.toarray()
    assert dense[0, m.items.index("a")] == pytest.approx(5.0)  # not cancelled
    assert dense[0, m.items.index("b")] == 0  # a pair that weighs nothing is no interaction
    assert m.matrix.nnz == 1


def test_build_sums_repeats_then_log1p() -> None:
    ev = _events()
    m = build_interactions(ev, items=Vocabulary(["a", "b", "c"]))
    dense = m.matrix.toarray()
    assert m.matrix.dtype == np.float32
    assert m.users.to_json() == ["u1", "u2"]
    np.testing.assert_allclose(
        dense,
        [[math.log1p(6), math.log1p(3), math.log1p(1)], [0, math.log1p(4), math.log1p(1)]],
        rtol=1e-6,
    )


@pytest.mark.parametrize(("aggregation", "expected"), [("sum", 6.0), ("binary", 1.0)])
def test_other_aggregations(aggregation: str, expected: float) -> None:
    m = build_interactions(_events(), aggregation=aggregation)
    assert m.matrix[0, m.items.index("a")] == pytest.approx(expected)


def test_time_decay_halves_weight_per_half_life() -> None:
    ev = EventLog.from_lists(["u", "u"], ["old", "new"], "purchase", None, [0.0, 10 * DAY])
    m = build_interactions(ev, aggregation="sum", half_life_days=10)
    assert m.matrix[0, m.items.index("old")] == pytest.approx(2.5)
    assert m.matrix[0, m.items.index("new")] == pytest.approx(5.0)


def test_user_relative_decay_measures_age_from_each_users_latest_event() -> None:
    ev = EventLog.from_lists(
        ["u", "u", "v"], ["a", "b", "a"], "purchase", None, [0.0, 10 * DAY, 0.0]
    )
    m = build_interactions(ev, aggregation="sum", half_life_days=10, decay_reference="user")
    dense = m.matrix.toarray()
    assert dense[m.users.index("u"), m.items.index("a")] == pytest.approx(2.5)
    assert dense[m.users.index("v"), m.items.index("a")] == pytest.approx(5.0)


def test_catalog_items_without_events_get_an_index() -> None:
    catalog = Catalog(["z", "a"], ["Z", "A"], ["", ""], [[], []], np.ones(2, dtype=bool))
    vocab = item_vocabulary(catalog, _events())
    assert vocab.to_json() == ["z", "a", "b", "c"]
    m = build_interactions(_events(), items=vocab)
    assert m.matrix.shape == (2, 4)
    assert m.matrix[:, 0].nnz == 0


def test_aggregate_history_matches_the_users_matrix_row() -> None:
    ev = _events()
    m = build_interactions(ev, items=Vocabulary(["a", "b", "c"]))
    u1 = ev.user_ids == "u1"
    items = m.items.indices(ev.item_ids[u1].tolist())
    w = event_weights(ev.types[u1], ev.values[u1])
    idx, vals = aggregate_history(np.append(items, -1), np.append(w, 9.0))
    row = m.matrix.getrow(0)
    np.testing.assert_array_equal(idx, row.indices)
    np.testing.assert_allclose(vals, row.data, rtol=1e-6)


def test_aggregate_history_decays_from_latest_entry() -> None:
    _, vals = aggregate_history(
        np.array([0, 1]),
        np.array([1.0, 1.0]),
        "sum",
        occurred_at=np.array([0.0, 5 * DAY]),
        half_life_days=5,
    )
    np.testing.assert_allclose(vals, [0.5, 1.0])


def test_newest_distinct_keeps_every_event_of_the_newest_items() -> None:
    history = np.array([3, -1, 5, 3, 7, 5, 9])  # newest first; -1 is an unknown item
    np.testing.assert_array_equal(
        newest_distinct(history, 2), [True, False, True, True, False, True, False]
    )
    assert newest_distinct(history, 4) is None  # four known items: all kept
    assert newest_distinct(history, None) is None


def test_event_log_validates_lengths() -> None:
    with pytest.raises(ValueError, match="rows"):
        EventLog(
            np.array(["u"], dtype=object),
            np.array(["a", "b"], dtype=object),
            np.array(["view"], dtype=object),
            np.array([np.nan]),
            np.array([0.0]),
        )


def test_event_log_order_ids_default_to_none_and_follow_subsets() -> None:
    plain = EventLog.from_lists(["u", "v"], ["a", "b"])
    assert plain.order_ids.dtype == object
    assert plain.order_ids.tolist() == ["", ""]
    ev = EventLog.from_lists(["u", "u", "v"], ["a", "b", "c"], order_ids=["o1", None, "o2"])
    assert ev.order_ids.tolist() == ["o1", "", "o2"]
    assert ev.subset(np.array([False, True, True])).order_ids.tolist() == ["", "o2"]
    assert ev.subset(np.array([2, 0])).order_ids.tolist() == ["o2", "o1"]


def test_event_log_validates_order_id_length() -> None:
    with pytest.raises(ValueError, match="order_ids"):
        EventLog.from_lists(["u", "v"], ["a", "b"], order_ids=["o1"])
