"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.migrate import is_up_to_date

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


def _store_state(request: Request) -> str:
    engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok" if is_up_to_date(engine) else "not_migrated"
    except SQLAlchemyError:
        return "unavailable"


@router.get("/ready", response_model=None)
async def ready(request: Request) -> Response:
    """Readiness, for a load balancer: 503 only when this worker cannot answer reads at all.

    A soft outage keeps the worker in rotation (every replica shares the same store and cache,
    so pulling them all would turn a degraded service into none): with Redis or PostgreSQL
    down, reads are answered from the loaded model, marked ``degraded``, and the body says
    which write paths are unavailable. Not ready: a schema the code does not know, or the
    store down with no model loaded.
    """
    store = await run_in_threadpool(_store_state, request)
    cache_ok = await request.app.state.cache.ping()
    registry = request.app.state.registry
    model: dict[str, Any] = registry.describe()
    store_ok = store == "ok"
    can_read = store != "not_migrated" and (store_ok or registry.current is not None)
    if not can_read:
        status = "not_ready"
    elif store_ok and cache_ok:
        status = "ready"
    else:
        status = "degraded"
    body = {
        "status": status,
        "checks": {"store": store, "cache": "ok" if cache_ok else "unavailable", "model": model},
        "paths": {
            "read": "unavailable" if not can_read else "ok" if status == "ready" else "degraded",
            "events": "ok" if store_ok else "unavailable: the store is down",
            "erasure": "ok"
            if store_ok and cache_ok
            else "unavailable: " + ("the store is down" if not store_ok else "the cache is down"),
        },
    }
    return Response(
        orjson.dumps(body), status_code=200 if can_read else 503, media_type="application/json"
    )
