"""What Spark's executors run on their share of the interaction pairs (numpy and scipy only).

The Gram matrix ``X.T @ X`` is a sum over users, so each partition of users computes its
partial Gram with scipy and Spark sums the partials by block of item rows: the executors do
the co-occurrence work of the whole shop, and only a block's top-k neighbours (or, for EASE,
the Gram of a catalogue small enough to invert) ever reach the driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from app.ml.similarity import blocked_top_k_product


def item_blocks(n_items: int, max_block_entries: int) -> list[tuple[int, int]]:
    """Consecutive item ranges whose Gram rows hold at most ``max_block_entries`` cells."""
    step = max(1, max_block_entries // max(n_items, 1))
    return [(lo, min(lo + step, n_items)) for lo in range(0, n_items, step)]


def partial_grams(
    rows: Iterable[Any], n_items: int, blocks: list[tuple[int, int]]
) -> Iterator[tuple[int, sparse.csr_matrix]]:
    """This partition's ``X_p.T @ X_p`` by block of item rows, from its ``(u, i, x)`` rows.

    Yields
    ------
    (lo, csr_matrix of shape (hi - lo, n_items), float64) for each non-empty block
    """
    users: list[int] = []
    items: list[int] = []
    values: list[float] = []
    for row in rows:
        users.append(row[0])
        items.append(row[1])
        values.append(row[2])
    if not users:
        return
    _, local = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
    X = sparse.csr_matrix(
        (np.asarray(values, dtype=np.float64), (local, np.asarray(items, dtype=np.int64))),
        shape=(int(local.max()) + 1, n_items),
    )
    XT = X.T.tocsr()
    for lo, hi in blocks:
        gram = (XT[lo:hi] @ X).tocsr()
        if gram.nnz:
            yield lo, gram


def add(a: sparse.csr_matrix, b: sparse.csr_matrix) -> sparse.csr_matrix:
    """Two partial Grams of one block summed."""
    return (a + b).tocsr()


def cosine_top_k(
    lo: int,
    gram: sparse.csr_matrix,
    norms: NDArray[np.float64],
    *,
    k: int | None,
    shrink: float,
    max_block_entries: int,
) -> sparse.csr_matrix:
    """Rows ``lo..`` of the item-item cosine, top-k per row, without self-similarity.

    The same scaling and pruning as the local engine's
    :func:`~app.ml.similarity.item_similarity` (``dot / (|a| |b| + shrink)``, non-positive
    values dropped), applied to a block of the Gram matrix.
    """
    gram = sparse.csr_matrix(gram, dtype=np.float64, copy=True)
    coo = gram.tocoo()
    gram.data[coo.row + lo == coo.col] = 0.0  # csr and its coo share the entries' order
    gram.eliminate_zeros()
    identity = sparse.identity(gram.shape[1], dtype=np.float64, format="csr")
    return blocked_top_k_product(
        gram,
        identity,
        k=k,
        row_norms=norms[lo : lo + gram.shape[0]],
        col_norms=norms,
        shrink=shrink,
        max_block_entries=max_block_entries,
    )
