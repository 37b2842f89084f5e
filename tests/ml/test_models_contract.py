"""One contract every model passes: shapes, filtering, determinism, persistence, fitted checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.ml.base import BaseScorer, NotFittedError
from app.ml.bundle import read_component, write_component
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.content import ContentTfidf
from app.ml.hybrid import Blender, candidate_mask
from app.ml.interactions import build_interactions, item_vocabulary
from app.ml.popularity import Popularity, SegmentPopularity, TimedEvents, Trending
from tests.ml.conftest import clustered_events


class Data:
    """The fitting inputs every model draws from."""

    def __init__(self) -> None:
        events, catalog = clustered_events()
        self.items = item_vocabulary(catalog, events)
        m = build_interactions(events, items=self.items)
        self.X, self.users = m.matrix, m.users
        self.texts = [""] * len(self.items)
        for item_id, text in zip(catalog.item_ids, catalog.texts(), strict=True):
            self.texts[self.items.index(item_id)] = text
        self.event_users = self.users.indices(events.user_ids.tolist())
        self.event_items = self.items.indices(events.item_ids.tolist())
        self.times = events.occurred_at
        self.segments = np.arange(len(self.users)) % 3


DATA = Data()

MODELS: dict[str, tuple[Callable[[], BaseScorer], Callable[[BaseScorer, Data], BaseScorer]]] = {
    "item_knn_cosine": (lambda: ItemKNN(k=5), lambda m, d: m.fit(d.X)),
    "item_knn_pearson": (lambda: ItemKNN(k=5, similarity="pearson"), lambda m, d: m.fit(d.X)),
    "item_knn_adjusted": (
        lambda: ItemKNN(k=5, similarity="adjusted_cosine", neighbourhood="source", shrink=2.0),
        lambda m, d: m.fit(d.X),
    ),
    "user_knn_cosine": (lambda: UserKNN(k=10), lambda m, d: m.fit(d.X)),
    "user_knn_pearson": (lambda: UserKNN(k=10, similarity="pearson"), lambda m, d: m.fit(d.X)),
    "ease": (lambda: EASE(l2=10.0), lambda m, d: m.fit(d.X)),
    "rp3beta": (lambda: RP3beta(k=5), lambda m, d: m.fit(d.X)),
    "content": (lambda: ContentTfidf(k=5, max_df=0.9), lambda m, d: m.fit(d.texts)),
    "popularity": (Popularity, lambda m, d: m.fit(d.X)),
    "trending": (
        lambda: Trending(window_days=1.0, half_life_days=0.2),
        lambda m, d: m.fit(
            TimedEvents(d.event_users, d.event_items, d.times, n_items=len(d.items))
        ),
    ),
    "segment_popularity": (SegmentPopularity, lambda m, d: m.fit(d.X, segments=d.segments)),
}
PERSONALISED = {
    "item_knn_cosine",
    "item_knn_adjusted",
    "user_knn_cosine",
    "ease",
    "rp3beta",
    "content",
}


def _fitted(name: str) -> BaseScorer:
    factory, fit = MODELS[name]
    model = factory()
    assert fit(model, DATA) is model
    return model


def _history() -> tuple[np.ndarray, np.ndarray]:
    row = DATA.X.getrow(0)
    return row.indices.astype(np.int64), row.data.astype(np.float32)


@pytest.fixture(params=sorted(MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_scores_every_item_as_float32(name: str) -> None:
    scores = _fitted(name).score(*_history())
    assert scores.shape == (len(DATA.items),)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()


def test_empty_history_gives_a_full_score_vector(name: str) -> None:
    scores = _fitted(name).score(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    assert scores.shape == (len(DATA.items),)


def test_seen_items_are_never_recommended(name: str) -> None:
    model = _fitted(name)
    popularity = Popularity().fit(DATA.X)
    blender = Blender({name: model}, {name: 1.0}, popularity=popularity)
    items, weights = _history()
    mask = candidate_mask(len(DATA.items), exclude=items)
    ranked = blender.recommend(items, weights, n=len(DATA.items), mask=mask)
    assert not set(ranked.items.tolist()) & set(items.tolist())
    assert 0 < len(ranked.items) <= len(DATA.items) - len(items)


def test_fit_is_deterministic(name: str) -> None:
    np.testing.assert_array_equal(
        _fitted(name).score(*_history()), _fitted(name).score(*_history())
    )


def test_state_survives_a_bundle_round_trip(name: str, tmp_path: Path) -> None:
    model = _fitted(name)
    arrays, meta = model.to_state()
    write_component(tmp_path / name, arrays, meta)
    loaded_arrays, loaded_meta = read_component(tmp_path / name, mmap=True)
    restored = type(model).from_state(loaded_arrays, loaded_meta)
    np.testing.assert_array_equal(restored.score(*_history()), model.score(*_history()))
    assert restored.get_params() == model.get_params()


def test_raises_when_not_fitted(name: str) -> None:
    model = MODELS[name][0]()
    with pytest.raises(NotFittedError, match="not fitted"):
        model.score(*_history())
    with pytest.raises(NotFittedError):
        model.to_state()


@pytest.mark.parametrize("name", sorted(PERSONALISED))
def test_personalised_models_rank_the_users_cluster_first(name: str) -> None:
    items, weights = _history()
    scores = _fitted(name).score(items, weights)
    scores[items] = 0
    best = DATA.items.id(int(np.argmax(scores)))
    assert best.startswith("c0"), best  # user 0 buys from cluster 0


@pytest.mark.parametrize("name", sorted(PERSONALISED - {"user_knn_cosine"}))
def test_similar_items_excludes_the_item_itself(name: str) -> None:
    model = _fitted(name)
    idx, vals = model.similar_items(0, n=4)
    assert 0 not in idx.tolist()
    assert len(idx) <= 4
    assert np.all(np.diff(vals) <= 0)


def test_ease_refuses_a_catalogue_above_max_items() -> None:
    with pytest.raises(ValueError, match="max_items"):
        EASE(max_items=5).fit(DATA.X)


def test_ease_matches_closed_form() -> None:
    X = DATA.X.toarray().astype(np.float64)
    G = X.T @ X + 10.0 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(EASE(l2=10.0).fit(DATA.X).weights_, B, rtol=1e-4, atol=1e-6)


def test_batch_scores_equal_single_scores(name: str) -> None:
    model = _fitted(name)
    histories = DATA.X[:7]
    batch = model.score_rows(histories)
    assert batch.shape == (7, len(DATA.items)) and batch.dtype == np.float32
    for r in range(7):
        row = histories.getrow(r)
        single = model.score(row.indices.astype(np.int64), row.data.astype(np.float32))
        np.testing.assert_allclose(batch[r], single, rtol=1e-5, atol=1e-6)


def test_params_are_read_from_init() -> None:
    assert ItemKNN(k=3).get_params() == {
        "k": 3,
        "shrink": 0.0,
        "similarity": "cosine",
        "neighbourhood": "target",
        "max_votes": 1000,
        "max_block_entries": 1 << 24,
    }
    assert Trending(window_days=2.0).get_params() == {"window_days": 2.0, "half_life_days": 7.0}
    assert Popularity().get_params() == {}
    assert repr(EASE(l2=1.0)) == "EASE(l2=1.0, max_items=8000, k=400, n_threads=1)"
