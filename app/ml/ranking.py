"""Top-n selection with one tie rule (score, then item index), for one row or many."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy import sparse


def row_top_n(
    matrix: sparse.csr_matrix, row: int, n: int
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The ``n`` largest entries of one CSR row: (column indices, values), ties by index.

    Parameters
    ----------
    matrix : csr_matrix of shape (n_rows, n_cols)
    row : the row to read
    n : how many entries at most
    """
    lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
    idx = np.asarray(matrix.indices[lo:hi], dtype=np.int64)
    vals = np.asarray(matrix.data[lo:hi])
    order = np.lexsort((idx, -vals))[:n]
    return idx[order], vals[order].astype(np.float32)


def top_n(
    scores: NDArray[np.floating], n: int, mask: NDArray[np.bool_] | None = None
) -> NDArray[np.int64]:
    """Return the indices of the ``n`` highest positive scores, best first.

    Parameters
    ----------
    scores : ndarray of shape (n_items,)
    mask : ndarray of shape (n_items,), bool, optional; False entries are never returned.
    """
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    # Partition only the positive scores: neighbourhood models leave most items at zero, and
    # argpartition over many tied zeros is slow.
    part = np.flatnonzero(scores > 0)
    if len(part) > n:
        part = part[np.argpartition(-scores[part], n - 1)[:n]]
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)


def top_n_rows(
    scores: NDArray[np.floating], n: int, mask: NDArray[np.bool_] | None = None
) -> list[NDArray[np.int64]]:
    """Apply :func:`top_n` to every row of a score matrix (same order and tie-breaking).

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_items)
    mask : ndarray of shape (n_rows, n_items), bool, optional

    Returns
    -------
    list of n_rows int64 arrays, each at most ``n`` long
    """
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    n_rows, n_items = scores.shape
    n = min(n, n_items)
    if n <= 0 or n_rows == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(n_rows)]
    # Fast path: partition every row at once; rows where ties at the cut could be resolved
    # differently from top_n (a tied positive score just outside) are redone one by one.
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < n_items else None
    if part is None:
        part = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    out = []
    for r in range(n_rows):
        keep = vals[r] > 0
        if n < n_items and keep.all() and np.count_nonzero(scores[r] == vals[r, -1]) > 1:
            out.append(top_n(scores[r], n))
        else:
            out.append(part[r][keep].astype(np.int64))
    return out


def descending_order(scores: NDArray[np.floating]) -> NDArray[np.int64]:
    """The items with a positive score, best first, ties by index (the order of :func:`top_n`)."""
    positive = np.flatnonzero(scores > 0)
    return positive[np.lexsort((positive, -scores[positive]))].astype(np.int64)


def first_kept(
    order: NDArray[np.int64],
    n: int,
    keep: Callable[[NDArray[np.int64]], NDArray[np.bool_]],
    *,
    start: int = 64,
) -> NDArray[np.int64]:
    """The first ``n`` entries of ``order`` that ``keep`` accepts, in order.

    ``order`` is read in chunks of doubling size, so the cost is that of the prefix read, not
    of the whole order: with ``order = descending_order(scores)`` this is
    ``top_n(scores, n, mask)`` without a pass over every item.
    """
    if n <= 0 or len(order) == 0:
        return np.zeros(0, dtype=np.int64)
    found: list[NDArray[np.int64]] = []
    count, lo, size = 0, 0, max(start, 2 * n)
    while count < n and lo < len(order):
        chunk = np.asarray(order[lo : lo + size], dtype=np.int64)
        kept = chunk[keep(chunk)]
        found.append(kept[: n - count])
        count += len(found[-1])
        lo, size = lo + size, size * 2
    return np.concatenate(found).astype(np.int64)


def member(indices: NDArray[np.int64], sorted_set: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether each index is in ``sorted_set`` (sorted, distinct): O(k log m), no dense mask."""
    if len(sorted_set) == 0 or len(indices) == 0:
        return np.zeros(len(indices), dtype=bool)
    at = np.searchsorted(sorted_set, indices)
    at[at == len(sorted_set)] = 0
    return sorted_set[at] == indices
