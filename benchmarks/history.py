"""What a whole history costs an uncached `/recommend`: 50-event against 2,000-event customers.

``python -m benchmarks history [--requests 300] [--backends sqlite,postgresql] [--budgets …]``

A synthetic shop is imported into a fresh store (a SQLite file with the in-process cache, or a
PostgreSQL database with Redis), customers with exactly 50 and 2,000 events (items drawn as often
as the shop's customers buy them, over a year) are added, and a bundle is trained with each
budget (``TASTEMAKER_HISTORY_LENGTH``) in turn. Each request then runs
:func:`app.recommendations.service.recommend` on the app's event loop, the code behind the
route, with a nonce in `exclude` so that no answer comes from the cache, either with the
customer's history cached (*warm*, as for returning customers) or after dropping the
customer's record, so that the history is read from the store (*cold*: what the first answer
after an event costs, since an event drops the record). The two lengths are asked in turn,
one request each per round, so that a load on the machine weighs on both. Prints p50/p99 per
request (wall clock), the median CPU time of the process per request (which a load elsewhere
on the machine barely moves; on PostgreSQL it leaves out the server's own work) and the
ratios of the 2,000-event customers to the 50-event ones.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.events import repository as events_repository
from app.events import user_record
from app.events.models import Event
from app.main import create_app
from app.migrate import upgrade
from app.recommendations import service
from app.recommendations.schemas import RecommendQuery
from app.training.pipeline import build_bundle, register
from app.training.registry import write_active_pointer
from benchmarks import store

LENGTHS = (50, 2000)
USERS_PER_LENGTH = 20
BENCH_DB = "tastemaker_bench_history"
END = datetime(2025, 1, 1, tzinfo=UTC)


def say(message: str) -> None:
    """Progress on stderr (stdout carries the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def database(backend: str, work: Path) -> Iterator[tuple[str, str | None]]:
    """A fresh, migrated store and the cache beside it: (database URL, Redis URL or None)."""
    if backend == "sqlite":
        url = f"sqlite:///{work / 'history.db'}"
        upgrade(url)
        yield url, None
        return
    admin = create_engine(store.ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
    url = store.PG_URL.format(db=BENCH_DB)
    try:
        upgrade(url)
        yield url, store.REDIS_URL
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        admin.dispose()


def add_customers(settings: Settings, popular: list[str]) -> dict[int, list[str]]:
    """Customers with exactly each of LENGTHS events over the year before END, by length."""
    rng = random.Random(0)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    users = {n: [f"h{n}-{k:03d}" for k in range(USERS_PER_LENGTH)] for n in LENGTHS}
    rows: list[dict[str, Any]] = []
    for n, ids in users.items():
        for user_id in ids:
            for _ in range(n):
                at = END - timedelta(seconds=rng.uniform(0, 365 * 86_400))
                kind = rng.choices(("view", "add_to_cart", "purchase"), (0.6, 0.2, 0.2))[0]
                value = round(rng.uniform(1, 60), 2) if kind == "purchase" else None
                rows.append(
                    {
                        "user_id": user_id,
                        "item_id": rng.choice(popular),
                        "type": kind,
                        "value": value,
                        "occurred_at": at,
                        "received_at": END,
                    }
                )
    with factory.begin() as session:
        events_repository.ensure_users(session, [u for ids in users.values() for u in ids])
        for start in range(0, len(rows), 5000):
            session.execute(Event.__table__.insert(), rows[start : start + 5000])
    return users


def prepare(settings: Settings, shop_events: int) -> dict[int, list[str]]:
    """Import the shop and add the measured customers; their ids by length."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    shop = generate_shop(
        n_users=2000, n_items=1000, n_events=shop_events, seed=0, start=END - timedelta(days=365)
    )
    say(f"importing {shop_events:,} events")
    import_shop(factory, shop, settings=settings)
    users = add_customers(settings, shop.events.item_id.tolist())
    if settings.resolved_database_url.startswith("postgresql"):
        # What autovacuum does to a store soon after an import (PostgreSQL 13+ vacuums after
        # inserts too): the visibility map lets a customer's items be read from the index.
        engine = create_engine(settings.resolved_database_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE event"))
        engine.dispose()
    return users


def train(settings: Settings) -> None:
    """Train a bundle with the settings' budget and make it the active one."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    say(f"training with a budget of {settings.history_length} events")
    built = build_bundle(settings, factory)
    with factory.begin() as session:
        activated, note = register(session, settings, built)
    if not activated:
        raise RuntimeError(f"the bundle was not activated: {note}")
    write_active_pointer(settings.model_dir, built.version)


async def _timed(
    app: Any, users: dict[int, list[str]], requests: int, cold: bool
) -> dict[int, list[tuple[float, float]]]:
    """(wall, CPU) seconds per uncached `recommend` call by history length, interleaved.

    Each round asks once for a customer of every length, so that both see the same machine:
    a load that comes and goes during the run weighs on both sides of the ratio alike.
    """
    state = app.state
    timings: dict[int, list[tuple[float, float]]] = {n: [] for n in users}
    for k in range(-USERS_PER_LENGTH, requests):  # one pass over the users first, untimed
        for n, ids in users.items():
            user_id = ids[k % len(ids)]
            if cold:
                await user_record.bump_versions(state.cache, [user_id], 0)
            q = RecommendQuery(exclude=[f"x{k + USERS_PER_LENGTH}"])
            started, cpu = time.perf_counter(), time.process_time()
            await service.recommend(user_id, q, state.serving)
            if k >= 0:
                timings[n].append((time.perf_counter() - started, time.process_time() - cpu))
    return timings


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def measure(
    backend: str, requests: int, shop_events: int, budgets: list[int]
) -> list[dict[str, Any]]:
    """Rows of (backend, history, length, budget, p50 ms, p99 ms) for one storage shape."""
    work = Path(tempfile.mkdtemp(prefix="tm-bench-history-"))
    try:
        with database(backend, work) as (url, redis_url):
            base = Settings(
                database_url=url,
                redis_url=redis_url,
                data_dir=work / "data",
                model_dir=work / "models",
                cache_prefix=f"tmbench:{uuid.uuid4().hex[:8]}:",
            )
            users = prepare(base, shop_events)
            rows = []
            for budget in budgets:
                settings = base.model_copy(update={"history_length": budget})
                train(settings)
                with TestClient(create_app(settings)) as client:
                    served = client.app.state.registry.current.recommender.config.history_length
                    assert served == budget, (served, budget)
                    for cold in (False, True):
                        kind = "cold (store)" if cold else "warm (cache)"
                        say(f"{backend}, budget {budget}: {kind}")
                        timed = client.portal.call(_timed, client.app, users, requests, cold)
                        for n, seconds in timed.items():
                            rows.append(
                                {
                                    "backend": backend,
                                    "history": kind,
                                    "events": n,
                                    "budget": budget,
                                    "p50_ms": 1000 * statistics.median(w for w, _ in seconds),
                                    "p99_ms": 1000 * _quantile([w for w, _ in seconds], 0.99),
                                    "cpu_ms": 1000 * statistics.median(c for _, c in seconds),
                                }
                            )
            return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table with the 2,000/50 ratios."""
    lines = [
        "| store | history | budget | p50 50 ev | p50 2000 ev | ratio "
        "| CPU 50 ev | CPU 2000 ev | CPU ratio | p99 50 ev | p99 2000 ev | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pairs: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in rows:
        pairs.setdefault((row["backend"], row["history"], row["budget"]), {})[row["events"]] = row
    for (backend, kind, _), by_length in pairs.items():
        short, long = by_length[LENGTHS[0]], by_length[LENGTHS[-1]]
        cells = [backend, kind, str(short["budget"])]
        for key in ("p50_ms", "cpu_ms", "p99_ms"):
            cells += [
                f"{short[key]:.2f} ms",
                f"{long[key]:.2f} ms",
                f"{long[key] / short[key]:.2f}×",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_history(requests: int, backends: list[str], shop_events: int, budgets: list[int]) -> str:
    """Measure every backend with every budget; return the markdown table."""
    rows = []
    for backend in backends:
        rows += measure(backend, requests, shop_events, budgets)
    return table(rows)
