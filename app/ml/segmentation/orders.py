"""Orders from purchase lines: how many per customer, and each customer's first order.

An order is a distinct non-empty order id; a purchase without one counts its calendar day (UTC)
as the order. The segmentation's frequency and the predicted value's repeat orders both come
from here, so the two never count orders differently.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from app.ml.interactions import SECONDS_PER_DAY

__all__ = ["OrderFigures", "order_figures"]


class OrderFigures(NamedTuple):
    """Per-customer order figures, arrays of shape (n_customers,)."""

    orders: NDArray[np.float64]  # distinct orders
    first_at: NDArray[np.float64]  # epoch seconds of the first order's first line, NaN if none
    first_value: NDArray[np.float64]  # spend of the first order, 0 if none


def order_figures(
    ub: NDArray[np.int64],
    tb: NDArray[np.float64],
    ob: NDArray[np.str_] | None,
    vb: NDArray[np.float64],
    n: int,
) -> OrderFigures:
    """Orders per customer and each customer's first order, from purchase lines.

    Parameters
    ----------
    ub, tb, vb : ndarray, shape (n_lines,)
        Each purchase line's customer (0..n-1), time (epoch seconds) and amount.
    ob : ndarray of str, shape (n_lines,), optional
        Each line's order id; "" (or ``ob`` None) means none: the line's calendar day is its order.
    n : int
        Number of customers.
    """
    day = np.floor(tb / SECONDS_PER_DAY).astype(np.int64)
    if ob is not None:
        order_names, order_code = np.unique(ob, return_inverse=True)
        n_named = order_names.shape[0]
        order_key = np.where(ob != "", order_code, n_named + day - day.min(initial=0))
    else:
        order_key = day - day.min(initial=0)
    stride = int(order_key.max(initial=0)) + 1
    pairs, pair_of_line = np.unique(ub.astype(np.int64) * stride + order_key, return_inverse=True)
    pair_user = pairs // stride
    orders = np.bincount(pair_user, minlength=n).astype(np.float64)
    pair_at = np.full(pairs.shape[0], np.inf)
    np.minimum.at(pair_at, pair_of_line, tb)
    pair_value = np.bincount(pair_of_line, weights=vb, minlength=pairs.shape[0])
    # Each customer's first order: the pair with the earliest line, ties by order key.
    by_time = np.lexsort((pairs, pair_at, pair_user))
    is_first = np.ones(by_time.shape[0], dtype=bool)
    is_first[1:] = pair_user[by_time][1:] != pair_user[by_time][:-1]
    first = by_time[is_first]
    first_at = np.full(n, np.nan)
    first_value = np.zeros(n)
    first_at[pair_user[first]] = pair_at[first]
    first_value[pair_user[first]] = pair_value[first]
    return OrderFigures(orders, first_at, first_value)
