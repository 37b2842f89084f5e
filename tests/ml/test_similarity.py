"""Similarity maths against independent dense formulas, pruning, blocking, scoring kernels."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from app.ml.gather import gather_rows_score, row_contributions
from app.ml.ranking import top_n
from app.ml.similarity import (
    blocked_top_k_product,
    item_similarity,
    top_k_per_row,
    user_similarity,
)


def _dense_similarity(vectors: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    """Cosine of the rows of ``vectors``, written independently: loops, no sparse code."""
    n = len(vectors)
    out = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a != b:
                denom = np.linalg.norm(vectors[a]) * np.linalg.norm(vectors[b]) + shrink
                out[a, b] = vectors[a] @ vectors[b] / denom if denom else 0.0
    return np.where(out > 0, out, 0.0)


def _center(rows: np.ndarray) -> np.ndarray:
    """Centre each row's non-zero entries on their mean (zeros stay zeros)."""
    out = rows.astype(float).copy()
    for r in range(len(out)):
        nz = out[r] != 0
        if nz.any():
            out[r, nz] -= out[r, nz].mean()
    return out


def test_cosine_known_answer_by_hand() -> None:
    # items a=(1,1,0), b=(1,0,1), c=(0,0,1) over 3 users
    X = sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=np.float32))
    sim = item_similarity(X, kind="cosine", k=None).toarray()
    assert sim[0, 1] == pytest.approx(1 / 2)  # dot 1 / (sqrt2 * sqrt2)
    assert sim[1, 2] == pytest.approx(1 / np.sqrt(2))  # dot 1 / (sqrt2 * 1)
    assert sim[0, 2] == 0.0
    assert np.all(np.diag(sim) == 0)


@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_item_cosine_matches_dense_formula(tiny_matrix: sparse.csr_matrix, shrink: float) -> None:
    expected = _dense_similarity(tiny_matrix.toarray().T, shrink)
    got = item_similarity(tiny_matrix, kind="cosine", k=None, shrink=shrink).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_item_pearson_centres_items(tiny_matrix: sparse.csr_matrix) -> None:
    expected = _dense_similarity(_center(tiny_matrix.toarray().T))
    got = item_similarity(tiny_matrix, kind="pearson", k=None).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_item_adjusted_cosine_centres_users(tiny_matrix: sparse.csr_matrix) -> None:
    expected = _dense_similarity(_center(tiny_matrix.toarray()).T)
    got = item_similarity(tiny_matrix, kind="adjusted_cosine", k=None).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["cosine", "pearson"])
def test_user_similarity_matches_dense_formula(tiny_matrix: sparse.csr_matrix, kind: str) -> None:
    rows = tiny_matrix.toarray()
    expected = _dense_similarity(_center(rows) if kind == "pearson" else rows)
    got = user_similarity(tiny_matrix, kind=kind, k=None).toarray()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_pearson_by_hand() -> None:
    # item 0 values (2, 4) centred -> (-1, 1); item 1 values (1, 3) -> (-1, 1): correlation 1.
    X = sparse.csr_matrix(np.array([[2, 1], [4, 3]], dtype=np.float32))
    assert item_similarity(X, kind="pearson", k=None)[0, 1] == pytest.approx(1.0)


def test_top_k_keeps_largest_positive_and_breaks_ties_by_column() -> None:
    m = sparse.csr_matrix(np.array([[0.5, 0.9, 0.5, -1.0, 0.1], [0, 0, 0, 0, 0]]))
    pruned = top_k_per_row(m, 2).toarray()
    np.testing.assert_allclose(pruned[0], [0.5, 0.9, 0, 0, 0])
    assert pruned[1].sum() == 0


@pytest.mark.parametrize("max_block_entries", [1, 7, 1 << 20])
def test_blocked_product_independent_of_block_size(max_block_entries: int) -> None:
    rng = np.random.default_rng(3)
    dense = (rng.random((40, 30)) < 0.2) * rng.random((40, 30))
    X = sparse.csr_matrix(dense)
    reference = item_similarity(X, k=5, max_block_entries=1 << 30).toarray()
    got = item_similarity(X, k=5, max_block_entries=max_block_entries).toarray()
    np.testing.assert_allclose(got, reference, rtol=1e-6)
    assert (np.count_nonzero(got, axis=1) <= 5).all()


def test_blocked_product_dense_and_sparse_paths_agree() -> None:
    rng = np.random.default_rng(4)
    left = sparse.csr_matrix((rng.random((20, 10)) < 0.5) * rng.random((20, 10)))
    right = left.T.tocsr()
    # A huge block makes the product dense enough for the dense path; 1 entry per block the
    # sparse path.
    a = blocked_top_k_product(left, right, k=4, exclude_diagonal=True, max_block_entries=1 << 20)
    b = blocked_top_k_product(left, right, k=4, exclude_diagonal=True, max_block_entries=1)
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-6)


def test_gather_rows_score_and_contributions_match_dense() -> None:
    rng = np.random.default_rng(5)
    M = sparse.csr_matrix((rng.random((8, 12)) < 0.4) * rng.random((8, 12)), dtype=np.float32)
    M.sort_indices()
    rows = np.array([1, 4, 6])
    w = np.array([0.5, 2.0, 1.0], dtype=np.float32)
    expected = w @ M.toarray()[rows]
    got = gather_rows_score(M.indptr, M.indices, M.data, rows, w, 12)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    one = gather_rows_score(M.indptr, M.indices, M.data, rows[:1], w[:1], 12)
    np.testing.assert_allclose(one, w[0] * M.toarray()[rows[0]], rtol=1e-6)
    targets = np.array([0, 3, 11])
    contrib = row_contributions(M.indptr, M.indices, M.data, rows, w, targets)
    np.testing.assert_allclose(contrib, (M.toarray()[rows][:, targets] * w[:, None]).T, rtol=1e-6)


def test_top_n_orders_masks_and_drops_non_positive() -> None:
    scores = np.array([0.2, 0.9, 0.0, 0.9, 0.5, -1.0], dtype=np.float32)
    np.testing.assert_array_equal(top_n(scores, 3), [1, 3, 4])
    mask = np.array([True, False, True, True, True, True])
    np.testing.assert_array_equal(top_n(scores, 10, mask), [3, 4, 0])
    assert len(top_n(np.zeros(5, dtype=np.float32), 3)) == 0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 9),
    st.integers(0, 10),
    st.integers(0, 2**32 - 1),
)
def test_top_k_per_row_matches_brute_force(n_rows: int, n_cols: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct values: many ties at the k-th value.
    dense = rng.integers(-1, 3, size=(n_rows, n_cols)).astype(np.float64)
    dense[rng.random((n_rows, n_cols)) < 0.3] = 0
    got = top_k_per_row(sparse.csr_matrix(dense), k).toarray()
    expected = np.zeros_like(dense)
    for r in range(n_rows):
        ranked = sorted((-v, c) for c, v in enumerate(dense[r]) if v > 0)[:k]
        for neg, c in ranked:
            expected[r, c] = -neg
    np.testing.assert_array_equal(got, expected)


def test_row_contributions_match_the_dense_product() -> None:

    rng = np.random.default_rng(3)
    dense = rng.random((40, 30)) * (rng.random((40, 30)) < 0.2)
    m = sparse.csr_matrix(dense.astype(np.float32))
    m.sort_indices()
    rows = rng.choice(40, size=12, replace=False)
    weights = rng.random(12).astype(np.float32)
    targets = rng.choice(30, size=7, replace=False)
    got = row_contributions(m.indptr, m.indices, m.data, rows, weights, targets)
    expected = (dense[rows][:, targets] * weights[:, None]).T
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert row_contributions(m.indptr, m.indices, m.data, rows[:0], weights[:0], targets).shape == (
        7,
        0,
    )
