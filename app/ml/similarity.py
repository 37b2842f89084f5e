"""Sparse similarity kernels with top-k pruning (row blocks bound memory), and the item-item scorer.

Nothing here builds a dense n x n matrix: products are formed ``block`` rows at a time (at
most ``max_block_entries`` cells each), pruned to the top ``k`` per row, and only the pruned
rows are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer, Votes
from app.ml.gather import gather_rows_score, gather_votes, row_contributions
from app.ml.ranking import row_top_n

Similarity = Literal["cosine", "pearson", "adjusted_cosine"]
SIMILARITIES: tuple[Similarity, ...] = get_args(Similarity)
DEFAULT_MAX_BLOCK_ENTRIES = 1 << 24
# Above this share of non-zero cells a block is pruned densely (np.partition over every column),
# below it sparsely (over the non-zeros). Measured with k=100: sparse 2.5x faster at 15%,
# dense 1.3x faster at 33%.
_DENSE_BLOCK_DENSITY = 0.25


def _empty_csr(shape: tuple[int, int]) -> sparse.csr_matrix:
    return sparse.csr_matrix(
        (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(shape[0] + 1, np.int32)),
        shape=shape,
    )


#: Above this many cells, top_k_per_row sorts the long rows' entries instead of padding rows.
_MAX_PADDED = 1 << 24


def _padded_cells(counts: NDArray[np.integer]) -> int:
    return len(counts) * int(counts.max(initial=0))


def top_k_per_row(matrix: sparse.spmatrix, k: int | None) -> sparse.csr_matrix:
    """Keep the ``k`` largest positive entries of each row (ties broken by column index).

    Parameters
    ----------
    matrix : sparse matrix of shape (n_rows, n_cols), without duplicate entries
    k : int or None (None keeps every positive entry)

    Returns
    -------
    csr_matrix of shape (n_rows, n_cols), float32, sorted indices
    """
    if k is not None and k <= 0:
        return _empty_csr(matrix.shape)
    csr = sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.data[csr.data <= 0] = 0.0
    csr.eliminate_zeros()
    counts = np.diff(csr.indptr)
    if k is not None and counts.max(initial=0) > k and _padded_cells(counts) > _MAX_PADDED:
        # Rows of very different lengths (an item listed by a share of the catalogue): sort
        # the entries of the rows longer than k instead of padding every row to the longest.
        rows = np.repeat(np.arange(csr.shape[0]), counts)
        vals = csr.data
        keep = counts[rows] <= k
        long = np.flatnonzero(~keep)
        order = long[np.lexsort((csr.indices[long], -vals[long], rows[long]))]
        first = np.searchsorted(rows[order], rows[order], side="left")
        keep[order[(np.arange(len(order)) - first) < k]] = True
        csr = sparse.csr_matrix(
            (vals[keep], (rows[keep], csr.indices[keep])), shape=csr.shape, dtype=np.float64
        )
    elif k is not None and counts.max(initial=0) > k:
        rows = np.repeat(np.arange(csr.shape[0]), counts)
        vals = csr.data
        # Each row's k-th largest value from one np.partition over the rows padded to the
        # longest (O(nnz) work, unlike sorting every entry).
        width = int(counts.max())
        padded = np.full((csr.shape[0], width), -np.inf)
        padded[rows, np.arange(len(vals)) - csr.indptr[rows]] = vals
        kth = np.partition(padded, width - k, axis=1)[:, width - k]
        keep = vals >= kth[rows]
        over = np.bincount(rows[keep], minlength=csr.shape[0]) > k
        if over.any():  # ties at the k-th value: rank those rows exactly
            tied = np.flatnonzero(keep & over[rows])
            order = tied[np.lexsort((csr.indices[tied], -vals[tied], rows[tied]))]
            first = np.searchsorted(rows[order], rows[order], side="left")
            keep[order[(np.arange(len(order)) - first) >= k]] = False
        csr = sparse.csr_matrix(
            (vals[keep], (rows[keep], csr.indices[keep])), shape=csr.shape, dtype=np.float64
        )
    out = sparse.csr_matrix(csr, dtype=np.float32)
    out.sort_indices()
    return out


def _dense_top_k(block: NDArray[np.floating], k: int | None) -> sparse.csr_matrix:
    n_rows, n_cols = block.shape
    if k is None or k >= n_cols:
        return top_k_per_row(sparse.csr_matrix(block), None)
    # Threshold at each row's k-th largest value: np.partition on values is several times
    # faster than argpartition along an axis. Ties at the threshold may let a row keep more
    # than k entries, so such rows go through the exact (sparse) pruning.
    threshold = np.partition(block, n_cols - k, axis=1)[:, n_cols - k]
    keep = (block >= threshold[:, None]) & (block > 0)
    rows, cols = np.nonzero(keep)
    candidates = sparse.coo_matrix((block[rows, cols], (rows, cols)), shape=block.shape)
    if (np.bincount(rows, minlength=n_rows) > k).any():
        return top_k_per_row(candidates, k)
    out = sparse.csr_matrix(candidates, dtype=np.float32)
    out.sort_indices()
    return out


def dense_top_k_rows(
    matrix: NDArray[np.floating],
    k: int,
    *,
    by_magnitude: bool = False,
    max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
) -> sparse.csr_matrix:
    """The ``k`` largest entries of each row of a dense matrix, as CSR (row blocks).

    Positive entries only, or with ``by_magnitude`` the ``k`` largest in absolute value of
    either sign (a row ties at its ``k``-th value may keep a few more).

    Returns
    -------
    csr_matrix of the same shape, float32, sorted indices
    """
    n_rows, n_cols = matrix.shape
    if n_rows == 0 or n_cols == 0:
        return _empty_csr((n_rows, n_cols))
    block_rows = max(1, max_block_entries // n_cols)
    parts = []
    for lo in range(0, n_rows, block_rows):
        block = np.asarray(matrix[lo : lo + block_rows], dtype=np.float32)
        if not by_magnitude:
            parts.append(_dense_top_k(block, k))
            continue
        size = np.abs(block)
        if k < n_cols:
            threshold = np.partition(size, n_cols - k, axis=1)[:, n_cols - k]
            keep = (size >= threshold[:, None]) & (block != 0)
        else:
            keep = block != 0
        rows, cols = np.nonzero(keep)
        parts.append(sparse.csr_matrix((block[rows, cols], (rows, cols)), shape=block.shape))
    out = sparse.vstack(parts, format="csr", dtype=np.float32)
    out.sort_indices()
    return out


def blocked_top_k_product(
    left: sparse.csr_matrix,
    right: sparse.csr_matrix,
    *,
    k: int | None,
    row_norms: NDArray[np.floating] | None = None,
    col_norms: NDArray[np.floating] | None = None,
    shrink: float = 0.0,
    exclude_diagonal: bool = False,
    max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
) -> sparse.csr_matrix:
    """Compute ``left @ right`` scaled and pruned to the top ``k`` positive entries per row.

    Each cell ``(r, c)`` becomes ``dot / (row_norms[r] * col_norms[c] + shrink)`` (norms default
    to 1, shrink to 0). Rows are processed in blocks of at most ``max_block_entries`` cells.

    Parameters
    ----------
    left : csr_matrix of shape (n, d)
    right : csr_matrix of shape (d, m)
    k : int or None
    row_norms : ndarray of shape (n,), optional
    col_norms : ndarray of shape (m,), optional
    shrink : float
        Added to the denominator: damps similarities supported by few co-occurrences.
    exclude_diagonal : bool
        Drop ``(r, r)`` cells (self-similarity) when ``n == m``.

    Returns
    -------
    csr_matrix of shape (n, m), float32
    """
    left = sparse.csr_matrix(left)
    right = sparse.csr_matrix(right)
    n, m = left.shape[0], right.shape[1]
    if n == 0 or m == 0:
        return _empty_csr((n, m))
    scaling = _Scaling(
        np.ones(n) if row_norms is None else np.asarray(row_norms, dtype=np.float64),
        np.ones(m) if col_norms is None else np.asarray(col_norms, dtype=np.float64),
        shrink,
        exclude_diagonal,
        k,
    )
    parts = []
    for lo, hi in _row_blocks(left, right, max_block_entries):
        prod = (left[lo:hi] @ right).tocsr()  # no duplicates; indices need not be sorted
        dense = prod.nnz > _DENSE_BLOCK_DENSITY * (hi - lo) * m
        parts.append(scaling.dense(prod, lo) if dense else scaling.sparse(prod, lo))
    out = sparse.vstack(parts, format="csr", dtype=np.float32)
    out.sort_indices()
    return out


def _row_blocks(
    left: sparse.csr_matrix, right: sparse.csr_matrix, max_block_entries: int
) -> list[tuple[int, int]]:
    """Consecutive row ranges of ``left`` whose product with ``right`` holds at most
    ``max_block_entries`` cells (one row at least).

    A product row stores at most the entries of the ``right`` rows it sums (and at most
    ``m``); blocks are cut on that bound, so a sparse product over a large catalogue gets
    few blocks of many rows, not ``max_block_entries // m`` rows each (16 rows at 1M items,
    every block paying scipy's workspace over all ``m`` columns). The rows times the longest
    row's bound stay within the budget too (the sparse pruning pads rows to the longest), and a
    block is pruned densely only when it holds more than a quarter of its cells, so its dense
    array stays under four times the budget.
    """
    n, m = left.shape[0], right.shape[1]
    right_nnz = np.diff(right.indptr).astype(np.float64)
    rows = np.repeat(np.arange(n), np.diff(left.indptr))
    bound = np.minimum(np.bincount(rows, weights=right_nnz[left.indices], minlength=n), m)
    cumulative = np.cumsum(bound)
    blocks = []
    lo = 0
    while lo < n:
        base = cumulative[lo - 1] if lo else 0.0
        hi = int(np.searchsorted(cumulative, base + max_block_entries, side="right"))
        hi = min(n, max(hi, lo + 1))
        # The sparse pruning pads each row to the block's longest: bound rows x width too.
        width = max(float(bound[lo:hi].max()), 1.0)
        hi = min(hi, lo + max(1, int(max_block_entries // width)))
        blocks.append((lo, hi))
        lo = hi
    return blocks


@dataclass(frozen=True, eq=False)
class _Scaling:
    """How :func:`blocked_top_k_product` scales and prunes each block of rows."""

    row_norms: NDArray[np.float64]
    col_norms: NDArray[np.float64]
    shrink: float
    exclude_diagonal: bool
    k: int | None

    def dense(self, prod: sparse.csr_matrix, lo: int) -> sparse.csr_matrix:
        """A block (rows from ``lo``) dense enough to scale as an array."""
        hi, m = lo + prod.shape[0], prod.shape[1]
        dense = prod.toarray()
        denom = self.row_norms[lo:hi, None] * self.col_norms[None, :] + self.shrink
        np.divide(dense, denom, out=dense, where=denom > 0)
        dense[denom <= 0] = 0.0
        if self.exclude_diagonal and lo < m:
            diag = np.arange(lo, min(hi, m))
            dense[diag - lo, diag] = 0.0
        return _dense_top_k(dense, self.k)

    def sparse(self, prod: sparse.csr_matrix, lo: int) -> sparse.csr_matrix:
        """A sparse block (rows from ``lo``), scaled entry by entry."""
        coo = prod.tocoo()
        denom = self.row_norms[coo.row + lo] * self.col_norms[coo.col] + self.shrink
        data = np.divide(coo.data, denom, out=np.zeros_like(coo.data), where=denom > 0)
        if self.exclude_diagonal:
            data[coo.row + lo == coo.col] = 0.0
        scaled = sparse.coo_matrix((data, (coo.row, coo.col)), shape=coo.shape)
        return top_k_per_row(scaled, self.k)


def center_nonzeros(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Subtract each row's mean over its stored entries from those entries (sparsity kept).

    Parameters
    ----------
    matrix : csr_matrix of shape (n, m)

    Returns
    -------
    csr_matrix of shape (n, m), float64, same sparsity pattern (explicit zeros kept).
    """
    matrix = sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    sums = np.bincount(rows, weights=matrix.data, minlength=matrix.shape[0])
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    matrix.data -= means[rows]
    return matrix


def row_norms(matrix: sparse.csr_matrix) -> NDArray[np.float64]:
    """Return the L2 norm of each row, shape (n_rows,)."""
    matrix = sparse.csr_matrix(matrix)
    return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())


def _row_cosine(
    rows: sparse.csr_matrix, *, k: int | None, shrink: float, max_block_entries: int
) -> sparse.csr_matrix:
    """Shrunk cosine between the rows of ``rows``, top-k per row, without self-similarity."""
    norms = row_norms(rows)
    return blocked_top_k_product(
        rows,
        rows.T.tocsr(),
        k=k,
        row_norms=norms,
        col_norms=norms,
        shrink=shrink,
        exclude_diagonal=True,
        max_block_entries=max_block_entries,
    )


def item_similarity(
    interactions: sparse.csr_matrix,
    *,
    kind: str = "cosine",
    k: int | None = 100,
    shrink: float = 0.0,
    max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
) -> sparse.csr_matrix:
    """Item-item similarity of the columns of a user x item matrix, top-k per row.

    ``cosine`` compares raw columns; ``pearson`` first centres each item's stored values on the
    item's mean; ``adjusted_cosine`` centres each user's stored values on the user's mean. The
    denominator is ``||a|| ||b|| + shrink``. Self-similarity and non-positive values are dropped.

    Parameters
    ----------
    interactions : csr_matrix of shape (n_users, n_items)

    Returns
    -------
    csr_matrix of shape (n_items, n_items), float32; row ``i`` holds item ``i``'s neighbours.
    """
    if kind not in SIMILARITIES:
        raise ValueError(f"unknown similarity {kind!r}; expected one of {SIMILARITIES}")
    x = sparse.csr_matrix(interactions, dtype=np.float64)
    if kind == "adjusted_cosine":
        x = center_nonzeros(x)
    items = x.T.tocsr()
    if kind == "pearson":
        items = center_nonzeros(items)
    return _row_cosine(items, k=k, shrink=shrink, max_block_entries=max_block_entries)


def user_similarity(
    interactions: sparse.csr_matrix,
    *,
    kind: str = "cosine",
    k: int | None = 100,
    shrink: float = 0.0,
    max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
) -> sparse.csr_matrix:
    """User-user similarity of the rows of a user x item matrix, top-k per row (blocked).

    ``pearson`` centres each user's stored values on the user's mean.

    Returns
    -------
    csr_matrix of shape (n_users, n_users), float32
    """
    if kind not in ("cosine", "pearson"):
        raise ValueError(f"unknown user similarity {kind!r}; expected 'cosine' or 'pearson'")
    x = sparse.csr_matrix(interactions, dtype=np.float64)
    if kind == "pearson":
        x = center_nonzeros(x)
    return _row_cosine(x, k=k, shrink=shrink, max_block_entries=max_block_entries)


#: How many leading entries of a matrix :func:`strongest_first` checks before trusting it.
_ORDER_CHECKED = 1 << 16


def _leads_strongest_first(matrix: sparse.csr_matrix) -> bool:
    """Whether the first entries of ``matrix`` are in :func:`strongest_first`'s order.

    Exact for a matrix of at most ``_ORDER_CHECKED`` entries; for a larger one, the rows
    that hold its first entries decide (rows ordered by column, as scipy keeps them, fail
    on the first row whose values differ).
    """
    end = min(int(matrix.nnz), _ORDER_CHECKED)
    strength = np.abs(np.asarray(matrix.data[:end]))
    cols = np.asarray(matrix.indices[:end])
    row = np.searchsorted(matrix.indptr, np.arange(end), side="right")
    same_row = row[1:] == row[:-1]
    weaker = strength[1:] < strength[:-1]
    tied_after = (strength[1:] == strength[:-1]) & (cols[1:] > cols[:-1])
    return bool(np.all(~same_row | weaker | tied_after))


def strongest_first(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """``matrix`` as float32 CSR with each row's entries by decreasing magnitude, ties by column.

    Serving reads a long history's rows only down to a share of their entries
    (:func:`~app.ml.gather.row_entries`), which must then be each row's strongest. A matrix
    already in this order (a loaded bundle's) is returned as it is, so memory-mapped arrays
    stay shared between workers; any other is reordered in a copy.
    """
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    if _leads_strongest_first(matrix):
        return matrix
    matrix = matrix.copy()
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -np.abs(matrix.data), rows))
    return sparse.csr_matrix(
        (matrix.data[order], matrix.indices[order], matrix.indptr), shape=matrix.shape
    )


class ItemItemScorer(BaseScorer):
    """A model that scores ``weights @ W[items]`` with a sparse item x item matrix ``W``.

    ``similarity_`` (csr_matrix of shape (n_items, n_items), float32, each row's entries
    :func:`strongest_first`) holds in row ``j`` the items that history item ``j`` votes for.
    """

    _fitted_attr = "similarity_"

    def _set_similarity(self, similarity: sparse.spmatrix) -> None:
        self.similarity_ = strongest_first(similarity)
        self.n_items_ = self.similarity_.shape[0]

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return ``weights @ similarity_[items]``, shape (n_items,), float32."""
        self._check_fitted()
        s = self.similarity_
        if len(items) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        return gather_rows_score(s.indptr, s.indices, s.data, items, weights, self.n_items_)

    def votes(
        self, items: NDArray[np.int64], weights: NDArray[np.float32], share: float = 1.0
    ) -> Votes:
        """The entries of the history's rows of ``similarity_`` (see :meth:`BaseScorer.votes`)."""
        self._check_fitted()
        s = self.similarity_
        return gather_votes(s.indptr, s.indices, s.data, items, weights, share)

    def score_rows(self, histories: sparse.csr_matrix) -> NDArray[np.float32]:
        """Score many histories at once: ``histories @ similarity_``, (n_histories, n_items)."""
        self._check_fitted()
        product = sparse.csr_matrix(histories, dtype=np.float32) @ self.similarity_
        return np.asarray(product.toarray(), dtype=np.float32)

    def explain(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        targets: NDArray[np.int64],
    ) -> NDArray[np.int64]:
        """Return, per target, the position in ``items`` contributing most (-1: none)."""
        self._check_fitted()
        s = self.similarity_
        contrib = row_contributions(s.indptr, s.indices, s.data, items, weights, targets)
        if contrib.shape[1] == 0:
            return np.full(len(targets), -1, dtype=np.int64)
        best = contrib.argmax(axis=1)
        best[contrib.max(axis=1) <= 0] = -1
        return best.astype(np.int64)

    def similar_items(
        self, item: int, n: int = 10
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Return the ``n`` strongest neighbours of ``item`` and their weights."""
        self._check_fitted()
        return row_top_n(self.similarity_, item, n)

    def to_state(self) -> tuple[dict[str, np.ndarray | sparse.csr_matrix], dict]:
        """Return the fitted state as arrays and JSON-able meta."""
        self._check_fitted()
        return {"similarity": self.similarity_}, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model._set_similarity(arrays["similarity"])
        return model
