"""The recommender façade the service uses: configure, train, evaluate, save, load, recommend."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from threadpoolctl import threadpool_limits

from app.ml.bundle import BundleError, read_component, write_component
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.content import ContentTfidf
from app.ml.evaluation import sample_users, time_split
from app.ml.history import UserHistory, histories_of
from app.ml.hybrid import Blender, Ranked, Reason, candidate_mask
from app.ml.interactions import (
    AGGREGATIONS,
    DEFAULT_EVENT_WEIGHTS,
    Catalog,
    EncodedEvents,
    EventLog,
    aggregate_history,
    encode_events,
    event_weights,
    interaction_matrix,
    item_vocabulary,
    user_vocabulary,
)
from app.ml.offline import evaluate_served, targets_of, tune_blend, tune_home_share
from app.ml.placements import PLACEMENTS, mix, repeat_ranking
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.similarity import BaseScorer
from app.ml.vocabulary import Vocabulary

MODEL_NAMES = ("item_knn", "user_knn", "ease", "rp3beta", "content", "popularity", "trending")
RECOMMENDER_DIR = "recommender"
_CORE = "core"
_MODEL_CLASSES: dict[str, type[BaseScorer]] = {
    cls.__name__: cls
    for cls in (
        ItemKNN,
        UserKNN,
        EASE,
        RP3beta,
        ContentTfidf,
        Popularity,
        Trending,
        SegmentPopularity,
    )
}
_COLLABORATIVE_FOR_SIMILAR = ("item_knn", "ease", "rp3beta")
#: Aggregations tried at tuning when the config leaves it open, and the one used untuned.
TUNED_AGGREGATIONS = ("binary", "log1p")
DEFAULT_AGGREGATION = "log1p"
#: Repeat share of ``home`` answers when training did not tune it.
DEFAULT_HOME_REPEAT_SHARE = 0.3


@dataclass(frozen=True)
class RecommenderConfig:
    """Every hyper-parameter of training, with defaults chosen on a validation split.

    Build it from untrusted input with :meth:`from_dict`, which rejects unknown keys.
    ``min_content_weight`` floors the tuned content weight (as a share of the largest weight)
    so that items nobody has bought yet stay reachable. ``content_max_postings`` bounds how many
    items one term links (exact below it, see :class:`ContentTfidf`) and ``eval_max_users`` how
    many users evaluation scores (a seeded sample beyond it), so that neither phase grows with
    the square of the shop.
    """

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    aggregation: str | None = None
    half_life_days: float | None = None
    history_half_life_days: float | None = 60.0
    history_length: int = 500
    repeat_half_life_days: float | None = 90.0
    home_repeat_share: float | None = None
    models: tuple[str, ...] = ("item_knn", "user_knn", "ease", "rp3beta", "content", "popularity")
    item_knn_k: int = 200
    item_knn_shrink: float = 0.0
    item_knn_similarity: str = "cosine"
    user_knn_k: int = 50
    user_knn_shrink: float = 0.0
    user_knn_similarity: str = "cosine"
    ease_l2: float = 500.0
    ease_max_items: int = 8000
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.5
    rp3_k: int = 200
    content_k: int = 100
    content_max_df: float = 0.5
    content_min_df: int = 1
    content_ngram_max: int = 1
    content_stop_words: str | None = "english"
    content_max_postings: int = 400
    trending_window_days: float = 30.0
    trending_half_life_days: float = 7.0
    evaluate: bool = True
    eval_k: int = 10
    eval_max_users: int = 10_000
    holdout_fraction: float = 0.2
    min_interactions: int = 2
    tune: bool = True
    blend_weights: Mapping[str, float] | None = None
    tune_max_users: int = 2500
    tune_candidates: int = 30
    tune_min_coverage: float = 0.0
    min_content_weight: float = 0.05
    seed: int = 0
    max_block_entries: int = 1 << 24
    blas_threads: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.models) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; expected some of {MODEL_NAMES}")
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if self.history_length < 1:
            raise ValueError("history_length must be at least 1")
        if self.home_repeat_share is not None and not 0.0 <= self.home_repeat_share <= 1.0:
            raise ValueError("home_repeat_share must be in [0, 1]")
        for name in ("half_life_days", "history_half_life_days", "repeat_half_life_days"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        if self.eval_k < 1:
            raise ValueError("eval_k must be at least 1")
        if self.blend_weights is not None:
            stray = set(self.blend_weights) - set(self.models)
            if stray:
                raise ValueError(f"blend_weights for models not trained: {sorted(stray)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecommenderConfig:
        """Build a config from a mapping; raise ``ValueError`` on unknown keys."""
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(defaults)
        if unknown:
            raise ValueError(f"unknown recommender config keys: {sorted(unknown)}")
        values = {name: _checked(name, value) for name, value in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict (round-trips through :meth:`from_dict`)."""
        out = dataclasses.asdict(self)
        out["models"] = list(self.models)
        out["event_weights"] = dict(self.event_weights)
        if self.blend_weights is not None:
            out["blend_weights"] = dict(self.blend_weights)
        return out


_NULLABLE = {
    "aggregation",
    "half_life_days",
    "history_half_life_days",
    "repeat_half_life_days",
    "home_repeat_share",
    "content_stop_words",
    "blend_weights",
}
_NULLABLE_TEXT = {"aggregation", "content_stop_words"}
_MAPPINGS = {"event_weights", "blend_weights"}


def _checked(name: str, value: Any) -> Any:
    """Validate one config value against the type of its default (ints widen to floats)."""
    if value is None:
        if name in _NULLABLE:
            return None
        raise ValueError(f"config {name!r} must not be null")
    if name in _MAPPINGS:
        ok = isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in value.items()
        )
        if not ok:
            raise ValueError(f"config {name!r} must map names to numbers")
        return {k: float(v) for k, v in value.items()}
    if name == "models":
        if isinstance(value, str) or not all(isinstance(m, str) for m in value):
            raise ValueError("config 'models' must be a list of model names")
        return tuple(value)
    default = _DEFAULTS.get(name)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _NULLABLE_TEXT:
        ok = isinstance(value, str)
    elif isinstance(default, float) or name in _NULLABLE:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"config {name!r} has the wrong type: {value!r}")
    return value


_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(RecommenderConfig) if f.default is not None
}


@dataclass(frozen=True)
class Recommendations:
    """A ranked answer: external item ids, scores, one reason per item, and its source."""

    items: list[str]
    scores: list[float]
    reasons: list[Reason]
    source: str


class Recommender:
    """A trained recommender ready to serve (built by training or by :func:`load_recommender`).

    Attributes
    ----------
    item_vocab, user_vocab : Vocabulary
    available : ndarray of shape (n_items,), bool; catalogue availability at training time
    blender : Blender
    config : RecommenderConfig
    metrics : dict; the evaluation of this model version (may be empty)
    """

    def __init__(
        self,
        *,
        item_vocab: Vocabulary,
        user_vocab: Vocabulary,
        blender: Blender,
        available: NDArray[np.bool_],
        config: RecommenderConfig,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        self.item_vocab = item_vocab
        self.user_vocab = user_vocab
        self.blender = blender
        self.available = np.asarray(available, dtype=bool)
        self.config = config
        self.metrics = dict(metrics or {})
        self.n_items = len(item_vocab)
        self._forgotten: set[int] = set()

    def item_index(self, item_id: str) -> int | None:
        """Return the matrix index of an item id, or None when unknown."""
        return self.item_vocab.get(item_id)

    def user_index(self, user_id: str) -> int | None:
        """Return the training row of a user id, or None when unknown or forgotten."""
        index = self.user_vocab.get(user_id)
        return None if index is None or index in self._forgotten else index

    def forget_users(self, user_ids: Iterable[str]) -> None:
        """Drop users from this model's look-ups at once (GDPR erasure before the retrain).

        Their rows stop being user-kNN neighbours and :meth:`user_index` no longer finds
        them; aggregate statistics (similarities, popularity) change at the next retrain.
        """
        rows = [i for i in self.user_vocab.indices(user_ids).tolist() if i >= 0]
        self._forgotten.update(rows)
        for model in self.blender.models.values():
            if isinstance(model, UserKNN):
                model.forget_users(np.asarray(rows, dtype=np.int64))

    def _mask(self, allowed: NDArray[np.bool_] | None, exclude: Iterable[int]) -> NDArray[np.bool_]:
        return candidate_mask(
            self.n_items, allowed=self.available if allowed is None else allowed, exclude=exclude
        )

    def _answer(self, ranked: Ranked) -> Recommendations:
        ids = self.item_vocab.lookup(ranked.items.tolist())
        reasons = [
            Reason(kind, self.item_vocab.id(src) if src >= 0 else None)
            for kind, src in zip(ranked.reason_kinds, ranked.reason_items.tolist(), strict=True)
        ]
        return Recommendations(ids, ranked.scores.tolist(), reasons, ranked.source)

    def recommend_user(
        self,
        history: UserHistory,
        *,
        n: int,
        placement: str = "explore",
        exclude: Iterable[str] = (),
        exclude_seen: bool = True,
        allowed: NDArray[np.bool_] | None = None,
        segment: int | None = None,
    ) -> Recommendations:
        """The answer of ``GET /recommend``: the one scoring path of serving and evaluation.

        The newest ``config.history_length`` events are weighed with the model's event
        weights and aggregated with recency decay; ``exclude_seen`` leaves out every item the
        user ever had (``history.seen``), not only those within the budget.

        Parameters
        ----------
        history : UserHistory, newest first
        n : number of items
        placement : "explore" (new items), "buy_again" (the user's own items) or "home"
            (a tuned share of repeat slots, the rest explore)
        exclude : item ids never to return
        exclude_seen : leave out items the user had (explore items only: repeats are seen)
        allowed : ndarray of shape (n_items,), bool; default the training-time availability
        segment : the user's segment, for a user with no history
        """
        excluded = self.item_vocab.indices(list(exclude)).tolist()
        mask = self._mask(allowed, excluded)
        ranked = self.rank_user(
            history, n=n, placement=placement, mask=mask, exclude_seen=exclude_seen, segment=segment
        )
        return self._answer(ranked)

    def rank_user(
        self,
        history: UserHistory,
        *,
        n: int,
        placement: str,
        mask: NDArray[np.bool_],
        exclude_seen: bool = True,
        segment: int | None = None,
    ) -> Ranked:
        """Rank item indices for a user (see :meth:`recommend_user`); ``mask``: candidates."""
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}")
        raw, weights, times = self.read_history(history)
        if n <= 0:
            return self.blender.cold_start(n=0, mask=mask)
        repeat = None
        if placement != "explore":
            repeat = repeat_ranking(
                raw,
                weights,
                times,
                half_life_days=self.config.repeat_half_life_days,
                n=n,
                mask=mask,
            )
            if placement == "buy_again":
                return repeat
        explore_mask = mask
        if exclude_seen:
            seen = self.item_vocab.indices(list(history.seen_items()))
            explore_mask = mask.copy()
            explore_mask[seen[seen >= 0]] = False
        items, values = self._aggregate(raw, weights, times)
        wanted = n if repeat is None or exclude_seen else n + len(repeat.items)
        explore = self.blender.recommend(
            items, values, n=wanted, mask=explore_mask, segment=segment
        )
        if repeat is None:
            return explore
        return mix(repeat, explore, n=n, share=self.home_repeat_share)

    def read_history(
        self, history: UserHistory
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """The newest ``config.history_length`` events as (item index, weight, time) arrays.

        Unknown items get index -1; weights follow the model's event weights.
        """
        budget = self.config.history_length
        raw = self.item_vocab.indices(list(history.items[:budget]))
        weights = event_weights(
            list(history.types[:budget]), list(history.values[:budget]), self.config.event_weights
        )
        return raw, weights, np.asarray(history.times[:budget], dtype=np.float64)

    def served_history(self, history: UserHistory) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The aggregated history ``explore`` scores: distinct items and their values."""
        return self._aggregate(*self.read_history(history))

    def _aggregate(
        self, raw: NDArray[np.int64], weights: NDArray[np.float64], times: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        return aggregate_history(
            raw,
            weights,
            self.config.aggregation,
            occurred_at=times,
            half_life_days=self.config.history_half_life_days,
        )

    @property
    def home_repeat_share(self) -> float:
        """The share of ``home`` slots that go to repeats (tuned at training)."""
        share = self.config.home_repeat_share
        return DEFAULT_HOME_REPEAT_SHARE if share is None else share

    def similar_items(
        self, item_id: str, *, n: int = 10, allowed: NDArray[np.bool_] | None = None
    ) -> Recommendations:
        """Return the items most similar to ``item_id``; raise ``KeyError`` when it is unknown.

        Collaborative neighbours first; an item without interactions (or with too few
        neighbours) gets content-similar items.
        """
        index = self.item_vocab.index(item_id)
        mask = self._mask(allowed, [index])
        models = self.blender.models
        chosen: list[int] = []
        scores: list[float] = []
        kinds: list[str] = []
        has_events = self.blender.popularity.counts_[index] > 0
        sources = [(name, "similar_to") for name in _COLLABORATIVE_FOR_SIMILAR if name in models]
        sources = sources[:1] if has_events else []
        if "content" in models:
            sources.append(("content", "content_match"))
        for name, kind in sources:
            if len(chosen) >= n:
                break
            idx, vals = models[name].similar_items(index, n + len(chosen) + 1)
            for i, v in zip(idx.tolist(), vals.tolist(), strict=True):
                if mask[i] and v > 0 and i not in chosen and len(chosen) < n:
                    chosen.append(i)
                    scores.append(float(v))
                    kinds.append(kind)
        ranked = Ranked(
            items=np.asarray(chosen, dtype=np.int64),
            scores=np.asarray(scores, dtype=np.float32),
            reason_kinds=kinds,
            reason_items=np.full(len(chosen), index, dtype=np.int64),
            # An item known only by its content is an item cold start.
            source="personalized" if chosen and kinds[0] == "similar_to" else "cold_start",
        )
        return self._answer(ranked)

    def save(self, directory: str | Path) -> None:
        """Write every model as a bundle component under ``directory / "recommender"``."""
        root = Path(directory) / RECOMMENDER_DIR
        b = self.blender
        components: dict[str, BaseScorer] = dict(b.models)
        components["popularity"] = b.popularity
        if b.trending is not None:
            components["trending"] = b.trending
        if b.segment_popularity is not None:
            components["segment_popularity"] = b.segment_popularity
        for name, model in components.items():
            arrays, meta = model.to_state()
            write_component(root / name, arrays, meta)
        core_meta = {
            "config": self.config.to_dict(),
            "items": self.item_vocab.to_json(),
            "users": self.user_vocab.to_json(),
            "components": sorted(components),
            "blend_models": list(b.models),
            "weights": b.weights,
            "metrics": self.metrics,
        }
        write_component(root / _CORE, {"available": self.available}, core_meta)


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


def load_recommender(directory: str | Path) -> Recommender:
    """Load a recommender saved by :meth:`TrainedRecommender.save` (mmap, no pickle).

    Raises
    ------
    BundleError
        When a component is missing, corrupted or inconsistent.
    """
    root = Path(directory) / RECOMMENDER_DIR
    core_arrays, core = read_component(root / _CORE)
    try:
        config = RecommenderConfig.from_dict(core["config"])
        items = Vocabulary.from_json(core["items"])
        users = Vocabulary.from_json(core["users"])
        components: dict[str, BaseScorer] = {}
        for name in core["components"]:
            arrays, meta = read_component(root / name)
            cls = _MODEL_CLASSES.get(meta.get("model", ""))
            if cls is None:
                raise BundleError(f"unknown model type {meta.get('model')!r} in {root / name}")
            components[name] = cls.from_state(arrays, meta)
        models = {name: components[name] for name in core["blend_models"]}
        blender = Blender(
            models,
            core["weights"],
            popularity=components["popularity"],
            trending=components.get("trending"),
            segment_popularity=components.get("segment_popularity"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"inconsistent recommender bundle in {root}: {exc!r}") from None
    if blender.n_items != len(items) or len(core_arrays["available"]) != len(items):
        raise BundleError(f"recommender bundle in {root}: item counts disagree")
    return Recommender(
        item_vocab=items,
        user_vocab=users,
        blender=blender,
        available=core_arrays["available"],
        config=config,
        metrics=core.get("metrics"),
    )


# --------------------------------------------------------------------------- training


@dataclass(eq=False)
class _Fitted:
    X: sparse.csr_matrix
    models: dict[str, BaseScorer]
    popularity: Popularity
    trending: Trending | None
    segment_popularity: SegmentPopularity | None


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
        encoded, aggregation=config.aggregation, half_life_days=config.half_life_days
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
    config: RecommenderConfig,
    weights: dict[str, float] | None,
    train_events: EventLog,
    users: Vocabulary,
    items: Vocabulary,
    content: ContentTfidf | None,
    segments: NDArray[np.int64] | None,
    timings: dict[str, float],
    say: Callable[[str], None],
    recommender_of: Callable[[_Fitted, Mapping[str, float], RecommenderConfig], Recommender],
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
    kw = {"fraction": config.holdout_fraction, "min_interactions": config.min_interactions}
    inner = time_split(train_events, users, items, **kw)
    inner_events = train_events.subset(inner.train_mask)
    tuned = sample_users(inner.explore, config.tune_max_users, config.seed)
    histories = histories_of(inner_events, users, tuned)
    k = config.eval_k
    info: dict[str, Any] = {}
    best: tuple[Any, RecommenderConfig, _Fitted, dict[str, float] | None] | None = None
    aggregations = [config.aggregation] if config.aggregation else list(TUNED_AGGREGATIONS)
    for aggregation in aggregations:
        candidate = dataclasses.replace(config, aggregation=aggregation)
        say(f"tuning: fitting on the validation split ({aggregation})")
        t0 = time.perf_counter()
        sub = _fit_all(
            inner_events, users, items, candidate, content, segments, timings, "validation"
        )
        timings["validation.fit"] = timings.get("validation.fit", 0.0) + time.perf_counter() - t0
        found, per_user = weights, None
        if weights is None:
            say(f"tuning: searching blend weights ({aggregation})")
            probe = recommender_of(sub, dict.fromkeys(sub.models, 1.0), candidate)
            result = tune_blend(
                probe,
                sub.models,
                histories,
                inner.explore[tuned],
                k=k,
                candidates=config.tune_candidates,
                min_coverage=config.tune_min_coverage,
            )
            per_user = result.per_user
            info.setdefault("aggregations", {})[aggregation] = {
                **result.report,
                "tuned_weights": dict(result.weights),
            }
            found = _with_content_floor(result.weights, config.min_content_weight)
        if best is None or _significantly_better(per_user, best[0]):
            best = (per_user, candidate, sub, found)
    assert best is not None
    _, config, sub, weights = best
    info["aggregation"] = config.aggregation
    if config.home_repeat_share is None:
        say("tuning: the home placement's repeat share")
        probe = recommender_of(sub, weights or dict.fromkeys(sub.models, 1.0), config)
        share, report = tune_home_share(probe, histories, targets_of(inner.next_basket, tuned), k=k)
        config = dataclasses.replace(config, home_repeat_share=share)
        info["home"] = report
    return config, weights, info


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
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    start = time.perf_counter()
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

    def recommender_of(fitted: _Fitted, weights: Mapping[str, float], cfg: RecommenderConfig):
        return Recommender(
            item_vocab=items,
            user_vocab=users,
            blender=_blender(fitted, weights),
            available=available,
            config=cfg,
        )

    weights = dict(config.blend_weights) if config.blend_weights is not None else None
    metrics: dict[str, Any] = {}
    blend_info: dict[str, Any] = {}
    kw = {"fraction": config.holdout_fraction, "min_interactions": config.min_interactions}
    tune_blend_weights = config.tune and weights is None
    tune_share = config.tune and config.home_repeat_share is None
    if not tune_blend_weights and config.aggregation is None:
        config = dataclasses.replace(config, aggregation=DEFAULT_AGGREGATION)
    k = config.eval_k
    if config.evaluate or tune_blend_weights or tune_share:
        split = time_split(events, users, items, **kw)
        train_events = events.subset(split.train_mask)
        if tune_blend_weights or tune_share:
            t0 = time.perf_counter()
            config, weights, blend_info = _tune(
                config,
                weights,
                train_events,
                users,
                items,
                content,
                segments,
                timings,
                say,
                recommender_of,
            )
            timings["validation.tune"] = (
                time.perf_counter() - t0 - timings.get("validation.fit", 0.0)
            )
        if config.evaluate:
            say("evaluation: fitting on the training part")
            fitted = _fit_all(
                train_events, users, items, config, content, segments, timings, "evaluation"
            )
            references = _reference_models(config, train_events, users, items)
            t0 = time.perf_counter()
            say("evaluation: scoring the test users through the serving path")
            served_weights = weights if weights is not None else dict.fromkeys(fitted.models, 1.0)
            evaluated = sample_users(split.explore, config.eval_max_users, config.seed)
            models = {**fitted.models, "popularity": fitted.popularity}
            metrics = evaluate_served(
                recommender_of(fitted, served_weights, config),
                models,
                histories_of(train_events, users, evaluated),
                targets_of(split.explore, evaluated),
                targets_of(split.next_basket, evaluated),
                k=k,
                references=references,
            )
            timings["evaluation.score"] = time.perf_counter() - t0
            protocol = {**split.protocol, "k": k, "evaluated_users": len(evaluated)}
            metrics = {"protocol": protocol, **metrics}
    if weights is None:
        weights = dict.fromkeys(config.models, 1.0)
    blend_info["weights"] = weights

    say("serving: fitting on all events")
    # Models the blend does not use are not refitted, except those similar_items needs.
    needed = {name for name, w in weights.items() if w > 0} | {"item_knn", "content", "popularity"}
    serving_config = dataclasses.replace(
        config, models=tuple(m for m in config.models if m in needed), blend_weights=None
    )
    full = _fit_all(events, users, items, serving_config, content, segments, timings, "serving")
    if metrics:
        metrics["blend"] = blend_info
    timings["total"] = time.perf_counter() - start
    recommender = Recommender(
        item_vocab=items,
        user_vocab=users,
        blender=_blender(full, weights),
        available=available,
        config=config,
        metrics=metrics,
    )
    say(f"done in {timings['total']:.1f}s")
    return TrainedRecommender(recommender=recommender, metrics=metrics, timings=timings)
