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
    """Readiness: store reachable and migrated, cache reachable, which model is loaded."""
    store = await run_in_threadpool(_store_state, request)
    cache_ok = await request.app.state.cache.ping()
    registry = request.app.state.registry
    model: dict[str, Any] = registry.describe()
    checks = {"store": store, "cache": "ok" if cache_ok else "unavailable", "model": model}
    is_ready = store == "ok" and cache_ok
    body = {"status": "ready" if is_ready else "not_ready", "checks": checks}
    return Response(
        orjson.dumps(body), status_code=200 if is_ready else 503, media_type="application/json"
    )
