"""Sparse similarity with top-k pruning, computed in row blocks to bound memory.

Nothing here builds a dense n x n matrix: products are formed ``block`` rows at a time (at
most ``max_block_entries`` cells each), pruned to the top ``k`` per row, and only the pruned
rows are kept.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

SIMILARITIES = ("cosine", "pearson", "adjusted_cosine")
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
    if k is not None and counts.max(initial=0) > k:
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
    rn = np.ones(n) if row_norms is None else np.asarray(row_norms, dtype=np.float64)
    cn = np.ones(m) if col_norms is None else np.asarray(col_norms, dtype=np.float64)
    block_rows = max(1, max_block_entries // m)
    parts = []
    for lo in range(0, n, block_rows):
        hi = min(n, lo + block_rows)
        prod = (left[lo:hi] @ right).tocsr()  # no duplicates; indices need not be sorted
        if prod.nnz > _DENSE_BLOCK_DENSITY * (hi - lo) * m:
            dense = prod.toarray()
            denom = rn[lo:hi, None] * cn[None, :] + shrink
            np.divide(dense, denom, out=dense, where=denom > 0)
            dense[denom <= 0] = 0.0
            if exclude_diagonal and lo < m:
                diag = np.arange(lo, min(hi, m))
                dense[diag - lo, diag] = 0.0
            parts.append(_dense_top_k(dense, k))
        else:
            coo = prod.tocoo()
            denom = rn[coo.row + lo] * cn[coo.col] + shrink
            data = np.divide(coo.data, denom, out=np.zeros_like(coo.data), where=denom > 0)
            if exclude_diagonal:
                data[coo.row + lo == coo.col] = 0.0
            scaled = sparse.coo_matrix((data, (coo.row, coo.col)), shape=coo.shape)
            parts.append(top_k_per_row(scaled, k))
    out = sparse.vstack(parts, format="csr", dtype=np.float32)
    out.sort_indices()
    return out


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
    starts = np.asarray(indptr[rows], dtype=np.int64)
    lens = np.asarray(indptr[rows + 1], dtype=np.int64) - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(n_cols, dtype=np.float32)
    offsets = np.cumsum(lens) - lens
    pos = np.arange(total, dtype=np.int64) + np.repeat(starts - offsets, lens)
    vals = data[pos] * np.repeat(np.asarray(weights, dtype=np.float32), lens)
    return np.bincount(indices[pos], weights=vals, minlength=n_cols).astype(np.float32)


def row_contributions(
    indptr: NDArray[np.integer],
    indices: NDArray[np.integer],
    data: NDArray[np.floating],
    rows: NDArray[np.int64],
    weights: NDArray[np.floating],
    targets: NDArray[np.int64],
) -> NDArray[np.float32]:
    """Return ``weights[j] * M[rows[j], targets[t]]`` as an array of shape (len(targets), h).

    Requires sorted indices within each CSR row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    out = np.zeros((len(targets), len(rows)), dtype=np.float32)
    if len(rows) == 0 or len(targets) == 0:
        return out
    # Every stored entry of the history's rows at once (one pass, no per-row search).
    starts = np.asarray(indptr[rows], dtype=np.int64)
    lengths = np.asarray(indptr[rows + 1], dtype=np.int64) - starts
    owner = np.repeat(np.arange(len(rows)), lengths)
    first = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    positions = first + np.arange(len(owner))
    cols = indices[positions]
    if len(cols) == 0:
        return out
    # Column -> row of ``out`` (-1: not a target), one gather per entry.
    slot_of = np.full(max(int(cols.max()), int(targets.max())) + 1, -1, dtype=np.int64)
    slot_of[targets] = np.arange(len(targets))
    slot = slot_of[cols]
    hit = slot >= 0
    out[slot[hit], owner[hit]] = data[positions[hit]] * np.asarray(weights)[owner[hit]]
    return out


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


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before ``fit`` (same bases as scikit-learn's)."""


class BaseScorer:
    """Shared plumbing of every model: parameters, the fitted check and the state format.

    Subclasses take keyword-only hyper-parameters in ``__init__`` (stored as attributes of the
    same name), set attributes ending in ``_`` in ``fit`` and implement ``score``.
    """

    _param_names: tuple[str, ...] = ()
    _fitted_attr = "n_items_"

    def get_params(self) -> dict:
        """Return the hyper-parameters as a JSON-able dict."""
        return {name: getattr(self, name) for name in self._param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit() before using it"
            )

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Score every item for a history of item indices with weights, shape (n_items,)."""
        raise NotImplementedError

    def score_rows(self, histories: sparse.csr_matrix) -> NDArray[np.float32]:
        """Score many histories at once (evaluation, tuning); row ``r`` equals ``score(row r)``.

        Parameters
        ----------
        histories : csr_matrix of shape (n_histories, n_items), sorted indices

        Returns
        -------
        ndarray of shape (n_histories, n_items), float32
        """
        histories = sparse.csr_matrix(histories)
        out = np.zeros((histories.shape[0], histories.shape[1]), dtype=np.float32)
        for r in range(histories.shape[0]):
            lo, hi = histories.indptr[r], histories.indptr[r + 1]
            out[r] = self.score(
                histories.indices[lo:hi].astype(np.int64),
                histories.data[lo:hi].astype(np.float32),
            )
        return out

    def explain(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        targets: NDArray[np.int64],
    ) -> NDArray[np.int64] | None:
        """Return, per target, the position in ``items`` contributing most (-1: none)."""
        return None

    def _state_meta(self) -> dict:
        return {"model": type(self).__name__, "params": self.get_params()}

    @classmethod
    def _from_meta(cls, meta: dict) -> BaseScorer:
        if meta.get("model") != cls.__name__:
            raise ValueError(f"state is for {meta.get('model')!r}, not {cls.__name__}")
        params = meta["params"]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


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


class ItemItemScorer(BaseScorer):
    """A model that scores ``weights @ W[items]`` with a sparse item x item matrix ``W``.

    ``similarity_`` (csr_matrix of shape (n_items, n_items), float32, sorted indices) holds in
    row ``j`` the items that history item ``j`` votes for.
    """

    _fitted_attr = "similarity_"

    def _set_similarity(self, similarity: sparse.csr_matrix) -> None:
        similarity = sparse.csr_matrix(similarity, dtype=np.float32)
        similarity.sort_indices()
        self.similarity_ = similarity
        self.n_items_ = similarity.shape[0]

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return ``weights @ similarity_[items]``, shape (n_items,), float32."""
        self._check_fitted()
        s = self.similarity_
        if len(items) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        return gather_rows_score(s.indptr, s.indices, s.data, items, weights, self.n_items_)

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
    def from_state(cls, arrays: dict, meta: dict) -> ItemItemScorer:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model._set_similarity(arrays["similarity"])
        return model
