"""Load the synthetic demo shop into the store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.datasets.synthetic import SyntheticShop, generate_shop
from app.db import utcnow
from app.events import repository
from app.events.schemas import EventIn
from app.events.service import Rules
from app.importers import BATCH_SIZE, EventWriter, ImportSummary, to_event


def load_demo(
    factory: sessionmaker[Session],
    *,
    seed: int = 0,
    n_users: int = 2000,
    n_items: int = 500,
    n_events: int = 100_000,
    progress: Callable[[int], None] | None = None,
    settings: Settings | None = None,
) -> ImportSummary:
    """Generate a shop (deterministic with `seed`) and import it; re-running adds nothing."""
    # Live segments measure recency from now, so the demo year ends today.
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=365
    )
    shop = generate_shop(
        n_users=n_users, n_items=n_items, n_events=n_events, seed=seed, start=start, days=365
    )
    return import_shop(factory, shop, progress, settings=settings)


def import_shop(
    factory: sessionmaker[Session],
    shop: SyntheticShop,
    progress: Callable[[int], None] | None = None,
    *,
    settings: Settings | None = None,
) -> ImportSummary:
    """Write a generated shop's catalogue and customers, then its events through the ingest path.

    `settings` (default: the process's) give the rules and the cache; the store is `factory`'s.
    Events the rules refuse are counted in `dropped`, as an import counts them.
    """
    settings = settings or get_settings()
    summary = ImportSummary()
    _write_catalogue(factory, shop)
    events = shop.events
    columns = (
        events.event_id,
        events.user_id,
        events.item_id,
        events.type,
        events.value,
        events.occurred_at,
        events.order_id,
    )
    with EventWriter(settings, factory) as writer:
        for start in range(0, len(events), BATCH_SIZE):
            stop = min(start + BATCH_SIZE, len(events))
            now = utcnow()
            rows = tuple(c[start:stop] for c in columns)
            batch = _to_events(rows, Rules.at(settings, now), summary)
            summary.read += stop - start
            if batch:
                summary.add(writer.write(batch, now))
            if progress:
                progress(stop - start)
    return summary


def _write_catalogue(factory: sessionmaker[Session], shop: SyntheticShop) -> None:
    """Write the shop's items and users (existing ones are kept)."""
    with factory.begin() as session:
        repository.ensure_items(
            session,
            [
                {
                    "id": item.item_id,
                    "title": item.title,
                    "description": item.description,
                    "categories": list(item.categories),
                    "price": float(item.price),
                    "attributes": dict(item.attributes),
                }
                for item in shop.items
            ],
        )
        repository.ensure_users(
            session, [{"id": u.user_id, "attributes": dict(u.attributes)} for u in shop.users]
        )


def _to_events(
    rows: tuple[NDArray[Any], ...], rules: Rules, summary: ImportSummary
) -> list[EventIn]:
    """A slice of the event columns as events; the refused ones are counted in `summary`."""
    ids, users, items, types, values, times, orders = rows
    batch = []
    for i in range(len(ids)):
        event = to_event(
            {
                "event_id": str(ids[i]),
                "user_id": str(users[i]),
                "item_id": str(items[i]),
                "type": str(types[i]),
                "value": None if np.isnan(values[i]) else float(values[i]),
                "order_id": str(orders[i]) or None,
                "occurred_at": datetime.fromtimestamp(float(times[i]), UTC),
            },
            rules,
        )
        if isinstance(event, str):
            summary.dropped[event] += 1
        else:
            batch.append(event)
    return batch
