"""The catalogue: items with a category, a price tier, a price, a popularity and text.

Category sizes are uneven but every category gets an item. Prices are log-normal around the
category's base price, in three tiers (budget, standard, premium). Popularity is Zipf-like
(weight ``1 / rank``) over a random ranking of all items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.datasets.synthetic.vocabulary import BRANDS, TIER_PRICE, TIERS, Category


def make_catalog(
    rng: np.random.Generator, n_items: int, cats: tuple[Category, ...]
) -> dict[str, Any]:
    """Draw every item's category, tier, price, popularity and text, and a sampler over them."""
    category, tier, price, popularity = _draw_items(rng, n_items, cats)
    text = _describe_items(rng, category, tier, cats)
    return {
        "category": category,
        "tier": tier,
        "price": price,
        "popularity": popularity,
        **text,
        "sampler": ItemSampler(category, tier, popularity, len(cats)),
    }


def _draw_items(
    rng: np.random.Generator, n_items: int, cats: tuple[Category, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Each item's primary category, price tier, price and popularity weight, shape (n_items,)."""
    n_cat = len(cats)
    # Uneven category sizes, but every category gets at least one item.
    cat_w = rng.dirichlet(np.full(n_cat, 4.0))
    category = np.concatenate([np.arange(n_cat), rng.choice(n_cat, n_items - n_cat, p=cat_w)])
    rng.shuffle(category)
    tier = rng.choice(3, n_items, p=[0.35, 0.45, 0.2])
    base = np.array([c.base_price for c in cats])[category]
    price = base * TIER_PRICE[tier] * rng.lognormal(0.0, 0.3, n_items)
    price = np.where(price >= 5, np.ceil(price) - 0.01, np.round(np.maximum(price, 0.5), 1))
    # Zipf-like popularity over a random global ranking.
    rank = rng.permutation(n_items)
    popularity = 1.0 / (rank + 1.0)
    # The dtypes are already these; numpy's stubs lose them through concatenate and where.
    return (
        category.astype(np.int64, copy=False),
        tier,
        price.astype(np.float64, copy=False),
        popularity.astype(np.float64, copy=False),
    )


def _describe_items(
    rng: np.random.Generator,
    category: NDArray[np.int64],
    tier: NDArray[np.int64],
    cats: tuple[Category, ...],
) -> dict[str, list[Any]]:
    """Titles, descriptions, category lists (primary first) and attributes of the items."""
    n_items, n_cat = len(category), len(cats)
    picks = rng.integers(0, 1 << 30, size=(n_items, 8))
    secondary = rng.random(n_items) < 0.15
    second_cat = (category + 1 + rng.integers(0, max(n_cat - 1, 1), n_items)) % n_cat
    brand = rng.integers(0, len(BRANDS), n_items)
    titles: list[str] = []
    descriptions: list[str] = []
    categories: list[list[str]] = []
    attributes: list[dict[str, Any]] = []
    for i, (c, p) in enumerate(zip(category.tolist(), picks.tolist(), strict=True)):
        cat = cats[c]
        b = BRANDS[brand[i]]
        title, desc = _item_text(cat, p, b)
        titles.append(title)
        descriptions.append(desc)
        cl = [cat.name]
        if secondary[i] and n_cat > 1:
            cl.append(cats[second_cat[i]].name)
        categories.append(cl)
        attributes.append({"brand": b, "price_tier": TIERS[tier[i]]})
    return {
        "title": titles,
        "description": descriptions,
        "categories": categories,
        "attributes": attributes,
    }


def _item_text(cat: Category, p: list[int], brand: str) -> tuple[str, str]:
    """An item's title and description from its category's words, chosen by the draws ``p``."""
    noun = cat.nouns[p[0] % len(cat.nouns)]
    adj = cat.adjectives[p[1] % len(cat.adjectives)]
    adj2 = cat.adjectives[(p[1] + 1 + p[6] % (len(cat.adjectives) - 1)) % len(cat.adjectives)]
    material = cat.materials[p[2] % len(cat.materials)]
    if material.split()[-1] in noun:  # no "linen linen trousers"
        material = cat.materials[(p[2] + 1) % len(cat.materials)]
    feature = cat.features[p[3] % len(cat.features)]
    use = cat.uses[p[4] % len(cat.uses)]
    title = f"{brand} {adj.capitalize()} {material.title()} {noun.title()}"
    template = p[5] % 3
    if template == 0:
        desc = f"A {adj} {noun} in {material}, {feature}. Ideal {use}."
    elif template == 1:
        desc = f"This {adj2} {material} {noun} is {adj} and {feature}, made {use}."
    else:
        desc = f"{adj.capitalize()} {noun} crafted from {material} {feature}; a {adj2} pick {use}."
    return title, desc


class ItemSampler:
    """Draw items from a (category, price level) bucket by popularity x tier affinity.

    All buckets live in one sorted key array ``bucket + cumulative share``, so one
    ``searchsorted`` samples millions of (bucket, uniform) pairs at once.
    """

    # Rows: the customer's price level; columns: item tier.
    _AFFINITY = np.array([[0.75, 0.22, 0.03], [0.3, 0.5, 0.2], [0.06, 0.34, 0.6]])

    def __init__(
        self,
        category: NDArray[np.int64],
        tier: NDArray[np.int64],
        popularity: NDArray[np.float64],
        n_cat: int,
    ) -> None:
        n = category.shape[0]
        self.n_cat = n_cat
        by_cat = np.argsort(category, kind="stable")
        cat_sorted = category[by_cat]
        keys, items = [], []
        for level in range(3):
            w = popularity[by_cat] * self._AFFINITY[level, tier[by_cat]]
            cum = np.cumsum(w)
            starts = np.searchsorted(cat_sorted, np.arange(n_cat))
            before = np.concatenate([[0.0], cum])[starts]
            totals = np.add.reduceat(w, starts)
            frac = (cum - before[cat_sorted]) / totals[cat_sorted]
            ends = np.append(starts[1:], n) - 1
            frac[ends] = 1.0
            keys.append(level * n_cat + cat_sorted + frac)
            items.append(by_cat)
        self.keys = np.concatenate(keys)
        self.items = np.concatenate(items)

    def sample(
        self, rng: np.random.Generator, category: NDArray[np.int64], level: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        """Return one item per (category, price level) pair, shape (n,)."""
        u = rng.random(category.shape[0])
        pos = np.searchsorted(self.keys, level * self.n_cat + category + u, side="right")
        return self.items[np.minimum(pos, self.keys.shape[0] - 1)]
