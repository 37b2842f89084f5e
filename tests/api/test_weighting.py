"""Through the API: a rated item weighs the same in the served history as in training.

Under the default settings a 5-star rating once weighed 1 in training and 5 at serving, so
the answer for a rater differed from the one the trained (and evaluated) blend gives for
their training row.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.db import make_engine, make_sessionmaker
from app.ml.hybrid import candidate_mask
from app.ml.interactions import build_interactions
from app.recommendations.service import SLACK
from app.training.pipeline import load_training_data
from app.training.runner import train_now
from tests.conftest import override, wait_for_version

A = [f"a{i}" for i in range(6)]
B = [f"b{i}" for i in range(6)]


def _shop(client) -> None:
    items = [{"id": i, "title": f"gadget {i}", "categories": [i[0]]} for i in A + B]
    assert client.post("/items", json={"items": items}).status_code == 200
    rng = np.random.default_rng(7)
    events = []
    for u in range(40):
        cluster = A if u % 2 else B
        for item in rng.choice(cluster, size=4, replace=False).tolist():
            events.append({"user_id": f"c{u}", "item_id": item, "type": "purchase"})
    # The rater: five stars for an item of one cluster, a view of an item of the other.
    events.append({"user_id": "rater", "item_id": "a0", "type": "rating", "value": 5.0})
    events.append({"user_id": "rater", "item_id": "b0", "type": "view"})
    response = client.post("/events", json={"events": events})
    assert response.status_code == 200, response.text


def test_a_five_star_rating_weighs_the_same_at_serving_as_in_training(client, settings):
    _shop(client)
    # log1p keeps the weights in the matrix (binary, which training may choose, keeps presence).
    train_now(override(settings, recommender={"aggregation": "log1p"}))
    wait_for_version(client, 1)
    n = 6
    body = client.get("/recommend/rater", params={"n": n}).json()
    assert body["source"] == "personalized"

    # What the trained blend answers for the rater's row of the training history matrix.
    recommender = client.app.state.registry.current.recommender
    config = recommender.config
    with make_sessionmaker(make_engine(settings.resolved_database_url))() as session:
        events = load_training_data(session).event_log
    row = build_interactions(
        events,
        users=recommender.user_vocab,
        items=recommender.item_vocab,
        weights=config.event_weights,
        aggregation=config.aggregation,
        half_life_days=config.history_half_life_days,
        decay_reference="user",
    ).matrix.getrow(recommender.user_index("rater"))
    history = row.indices.astype(np.int64)
    ranked = recommender.blender.recommend(
        history,
        row.data,
        n=n + SLACK,
        mask=candidate_mask(recommender.n_items, allowed=recommender.available, exclude=history),
    )
    expected = [
        (recommender.item_vocab.id(int(i)), round(float(s), 6))
        for i, s in zip(ranked.items[:n], ranked.scores[:n], strict=True)
    ]
    assert [(it["item_id"], it["score"]) for it in body["items"]] == expected
    # The rating weighs 5 (the rating weight 1 x 5 stars), the view 1.
    weights = dict(zip(recommender.item_vocab.lookup(history.tolist()), row.data, strict=True))
    assert weights["a0"] == pytest.approx(np.log1p(5.0), rel=1e-6)
    assert weights["b0"] == pytest.approx(np.log1p(1.0), rel=1e-6)
