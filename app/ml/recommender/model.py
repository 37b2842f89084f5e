"""The recommender the service serves: one scoring path for GET /recommend, evaluation and tuning; save and load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.ml.base import BaseScorer
from app.ml.bundle import BundleError, read_component, write_component
from app.ml.candidates import Candidates
from app.ml.collaborative import EASE, ItemKNN, RP3beta, UserKNN
from app.ml.content import ContentTfidf
from app.ml.history import UserHistory
from app.ml.hybrid import Blender, Ranked, Reason
from app.ml.interactions import (
    aggregate_history,
    event_weights,
    newest_distinct,
)
from app.ml.placements import PLACEMENTS, mix, repeat_ranking
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.recommender.config import (
    DEFAULT_AGGREGATION,
    RecommenderConfig,
)
from app.ml.vocabulary import Vocabulary

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

#: Repeat share of ``home`` answers when training did not tune it.
DEFAULT_HOME_REPEAT_SHARE = 0.3


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

    def candidates(
        self,
        history: UserHistory | None = None,
        *,
        available: NDArray[np.bool_] | None = None,
        within: Sequence[NDArray[np.int64]] | None = None,
        exclude: Iterable[str] = (),
        exclude_seen: bool = True,
    ) -> Candidates:
        """The items an answer for ``history`` may hold (see :class:`Candidates`).

        Parameters
        ----------
        history : the user's history, whose every item (``history.seen``) explore answers
            leave out when ``exclude_seen``; None: nobody's
        available : ndarray of shape (n_items,), bool; default the training-time availability
        within : index arrays of the requested categories; None: every category
        exclude : item ids never to return
        """
        seen = None
        if exclude_seen:
            # Candidates.build sorts and deduplicates the indices: no need to sort ids first.
            seen = self.item_vocab.indices(history.seen_items() if history is not None else [])
        return Candidates.build(
            self.available if available is None else available,
            within=within,
            exclude=self.item_vocab.indices(list(exclude)).tolist(),
            seen=seen,
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
        candidates: Candidates | None = None,
        segment: int | None = None,
    ) -> Recommendations:
        """The answer of ``GET /recommend``: the one scoring path of serving and evaluation.

        The newest ``config.history_length`` events are weighed with the model's event
        weights and aggregated with recency decay; by default explore answers leave out every
        item the user ever had (``history.seen``), not only those within the budget.

        Parameters
        ----------
        history : UserHistory, newest first
        n : number of items
        placement : "explore" (new items), "buy_again" (the user's own items) or "home"
            (a tuned share of repeat slots, the rest explore)
        candidates : what the answer may hold; default ``self.candidates(history)``
        segment : the user's segment, for a user with no history
        """
        if candidates is None:
            candidates = self.candidates(history)
        ranked = self.rank_user(
            history, n=n, placement=placement, candidates=candidates, segment=segment
        )
        return self._answer(ranked)

    def rank_user(
        self,
        history: UserHistory,
        *,
        n: int,
        placement: str,
        candidates: Candidates,
        segment: int | None = None,
    ) -> Ranked:
        """Rank item indices for a user (see :meth:`recommend_user`)."""
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}")
        raw, weights, times = self.read_history(history)
        if n <= 0:
            return self.blender.cold_start(n=0, mask=candidates.allowed_at)
        repeat = None
        if placement != "explore":
            repeat = repeat_ranking(
                raw,
                weights,
                times,
                half_life_days=self.config.repeat_half_life_days,
                n=n,
                mask=candidates.allowed_at,
            )
            if placement == "buy_again":
                return repeat
        items, values = self._aggregate(raw, weights, times)
        # Without the seen items left out, explore may repeat what the repeat list holds.
        wanted = n if repeat is None or candidates.excludes_seen else n + len(repeat.items)
        explore = self.blender.recommend(
            items,
            values,
            n=wanted,
            mask=candidates.explore_at,
            segment=segment,
            share=self.row_share(len(items)),
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
        """The history ``explore`` scores: the newest ``config.history_items`` distinct items.

        Every event of those items counts; older items stay seen (``exclude_seen``) and count
        for ``buy_again``, but scoring costs the same for any history length.
        """
        keep = newest_distinct(raw, self.config.history_items)
        if keep is not None:
            raw, weights, times = raw[keep], weights[keep], times[keep]
        return aggregate_history(
            raw,
            weights,
            self.config.aggregation or DEFAULT_AGGREGATION,
            occurred_at=times,
            half_life_days=self.config.history_half_life_days,
        )

    def row_share(self, n_items: int) -> float:
        """The share of each history item's rows ``explore`` reads for ``n_items`` items."""
        rows = self.config.history_rows
        return 1.0 if rows is None or n_items <= rows else rows / n_items

    @property
    def home_repeat_share(self) -> float:
        """The share of ``home`` slots that go to repeats (tuned at training)."""
        share = self.config.home_repeat_share
        return DEFAULT_HOME_REPEAT_SHARE if share is None else share

    def similar_items(
        self, item_id: str, *, n: int = 10, candidates: Candidates | None = None
    ) -> Recommendations:
        """Return the items most similar to ``item_id``; raise ``KeyError`` when it is unknown.

        Collaborative neighbours first; an item without interactions (or with too few
        neighbours) gets content-similar items. ``candidates`` (default
        ``self.candidates()``) says which may be returned; ``item_id`` itself never is.
        """
        index = self.item_vocab.index(item_id)
        allowed_at = (candidates or self.candidates()).allowed_at
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
            ok = allowed_at(idx).tolist()
            for i, v, allowed in zip(idx.tolist(), vals.tolist(), ok, strict=True):
                if i != index and allowed and v > 0 and i not in chosen and len(chosen) < n:
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


def _component(
    components: Mapping[str, BaseScorer], name: str, kind: type[Any], *, optional: bool = False
) -> Any:
    """The component ``name`` of a bundle, checked to be a ``kind`` (None if optional and absent)."""
    found = components.get(name)
    if found is None and optional:
        return None
    if not isinstance(found, kind):
        raise ValueError(f"component {name!r} is {type(found).__name__}, not {kind.__name__}")
    return found


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
            popularity=_component(components, "popularity", Popularity),
            trending=_component(components, "trending", Trending, optional=True),
            segment_popularity=_component(
                components, "segment_popularity", SegmentPopularity, optional=True
            ),
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
