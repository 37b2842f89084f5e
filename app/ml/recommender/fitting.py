"""Fitting every model of a config on a set of events, and what one training run shares."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.content import ContentTfidf
from app.ml.hybrid import Blender
from app.ml.interactions import (
    Catalog,
    EncodedEvents,
    EventLog,
    encode_events,
    interaction_matrix,
    item_vocabulary,
    user_vocabulary,
)
from app.ml.popularity import Popularity, SegmentPopularity, TimedEvents, Trending
from app.ml.recommender.config import (
    DEFAULT_AGGREGATION,
    RecommenderConfig,
)
from app.ml.recommender.model import Recommender
from app.ml.vocabulary import Vocabulary


@dataclass(eq=False)
class Fitted:
    """Models fitted on one set of events, with the matrix they were fitted on."""

    X: sparse.csr_matrix
    models: dict[str, BaseScorer]
    popularity: Popularity
    trending: Trending | None
    segment_popularity: SegmentPopularity | None


class FitModels(Protocol):
    """What fits every model of a config on a set of events: :func:`fit_models`, or another
    engine's (a distributed one) that returns the same models."""

    def __call__(
        self,
        events: EventLog,
        users: Vocabulary,
        items: Vocabulary,
        config: RecommenderConfig,
        content: ContentTfidf | None,
        segments: NDArray[np.int64] | None,
        timings: dict[str, float],
        phase: str,
    ) -> Fitted: ...


@dataclass(eq=False)
class TrainingRun:
    """What every phase of one training run shares."""

    events: EventLog
    users: Vocabulary
    items: Vocabulary
    available: NDArray[np.bool_]
    content: ContentTfidf | None
    segments: NDArray[np.int64] | None
    timings: dict[str, float]
    say: Callable[[str], None]
    fitter: FitModels = field(default_factory=lambda: fit_models)

    def fit(self, events: EventLog, config: RecommenderConfig, phase: str) -> Fitted:
        """Fit every model of ``config`` on ``events`` (timed under ``phase``)."""
        return self.fitter(
            events,
            self.users,
            self.items,
            config,
            self.content,
            self.segments,
            self.timings,
            phase,
        )

    def recommender(
        self, fitted: Fitted, weights: Mapping[str, float], config: RecommenderConfig
    ) -> Recommender:
        """The served façade over fitted models: what evaluation and tuning score through."""
        return Recommender(
            item_vocab=self.items,
            user_vocab=self.users,
            blender=blender_of(fitted, weights),
            available=self.available,
            config=config,
        )


def prepare_run(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig,
    user_segments: Mapping[str, int] | None,
    say: Callable[[str], None],
    fitter: FitModels | None = None,
) -> TrainingRun:
    """Vocabularies, availability, segments and the content model (fitted once per run)."""
    timings: dict[str, float] = {}
    items = item_vocabulary(catalog, events)
    users = user_vocabulary(events)
    segments = None
    if user_segments is not None:
        segments = np.array([user_segments.get(u, -1) for u in users], dtype=np.int64)
    content = None
    if "content" in config.models:
        say("content: fitting TF-IDF similarity")
        t0 = time.perf_counter()
        content = ContentTfidf(
            **config.content.model_dump(), max_block_entries=config.max_block_entries
        ).fit(_item_texts(catalog, items))
        timings["content"] = time.perf_counter() - t0
    available = np.ones(len(items), dtype=bool)
    for item_id, ok in zip(catalog.item_ids, catalog.available.tolist(), strict=True):
        available[items.index(item_id)] = bool(ok)
    return TrainingRun(
        events, users, items, available, content, segments, timings, say, fitter or fit_models
    )


def _item_texts(catalog: Catalog, items: Vocabulary) -> list[str]:
    texts = [""] * len(items)
    for item_id, text in zip(catalog.item_ids, catalog.texts(), strict=True):
        texts[items.index(item_id)] = text
    return texts


def collaborative_models(config: RecommenderConfig, n_items: int) -> dict[str, BaseScorer]:
    wanted = list(config.models)
    if "ease" in wanted and n_items > config.ease.max_items:
        # EASE is dense items x items; a big catalogue gets the sparse random-walk model.
        wanted.remove("ease")
        if "rp3beta" not in wanted:
            wanted.append("rp3beta")
    blocks = config.max_block_entries
    factories: dict[str, Callable[[], BaseScorer]] = {
        "item_knn": lambda: ItemKNN(**config.item_knn.model_dump(), max_block_entries=blocks),
        "user_knn": lambda: UserKNN(**config.user_knn.model_dump()),
        "ease": lambda: EASE(**config.ease.model_dump()),
        "rp3beta": lambda: RP3beta(**config.rp3beta.model_dump(), max_block_entries=blocks),
    }
    return {name: factories[name]() for name in wanted if name in factories}


@dataclass(frozen=True, eq=False)
class TrainingMatrices:
    """The matrices training builds from events with one config.

    Attributes
    ----------
    encoded : EncodedEvents; every event's (user, item, weight, time)
    X : csr_matrix of shape (n_users, n_items), float32; what the models are fitted on
        (decayed from the latest event with ``config.half_life_days``)
    """

    encoded: EncodedEvents
    X: sparse.csr_matrix


def training_matrices(
    events: EventLog, users: Vocabulary, items: Vocabulary, config: RecommenderConfig
) -> TrainingMatrices:
    """Weigh events by :func:`app.ml.interactions.event_weights` and build the matrix."""
    encoded = encode_events(events, users=users, items=items, weights=config.event_weights)
    X = interaction_matrix(
        encoded,
        aggregation=config.aggregation or DEFAULT_AGGREGATION,
        half_life_days=config.half_life_days,
    ).matrix
    return TrainingMatrices(encoded, X)


def fit_models(
    events: EventLog,
    users: Vocabulary,
    items: Vocabulary,
    config: RecommenderConfig,
    content: ContentTfidf | None,
    segments: NDArray[np.int64] | None,
    timings: dict[str, float],
    phase: str,
) -> Fitted:
    """Fit every model of ``config`` on ``events`` in this process (the local engine)."""
    t0 = time.perf_counter()
    matrices = training_matrices(events, users, items, config)
    encoded, X = matrices.encoded, matrices.X
    timings[f"{phase}.matrix"] = time.perf_counter() - t0
    models: dict[str, BaseScorer] = {}
    for name, model in collaborative_models(config, len(items)).items():
        t0 = time.perf_counter()
        models[name] = model.fit(X)
        timings[f"{phase}.{name}"] = time.perf_counter() - t0
    if content is not None:
        models["content"] = content
    popularity = Popularity().fit(X)
    if "popularity" in config.models:
        models["popularity"] = popularity
    counted = encoded.weights > 0  # an event that weighs nothing counts nowhere (as in X)
    trending = Trending(**config.trending.model_dump()).fit(
        TimedEvents(
            encoded.rows[counted],
            encoded.cols[counted],
            encoded.occurred_at[counted],
            n_items=len(items),
        )
    )
    if "trending" in config.models:
        models["trending"] = trending
    segment_popularity = None
    if segments is not None:
        segment_popularity = SegmentPopularity().fit(X, segments=segments)
    return Fitted(X, models, popularity, trending, segment_popularity)


def blender_of(fitted: Fitted, weights: Mapping[str, float]) -> Blender:
    return Blender(
        fitted.models,
        {name: w for name, w in weights.items() if name in fitted.models},
        popularity=fitted.popularity,
        trending=fitted.trending,
        segment_popularity=fitted.segment_popularity,
    )
