"""create_app(): wires settings, database, cache and model registry into a FastAPI app."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from functools import partial

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import dashboard, fast_lane, health, logs, metrics, monitoring, openapi
from app.access import AccessMiddleware
from app.body_size import BodySizeLimit
from app.cache import LocalCache, make_cache
from app.catalog.router import router as catalog_router
from app.config import Settings, get_settings
from app.customers.router import router as customers_router
from app.db import make_engine, make_sessionmaker
from app.errors import ERROR_RESPONSES, install_database_error_handlers, install_error_handlers
from app.events import service as events_service
from app.events.router import router as events_router
from app.events.webhooks import router as webhooks_router
from app.exports.router import router as exports_router
from app.exports.service import stop_exports
from app.fast_lane import FastLane
from app.migrate import is_up_to_date
from app.recommendations.router import router as recommendations_router
from app.security.keys import KeyRing
from app.security.ratelimit import Limiter
from app.segments import service as segments_service
from app.segments.router import router as segments_router
from app.subscriptions.dispatcher import Dispatcher
from app.subscriptions.router import router as subscriptions_router
from app.tokens.router import router as tokens_router
from app.training.registry import ModelRegistry
from app.training.router import router as training_router
from app.training.runner import stop_trainers
from app.training.scheduler import run_schedule
from app.training.serving import Serving

log = logging.getLogger(__name__)


class SchemaOutOfDate(RuntimeError):
    """The database is reachable but not migrated to the code's schema."""


def check_schema(engine: Engine) -> None:
    """Refuse to serve an out-of-date schema; tolerate an unreachable database (degraded)."""
    try:
        up_to_date = is_up_to_date(engine)
    except SQLAlchemyError as exc:
        log.warning("database unreachable at start-up, serving degraded: %s", exc)
        return
    if not up_to_date:
        raise SchemaOutOfDate(
            "the database schema is out of date; run `tastemaker migrate` and start again"
        )


# Routes are matched in this order, one router after another: the hot paths first.
ROUTERS = (
    recommendations_router,
    segments_router,
    events_router,
    health.router,
    webhooks_router,
    catalog_router,
    customers_router,
    training_router,
    exports_router,
    subscriptions_router,
    tokens_router,
    monitoring.router,
)
#: The routes answered ahead of the framework's routing when ``settings.fast_lane``.
FAST_LANE_PATHS = ("/recommend/{user_id}", "/segment/{user_id}")
#: How long a stopping worker waits for its trainer to record the run as failed (the
#: supervisor kills a worker GRACE_SECONDS after the drain).
TRAINER_STOP_SECONDS = 3.0
#: How long one part of the worker may take to stop before the worker goes on without it.
PART_STOP_SECONDS = 10.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for the given settings (default: from the environment)."""
    settings = settings or get_settings()
    logs.configure(settings.log_format, settings.log_level, buffered=True)
    metrics.configure(settings.metrics)
    app = openapi.new_app(
        settings,
        title="Tastemaker",
        version="0.1.0",
        summary="Real-time recommendations and customer segments for online shops.",
        lifespan=_lifespan(settings),
        # The service's metrics and logs are its own (app/metrics.py, app/logs.py); FastAPI's
        # OpenTelemetry hooks asked the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _add_middleware(app, settings)
    install_error_handlers(app)
    install_database_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    openapi.document(app, settings, ROUTERS)
    dashboard.install(app)  # /dashboard and its files; outside the API's schema
    return app


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The worker's lifespan: start the service's parts, serve, then stop them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await _start(app, settings)
        # Everything alive now lives as long as the worker: keep it out of the cyclic GC, whose
        # full collections would otherwise rescan it (~100 ms stalls at the tail under load).
        gc.freeze()
        flushing = asyncio.create_task(_flush_every_second())
        schedule = None
        # One process per host runs the schedule (`tastemaker serve` gives it to worker 0).
        if settings.retrain_schedule_here and (
            settings.retrain_every_minutes or settings.retrain_after_events
        ):
            schedule = asyncio.create_task(run_schedule(app.state.sessionmaker, settings))
        try:
            yield
        finally:
            if schedule is not None:
                schedule.cancel()
            flushing.cancel()
            with suppress(asyncio.CancelledError):
                await flushing  # its last flush
            await _bounded("the webhook dispatcher", app.state.dispatcher.stop())
            await _bounded("the running exports", stop_exports())
            await _bounded("the model registry", app.state.registry.stop())
            await run_in_threadpool(stop_trainers, TRAINER_STOP_SECONDS)
            with suppress(Exception):
                await app.state.cache.close()
            engine.dispose()

    return lifespan


async def _bounded(part: str, stopping: Awaitable[None]) -> None:
    """Wait for a part of the worker to stop, at most PART_STOP_SECONDS: a part that hangs
    is logged and left, so that a worker always stops."""
    try:
        await asyncio.wait_for(stopping, PART_STOP_SECONDS)
    except TimeoutError:
        log.error(
            "%s did not stop within %ss; the worker stops without it", part, PART_STOP_SECONDS
        )


async def _flush_every_second() -> None:
    """Hand the batched request metrics to prometheus-client and the kept log lines to stderr,
    every second and once more when cancelled."""
    try:
        while True:
            await asyncio.sleep(1.0)
            metrics.flush()
            logs.flush()
    finally:
        metrics.flush()
        logs.flush()


async def _start(app: FastAPI, settings: Settings) -> Engine:
    """Open the database, the cache, the key ring and the model registry into `app.state`."""
    engine = make_engine(settings.resolved_database_url)
    check_schema(engine)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.cache = make_cache(settings)
    app.state.keyring = await _open_keyring(settings, app.state.sessionmaker)
    app.state.limiter = Limiter(settings)
    # Webhook signatures already accepted, when Redis cannot be asked.
    app.state.webhook_replays = LocalCache(max_entries=100_000)
    registry = ModelRegistry(settings, app.state.sessionmaker, cache=app.state.cache)
    registry.on_ingest = events_service.change_listener(app.state.cache, settings)
    await registry.start()
    app.state.registry = registry
    app.state.serving = Serving(settings, app.state.cache, registry, app.state.sessionmaker)
    # Outbound webhooks: every worker polls, the lease holder alone delivers.
    live = partial(segments_service.live_states, registry, settings)
    app.state.dispatcher = Dispatcher(settings, app.state.sessionmaker, live)
    app.state.dispatcher.start()
    return engine


async def _open_keyring(settings: Settings, factory: sessionmaker[Session]) -> KeyRing:
    """Load the API keys, refusing unsafe settings; warn when serving without keys."""
    keyring = KeyRing(settings, factory)
    await keyring.refresh(force=True)
    keyring.check_startup()
    if keyring.loaded and not keyring.has_keys and not settings.is_loopback:
        log.warning(
            "serving without API keys on %s: TASTEMAKER_ALLOW_ANONYMOUS=true", settings.host
        )
    return keyring


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Innermost the fast lane; then limit request bodies; allow the configured CORS origins;
    outermost, the request id, access line and request metrics (the last added runs first)."""
    if settings.fast_lane:
        routes = [route for router in ROUTERS for route in router.routes]
        app.add_middleware(FastLane, lanes=fast_lane.lanes(routes, FAST_LANE_PATHS))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.browser_origins:  # the API's own origins and each token secret's
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.browser_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(AccessMiddleware, access_log=settings.access_log)
