"""A realistic synthetic shop: users in behavioural groups, a catalog with text, event funnels.

The generator feeds ``tastemaker demo``, the scaling benchmarks and the tests that need a
ground truth (segmentation must recover the behavioural groups, collaborative filtering must
find the category tastes, content similarity must find the category vocabularies).

What it models
--------------
* **Catalog.** 16 categories (fewer when ``n_items < 16``), each with a vocabulary of nouns,
  adjectives, materials, features and uses; titles and descriptions are built from it, so
  TF-IDF similarity is high inside a category and low across. Prices are log-normal around
  the category's base price, in three tiers (budget, standard, premium). Popularity is Zipf-like
  (weight ``1 / rank``) over a random ranking of all items.
* **Customers.** Six behavioural groups (see ``GROUPS``): loyal big spenders, bargain hunters,
  one-time buyers, lapsed customers, new customers and window shoppers. They differ in when
  they are active (first seen, last active), how often they order, basket size, quantity per
  line, price tier and category taste. Window shoppers never purchase. Each customer has three
  favourite categories (drawn from the group's taste), which gives collaborative filtering
  signal.
* **Events.** Every purchased line is a funnel ``view -> [click] -> add_to_cart -> purchase``
  shortly before the order time; the rest of the budget is browsing funnels
  ``view -> [click -> [add_to_cart]]`` (abandoned carts). Timestamps follow a weekly and a daily
  cycle. ``n_events`` is met exactly: purchases take at most 40% of it (order counts and
  basket sizes shrink when the budget per user is small), browsing the rest.

Everything is vectorised numpy: 4M events, 100k items and 200k users take a few seconds.
The output depends only on the arguments (``start`` defaults to a fixed date, not today).

Modules
-------
* ``shop``: ``generate_shop``, the entry point; sorts the events and builds the records.
* ``vocabulary``: the categories' words and base prices, brands, price tiers.
* ``catalogue``: the items (category, tier, price, popularity, text) and ``ItemSampler``.
* ``customers``: the behavioural ``GROUPS`` and each customer's favourites and profile.
* ``events``: the purchase and browsing funnels within the event budget.
* ``clock``: event times on the weekly and daily cycle.
* ``results``: ``SyntheticShop``, ``SyntheticUser``, ``SyntheticItem``, ``EventColumns``.
"""

from app.datasets.synthetic.customers import GROUPS
from app.datasets.synthetic.results import (
    EVENT_TYPES,
    EventColumns,
    SyntheticItem,
    SyntheticShop,
    SyntheticUser,
)
from app.datasets.synthetic.shop import generate_shop

__all__ = [
    "EVENT_TYPES",
    "GROUPS",
    "EventColumns",
    "SyntheticItem",
    "SyntheticShop",
    "SyntheticUser",
    "generate_shop",
]
