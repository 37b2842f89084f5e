"""The events: purchase funnels before every order line, browsing funnels for the rest.

Every purchased line is a funnel ``view -> [click] -> add_to_cart -> purchase`` shortly before
the order time; the rest of the budget is browsing funnels ``view -> [click -> [add_to_cart]]``
(abandoned carts). ``n_events`` is met exactly: purchases take at most ``_MAX_PURCHASE_SHARE``
of it (order counts and basket sizes shrink when the budget per user is small), browsing the
rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.datasets.synthetic.clock import DAY, sample_times
from app.datasets.synthetic.customers import GROUPS, group_param
from app.datasets.synthetic.results import CART, CLICK, EVENT_KEYS, PURCHASE, VIEW

_MAX_PURCHASE_SHARE = 0.4


def _pick_categories(
    rng: np.random.Generator, users: dict[str, Any], user: NDArray[np.int64]
) -> NDArray[np.int64]:
    """A category per event: mostly one of the user's favourites, sometimes anything."""
    favs = users["favs"]
    n_fav = favs.shape[1]
    fav_p = np.array([0.55, 0.3, 0.15][:n_fav])
    slot = rng.choice(n_fav, user.shape[0], p=fav_p / fav_p.sum())
    cat = favs[user, slot]
    explore = rng.random(len(user)) < 0.15
    cat[explore] = rng.choice(users["global_p"].shape[0], int(explore.sum()), p=users["global_p"])
    return cat


def _purchase_scale(users: dict[str, Any], budget: float) -> float:
    """Largest factor in [0, 1] for extra orders and extra lines keeping purchases in budget."""
    per_line = 3.6  # view, cart, purchase, and a click 60% of the time
    min_o = group_param(users, "min_orders")
    extra_o = group_param(users, "extra_orders")
    lines = np.maximum(group_param(users, "lines") - 1.0, 0.0)

    def expected(s: float) -> float:
        return float(np.sum((min_o + s * extra_o) * (1.0 + s * lines) * (min_o > 0))) * per_line

    if expected(1.0) <= budget:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(mid) <= budget else (lo, mid)
    return lo


def make_purchases(
    rng: np.random.Generator,
    users: dict[str, Any],
    catalog: dict[str, Any],
    n_events: int,
    span: float,
    t0: float,
) -> dict[str, Any]:
    """Order lines and their funnels as event columns (unsorted) plus ``n_events``."""
    s = _purchase_scale(users, _MAX_PURCHASE_SHARE * n_events)
    order_user, order_t = _draw_orders(rng, users, s, span, t0)
    line_order, line_user = _draw_lines(rng, users, order_user, s, n_events)
    n = len(line_order)

    level = group_param(users, "price_level").astype(np.int64)[line_user]
    item = catalog["sampler"].sample(rng, _pick_categories(rng, users, line_user), level)
    qty = 1 + rng.poisson(np.maximum(group_param(users, "quantity")[line_user] - 1.0, 0.0))
    t_buy = order_t[line_order] + np.arange(n) % 7  # lines of one order a few seconds apart
    t_cart = t_buy - rng.uniform(60, 1800, n)
    t_view = t_cart - rng.uniform(30, 1800, n)
    clicked = rng.random(n) < 0.6
    t_click = t_view + (t_cart - t_view) * rng.random(n)
    order_idx = _dense_order_index(line_order, order_t)

    stages = [
        (VIEW, t_view, None),
        (CLICK, t_click, clicked),
        (CART, t_cart, None),
        (PURCHASE, t_buy, None),
    ]
    out = _funnel_columns(stages, line_user, item, qty, order_idx, catalog["price"], span)
    out["n_events"] = out["type_code"].shape[0]
    return out


def _draw_orders(
    rng: np.random.Generator, users: dict[str, Any], s: float, span: float, t0: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Every order's customer and time (seconds from start), shape (n_orders,)."""
    n_users = users["group"].shape[0]
    min_o = group_param(users, "min_orders").astype(np.int64)
    n_orders = min_o + rng.poisson(s * group_param(users, "extra_orders"))
    n_orders[min_o == 0] = 0
    order_user = np.repeat(np.arange(n_users), n_orders)
    first = users["first"][order_user] * span
    until = users["until"][order_user] * span
    span_days = np.array([g.order_span_days or np.nan for g in GROUPS])[users["group"]]
    within = span_days[order_user]
    until = np.where(np.isnan(within), until, first + np.nan_to_num(within) * DAY)
    return order_user, sample_times(rng, first, until, t0, span)


def _draw_lines(
    rng: np.random.Generator,
    users: dict[str, Any],
    order_user: NDArray[np.int64],
    s: float,
    n_events: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every order line's order and customer, shape (n_lines,), at most ``n_events // 4``."""
    lines_mean = group_param(users, "lines")[order_user]
    n_lines = 1 + rng.poisson(s * np.maximum(lines_mean - 1.0, 0.0))
    line_order = np.repeat(np.arange(order_user.shape[0]), n_lines)
    line_user = order_user[line_order]
    # Hard cap for tiny budgets, where min_orders alone overflow: drop lines at random.
    max_lines = n_events // 4
    if line_order.shape[0] > max_lines:
        keep = np.sort(rng.choice(line_order.shape[0], max_lines, replace=False))
        line_order, line_user = line_order[keep], line_user[keep]
    return line_order, line_user


def _dense_order_index(
    line_order: NDArray[np.int64], order_t: NDArray[np.float64]
) -> NDArray[np.int64]:
    """Renumber the kept orders densely in time order so order ids read naturally."""
    kept_orders, order_idx = np.unique(line_order, return_inverse=True)
    rank = np.empty(kept_orders.shape[0], dtype=np.int64)
    rank[np.argsort(order_t[kept_orders], kind="stable")] = np.arange(kept_orders.shape[0])
    return rank[order_idx]


def _funnel_columns(
    stages: list[tuple[int, NDArray[np.float64], NDArray[np.bool_] | None]],
    line_user: NDArray[np.int64],
    item: NDArray[np.int64],
    qty: NDArray[np.int64],
    order_idx: NDArray[np.int64],
    price: NDArray[np.float64],
    span: float,
) -> dict[str, Any]:
    """Event columns of the purchase funnels: one block per stage, lines kept by its mask."""
    n = line_user.shape[0]
    parts: dict[str, list[NDArray[Any]]] = {k: [] for k in EVENT_KEYS}
    for code, t, mask in stages:
        sel = slice(None) if mask is None else mask
        m = n if mask is None else int(mask.sum())
        parts["user_index"].append(line_user[sel].astype(np.int32))
        parts["item_index"].append(item[sel].astype(np.int32))
        parts["type_code"].append(np.full(m, code, np.int8))
        is_buy = code == PURCHASE
        parts["quantity"].append(qty.astype(np.int32) if is_buy else np.zeros(m, np.int32))
        parts["value"].append(price[item] * qty if is_buy else np.full(m, np.nan))
        parts["occurred_at"].append(np.clip(t[sel], 0.0, span - 1.0))
        parts["order_index"].append(order_idx if is_buy else np.full(m, -1, np.int64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def make_browsing(
    rng: np.random.Generator,
    users: dict[str, Any],
    catalog: dict[str, Any],
    n_events: int,
    span: float,
    t0: float,
) -> dict[str, Any]:
    """``n_events`` browsing events (funnels without a purchase) as columns, unsorted."""
    n_users = users["group"].shape[0]
    # Funnel chains view -> click (45%) -> cart (25% of clicks): lengths 1, 2 or 3.
    expected_len = 1 + 0.45 + 0.45 * 0.25
    n_chains_guess = int(n_events / expected_len) + 16
    length = 1 + (rng.random(n_chains_guess) < 0.45)
    length += (length == 2) & (rng.random(n_chains_guess) < 0.25)
    while length.sum() < n_events:
        length = np.concatenate([length, np.ones(n_events - int(length.sum()), np.int64)])
    cum = np.cumsum(length)
    n_chains = int(np.searchsorted(cum, n_events, side="left")) + 1 if n_events else 0
    length = length[:n_chains].copy()
    if n_chains:
        length[-1] -= int(cum[n_chains - 1] - n_events)  # truncate the last funnel

    # Every user gets one chain when the budget allows; the rest by browsing intensity.
    weight = group_param(users, "browse") * rng.lognormal(0.0, 0.6, n_users)
    weight *= np.sqrt(np.maximum(users["until"] - users["first"], 0.02))
    if n_chains >= n_users:
        per_user = 1 + rng.multinomial(n_chains - n_users, weight / weight.sum())
    else:
        per_user = rng.multinomial(n_chains, weight / weight.sum())
    chain_user = rng.permutation(np.repeat(np.arange(n_users), per_user))

    level = group_param(users, "price_level").astype(np.int64)[chain_user]
    item = catalog["sampler"].sample(rng, _pick_categories(rng, users, chain_user), level)
    # Browsing lasts a little past the last order (one-time buyers look around for a month).
    first = users["first"][chain_user] * span
    until = np.maximum(users["until"][chain_user] * span, first + 30 * DAY)
    t_view = sample_times(rng, first, until, t0, span)
    t_click = t_view + rng.uniform(5, 300, n_chains)
    t_cart = t_click + rng.uniform(30, 900, n_chains)

    parts: dict[str, list[NDArray[Any]]] = {k: [] for k in EVENT_KEYS}
    for code, t, min_len in ((VIEW, t_view, 1), (CLICK, t_click, 2), (CART, t_cart, 3)):
        sel = length >= min_len
        m = int(sel.sum())
        parts["user_index"].append(chain_user[sel].astype(np.int32))
        parts["item_index"].append(item[sel].astype(np.int32))
        parts["type_code"].append(np.full(m, code, np.int8))
        parts["quantity"].append(np.zeros(m, np.int32))
        parts["value"].append(np.full(m, np.nan))
        parts["occurred_at"].append(np.clip(t[sel], 0.0, span - 1.0))
        parts["order_index"].append(np.full(m, -1, np.int64))
    return {k: np.concatenate(v) for k, v in parts.items()}
