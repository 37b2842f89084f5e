"""A realistic synthetic shop for the demo, the scaling benchmarks and ground-truth tests."""

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
