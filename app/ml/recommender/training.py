"""Training: fit every model, tune on a validation cutoff, evaluate through the serving path, refit on all events."""

from __future__ import annotations

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
from app.ml.collaborative import EASE
from app.ml.evaluation import TimeSplit, sample_users, time_split
from app.ml.history import UserHistory, histories_of
from app.ml.interactions import (
    Catalog,
    EventLog,
)
from app.ml.offline import evaluate_served, targets_of, tune_blend, tune_home_share
from app.ml.recommender.config import (
    DEFAULT_AGGREGATION,
    TUNED_AGGREGATIONS,
    RecommenderConfig,
)
from app.ml.recommender.fitting import (
    FitModels,
    Fitted,
    TrainingRun,
    prepare_run,
    training_matrices,
)
from app.ml.recommender.model import Recommender
from app.ml.tuning import least_gain
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
    if "ease" not in config.models or len(items) > config.ease.max_items:
        return {}
    binary = config.model_copy(update={"aggregation": "binary", "half_life_days": None})
    X = training_matrices(events, users, items, binary).X
    dense = {**config.ease.model_dump(), "k": None}  # the published model: rows not pruned
    return {"ease_binary": EASE(**dense).fit(X)}


def _split(events: EventLog, run: TrainingRun, config: RecommenderConfig) -> TimeSplit:
    """The protocol's time split of ``events`` with the config's fraction and minimum."""
    return time_split(
        events,
        run.users,
        run.items,
        fraction=config.holdout_fraction,
        min_interactions=config.min_interactions,
    )


def _significantly_better(
    challenger: NDArray[np.float64] | None, incumbent: NDArray[np.float64] | None
) -> bool:
    """Whether per-user validation NDCG beats the incumbent's (:func:`least_gain`)."""
    if challenger is None or incumbent is None or len(challenger) == 0:
        return False
    gain = challenger - incumbent
    return float(gain.mean()) > least_gain(gain)


def _tune(
    run: TrainingRun,
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
    inner = _split(train_events, run, config)
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
            run, config.model_copy(update={"aggregation": aggregation}), weights, validation
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
        config = config.model_copy(update={"home_repeat_share": share})
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
    fitted: Fitted
    weights: dict[str, float] | None
    per_user: NDArray[np.float64] | None
    report: dict[str, Any] | None


def _tune_blend(
    run: TrainingRun,
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
    run: TrainingRun,
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


def _serve(run: TrainingRun, config: RecommenderConfig, weights: dict[str, float]) -> Fitted:
    """Refit on all events the models the blend uses (and those similar_items needs)."""
    run.say("serving: fitting on all events")
    needed = {name for name, w in weights.items() if w > 0} | {"item_knn", "content", "popularity"}
    # A subset of the models without pinned weights: nothing the validators could refuse.
    serving_config = config.model_copy(
        update={"models": tuple(m for m in config.models if m in needed), "blend_weights": None}
    )
    return run.fit(run.events, serving_config, "serving")


def train_recommender(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig | None = None,
    *,
    user_segments: Mapping[str, int] | None = None,
    progress: Callable[[str], None] | None = None,
    fitter: FitModels | None = None,
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
    fitter : what fits the models on a set of events; default the local engine's
        :func:`~app.ml.recommender.fitting.fit_models`
    """
    config = config or RecommenderConfig()
    # Sparse kernels are single-threaded anyway; capping BLAS avoids oversubscription when
    # the trainer shares the machine (2-thread OpenBLAS was up to 14x slower under load).
    with threadpool_limits(limits=config.blas_threads, user_api="blas"):
        return _train(events, catalog, config, user_segments, progress, fitter)


def _train(
    events: EventLog,
    catalog: Catalog,
    config: RecommenderConfig,
    user_segments: Mapping[str, int] | None,
    progress: Callable[[str], None] | None,
    fitter: FitModels | None = None,
) -> TrainedRecommender:
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    run = prepare_run(events, catalog, config, user_segments, say, fitter)
    weights = dict(config.blend_weights) if config.blend_weights is not None else None
    metrics: dict[str, Any] = {}
    blend_info: dict[str, Any] = {}
    tune = config.tune and (weights is None or config.home_repeat_share is None)
    if config.aggregation is None and not (config.tune and weights is None):
        config = config.model_copy(update={"aggregation": DEFAULT_AGGREGATION})
    if config.evaluate or tune:
        split = _split(events, run, config)
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
