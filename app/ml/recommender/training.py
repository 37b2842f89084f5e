"""Training: fit every model, tune on a validation cutoff, evaluate through the serving path, refit on all events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from threadpoolctl import threadpool_limits

from app.ml.base import BaseScorer
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.content import ContentTfidf
from app.ml.evaluation import TimeSplit, sample_users, time_split
from app.ml.history import UserHistory, histories_of
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
from app.ml.offline import evaluate_served, targets_of, tune_blend, tune_home_share
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.recommender.config import (
    DEFAULT_AGGREGATION,
    TUNED_AGGREGATIONS,
    RecommenderConfig,
)
from app.ml.recommender.model import Recommender
from app.ml.vocabulary import Vocabulary


@dataclass(eq=False)
class TrainedRecommender:
    """The result of :func:`train_recommender`.

    Attributes
    ----------
    recommender : Recommender, fitted on all events, ready to serve
    metrics : dict, ``{"protocol", "models": {name: metrics, ..., "served"}, "blend"}`` on the
        held-out split (models fitted on its training part)
    timings : dict of phase -> seconds
    """

    recommender: Recommender
    metrics: dict
    timings: dict[str, float]

    def save(self, directory: str | Path) -> None:
        """Write the serving recommender (and its metrics) under ``directory``."""
        self.recommender.save(directory)


@dataclass(eq=False)
class _Fitted:
    X: sparse.csr_matrix
    models: dict[str, BaseScorer]
    popularity: Popularity
    trending: Trending | None
    segment_popularity: SegmentPopularity | None


@dataclass(eq=False)
class _Run:
    """What every phase of one training run shares."""

    events: EventLog
    users: Vocabulary
    items: Vocabulary
    available: NDArray[np.bool_]
    content: ContentTfidf | None
    segments: NDArray[np.int64] | None
    timings: dict[str, float]
    say: Callable[[str], None]

    def fit(self, events: EventLog, config: RecommenderConfig, phase: str) -> _Fitted:
        """Fit every model of ``config`` on ``events`` (timed under ``phase``)."""
        return _fit_all(
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
        self, fitted: _Fitted, weights: Mapping[str, float], config: RecommenderConfig
    ) -> Recommender:
        """The served façade over fitted models: what evaluation and tuning score through."""
        return Recommender(
            item_vocab=self.items,
            user_vocab=self.users,
            blender=_blender(fitted, weights),
            available=self.available,
            config=config,
        )


def _prepare(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig,
    user_segments: Mapping[str, int] | None,
    say: Callable[[str], None],
) -> _Run:
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
            k=config.content_k,
            max_df=config.content_max_df,
            min_df=config.content_min_df,
            stop_words=config.content_stop_words,
            ngram_range=(1, config.content_ngram_max),
            max_postings=config.content_max_postings,
            max_block_entries=config.max_block_entries,
        ).fit(_item_texts(catalog, items))
        timings["content"] = time.perf_counter() - t0
    available = np.ones(len(items), dtype=bool)
    for item_id, ok in zip(catalog.item_ids, catalog.available.tolist(), strict=True):
        available[items.index(item_id)] = bool(ok)
    return _Run(events, users, items, available, content, segments, timings, say)


def _item_texts(catalog: Catalog, items: Vocabulary) -> list[str]:
    texts = [""] * len(items)
    for item_id, text in zip(catalog.item_ids, catalog.texts(), strict=True):
        texts[items.index(item_id)] = text
    return texts


def _collaborative_models(config: RecommenderConfig, n_items: int) -> dict[str, BaseScorer]:
    wanted = list(config.models)
    if "ease" in wanted and n_items > config.ease_max_items:
        # EASE is dense items x items; a big catalogue gets the sparse random-walk model.
        wanted.remove("ease")
        if "rp3beta" not in wanted:
            wanted.append("rp3beta")
    factories: dict[str, Callable[[], BaseScorer]] = {
        "item_knn": lambda: ItemKNN(
            k=config.item_knn_k,
            shrink=config.item_knn_shrink,
            similarity=config.item_knn_similarity,
            max_block_entries=config.max_block_entries,
        ),
        "user_knn": lambda: UserKNN(
            k=config.user_knn_k,
            shrink=config.user_knn_shrink,
            similarity=config.user_knn_similarity,
        ),
        "ease": lambda: EASE(l2=config.ease_l2, max_items=config.ease_max_items),
        "rp3beta": lambda: RP3beta(
            alpha=config.rp3_alpha,
            beta=config.rp3_beta,
            k=config.rp3_k,
            max_block_entries=config.max_block_entries,
        ),
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


def _fit_all(
    events: EventLog,
    users: Vocabulary,
    items: Vocabulary,
    config: RecommenderConfig,
    content: ContentTfidf | None,
    segments: NDArray[np.int64] | None,
    timings: dict[str, float],
    phase: str,
) -> _Fitted:
    t0 = time.perf_counter()
    matrices = training_matrices(events, users, items, config)
    encoded, X = matrices.encoded, matrices.X
    timings[f"{phase}.matrix"] = time.perf_counter() - t0
    models: dict[str, BaseScorer] = {}
    for name, model in _collaborative_models(config, len(items)).items():
        t0 = time.perf_counter()
        models[name] = model.fit(X)  # type: ignore[attr-defined]
        timings[f"{phase}.{name}"] = time.perf_counter() - t0
    if content is not None:
        models["content"] = content
    popularity = Popularity().fit(X)
    if "popularity" in config.models:
        models["popularity"] = popularity
    counted = encoded.weights > 0  # an event that weighs nothing counts nowhere (as in X)
    trending = Trending(
        window_days=config.trending_window_days, half_life_days=config.trending_half_life_days
    ).fit(
        encoded.rows[counted],
        encoded.cols[counted],
        encoded.occurred_at[counted],
        n_items=len(items),
    )
    if "trending" in config.models:
        models["trending"] = trending
    segment_popularity = None
    if segments is not None:
        segment_popularity = SegmentPopularity().fit(X, segments)
    return _Fitted(X, models, popularity, trending, segment_popularity)


def _blender(fitted: _Fitted, weights: Mapping[str, float]) -> Blender:
    return Blender(
        fitted.models,
        {name: w for name, w in weights.items() if name in fitted.models},
        popularity=fitted.popularity,
        trending=fitted.trending,
        segment_popularity=fitted.segment_popularity,
    )


def _with_content_floor(weights: dict[str, float], floor: float) -> dict[str, float]:
    """Keep content in the blend: it is the only way items without events are reached."""
    if "content" not in weights or floor <= 0:
        return weights
    top = max(weights.values(), default=0.0)
    return {**weights, "content": max(weights["content"], floor * top)}


def _reference_models(
    config: RecommenderConfig, events: EventLog, users: Vocabulary, items: Vocabulary
) -> dict[str, BaseScorer]:
    """Binary EASE, the published baseline the served blend must match, when it fits."""
    if "ease" not in config.models or len(items) > config.ease_max_items:
        return {}
    binary = dataclasses.replace(config, aggregation="binary", half_life_days=None)
    X = training_matrices(events, users, items, binary).X
    return {"ease_binary": EASE(l2=config.ease_l2, max_items=config.ease_max_items).fit(X)}


def _significantly_better(
    challenger: NDArray[np.float64] | None, incumbent: NDArray[np.float64] | None
) -> bool:
    """Whether per-user validation NDCG beats the incumbent's by one standard error."""
    if challenger is None or incumbent is None or len(challenger) == 0:
        return False
    gain = challenger - incumbent
    return float(gain.mean()) > float(np.std(gain)) / np.sqrt(len(gain))


def _tune(
    run: _Run,
    config: RecommenderConfig,
    weights: dict[str, float] | None,
    train_events: EventLog,
) -> tuple[RecommenderConfig, dict[str, float] | None, dict[str, Any]]:
    """Tune on a validation cutoff carved from the training part (never the test users).

    Whatever the config leaves open is chosen there, through the serving path: the
    aggregation (each candidate fitted and its blend tuned; binary, the simplest, stays unless
    log1p's blend beats it by a standard error of the per-user difference), the blend weights,
    and the home placement's repeat share.

    Returns
    -------
    (config with the choices filled in, blend weights, a JSON-able report)
    """
    inner = time_split(
        train_events,
        run.users,
        run.items,
        fraction=config.holdout_fraction,
        min_interactions=config.min_interactions,
    )
    inner_events = train_events.subset(inner.train_mask)
    tuned = sample_users(inner.explore, config.tune_max_users, config.seed)
    validation = _Validation(
        events=inner_events,
        histories=histories_of(inner_events, run.users, tuned),
        explore=inner.explore[tuned],
        next_basket=targets_of(inner.next_basket, tuned),
    )
    info: dict[str, Any] = {}
    best: _Candidate | None = None
    for aggregation in [config.aggregation] if config.aggregation else TUNED_AGGREGATIONS:
        candidate = _tune_blend(
            run, dataclasses.replace(config, aggregation=aggregation), weights, validation
        )
        if candidate.report is not None:
            info.setdefault("aggregations", {})[aggregation] = candidate.report
        if best is None or _significantly_better(candidate.per_user, best.per_user):
            best = candidate
    assert best is not None
    config, weights = best.config, best.weights
    info["aggregation"] = config.aggregation
    if config.home_repeat_share is None:
        run.say("tuning: the home placement's repeat share")
        probe = run.recommender(
            best.fitted, weights or dict.fromkeys(best.fitted.models, 1.0), config
        )
        share, report = tune_home_share(
            probe, validation.histories, validation.next_basket, k=config.eval_k
        )
        config = dataclasses.replace(config, home_repeat_share=share)
        info["home"] = report
    return config, weights, info


@dataclass(frozen=True, eq=False)
class _Validation:
    """The validation cutoff's training events and its (sampled) users' histories and targets."""

    events: EventLog
    histories: list[UserHistory]
    explore: sparse.csr_matrix
    next_basket: dict[int, set[int]]


@dataclass(frozen=True, eq=False)
class _Candidate:
    """One aggregation's models and blend on the validation cutoff."""

    config: RecommenderConfig
    fitted: _Fitted
    weights: dict[str, float] | None
    per_user: NDArray[np.float64] | None
    report: dict[str, Any] | None


def _tune_blend(
    run: _Run,
    config: RecommenderConfig,
    weights: dict[str, float] | None,
    validation: _Validation,
) -> _Candidate:
    """Fit with ``config`` on the validation cutoff and tune its blend (unless pinned)."""
    aggregation = config.aggregation
    run.say(f"tuning: fitting on the validation split ({aggregation})")
    t0 = time.perf_counter()
    fitted = run.fit(validation.events, config, "validation")
    run.timings["validation.fit"] = (
        run.timings.get("validation.fit", 0.0) + time.perf_counter() - t0
    )
    if weights is not None:
        return _Candidate(config, fitted, weights, None, None)
    run.say(f"tuning: searching blend weights ({aggregation})")
    result = tune_blend(
        run.recommender(fitted, dict.fromkeys(fitted.models, 1.0), config),
        fitted.models,
        validation.histories,
        validation.explore,
        k=config.eval_k,
        candidates=config.tune_candidates,
        min_coverage=config.tune_min_coverage,
    )
    found = _with_content_floor(result.weights, config.min_content_weight)
    report = {**result.report, "tuned_weights": dict(result.weights)}
    return _Candidate(config, fitted, found, result.per_user, report)


def _evaluate(
    run: _Run,
    config: RecommenderConfig,
    weights: dict[str, float] | None,
    split: TimeSplit,
    train_events: EventLog,
) -> dict[str, Any]:
    """Fit on the training part; score the test users through the serving path."""
    run.say("evaluation: fitting on the training part")
    fitted = run.fit(train_events, config, "evaluation")
    references = _reference_models(config, train_events, run.users, run.items)
    t0 = time.perf_counter()
    run.say("evaluation: scoring the test users through the serving path")
    served_weights = weights if weights is not None else dict.fromkeys(fitted.models, 1.0)
    evaluated = sample_users(split.explore, config.eval_max_users, config.seed)
    metrics = evaluate_served(
        run.recommender(fitted, served_weights, config),
        {**fitted.models, "popularity": fitted.popularity},
        histories_of(train_events, run.users, evaluated),
        targets_of(split.explore, evaluated),
        targets_of(split.next_basket, evaluated),
        k=config.eval_k,
        references=references,
    )
    run.timings["evaluation.score"] = time.perf_counter() - t0
    protocol = {**split.protocol, "k": config.eval_k, "evaluated_users": len(evaluated)}
    return {"protocol": protocol, **metrics}


def _serve(run: _Run, config: RecommenderConfig, weights: dict[str, float]) -> _Fitted:
    """Refit on all events the models the blend uses (and those similar_items needs)."""
    run.say("serving: fitting on all events")
    needed = {name for name, w in weights.items() if w > 0} | {"item_knn", "content", "popularity"}
    serving_config = dataclasses.replace(
        config, models=tuple(m for m in config.models if m in needed), blend_weights=None
    )
    return run.fit(run.events, serving_config, "serving")


def train_recommender(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig | None = None,
    *,
    user_segments: Mapping[str, int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainedRecommender:
    """Train every model, tune the blend, evaluate on a holdout, and refit on all events.

    1. Hold out each user's latest interactions (the protocol of :mod:`app.ml.evaluation`).
    2. Carve a validation split the same way from the training part, fit there and tune the
       blend weights on it (never on the holdout).
    3. Fit on the training part and evaluate each model and the tuned blend on the holdout.
    4. Refit on all events with the tuned weights: that is what serves.

    Parameters
    ----------
    events : EventLog
    catalog : Catalog; items without events still get an index (reachable by content)
    config : RecommenderConfig, default ``RecommenderConfig()``
    user_segments : user id -> segment label, for popular-in-segment cold starts
    progress : called with a short message at each phase
    """
    config = config or RecommenderConfig()
    # Sparse kernels are single-threaded anyway; capping BLAS avoids oversubscription when
    # the trainer shares the machine (2-thread OpenBLAS was up to 14x slower under load).
    with threadpool_limits(limits=config.blas_threads, user_api="blas"):
        return _train(events, catalog, config, user_segments, progress)


def _train(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig,
    user_segments: Mapping[str, int] | None,
    progress: Callable[[str], None] | None,
) -> TrainedRecommender:
    start = time.perf_counter()
    run = _prepare(events, catalog, config, user_segments, progress or (lambda _msg: None))
    weights = dict(config.blend_weights) if config.blend_weights is not None else None
    metrics: dict[str, Any] = {}
    blend_info: dict[str, Any] = {}
    tune = config.tune and (weights is None or config.home_repeat_share is None)
    if config.aggregation is None and not (config.tune and weights is None):
        config = dataclasses.replace(config, aggregation=DEFAULT_AGGREGATION)
    if config.evaluate or tune:
        split = time_split(
            events,
            run.users,
            run.items,
            fraction=config.holdout_fraction,
            min_interactions=config.min_interactions,
        )
        train_events = events.subset(split.train_mask)
        if tune:
            t0 = time.perf_counter()
            config, weights, blend_info = _tune(run, config, weights, train_events)
            spent = time.perf_counter() - t0
            run.timings["validation.tune"] = spent - run.timings.get("validation.fit", 0.0)
        if config.evaluate:
            metrics = _evaluate(run, config, weights, split, train_events)
    if weights is None:
        weights = dict.fromkeys(config.models, 1.0)
    blend_info["weights"] = weights
    full = _serve(run, config, weights)
    if metrics:
        metrics["blend"] = blend_info
    run.timings["total"] = time.perf_counter() - start
    recommender = run.recommender(full, weights, config)
    recommender.metrics = metrics
    run.say(f"done in {run.timings['total']:.1f}s")
    return TrainedRecommender(recommender=recommender, metrics=metrics, timings=run.timings)
