"""One weighting rule: the history /recommend serves weighs events as training does.

Serving weighs and aggregates a user's history with :meth:`Recommender.served_history` (what
``recommend_user``, behind ``/recommend`` and behind evaluation and tuning, runs); training
builds its matrix with :func:`training_matrices`. Over random histories, weight tables and
configs, the served row must follow the rule README states, computed by hand, and equal the
user's training row whenever neither decay is on (training decays from the latest event of the
whole data set, serving within the user's own history).
"""

from __future__ import annotations

import math

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ml.history import UserHistory
from app.ml.interactions import AGGREGATIONS, Catalog, EventLog
from app.ml.recommender import RecommenderConfig, train_recommender, training_matrices
from app.ml.weights import DEFAULT_EVENT_WEIGHTS

ITEMS = [f"i{k}" for k in range(6)]
TYPES = list(DEFAULT_EVENT_WEIGHTS)
T0 = 1_700_000_000.0
DAY = 86_400.0
HISTORY_LENGTH = 50  # within the budget: the budget itself is tested in tests/api

times_st = st.integers(0, 200).map(lambda k: T0 + k * 21_600.0)  # six-hour steps, 50 days
event_st = st.sampled_from(TYPES).flatmap(
    lambda type_: st.tuples(
        st.sampled_from(ITEMS),
        st.just(type_),
        # A rating's stars (or a stray value); for other types a quantity or an amount,
        # which the rule must ignore; or nothing.
        st.none()
        | (
            st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]) | st.floats(-1.0, 5.0)
            if type_ == "rating"
            else st.floats(0.0, 500.0)
        ),
        times_st,
    )
)
events_st = st.lists(event_st, min_size=1, max_size=HISTORY_LENGTH)
tables_st = st.just(dict(DEFAULT_EVENT_WEIGHTS)) | st.fixed_dictionaries(
    {t: st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0]) for t in TYPES}
)
configs_st = st.builds(
    dict,
    aggregation=st.sampled_from(AGGREGATIONS),
    history_half_life_days=st.sampled_from([None, 0.5, 7.0, 60.0]),
    half_life_days=st.sampled_from([None, 30.0]),
)


def _train(user_events: list[tuple], table: dict, options: dict):
    # Another customer met every item, so every item has a column.
    rows = [("other", item, "view", None, T0) for item in ITEMS]
    rows += [("u", item, type_, value, at) for item, type_, value, at in user_events]
    users, items, types, values, times = zip(*rows, strict=True)
    events = EventLog.from_lists(
        users, items, types, [math.nan if v is None else v for v in values], times
    )
    catalog = Catalog(ITEMS, ITEMS, [""] * len(ITEMS), [[] for _ in ITEMS])
    config = RecommenderConfig(
        models=("popularity",), evaluate=False, tune=False, event_weights=table, **options
    )
    return events, train_recommender(events, catalog, config).recommender


def _served_row(recommender, user_events: list[tuple]):
    # The user's cached history as /recommend reads it: newest first, through JSON.
    newest_first = sorted(user_events, key=lambda e: e[3], reverse=True)
    cached = orjson.loads(orjson.dumps({"history": newest_first}))["history"]
    return recommender.served_history(UserHistory(*zip(*cached, strict=True)))


def _by_hand(user_events: list[tuple], table: dict, options: dict) -> dict[str, float]:
    """The rule as README states it, computed without the library."""
    half_life = options["history_half_life_days"]
    latest = max(at for *_, at in user_events)
    summed: dict[str, float] = {}
    for item, type_, value, at in user_events:
        weight = table[type_] * (value if type_ == "rating" and value is not None else 1.0)
        weight = max(weight, 0.0)
        if half_life is not None:
            weight *= max(0.5 ** ((latest - at) / DAY / half_life), 1e-30)
        summed[item] = summed.get(item, 0.0) + weight
    aggregate = {
        "log1p": lambda s: math.log1p(s),
        "sum": lambda s: s,
        "binary": lambda s: 1.0,
    }[options["aggregation"]]
    values = {item: aggregate(s) for item, s in summed.items() if s > 0}
    return {item: v for item, v in values.items() if np.float32(v) != 0}  # stored as float32


@settings(max_examples=200, deadline=None)
@given(user_events=events_st, table=tables_st, options=configs_st)
def test_served_history_equals_the_users_training_row(
    user_events: list[tuple], table: dict, options: dict
) -> None:
    events, recommender = _train(user_events, table, options)
    items, values = _served_row(recommender, user_events)

    matrices = training_matrices(
        events, recommender.user_vocab, recommender.item_vocab, recommender.config
    )
    if options["half_life_days"] is None and options["history_half_life_days"] is None:
        x_row = matrices.X.getrow(recommender.user_index("u"))
        np.testing.assert_array_equal(items, x_row.indices)
        np.testing.assert_allclose(values, x_row.data, rtol=1e-6)

    expected = _by_hand(user_events, table, options)
    assert recommender.item_vocab.lookup(items.tolist()) == sorted(expected, key=ITEMS.index)
    np.testing.assert_allclose(
        values, [expected[i] for i in recommender.item_vocab.lookup(items.tolist())], rtol=1e-5
    )


def test_a_five_star_rating_weighs_five_in_training_and_at_serving() -> None:
    user_events = [("i0", "rating", 5.0, T0), ("i1", "view", None, T0)]
    options = {"aggregation": "sum", "history_half_life_days": None, "half_life_days": None}
    events, recommender = _train(user_events, dict(DEFAULT_EVENT_WEIGHTS), options)
    _, served = _served_row(recommender, user_events)
    matrices = training_matrices(
        events, recommender.user_vocab, recommender.item_vocab, recommender.config
    )
    trained = matrices.X.getrow(recommender.user_index("u")).data
    np.testing.assert_allclose(served, [5.0, 1.0])
    np.testing.assert_allclose(trained, [5.0, 1.0])
