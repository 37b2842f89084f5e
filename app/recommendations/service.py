"""Recommendations: cache → active bundle → fallbacks, serialised once.

The answer is cached in the user's record (app/events/user_record.py) per model version and
options; a new event drops the record and a retrain changes the model version, so neither is
ever answered from a stale entry. Retired items are filtered after the cache, so they never
reappear.

The user's history is read up to the active model's budget (``config.history_length``, set at
training), newest first, together with every item the user ever had when the budget cut the
read short; it is cached in the same record, keyed by that budget, so `exclude_seen` always
covers the whole history and a model with another budget never reads a shorter one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.config import Settings
from app.errors import ModelNotReady, NotFound
from app.events import user_record
from app.ml.candidates import Candidates
from app.ml.history import UserHistory
from app.recommendations import repository
from app.recommendations.repository import UserContext
from app.recommendations.schemas import RecommendQuery, SimilarQuery
from app.training.registry import LoadedBundle, ModelRegistry
from app.training.serving import Serving

# Extra candidates cached beyond what was asked, so items retired after caching can be
# dropped without recomputing.
SLACK = 10
_NO_ITEMS = np.zeros(0, dtype=np.int64)


def _options_key(q: RecommendQuery) -> str:
    raw = orjson.dumps(
        [
            q.offset + q.n,
            sorted(q.category),
            sorted(q.exclude),
            q.exclude_seen,
            q.placement,
        ]
    )
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


@dataclass(frozen=True)
class _User:
    """What a recommendation knows of a user: existence, attributes and history."""

    exists: bool
    attributes: dict[str, Any]
    history: UserHistory


def _from_context(ctx: UserContext) -> _User:
    columns = tuple(zip(*ctx.history, strict=True)) or ((), (), (), ())
    items, types, values, times = (list(column) for column in columns)
    return _User(ctx.exists, ctx.attributes, UserHistory(items, types, values, times, ctx.seen))


def _encoded(user: _User) -> bytes:
    """The cached form of a user: the history as columns, which JSON reads fastest."""
    h = user.history
    return orjson.dumps(
        {
            "exists": user.exists,
            "attributes": user.attributes,
            "items": h.items,
            "types": h.types,
            "values": h.values,
            "times": h.times,
            "seen": None if h.seen is None else list(h.seen),
        }
    )


def _decoded(raw: bytes) -> _User:
    data = orjson.loads(raw)
    history = UserHistory(data["items"], data["types"], data["values"], data["times"], data["seen"])
    return _User(data["exists"], data["attributes"], history)


def history_limit(bundle: LoadedBundle | None, settings: Settings) -> int:
    """How many recent events a request reads: the model's budget, else the settings'."""
    return bundle.recommender.config.history_length if bundle else settings.history_length


async def _user(
    user_id: str, cached: bytes | None, limit: int, factory: sessionmaker[Session]
) -> tuple[_User, bytes | None, bool]:
    """The user's history up to `limit` events and every item they had: cached, else stored.

    Returns (user, the record to cache when it was read from the store, store_ok).
    """
    if cached is not None:
        return _decoded(cached), None, True

    def read() -> UserContext:
        with factory() as session:
            return repository.user_context(session, user_id, limit)

    try:
        user = _from_context(await run_in_threadpool(read))
    except SQLAlchemyError:
        return _User(False, {}, UserHistory.empty()), None, False
    return user, _encoded(user), True


def _segment_of(
    bundle: LoadedBundle, registry: ModelRegistry, user_id: str, user: _User
) -> int | None:
    hinted = user.attributes.get("segment")
    if isinstance(hinted, int) and not isinstance(hinted, bool):
        return hinted
    if user_id in registry.deleted_users:
        return None
    return bundle.user_segment.get(user_id)


def _candidates(
    bundle: LoadedBundle, registry: ModelRegistry, q: RecommendQuery, user: _User
) -> Candidates:
    """This request's candidates: available now, in the categories asked, not excluded, and
    (unless the query keeps them) none of the user's own items in explore answers."""
    within = None
    if q.category:
        within = [bundle.category_items.get(c, _NO_ITEMS) for c in q.category]
    return bundle.recommender.candidates(
        user.history,
        available=registry.available_in(bundle),
        within=within,
        exclude=q.exclude,
        exclude_seen=q.exclude_seen,
    )


def _reason(kind: str, item_id: str | None) -> dict[str, Any]:
    return {"type": kind, "item_id": item_id} if item_id else {"type": kind}


def _compute(
    bundle: LoadedBundle | None,
    registry: ModelRegistry,
    user_id: str,
    user: _User,
    q: RecommendQuery,
) -> dict[str, Any]:
    wanted = q.offset + q.n + SLACK
    if bundle is None:
        excluded = set(q.exclude)
        if q.exclude_seen:
            excluded.update(user.history.seen_items())
        items = [
            {"item_id": item_id, "score": score, "reason": {"type": "popular"}}
            for item_id, score, categories in registry.fallback_items
            if item_id not in excluded and (not q.category or set(categories) & set(q.category))
        ]
        return {"source": "fallback", "items": items[:wanted]}
    recs = bundle.recommender.recommend_user(
        user.history,
        n=wanted,
        placement=q.placement,
        candidates=_candidates(bundle, registry, q, user),
        segment=_segment_of(bundle, registry, user_id, user),
    )
    items = [
        {"item_id": item, "score": round(float(score), 6), "reason": _reason(r.kind, r.item_id)}
        for item, score, r in zip(recs.items, recs.scores, recs.reasons, strict=True)
    ]
    return {"source": recs.source, "items": items}


async def recommend(user_id: str, q: RecommendQuery, serving: Serving) -> bytes:
    """The JSON answer of GET /recommend/{user_id}, serialised once."""
    registry, cache, settings = serving.registry, serving.cache, serving.settings
    bundle = registry.current  # this request's bundle, whatever a swap does meanwhile
    model_tag = bundle.version if bundle else "fallback"
    field = user_record.answer_field(model_tag, _options_key(q))
    cached = await user_record.cached(cache, user_id, field)
    # Read per request: the breaker may close again before the answer is built.
    degraded = cache.degraded
    store_ok = True
    if cached is not None:
        payload = orjson.loads(cached)
    else:
        # Claimed before the store is read: what is computed here is cached only if no event
        # or erasure dropped the user's record meanwhile.
        limit = history_limit(bundle, settings)
        history_field = user_record.history_field(limit)
        version, raw_history = await user_record.claim(
            cache, user_id, history_field, settings.cache_ttl_seconds
        )
        user, fresh_history, store_ok = await _user(user_id, raw_history, limit, serving.factory)
        payload = _compute(bundle, registry, user_id, user, q)
        if store_ok:
            values = {field: orjson.dumps(payload)}
            if fresh_history is not None:
                values[history_field] = fresh_history
            await user_record.store(cache, user_id, version, values)
    metrics.count_answer(payload["source"], q.placement)
    unavailable = registry.unavailable
    items = [it for it in payload["items"] if it["item_id"] not in unavailable]
    items = items[q.offset : q.offset + q.n]
    if not q.explain:
        items = [{"item_id": it["item_id"], "score": it["score"]} for it in items]
    return orjson.dumps(
        {
            "user_id": user_id,
            "recommendation_id": os.urandom(16).hex(),
            "model_version": bundle.version if bundle else None,
            "source": payload["source"],
            "degraded": degraded or cache.degraded or not store_ok,
            "items": items,
        }
    )


def similar(item_id: str, q: SimilarQuery, serving: Serving) -> dict[str, Any]:
    """Items similar to `item_id` ("customers also bought", or content for new items)."""
    registry = serving.registry
    bundle = registry.current
    if bundle is None:
        raise ModelNotReady("no trained model yet: POST /retrain, then ask again")
    try:
        recs = bundle.recommender.similar_items(
            item_id,
            n=q.n,
            candidates=bundle.recommender.candidates(available=registry.available_in(bundle)),
        )
    except KeyError:
        raise NotFound(
            f"item {item_id!r} is not in model version {bundle.version}; "
            "items appear in the model at the next retrain"
        ) from None
    return {
        "item_id": item_id,
        "model_version": bundle.version,
        "source": recs.source,
        "items": [
            {"item_id": i, "score": round(float(s), 6), "reason": _reason(r.kind, r.item_id)}
            for i, s, r in zip(recs.items, recs.scores, recs.reasons, strict=True)
        ],
    }
