"""Recommendations: cache → active bundle → fallbacks, serialised once.

The answer is cached in the user's record (app/events/history.py) per model version and
options; a new event drops the record and a retrain changes the model version, so neither is
ever answered from a stale entry. Retired items are filtered after the cache, so they never
reappear.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import orjson
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.cache import Cache
from app.config import Settings
from app.errors import ModelNotReady, NotFound
from app.events import history
from app.ml.interactions import event_weights
from app.ml.recommender import Recommender
from app.recommendations import repository
from app.recommendations.repository import UserContext
from app.recommendations.schemas import RecommendQuery, SimilarQuery
from app.training.registry import LoadedBundle, ModelRegistry

# Extra candidates cached beyond what was asked, so items retired after caching can be
# dropped without recomputing.
SLACK = 10


def _options_key(q: RecommendQuery) -> str:
    raw = orjson.dumps([q.offset + q.n, sorted(q.category), sorted(q.exclude), q.exclude_seen])
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


async def _user_context(
    user_id: str, cached: bytes | None, factory: sessionmaker[Session], settings: Settings
) -> tuple[UserContext, bytes | None, bool]:
    """The user's recent history: the cached one, else the store's.

    Returns (context, the history to cache when it was read from the store, store_ok).
    """
    if cached is not None:
        data = orjson.loads(cached)
        context = UserContext(
            data["exists"], data["attributes"], [tuple(h) for h in data["history"]]
        )
        return context, None, True

    def read() -> UserContext:
        with factory() as session:
            return repository.user_context(session, user_id, settings.history_length)

    try:
        context = await run_in_threadpool(read)
    except SQLAlchemyError:
        return UserContext(False, {}, []), None, False
    payload = {
        "exists": context.exists,
        "attributes": context.attributes,
        "history": context.history,
    }
    return context, orjson.dumps(payload), True


def _segment_of(
    bundle: LoadedBundle, registry: ModelRegistry, user_id: str, ctx: UserContext
) -> int | None:
    hinted = ctx.attributes.get("segment")
    if isinstance(hinted, int) and not isinstance(hinted, bool):
        return hinted
    if user_id in registry.deleted_users:
        return None
    return bundle.user_segment.get(user_id)


def _mask(bundle: LoadedBundle, registry: ModelRegistry, categories: list[str]) -> np.ndarray:
    mask = registry.available_mask
    if mask is None:
        mask = np.asarray(bundle.recommender.available, dtype=bool)
    if not categories:
        return mask
    in_category = np.zeros_like(mask)
    for category in categories:
        indices = bundle.category_items.get(category)
        if indices is not None:
            in_category[indices] = True
    return mask & in_category


def _history(
    ctx: UserContext, recommender: Recommender
) -> tuple[list[str], list[float], list[float]]:
    """The user's history as (items, weights, times), weighed as the model was trained.

    The weights come from the one rule of training (:func:`app.ml.interactions.event_weights`)
    with the table the model was trained with, not the settings of this process.
    """
    items = [entry[0] for entry in ctx.history]
    types = [entry[1] for entry in ctx.history]
    values = [entry[2] for entry in ctx.history]
    times = [entry[3] for entry in ctx.history]
    weights = event_weights(types, values, recommender.config.event_weights)
    return items, weights.tolist(), times


def _reason(kind: str, item_id: str | None) -> dict[str, Any]:
    return {"type": kind, "item_id": item_id} if item_id else {"type": kind}


def _compute(
    bundle: LoadedBundle | None,
    registry: ModelRegistry,
    user_id: str,
    ctx: UserContext,
    q: RecommendQuery,
    settings: Settings,
) -> dict[str, Any]:
    wanted = q.offset + q.n + SLACK
    if bundle is None:
        excluded = set(q.exclude)
        if q.exclude_seen:
            excluded.update(entry[0] for entry in ctx.history)
        items = [
            {"item_id": item_id, "score": score, "reason": {"type": "popular"}}
            for item_id, score, categories in registry.fallback_items
            if item_id not in excluded and (not q.category or set(categories) & set(q.category))
        ]
        return {"source": "fallback", "items": items[:wanted]}
    history_items, weights, times = _history(ctx, bundle.recommender)
    recs = bundle.recommender.recommend(
        history_items,
        weights,
        history_times=times,
        n=wanted,
        exclude=q.exclude,
        exclude_history=q.exclude_seen,
        allowed=_mask(bundle, registry, q.category),
        segment=_segment_of(bundle, registry, user_id, ctx),
    )
    items = [
        {"item_id": item, "score": round(float(score), 6), "reason": _reason(r.kind, r.item_id)}
        for item, score, r in zip(recs.items, recs.scores, recs.reasons, strict=True)
    ]
    return {"source": recs.source, "items": items}


async def recommend(
    user_id: str,
    q: RecommendQuery,
    *,
    registry: ModelRegistry,
    cache: Cache,
    factory: sessionmaker[Session],
    settings: Settings,
) -> bytes:
    """The JSON answer of GET /recommend/{user_id}, serialised once."""
    bundle = registry.current  # this request's bundle, whatever a swap does meanwhile
    model_tag = bundle.version if bundle else "fallback"
    field = history.answer_field(model_tag, _options_key(q))
    cached = await history.cached(cache, user_id, field)
    # Read per request: the breaker may close again before the answer is built.
    degraded = cache.degraded
    store_ok = True
    if cached is not None:
        payload = orjson.loads(cached)
    else:
        # Claimed before the store is read: what is computed here is cached only if no event
        # or erasure dropped the user's record meanwhile.
        version, raw_history = await history.claim(
            cache, user_id, history.HISTORY, settings.cache_ttl_seconds
        )
        ctx, fresh_history, store_ok = await _user_context(user_id, raw_history, factory, settings)
        payload = _compute(bundle, registry, user_id, ctx, q, settings)
        if store_ok:
            values = {field: orjson.dumps(payload)}
            if fresh_history is not None:
                values[history.HISTORY] = fresh_history
            await history.store(cache, user_id, version, values)
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


def similar(item_id: str, q: SimilarQuery, registry: ModelRegistry) -> dict[str, Any]:
    """Items similar to `item_id` ("customers also bought", or content for new items)."""
    bundle = registry.current
    if bundle is None:
        raise ModelNotReady("no trained model yet: POST /retrain, then ask again")
    try:
        recs = bundle.recommender.similar_items(item_id, n=q.n, allowed=_mask(bundle, registry, []))
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
