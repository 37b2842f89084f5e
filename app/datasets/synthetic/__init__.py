"""A realistic synthetic shop for the demo, the scaling benchmarks and ground-truth tests."""

from app.datasets.synthetic.shop import (
    EVENT_TYPES,
    GROUPS,
    EventColumns,
    SyntheticItem,
    SyntheticShop,
    SyntheticUser,
    generate_shop,
)

__all__ = [
    "EVENT_TYPES",
    "GROUPS",
    "EventColumns",
    "SyntheticItem",
    "SyntheticShop",
    "SyntheticUser",
    "generate_shop",
]
