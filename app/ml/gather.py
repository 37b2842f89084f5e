"""Serving's reads of sparse item rows: the entries of a history's rows, their sums and owners.

An answer reads only the rows of the items in a customer's history, straight from the CSR
arrays (no scipy object per call); every function here costs what those rows hold, never a
pass over the catalogue, except :func:`gather_rows_score`'s dense result.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from app.ml.base import Votes


def row_entries(
    indptr: NDArray[np.integer], rows: NDArray[np.int64], share: float = 1.0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The positions of the stored entries of ``rows``, row after row, and how many per row.

    With ``share`` < 1 each row gives only its first ``ceil(share * length)`` entries: the
    strongest ones in a matrix ordered by :func:`strongest_first`.
    """
    starts = np.asarray(indptr[rows], dtype=np.int64)
    lens = np.asarray(indptr[rows + 1], dtype=np.int64) - starts
    if share < 1.0:
        lens = np.minimum(lens, np.ceil(lens * share).astype(np.int64))
    offsets = np.cumsum(lens) - lens
    positions = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(starts - offsets, lens)
    return positions, lens


def gather_rows_score(
    indptr: NDArray[np.integer],
    indices: NDArray[np.integer],
    data: NDArray[np.floating],
    rows: NDArray[np.int64],
    weights: NDArray[np.floating],
    n_cols: int,
) -> NDArray[np.float32]:
    """Return ``weights @ M[rows]`` for a CSR matrix ``M`` given by its raw arrays.

    This is the hot path of serving: no scipy object is built per call.

    Parameters
    ----------
    indptr, indices, data : the CSR arrays of ``M`` (n_rows, n_cols)
    rows : ndarray of shape (h,), int64
    weights : ndarray of shape (h,)

    Returns
    -------
    ndarray of shape (n_cols,), float32
    """
    if len(rows) == 1:
        lo, hi = indptr[rows[0]], indptr[rows[0] + 1]
        out = np.zeros(n_cols, dtype=np.float32)
        out[indices[lo:hi]] = data[lo:hi] * np.float32(weights[0])
        return out
    pos, lens = row_entries(indptr, rows)
    if len(pos) == 0:
        return np.zeros(n_cols, dtype=np.float32)
    vals = data[pos] * np.repeat(np.asarray(weights, dtype=np.float32), lens)
    return np.bincount(indices[pos], weights=vals, minlength=n_cols).astype(np.float32)


def gather_votes(
    indptr: NDArray[np.integer],
    indices: NDArray[np.integer],
    data: NDArray[np.floating],
    rows: NDArray[np.int64],
    weights: NDArray[np.floating],
    share: float = 1.0,
) -> Votes:
    """The entries of ``weights @ M[rows]`` before they are summed (owners: positions in rows).

    Summing the values per column in entry order (float64, then float32) gives exactly
    :func:`gather_rows_score`'s result, without a vector over every column. ``share`` < 1
    reads only each row's first share of entries (see :func:`row_entries`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    pos, lens = row_entries(indptr, rows, share)
    if len(pos) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Votes(empty, np.zeros(0, dtype=np.float32), empty)
    vals = data[pos] * np.repeat(np.asarray(weights, dtype=np.float32), lens)
    owners = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    return Votes(
        np.asarray(indices[pos], dtype=np.int64), np.asarray(vals, dtype=np.float32), owners
    )


def distinct(values: NDArray[np.int64], n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``np.unique(values, return_inverse=True)`` for values in ``[0, n)``, whichever is cheaper.

    Sorting costs ``e log e`` for ``e`` values; when they are many against ``n`` (a long
    history in a small shop) a pass over ``n`` flags costs less. Either way the cost is at
    most a small multiple of the values' own.
    """
    values = np.asarray(values, dtype=np.int64)
    if len(values) * 16 < n:
        uniq, inverse = np.unique(values, return_inverse=True)
        return uniq, inverse.ravel()
    present = np.zeros(n, dtype=bool)
    present[values] = True
    slot = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present).astype(np.int64), slot[values]


def best_owners(
    slots: NDArray[np.int64], vals: NDArray[np.float32], owners: NDArray[np.int64], n: int
) -> NDArray[np.int64]:
    """Per slot in ``[0, n)``, the owner of its largest positive value (ties: the first owner).

    What :meth:`ItemItemScorer.explain` computes from the entries of :func:`gather_votes`
    (``slots``: the target of each entry); -1 where a slot has no positive value.
    """
    best = np.full(n, -1, dtype=np.int64)
    if len(slots) == 0:
        return best
    order = np.lexsort((owners, -vals, slots))
    ranked_slots = slots[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = ranked_slots[1:] != ranked_slots[:-1]
    top = order[first]
    positive = vals[top] > 0
    best[slots[top][positive]] = owners[top][positive]
    return best


def row_contributions(
    indptr: NDArray[np.integer],
    indices: NDArray[np.integer],
    data: NDArray[np.floating],
    rows: NDArray[np.int64],
    weights: NDArray[np.floating],
    targets: NDArray[np.int64],
) -> NDArray[np.float32]:
    """Return ``weights[j] * M[rows[j], targets[t]]`` as an array of shape (len(targets), h).

    The entries of a row may be in any order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    out = np.zeros((len(targets), len(rows)), dtype=np.float32)
    if len(rows) == 0 or len(targets) == 0:
        return out
    # Every stored entry of the history's rows at once (one pass, no per-row search).
    positions, lengths = row_entries(indptr, rows)
    owner = np.repeat(np.arange(len(rows)), lengths)
    cols = indices[positions]
    if len(cols) == 0:
        return out
    # Column -> row of ``out`` (-1: not a target), by binary search over the sorted targets
    # (no array over every item: the cost is that of the history's entries).
    by_target = np.argsort(targets, kind="stable")
    sorted_targets = targets[by_target]
    at = np.minimum(np.searchsorted(sorted_targets, cols), len(targets) - 1)
    hit = sorted_targets[at] == cols
    slot = by_target[at]
    out[slot[hit], owner[hit]] = data[positions[hit]] * np.asarray(weights)[owner[hit]]
    return out
