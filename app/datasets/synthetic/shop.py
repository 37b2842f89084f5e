"""The entry point: ``generate_shop`` draws the catalogue, customers and events into a shop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.datasets.synthetic.catalogue import make_catalog
from app.datasets.synthetic.clock import DAY
from app.datasets.synthetic.customers import GROUPS, make_users
from app.datasets.synthetic.events import make_browsing, make_purchases
from app.datasets.synthetic.results import (
    EVENT_KEYS,
    EventColumns,
    SyntheticItem,
    SyntheticShop,
    SyntheticUser,
    format_ids,
)
from app.datasets.synthetic.vocabulary import CATEGORIES

__all__ = ["generate_shop"]


_DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


def generate_shop(
    *,
    n_users: int = 2000,
    n_items: int = 500,
    n_events: int = 100_000,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 365,
) -> SyntheticShop:
    """Generate a deterministic synthetic shop (see the package docstring for the model).

    Parameters
    ----------
    n_users, n_items, n_events : int
        Sizes; ``n_events`` is met exactly.
    seed : int
        Everything is a function of the arguments.
    start : datetime, optional
        Start of the simulated window (naive means UTC); defaults to 2024-01-01 UTC.
    days : int
        Length of the window; the last event happens before ``start + days``.

    Returns
    -------
    SyntheticShop
    """
    if n_users < 1 or n_items < 1 or n_events < 0 or days < 1:
        raise ValueError("n_users and n_items must be >= 1, n_events >= 0 and days >= 1")
    start = _DEFAULT_START if start is None else start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    rng = np.random.default_rng(seed)
    t0 = start.timestamp()
    span = days * DAY

    cats = CATEGORIES[: min(len(CATEGORIES), n_items)]
    cat_names = tuple(c.name for c in cats)
    catalog = make_catalog(rng, n_items, cats)
    users = make_users(rng, n_users, cat_names)

    purchases = make_purchases(rng, users, catalog, n_events, span, t0)
    n_browse = n_events - purchases["n_events"]
    browse = make_browsing(rng, users, catalog, n_browse, span, t0)

    user_table = format_ids("u", np.arange(1, n_users + 1), max(5, len(str(n_users))))
    item_table = format_ids("i", np.arange(1, n_items + 1), max(5, len(str(n_items))))
    events = _sorted_events(purchases, browse, user_table, item_table, t0, seed)
    group_names = tuple(g.name for g in GROUPS)
    return SyntheticShop(
        users=_user_records(user_table, users, group_names),
        items=_item_records(item_table, catalog),
        events=events,
        groups=users["group"].astype(np.int8),
        group_names=group_names,
        categories=cat_names,
        item_category=catalog["category"].astype(np.int16),
        start=start,
        end=datetime.fromtimestamp(t0 + span, tz=UTC),
    )


def _sorted_events(
    purchases: dict[str, Any],
    browse: dict[str, Any],
    user_table: NDArray[np.str_],
    item_table: NDArray[np.str_],
    t0: float,
    seed: int,
) -> EventColumns:
    """Purchase and browsing events in one time order, times in epoch seconds.

    The columns are popped from ``purchases`` and ``browse`` so that each unsorted copy can be
    freed as soon as its sorted one exists (millions of events on the large shops).
    """
    cols = {k: np.concatenate([purchases.pop(k), browse.pop(k)]) for k in EVENT_KEYS}
    # Stable order: by time, then by funnel stage so a clipped view never follows its purchase
    # (two stable argsorts are several times faster than lexsort here).
    by_stage = np.argsort(cols["type_code"], kind="stable")
    order = by_stage[np.argsort(cols["occurred_at"][by_stage], kind="stable")]
    del by_stage
    return EventColumns(
        user_index=cols.pop("user_index")[order],
        item_index=cols.pop("item_index")[order],
        type_code=cols.pop("type_code")[order],
        quantity=cols.pop("quantity")[order],
        value=cols.pop("value")[order],
        occurred_at=cols.pop("occurred_at")[order] + t0,
        order_index=cols.pop("order_index")[order],
        user_id_table=user_table,
        item_id_table=item_table,
        seed=seed,
    )


def _user_records(
    user_table: NDArray[np.str_], users: dict[str, Any], group_names: tuple[str, ...]
) -> list[SyntheticUser]:
    """One ``SyntheticUser`` per customer, in index order."""
    return [
        SyntheticUser(user_id=str(uid), group=group_names[g], attributes=attrs)
        for uid, g, attrs in zip(
            user_table, users["group"].tolist(), users["attributes"], strict=True
        )
    ]


def _item_records(item_table: NDArray[np.str_], catalog: dict[str, Any]) -> list[SyntheticItem]:
    """One ``SyntheticItem`` per catalogue item, in index order."""
    return [
        SyntheticItem(
            item_id=str(iid),
            title=title,
            description=desc,
            categories=categories,
            price=price,
            attributes=attrs,
        )
        for iid, title, desc, categories, price, attrs in zip(
            item_table,
            catalog["title"],
            catalog["description"],
            catalog["categories"],
            catalog["price"].tolist(),
            catalog["attributes"],
            strict=True,
        )
    ]
