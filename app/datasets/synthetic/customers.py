"""The customers: six behavioural groups, each customer's favourite categories and profile.

The groups (see ``GROUPS``) are loyal big spenders, bargain hunters, one-time buyers, lapsed
customers, new customers and window shoppers. They differ in when they are active (first seen,
last active), how often they order, basket size, quantity per line, price tier and category
taste. Window shoppers never purchase. Each customer has three favourite categories (drawn from
the group's taste), which gives collaborative filtering signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

_COUNTRIES: tuple[str, ...] = (
    "United Kingdom",
    "Germany",
    "France",
    "Netherlands",
    "Spain",
    "Ireland",
    "Italy",
    "Belgium",
    "Sweden",
    "Poland",
)
_COUNTRY_P = np.array([0.46, 0.12, 0.1, 0.06, 0.06, 0.05, 0.05, 0.04, 0.03, 0.03])
_CHANNELS: tuple[str, ...] = ("organic", "paid_search", "social", "email", "referral")
_DEVICES: tuple[str, ...] = ("mobile", "desktop", "app")


@dataclass(frozen=True)
class Group:
    """A behavioural group: its share of customers, activity window, orders and taste."""

    name: str
    share: float
    first_seen: tuple[float, float]  # fraction of the window
    active_until: tuple[float, float]  # fraction of the window; >1 clips to the end
    min_orders: int
    extra_orders: float  # Poisson mean on top of min_orders (scaled down on small budgets)
    lines: float  # mean distinct lines per order
    quantity: float  # mean units per line
    price_level: int  # 0 budget, 1 standard, 2 premium tastes
    browse: float  # relative browsing intensity
    taste: tuple[str, ...]  # categories this group over-indexes on
    order_span_days: float | None = None  # orders happen within this many days of first seen


# fmt: off
GROUPS: tuple[Group, ...] = (
    Group("loyal_big_spenders", 0.10, (0.0, 0.2), (1.0, 1.0), 10, 10.0, 3.0, 1.3, 2, 3.0,
           ("Electronics", "Jewellery & Watches", "Women's Fashion", "Men's Fashion",
            "Bags & Travel")),
    Group("bargain_hunters", 0.17, (0.1, 0.5), (1.0, 1.0), 4, 3.0, 4.0, 1.5, 0, 2.0,
           ("Party & Seasonal", "Stationery & Office", "Kitchen & Dining", "Pet Supplies",
            "Beauty & Personal Care")),
    Group("one_time_buyers", 0.20, (0.05, 0.6), (0.0, 0.0), 1, 0.0, 1.6, 1.2, 1, 0.5,
           ("Books", "Toys & Games", "Home Decor", "Party & Seasonal"), order_span_days=3.0),
    Group("lapsed_customers", 0.13, (0.0, 0.15), (0.3, 0.45), 4, 2.0, 2.5, 1.3, 1, 1.0,
           ("Home Decor", "Garden & Outdoor", "Lighting", "Kitchen & Dining")),
    Group("new_customers", 0.13, (0.9, 0.99), (1.0, 1.0), 1, 0.4, 2.0, 1.2, 1, 1.5,
           ("Beauty & Personal Care", "Sports & Fitness", "Women's Fashion", "Books")),
    Group("window_shoppers", 0.27, (0.0, 0.9), (1.0, 1.0), 0, 0.0, 0.0, 0.0, 1, 2.5,
           ("Electronics", "Home Decor", "Lighting", "Bags & Travel")),
)
"""The behavioural groups, in label-index order (``SyntheticShop.groups`` indexes them)."""
# fmt: on


def make_users(
    rng: np.random.Generator, n_users: int, cat_names: tuple[str, ...]
) -> dict[str, Any]:
    """Draw each customer's group, favourite categories, active window and profile."""
    shares = np.array([g.share for g in GROUPS])
    group = rng.choice(len(GROUPS), n_users, p=shares / shares.sum())
    n_cat = len(cat_names)
    # Category taste: a global base plus a strong boost on the group's categories.
    base = np.linspace(1.5, 0.7, n_cat)
    taste = np.tile(base, (len(GROUPS), 1))
    for gi, g in enumerate(GROUPS):
        for name in g.taste:
            if name in cat_names:
                taste[gi, cat_names.index(name)] *= 5.0
    logp = np.log(taste / taste.sum(axis=1, keepdims=True))[group]
    n_fav = min(3, n_cat)
    # Gumbel top-k: three distinct favourite categories per user, in one vectorised draw.
    favs = np.argsort(-(logp + rng.gumbel(size=logp.shape)), axis=1)[:, :n_fav]

    def span(attr: str) -> NDArray[np.float64]:
        lo = np.array([getattr(g, attr)[0] for g in GROUPS])[group]
        hi = np.array([getattr(g, attr)[1] for g in GROUPS])[group]
        return lo + (hi - lo) * rng.random(n_users)

    first = span("first_seen")
    until = np.maximum(span("active_until"), first)
    country = rng.choice(len(_COUNTRIES), n_users, p=_COUNTRY_P / _COUNTRY_P.sum())
    channel = rng.integers(0, len(_CHANNELS), n_users)
    device = rng.integers(0, len(_DEVICES), n_users)
    attributes = [
        {"country": _COUNTRIES[c], "signup_channel": _CHANNELS[ch], "device": _DEVICES[d]}
        for c, ch, d in zip(country.tolist(), channel.tolist(), device.tolist(), strict=True)
    ]
    return {
        "group": group,
        "favs": favs,
        "first": first,
        "until": until,
        "attributes": attributes,
        "global_p": base / base.sum(),
    }


def group_param(users: dict[str, Any], attr: str) -> NDArray[np.float64]:
    """A ``Group`` field for every customer, shape (n_users,)."""
    return np.array([float(getattr(g, attr)) for g in GROUPS])[users["group"]]
