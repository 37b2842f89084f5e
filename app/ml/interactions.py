"""Events -> weighted sparse user x item matrix (event-type weights, repeats, time decay)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.vocabulary import Vocabulary
from app.ml.weights import DEFAULT_EVENT_WEIGHTS, RATING_TYPE

#: How repeated events of a user and an item add up.
Aggregation = Literal["log1p", "sum", "binary"]
AGGREGATIONS: tuple[Aggregation, ...] = get_args(Aggregation)
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, eq=False)
class EventLog:
    """Events as parallel arrays, one row per event.

    Attributes
    ----------
    user_ids, item_ids : ndarray of shape (n_events,), object (str)
    types : ndarray of shape (n_events,), object (str)
        ``"view"``, ``"click"``, ``"add_to_cart"``, ``"purchase"``, ``"rating"``, ...
    values : ndarray of shape (n_events,), float64
        Rating, quantity or amount; NaN when absent.
    occurred_at : ndarray of shape (n_events,), float64
        Unix epoch seconds.
    order_ids : ndarray of shape (n_events,), object (str)
        The order (basket, invoice) of each event; ``""`` when it has none, which is the
        default for every event.
    """

    user_ids: NDArray[np.object_]
    item_ids: NDArray[np.object_]
    types: NDArray[np.object_]
    values: NDArray[np.float64]
    occurred_at: NDArray[np.float64]
    order_ids: NDArray[np.object_] = field(default_factory=lambda: np.empty(0, dtype=object))

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if len(self.order_ids) == 0 and n:  # no orders given: "" (no order) for every event
            object.__setattr__(self, "order_ids", _object_array([""] * n))
        for name in ("item_ids", "types", "values", "occurred_at", "order_ids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"EventLog.{name} has {len(getattr(self, name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_lists(
        cls,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        types: Sequence[str] | str = "purchase",
        values: Sequence[float] | None = None,
        occurred_at: Sequence[float] | None = None,
        order_ids: Sequence[str] | None = None,
    ) -> EventLog:
        """Build an event log from plain sequences (scalars broadcast; times default to order).

        ``order_ids`` default to ``""`` (no order) for every event; a None in them is ``""``.
        """
        n = len(user_ids)
        type_arr = np.empty(n, dtype=object)
        type_arr[:] = [types] * n if isinstance(types, str) else list(types)
        return cls(
            user_ids=_object_array(user_ids),
            item_ids=_object_array(item_ids),
            types=type_arr,
            values=np.full(n, np.nan) if values is None else np.asarray(values, dtype=np.float64),
            occurred_at=(
                np.arange(n, dtype=np.float64)
                if occurred_at is None
                else np.asarray(occurred_at, dtype=np.float64)
            ),
            order_ids=_object_array([o or "" for o in order_ids or [""] * n]),
        )

    def subset(self, mask: NDArray[np.bool_] | NDArray[np.int64]) -> EventLog:
        """Return the events selected by a boolean mask or an index array."""
        return EventLog(
            user_ids=self.user_ids[mask],
            item_ids=self.item_ids[mask],
            types=self.types[mask],
            values=self.values[mask],
            occurred_at=self.occurred_at[mask],
            order_ids=self.order_ids[mask],
        )


@dataclass(frozen=True, eq=False)
class Catalog:
    """Item metadata as parallel lists, one entry per catalogue item."""

    item_ids: list[str]
    titles: list[str]
    descriptions: list[str]
    categories: list[list[str]]
    available: NDArray[np.bool_] = field(default_factory=lambda: np.ones(0, dtype=bool))

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(self.available) == 0 and n:
            object.__setattr__(self, "available", np.ones(n, dtype=bool))
        for name in ("titles", "descriptions", "categories", "available"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Catalog.{name} has {len(getattr(self, name))} rows, not {n}")
        if len(set(self.item_ids)) != n:
            raise ValueError("Catalog.item_ids must be unique")

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def empty(cls) -> Catalog:
        """Return a catalogue with no items."""
        return cls([], [], [], [], np.ones(0, dtype=bool))

    def texts(self) -> list[str]:
        """Return one text per item: title, description and categories joined."""
        return [
            " ".join(part for part in (t, d, " ".join(c)) if part)
            for t, d, c in zip(self.titles, self.descriptions, self.categories, strict=True)
        ]


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """A weighted user x item matrix with the vocabularies of its rows and columns.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of shape (n_users, n_items), float32
    users, items : Vocabulary
    """

    matrix: sparse.csr_matrix
    users: Vocabulary
    items: Vocabulary


def _object_array(values: Sequence[str]) -> NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out


def item_vocabulary(catalog: Catalog, events: EventLog) -> Vocabulary:
    """Return the item vocabulary: catalogue items in order, then event-only items sorted."""
    known = set(catalog.item_ids)
    extra = sorted({i for i in events.item_ids.tolist() if i not in known})
    return Vocabulary([*catalog.item_ids, *extra])


def user_vocabulary(events: EventLog) -> Vocabulary:
    """Return the user vocabulary: distinct users of the events, sorted."""
    return Vocabulary(sorted(set(events.user_ids.tolist())))


def event_weights(
    types: Sequence[str] | NDArray[np.object_],
    values: Sequence[float | None] | NDArray[np.float64],
    weights: Mapping[str, float] | None = None,
    *,
    default_weight: float = 1.0,
) -> NDArray[np.float64]:
    """Return one weight per event: the one weighting rule of training and serving.

    An event weighs its type's weight in ``weights`` (``default_weight`` for a type not in
    it). A ``rating`` with a value weighs the ``rating`` weight times that value (a 5-star
    rating under the default table weighs 5, like a purchase); without a value it weighs the
    ``rating`` weight alone. Other types ignore their value (a quantity or an amount).
    A weight below zero counts as zero: an event that weighs nothing adds nothing to its
    (user, item) pair, and a pair whose events all weigh nothing is no interaction (it is not
    in the matrix, nor in the served history, nor counted by popularity and trending). A
    negative weight cannot cancel other events: decayed at different ages in the interaction
    and the history matrices it would cancel them differently in each.

    Parameters
    ----------
    types : sequence or ndarray of shape (n_events,), str
    values : sequence or ndarray of shape (n_events,), float; NaN or None when absent
    weights : mapping of event type to weight; default :data:`DEFAULT_EVENT_WEIGHTS`

    Returns
    -------
    ndarray of shape (n_events,), float64
    """
    table = DEFAULT_EVENT_WEIGHTS if weights is None else weights
    # A dict lookup per event (np.unique on object arrays sorts Python strings, slowly), in C.
    found = map(table.get, types, repeat(default_weight, len(types)))
    out = np.fromiter(found, dtype=np.float64, count=len(types))
    values = np.asarray(values, dtype=np.float64)  # None becomes NaN
    rated = (np.asarray(types, dtype=object) == RATING_TYPE) & ~np.isnan(values)
    out[rated] *= values[rated]
    return np.maximum(out, 0.0, out=out)


def aggregate(summed: NDArray[np.floating], aggregation: str) -> NDArray[np.float32]:
    """Turn summed event weights of a (user, item) pair into a matrix value.

    ``log1p`` damps bulk repeats (one customer buying a product 40 times should not outweigh
    everything else in their history) while still ranking a repeat above a single event and a
    purchase above a view; ``binary`` keeps only that the pair exists. Training chooses
    between them on a validation cutoff (:data:`app.ml.recommender.TUNED_AGGREGATIONS`): on
    Online Retail, leak-free, binary won (served explore NDCG@10 0.1355 against 0.1337); under
    the earlier per-pair holdout, which leaked repeat purchases, log1p had looked better.
    """
    if aggregation == "log1p":
        return np.log1p(np.maximum(summed, 0.0)).astype(np.float32)
    if aggregation == "sum":
        return np.asarray(summed, dtype=np.float32)
    if aggregation == "binary":
        return (np.asarray(summed) > 0).astype(np.float32)
    raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")


def decay_factors(
    occurred_at: NDArray[np.float64],
    half_life_days: float | None,
    now: float | NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Return ``0.5 ** (age / half_life)`` per event (ones when ``half_life_days`` is None).

    ``now`` is a scalar or one reference time per event (default the latest event). Factors
    are floored at 1e-30 so a very old event keeps its (tiny) place in the matrix.
    """
    if half_life_days is None:
        return np.ones(len(occurred_at), dtype=np.float64)
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    if now is None:
        now = float(occurred_at.max()) if len(occurred_at) else 0.0
    age_days = np.maximum(now - occurred_at, 0.0) / SECONDS_PER_DAY
    return np.maximum(np.exp2(-age_days / half_life_days), 1e-30)


@dataclass(frozen=True, eq=False)
class EncodedEvents:
    """Events mapped to matrix coordinates (events outside the vocabularies dropped).

    Attributes
    ----------
    rows, cols : ndarray of shape (n_kept,), int64
    weights : ndarray of shape (n_kept,), float64; event-type weights
    occurred_at : ndarray of shape (n_kept,), float64
    users, items : Vocabulary
    """

    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    weights: NDArray[np.float64]
    occurred_at: NDArray[np.float64]
    users: Vocabulary
    items: Vocabulary


def encode_events(
    events: EventLog,
    *,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    weights: Mapping[str, float] | None = None,
) -> EncodedEvents:
    """Map events to (row, column, weight); see :func:`build_interactions` for the arguments."""
    if users is None:
        users = user_vocabulary(events)
    if items is None:
        items = Vocabulary(sorted(set(events.item_ids.tolist())))
    rows = users.indices(events.user_ids.tolist())
    cols = items.indices(events.item_ids.tolist())
    w = event_weights(events.types, events.values, weights)
    times = np.asarray(events.occurred_at, dtype=np.float64)
    keep = (rows >= 0) & (cols >= 0)
    if not keep.all():
        rows, cols, w, times = rows[keep], cols[keep], w[keep], times[keep]
    return EncodedEvents(rows, cols, w, times, users, items)


def interaction_matrix(
    encoded: EncodedEvents,
    *,
    aggregation: str = "log1p",
    half_life_days: float | None = None,
    now: float | None = None,
    decay_reference: str = "global",
) -> InteractionMatrix:
    """Aggregate encoded events into the user x item matrix; see :func:`build_interactions`."""
    rows, times = encoded.rows, encoded.occurred_at
    shape = (len(encoded.users), len(encoded.items))
    reference: float | NDArray[np.float64] | None = now
    if decay_reference == "user" and half_life_days is not None and len(rows):
        latest = np.full(shape[0], -np.inf)
        np.maximum.at(latest, rows, times)
        reference = latest[rows]
    elif decay_reference not in ("global", "user"):
        raise ValueError("decay_reference must be 'global' or 'user'")
    w = encoded.weights * decay_factors(times, half_life_days, reference)
    summed = sparse.coo_matrix((w, (rows, encoded.cols)), shape=shape).tocsr()
    summed.sum_duplicates()
    matrix = sparse.csr_matrix(
        (aggregate(summed.data, aggregation), summed.indices, summed.indptr), shape=shape
    )
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return InteractionMatrix(matrix=matrix, users=encoded.users, items=encoded.items)


def build_interactions(
    events: EventLog,
    *,
    users: Vocabulary | None = None,
    items: Vocabulary | None = None,
    weights: Mapping[str, float] | None = None,
    aggregation: str = "log1p",
    half_life_days: float | None = None,
    now: float | None = None,
    decay_reference: str = "global",
) -> InteractionMatrix:
    """Build the weighted user x item matrix of an event log.

    Parameters
    ----------
    events : EventLog
    users, items : Vocabulary, optional
        Fixed vocabularies (events outside them are dropped); by default the distinct users
        (sorted) and items (sorted) of the events.
    weights : mapping of event type to weight, default :data:`DEFAULT_EVENT_WEIGHTS`
        (view 1, click 1, add_to_cart 3, purchase 5, rating 1); see :func:`event_weights`.
    aggregation : {"log1p", "sum", "binary"}
        How the summed weights of repeated (user, item) events become one value.
    half_life_days : float, optional
        Exponential time decay of each event's weight, relative to ``now``.
    now : float, optional
        Reference time in epoch seconds; default the latest event.
    decay_reference : {"global", "user"}
        ``user`` measures each event's age from that user's latest event instead of ``now``:
        the recency *within* a history, which is how :func:`aggregate_history` decays the
        history the service sends.

    Returns
    -------
    InteractionMatrix
        ``matrix`` of shape (n_users, n_items), float32 CSR with sorted indices.
    """
    encoded = encode_events(events, users=users, items=items, weights=weights)
    return interaction_matrix(
        encoded,
        aggregation=aggregation,
        half_life_days=half_life_days,
        now=now,
        decay_reference=decay_reference,
    )


def newest_distinct(items: NDArray[np.int64], k: int | None) -> NDArray[np.bool_] | None:
    """Which events of a newest-first history belong to its ``k`` newest distinct known items.

    None when every event does (``k`` is None or the history has at most ``k`` such items).
    Unknown items (negative indices) are never kept.
    """
    if k is None:
        return None
    items = np.asarray(items, dtype=np.int64)
    values, first = np.unique(items, return_index=True)
    first = first[values >= 0]
    if len(first) <= k:
        return None
    newest = items[np.sort(first)[:k]]
    return np.isin(items, newest)


def aggregate_history(
    items: NDArray[np.int64],
    weights: NDArray[np.floating],
    aggregation: str = "log1p",
    *,
    occurred_at: NDArray[np.float64] | None = None,
    half_life_days: float | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Collapse a raw history (repeats allowed) into distinct items with aggregated weights.

    Parameters
    ----------
    items : ndarray of shape (n_events,), int64; negative entries (unknown items) are dropped.
    weights : ndarray of shape (n_events,)
    occurred_at : ndarray of shape (n_events,), epoch seconds, optional
        With ``half_life_days``, each weight decays with its age measured from the latest
        event of the history (so the answer does not depend on the wall clock).

    Returns
    -------
    (items, weights) : distinct item indices (sorted) and their float32 values, matching the
        values :func:`build_interactions` would put in the user's row.
    """
    items = np.asarray(items, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if occurred_at is not None and half_life_days is not None and len(items):
        weights = weights * decay_factors(np.asarray(occurred_at, np.float64), half_life_days)
    keep = items >= 0
    items, weights = items[keep], weights[keep]
    if len(items) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    uniq, inverse = np.unique(items, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=weights, minlength=len(uniq)).astype(np.float64)
    values = aggregate(summed, aggregation)
    nonzero = values != 0
    return uniq[nonzero], values[nonzero]
