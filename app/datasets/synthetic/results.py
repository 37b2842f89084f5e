"""What the generator returns: the shop, its users and items, and its events as columns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
VIEW, CLICK, CART, PURCHASE = range(4)

# The array fields of EventColumns, in order.
EVENT_KEYS = (
    "user_index",
    "item_index",
    "type_code",
    "quantity",
    "value",
    "occurred_at",
    "order_index",
)


@dataclass(frozen=True)
class SyntheticUser:
    """One customer: external id, behavioural group and profile attributes."""

    user_id: str
    group: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class SyntheticItem:
    """One catalog item with text, categories (primary first) and price."""

    item_id: str
    title: str
    description: str
    categories: list[str]
    price: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class EventColumns:
    """All events as parallel arrays, sorted by time.

    The compact columns (indices and codes) are stored; the string columns ``event_id``,
    ``user_id``, ``item_id``, ``type`` and ``order_id`` are built on first access and cached,
    so a consumer that only needs indices never pays for millions of strings.

    Attributes
    ----------
    user_index, item_index : ndarray of shape (n_events,), int32
        Positions in ``SyntheticShop.users`` / ``SyntheticShop.items``.
    type_code : ndarray of shape (n_events,), int8
        Index into ``EVENT_TYPES``.
    quantity : ndarray of shape (n_events,), int32
        Units bought for purchases, 0 otherwise.
    value : ndarray of shape (n_events,), float64
        ``price * quantity`` for purchases, NaN otherwise.
    occurred_at : ndarray of shape (n_events,), float64
        Unix epoch seconds, non-decreasing.
    order_index : ndarray of shape (n_events,), int64
        Order number for purchases (lines of one order share it), -1 otherwise.
    """

    user_index: NDArray[np.int32]
    item_index: NDArray[np.int32]
    type_code: NDArray[np.int8]
    quantity: NDArray[np.int32]
    value: NDArray[np.float64]
    occurred_at: NDArray[np.float64]
    order_index: NDArray[np.int64]
    user_id_table: NDArray[np.str_] = field(repr=False)
    item_id_table: NDArray[np.str_] = field(repr=False)
    seed: int = 0

    def __len__(self) -> int:
        return int(self.type_code.shape[0])

    @cached_property
    def event_id(self) -> NDArray[np.str_]:
        """Unique, deterministic client event ids ``e<seed>-<nnnnnnnnn>``, shape (n_events,)."""
        width = max(9, len(str(len(self))))
        return format_ids(f"e{self.seed}-", np.arange(len(self)), width)

    @cached_property
    def user_id(self) -> NDArray[np.str_]:
        """External user id of every event, shape (n_events,)."""
        return self.user_id_table[self.user_index]

    @cached_property
    def item_id(self) -> NDArray[np.str_]:
        """External item id of every event, shape (n_events,)."""
        return self.item_id_table[self.item_index]

    @cached_property
    def type(self) -> NDArray[np.str_]:
        """Event type name of every event, shape (n_events,)."""
        return np.asarray(EVENT_TYPES)[self.type_code]

    @cached_property
    def order_id(self) -> NDArray[np.str_]:
        """Order id ``o<seed>-<nnnnnnn>`` for purchases, ``""`` otherwise, shape (n_events,)."""
        is_order = self.order_index >= 0
        n_orders = int(self.order_index.max()) + 1 if is_order.any() else 0
        width = max(7, len(str(n_orders)))
        formatted = format_ids(f"o{self.seed}-", self.order_index[is_order], width)
        out = np.full(len(self), "", dtype=formatted.dtype if formatted.size else "U1")
        out[is_order] = formatted
        return out

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield events ``start:stop`` as JSON-able dicts in the ``POST /events`` shape."""
        stop = len(self) if stop is None else min(stop, len(self))
        cols = (
            self.event_id,
            self.user_id,
            self.item_id,
            self.type,
            self.value,
            self.occurred_at,
            self.order_id,
            self.quantity,
        )
        for i in range(start, stop):
            value = float(cols[4][i])
            row: dict[str, Any] = {
                "event_id": str(cols[0][i]),
                "user_id": str(cols[1][i]),
                "item_id": str(cols[2][i]),
                "type": str(cols[3][i]),
                "value": None if np.isnan(value) else value,
                "occurred_at": float(cols[5][i]),
            }
            if cols[6][i]:
                row["order_id"] = str(cols[6][i])
                row["quantity"] = int(cols[7][i])
            yield row


@dataclass(frozen=True, eq=False)
class SyntheticShop:
    """A generated shop: users, items, events and the ground-truth behavioural groups.

    Attributes
    ----------
    users : list of SyntheticUser, length n_users
    items : list of SyntheticItem, length n_items
    events : EventColumns with n_events rows, sorted by time
    groups : ndarray of shape (n_users,), int8
        Index into ``group_names`` of every user's behavioural group.
    group_names : tuple of str
    categories : tuple of str
        The category names in use (primary category order).
    item_category : ndarray of shape (n_items,), int16
        Index into ``categories`` of every item's primary category.
    start, end : datetime
        The simulated window; ``end`` is the natural "now" for recency.
    """

    users: list[SyntheticUser]
    items: list[SyntheticItem]
    events: EventColumns
    groups: NDArray[np.int8]
    group_names: tuple[str, ...]
    categories: tuple[str, ...]
    item_category: NDArray[np.int16]
    start: datetime
    end: datetime

    @property
    def now(self) -> float:
        """End of the simulated window as epoch seconds."""
        return self.end.timestamp()

    @property
    def user_ids(self) -> NDArray[np.str_]:
        """External user ids in ``users`` order, shape (n_users,)."""
        return self.events.user_id_table

    @property
    def item_ids(self) -> NDArray[np.str_]:
        """External item ids in ``items`` order, shape (n_items,)."""
        return self.events.item_id_table


def format_ids(prefix: str, numbers: NDArray[np.int64], width: int) -> NDArray[np.str_]:
    """Zero-padded ids ``prefix + number`` without a Python loop, shape (n,)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    pre = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    n, p = numbers.shape[0], pre.shape[0]
    buf = np.empty((n, p + width), dtype=np.uint8)
    buf[:, :p] = pre
    rest = numbers.copy()
    for j in range(width - 1, -1, -1):
        buf[:, p + j] = rest % 10 + 48
        rest //= 10
    return buf.view(f"S{p + width}").ravel().astype(f"U{p + width}")
