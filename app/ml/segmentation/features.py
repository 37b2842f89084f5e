"""Per-customer inputs of the segmentation and the behaviour features computed from them.

Input is one row of aggregates per customer (:class:`CustomerAggregates`): the store computes
them with SQL aggregates, :func:`aggregate_events` computes them from event arrays for tests,
benchmarks and the trainer.

Features (purchasers only)
--------------------------
========================  ===============================================  ==========
name                      definition                                       transform
========================  ===============================================  ==========
recency_days              days from the last purchase to ``now``           log1p
frequency                 orders                                           log1p
monetary                  total spend                                      log1p
avg_order_value           monetary / orders                                log1p
tenure_days               days from the first event to ``now``             log1p
distinct_items            distinct items purchased                         log1p
line_value                monetary / purchase events (price level)         log1p
browse_share              views / (views + carts + purchases)              none
cart_share                carts / (views + carts + purchases)              none
category_1..c             TruncatedSVD components of the row-normalised    none
                          customer x category matrix
========================  ===============================================  ==========

All features are standardised (mean/scale stored; a constant feature gets scale 1), and the
category components are then multiplied by ``category_weight`` so taste refines behaviour
rather than dominating it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from app.ml.interactions import SECONDS_PER_DAY
from app.ml.segmentation.orders import order_figures

__all__ = [
    "FEATURES",
    "CustomerAggregates",
    "ItemCounts",
    "aggregate_events",
    "aligned_category_counts",
    "base_features",
    "category_components",
    "feature_matrix",
]

FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "distinct_items",
    "line_value",
    "browse_share",
    "cart_share",
)
_SKEWED = frozenset(
    {
        "recency_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "tenure_days",
        "distinct_items",
        "line_value",
    }
)


#: The fields of :class:`CustomerAggregates` that hold one figure per customer.
PER_CUSTOMER_FIELDS = (
    "last_purchase_at",
    "first_seen_at",
    "last_seen_at",
    "orders",
    "monetary",
    "distinct_items",
    "views",
    "carts",
    "purchases",
    "first_purchase_at",
    "first_order_value",
)


@dataclass(frozen=True, eq=False)
class CustomerAggregates:
    """Per-customer aggregates, parallel arrays of shape (n_customers,).

    Attributes
    ----------
    user_ids : list of str
    last_purchase_at : ndarray, float64
        Epoch seconds of the last purchase, NaN if the customer never purchased.
    first_seen_at, last_seen_at : ndarray, float64
        Epoch seconds of the first and last event.
    orders : ndarray, float64
        Distinct orders (invoices where present, else distinct purchase days).
    monetary : ndarray, float64
        Total spend.
    distinct_items : ndarray, float64
        Distinct items purchased.
    views, carts, purchases : ndarray, float64
        Event counts by type (clicks count as views; purchases are purchase events = lines).
    category_counts : csr_matrix of shape (n_customers, n_categories)
        Interaction counts per category.
    categories : list of str
        Column names of ``category_counts``.
    now : float
        Reference time (epoch seconds) for recency and tenure.
    first_purchase_at, first_order_value : ndarray, float64
        Epoch seconds of the first order (NaN without a purchase) and its spend (0 without).
    """

    user_ids: list[str]
    last_purchase_at: NDArray[np.float64]
    first_seen_at: NDArray[np.float64]
    last_seen_at: NDArray[np.float64]
    orders: NDArray[np.float64]
    monetary: NDArray[np.float64]
    distinct_items: NDArray[np.float64]
    views: NDArray[np.float64]
    carts: NDArray[np.float64]
    purchases: NDArray[np.float64]
    category_counts: sp.csr_matrix
    categories: list[str]
    now: float
    first_purchase_at: NDArray[np.float64]
    first_order_value: NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        for name in PER_CUSTOMER_FIELDS:
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},), got {np.shape(getattr(self, name))}"
                )
        if self.category_counts.shape != (n, len(self.categories)):
            raise ValueError(
                f"category_counts must have shape ({n}, {len(self.categories)}), "
                f"got {self.category_counts.shape}"
            )

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: ArrayLike) -> CustomerAggregates:
        """Return the aggregates of the customers at positions ``rows``."""
        idx = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        return CustomerAggregates(
            user_ids=[self.user_ids[i] for i in idx.tolist()],
            last_purchase_at=np.asarray(self.last_purchase_at, np.float64)[idx],
            first_seen_at=np.asarray(self.first_seen_at, np.float64)[idx],
            last_seen_at=np.asarray(self.last_seen_at, np.float64)[idx],
            orders=np.asarray(self.orders, np.float64)[idx],
            monetary=np.asarray(self.monetary, np.float64)[idx],
            distinct_items=np.asarray(self.distinct_items, np.float64)[idx],
            views=np.asarray(self.views, np.float64)[idx],
            carts=np.asarray(self.carts, np.float64)[idx],
            purchases=np.asarray(self.purchases, np.float64)[idx],
            category_counts=sp.csr_matrix(self.category_counts)[idx],
            categories=list(self.categories),
            now=self.now,
            first_purchase_at=np.asarray(self.first_purchase_at, np.float64)[idx],
            first_order_value=np.asarray(self.first_order_value, np.float64)[idx],
        )


@dataclass(frozen=True, eq=False)
class ItemCounts:
    """Purchase counts per customer and item, for the profiles' top items.

    Attributes
    ----------
    matrix : csr_matrix of shape (n_customers, n_items)
        Rows in the same order as the aggregates given to ``fit``.
    item_ids : list of str
        Column names.
    """

    matrix: sp.csr_matrix
    item_ids: list[str]


def aggregate_events(
    *,
    user_ids: ArrayLike,
    item_ids: ArrayLike,
    event_types: ArrayLike,
    values: ArrayLike,
    occurred_at: ArrayLike,
    order_ids: ArrayLike | None = None,
    item_categories: Mapping[str, Sequence[str]] | None = None,
    users: Sequence[str] | None = None,
    now: float | None = None,
) -> tuple[CustomerAggregates, ItemCounts]:
    """Compute :class:`CustomerAggregates` (and purchase counts per item) from event arrays.

    The numpy twin of the store's SQL aggregates. Orders are distinct non-empty ``order_ids``
    of purchases; a purchase without an order id counts its calendar day (UTC) as the order.
    ``category_counts`` counts every event once per category of its item.

    Parameters
    ----------
    user_ids, item_ids, event_types : array-like of str, shape (n_events,)
        ``event_types`` in ``view``, ``click``, ``add_to_cart``, ``purchase`` (others ignored
        except for first/last seen).
    values : array-like of float, shape (n_events,)
        Amount of purchases (NaN counts as 0).
    occurred_at : array-like of float, shape (n_events,)
        Epoch seconds.
    order_ids : array-like of str, shape (n_events,), optional
    item_categories : mapping item id -> categories, optional
    users : sequence of str, optional
        Row order of the result; customers without events get NaN times and zero counts.
        Default: the distinct ``user_ids``, sorted; events of users not listed are ignored.
    now : float, optional
        Reference time; default the last event time.

    Returns
    -------
    aggregates : CustomerAggregates
    items : ItemCounts
        Purchase events per customer and item, columns sorted by item id.
    """
    ev = _coded_events(user_ids, item_ids, event_types, values, occurred_at, order_ids, users)
    return _aggregate(ev, item_categories, now)


@dataclass(frozen=True, eq=False)
class _Events:
    """The events of the customers aggregated, coded: parallel arrays of shape (n_events,)."""

    user_ids: list[str]  # the result's rows
    items: NDArray[np.str_]  # sorted distinct item ids of every event given
    user: NDArray[np.int64]  # position in user_ids
    item: NDArray[np.int64]  # position in items
    at: NDArray[np.float64]
    types: NDArray[np.str_]
    value: NDArray[np.float64]  # NaN as 0
    order: NDArray[np.str_] | None  # "" where an event has no order id


def _coded_events(
    user_ids: ArrayLike,
    item_ids: ArrayLike,
    event_types: ArrayLike,
    values: ArrayLike,
    occurred_at: ArrayLike,
    order_ids: ArrayLike | None,
    users: Sequence[str] | None,
) -> _Events:
    """The events of ``users`` (default everyone) with users and items as codes."""
    uid = np.asarray(user_ids).astype(str)
    t = np.asarray(occurred_at, dtype=np.float64)
    types = np.asarray(event_types).astype(str)
    val = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    names, u = np.unique(uid, return_inverse=True)
    if users is not None:
        pos = {name: i for i, name in enumerate(users)}
        remap = np.array([pos.get(name, -1) for name in names.tolist()], dtype=np.int64)
        u = remap[u]
        keep = u >= 0
        uid_list = [str(x) for x in users]
    else:
        keep = np.ones(u.shape[0], dtype=bool)
        uid_list = names.tolist()
    items, it = np.unique(np.asarray(item_ids).astype(str), return_inverse=True)
    u, it, t, types, val = u[keep], it[keep], t[keep], types[keep], val[keep]
    oid = None
    if order_ids is not None:
        raw_orders = np.asarray(order_ids)
        if raw_orders.dtype == object:  # None (SQL NULL) means no order id, not "None"
            raw_orders = np.where(
                np.equal(raw_orders, np.asarray(None, dtype=object)), "", raw_orders
            )
        oid = raw_orders.astype(str)[keep]
    return _Events(uid_list, items, u, it, t, types, val, oid)


def _aggregate(
    ev: _Events, item_categories: Mapping[str, Sequence[str]] | None, now: float | None
) -> tuple[CustomerAggregates, ItemCounts]:
    """:func:`aggregate_events` on coded events."""
    u, it, t, types, items, n = ev.user, ev.item, ev.at, ev.types, ev.items, len(ev.user_ids)
    is_buy = types == "purchase"
    is_view = (types == "view") | (types == "click")
    is_cart = types == "add_to_cart"
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, u, t)
    np.maximum.at(last, u, t)
    last_buy = np.full(n, -np.inf)
    np.maximum.at(last_buy, u[is_buy], t[is_buy])

    ub = u[is_buy]
    ob = None if ev.order is None else ev.order[is_buy]
    orders = order_figures(ub, t[is_buy], ob, ev.value[is_buy], n)
    item_pairs = np.unique(ub.astype(np.int64) * items.shape[0] + it[is_buy])
    distinct = np.bincount(item_pairs // max(items.shape[0], 1), minlength=n).astype(np.float64)
    purchase_matrix = _count_matrix(ub, it[is_buy], (n, items.shape[0]))
    category_counts, cat_names = _category_matrix(u, it, items, item_categories, n)

    def nan_if_inf(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.where(np.isfinite(x), x, np.nan)

    agg = CustomerAggregates(
        user_ids=ev.user_ids,
        last_purchase_at=nan_if_inf(last_buy),
        first_seen_at=nan_if_inf(first),
        last_seen_at=nan_if_inf(last),
        orders=orders.orders,
        monetary=np.bincount(ub, weights=ev.value[is_buy], minlength=n).astype(np.float64),
        distinct_items=distinct,
        views=np.bincount(u[is_view], minlength=n).astype(np.float64),
        carts=np.bincount(u[is_cart], minlength=n).astype(np.float64),
        purchases=np.bincount(ub, minlength=n).astype(np.float64),
        category_counts=category_counts,
        categories=cat_names,
        now=float(t.max(initial=0.0)) if now is None else float(now),
        first_purchase_at=orders.first_at,
        first_order_value=orders.first_value,
    )
    return agg, ItemCounts(matrix=purchase_matrix, item_ids=items.tolist())


def _category_matrix(
    u: NDArray[np.int64],
    it: NDArray[np.int64],
    items: NDArray[np.str_],
    item_categories: Mapping[str, Sequence[str]] | None,
    n: int,
) -> tuple[sp.csr_matrix, list[str]]:
    """Events per customer and category, shape (n, n_categories), and the category names."""
    if not item_categories:
        return sp.csr_matrix((n, 0)), []
    cat_names = sorted({c for cs in item_categories.values() for c in cs})
    cpos = {c: j for j, c in enumerate(cat_names)}
    per_item = [[cpos[c] for c in item_categories.get(item, ())] for item in items.tolist()]
    n_cats = np.array([len(cs) for cs in per_item], dtype=np.int64)
    cat_idx = np.fromiter(
        (c for cs in per_item for c in cs), dtype=np.int64, count=int(n_cats.sum())
    )
    cat_start = np.concatenate([[0], np.cumsum(n_cats)[:-1]])
    # Expand every event into one (customer, category) pair per category of its item.
    reps = n_cats[it]
    offsets = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    ev_cat = cat_idx[np.repeat(cat_start[it], reps) + offsets]
    return _count_matrix(np.repeat(u, reps), ev_cat, (n, len(cat_names))), cat_names


def _count_matrix(
    rows: NDArray[np.int64], cols: NDArray[np.int64], shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR matrix counting each (row, col) pair, built without scipy's COO round trip."""
    n_rows, n_cols = shape
    key = rows.astype(np.int64) * max(n_cols, 1) + cols
    uniq, counts = np.unique(key, return_counts=True)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(uniq // max(n_cols, 1), minlength=n_rows), out=indptr[1:])
    return sp.csr_matrix((counts.astype(np.float64), uniq % max(n_cols, 1), indptr), shape=shape)


def base_features(agg: CustomerAggregates) -> dict[str, NDArray[Any]]:
    """Per-customer behaviour figures in real units (NaN/0 where undefined)."""
    orders = np.asarray(agg.orders, dtype=np.float64)
    last_buy = np.asarray(agg.last_purchase_at, dtype=np.float64)
    bought = (orders > 0) & np.isfinite(last_buy)
    safe_orders = np.where(bought, orders, 1.0)
    monetary = np.maximum(np.asarray(agg.monetary, dtype=np.float64), 0.0)
    purchases = np.asarray(agg.purchases, dtype=np.float64)
    views = np.asarray(agg.views, dtype=np.float64)
    carts = np.asarray(agg.carts, dtype=np.float64)
    total = np.maximum(views + carts + purchases, 1.0)
    first = np.asarray(agg.first_seen_at, dtype=np.float64)
    return {
        "bought": bought,
        "recency_days": np.where(
            bought, np.maximum(agg.now - last_buy, 0.0) / SECONDS_PER_DAY, np.nan
        ),
        "frequency": np.where(bought, orders, 0.0),
        "monetary": monetary,
        "avg_order_value": np.where(bought, monetary / safe_orders, 0.0),
        "tenure_days": np.maximum(agg.now - np.where(np.isfinite(first), first, agg.now), 0.0)
        / SECONDS_PER_DAY,
        "distinct_items": np.asarray(agg.distinct_items, dtype=np.float64),
        "lines_per_order": np.where(bought, purchases / safe_orders, 0.0),
        "line_value": np.where(bought, monetary / np.maximum(purchases, 1.0), 0.0),
        "browse_share": views / total,
        "cart_share": carts / total,
    }


def feature_matrix(
    base: dict[str, NDArray[Any]],
    rows: NDArray[np.int64],
    shares: sp.csr_matrix | NDArray[np.float64],
    svd_components: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Untransformed-then-logged feature matrix of ``rows``, shape (len(rows), n_features).

    ``base`` comes from :func:`base_features`, ``shares`` (one row per entry of ``rows``) are
    the category shares and ``svd_components`` of shape (n_components, n_categories) the
    fitted category components (none when n_components is 0).
    """
    raw = np.column_stack(
        [
            np.log1p(np.maximum(base[name][rows], 0.0)) if name in _SKEWED else base[name][rows]
            for name in FEATURES
        ]
    )
    if svd_components.shape[0]:
        cat = np.asarray(shares @ svd_components.T)
        raw = np.hstack([raw, cat])
    return raw


def aligned_category_counts(
    agg: CustomerAggregates, rows: NDArray[np.int64], categories: list[str]
) -> NDArray[np.float64] | sp.csr_matrix:
    """Category counts of ``rows`` in the fitted column order ``categories``.

    Columns of ``agg`` that the fit did not see are dropped.
    """
    counts = agg.category_counts
    if len(rows) <= 64:
        # Dense rows straight from the CSR arrays: scipy's row slicing alone costs ~100 us,
        # a tenth of the live budget.
        if not (sp.issparse(counts) and counts.format == "csr"):
            counts = sp.csr_matrix(counts)
        dense = np.zeros((len(rows), counts.shape[1]))
        for out_row, r in enumerate(rows.tolist()):
            lo, hi = counts.indptr[r], counts.indptr[r + 1]
            np.add.at(dense[out_row], counts.indices[lo:hi], counts.data[lo:hi])
        if list(agg.categories) == categories:
            return dense
        out = np.zeros((len(rows), len(categories)))
        pos = {c: j for j, c in enumerate(categories)}
        for j, c in enumerate(agg.categories):
            if c in pos:
                out[:, pos[c]] = dense[:, j]
        return out
    sub = sp.csr_matrix(counts, dtype=np.float64)[rows]
    if list(agg.categories) == categories:
        return sub
    pos = {c: j for j, c in enumerate(categories)}
    src = [j for j, c in enumerate(agg.categories) if c in pos]
    dst = [pos[agg.categories[j]] for j in src]
    mapper = sp.csr_matrix(
        (np.ones(len(src)), (src, dst)), shape=(len(agg.categories), len(categories))
    )
    return sp.csr_matrix(sub @ mapper)


def category_components(
    shares: sp.csr_matrix, n_components: int, n_categories: int, random_state: int
) -> NDArray[np.float64]:
    """TruncatedSVD components of the category ``shares``, shape (n_components, n_categories).

    None (shape (0, n_categories)) when ``n_components`` is below 1.
    """
    if n_components < 1:
        return np.zeros((0, n_categories))
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=n_components, random_state=random_state)
    svd.fit(shares)
    return svd.components_.astype(np.float64)
