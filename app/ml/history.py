"""A user's history as the service reads it, and the same histories built from an event log.

The service reads a user's events newest first (``ORDER BY occurred_at DESC, id DESC``), at most
the model's history budget, plus every item the user ever had when the budget cut the read
short. Evaluation and tuning build each user's :class:`UserHistory` from the training events in
the same order, so what they score is what ``GET /recommend`` scores.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.ml.interactions import EventLog
from app.ml.vocabulary import Vocabulary


@dataclass(frozen=True)
class UserHistory:
    """A user's events newest first, and every item they ever had.

    Attributes
    ----------
    items, types : item ids and event types, one per event
    values : rating, quantity or amount per event (None or NaN when absent)
    times : epoch seconds per event
    seen : every item id of the user's whole history; None when the events are the whole
        history (the read was not cut by the budget)
    """

    items: Sequence[str]
    types: Sequence[str]
    values: Sequence[float | None]
    times: Sequence[float]
    seen: Collection[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.items)
        if not len(self.types) == len(self.values) == len(self.times) == n:
            raise ValueError("UserHistory needs one type, value and time per item")

    @classmethod
    def empty(cls) -> UserHistory:
        """A user with no events."""
        return cls([], [], [], [])

    def seen_items(self) -> set[str]:
        """Every item the user ever had."""
        return set(self.items) if self.seen is None else set(self.seen)


def histories_of(events: EventLog, users: Vocabulary, rows: NDArray[np.int64]) -> list[UserHistory]:
    """Each user's whole history in ``events``, newest first, as the service would read it.

    Events at the same time are ordered by their position in the log, later first (the
    store's ``id DESC``). Unknown users get an empty history.

    Parameters
    ----------
    events : EventLog, in arrival order
    users : Vocabulary of the user rows
    rows : ndarray of int64, the user rows wanted

    Returns
    -------
    list of UserHistory, one per entry of ``rows``
    """
    u = users.indices(events.user_ids.tolist())
    wanted = np.zeros(len(users) + 1, dtype=bool)
    wanted[np.asarray(rows, dtype=np.int64)] = True
    picked = np.flatnonzero(wanted[u] & (u >= 0))
    position = np.arange(len(events))[picked]
    times = np.asarray(events.occurred_at, dtype=np.float64)[picked]
    order = picked[np.lexsort((-position, -times, u[picked]))]
    by_user = u[order]
    starts = np.searchsorted(by_user, rows, side="left")
    ends = np.searchsorted(by_user, rows, side="right")
    item_ids, types = events.item_ids[order], events.types[order]
    values, at = events.values[order], np.asarray(events.occurred_at, np.float64)[order]
    return [
        UserHistory(
            item_ids[lo:hi].tolist(),
            types[lo:hi].tolist(),
            values[lo:hi].tolist(),
            at[lo:hi].tolist(),
        )
        for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
