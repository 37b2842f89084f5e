"""Collaborative models: item-kNN, user-kNN, EASE and RP3beta.

Every model fits on a user x item CSR matrix and scores a *history* (item indices with
weights), not a training row: the service scores in real time from the recent events it keeps.
"""

from __future__ import annotations

from typing import Any, Literal, Self, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, sparse
from threadpoolctl import threadpool_limits

from app.ml.base import BaseScorer, Votes
from app.ml.gather import distinct, gather_rows_score, gather_votes
from app.ml.ranking import row_top_n, top_n
from app.ml.similarity import (
    DEFAULT_MAX_BLOCK_ENTRIES,
    SIMILARITIES,
    ItemItemScorer,
    Similarity,
    blocked_top_k_product,
    center_nonzeros,
    dense_top_k_rows,
    item_similarity,
    row_norms,
    strongest_first,
    top_k_per_row,
)

Neighbourhood = Literal["source", "target"]
NEIGHBOURHOODS: tuple[Neighbourhood, ...] = get_args(Neighbourhood)
UserSimilarity = Literal["cosine", "pearson"]


def _as_csr(X: sparse.spmatrix) -> sparse.csr_matrix:
    X = sparse.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    return X


class ItemKNN(ItemItemScorer):
    """Item-based nearest neighbours with top-k pruned cosine / Pearson / adjusted cosine.

    Parameters
    ----------
    k : int
        Neighbours kept per item.
    shrink : float
        Added to the similarity denominator (damps pairs seen by few users).
    similarity : {"cosine", "pearson", "adjusted_cosine"}
    neighbourhood : {"target", "source"}
        ``target``: an item is scored from its own ``k`` nearest neighbours found in the
        history (classic item-kNN); ``source``: each history item votes for its ``k`` nearest
        neighbours.
    max_votes : int or None
        With ``target``, a history item votes for at most this many of the items that list
        it among their neighbours (the most similar): a popular item is listed by a share of
        the catalogue, so without a bound its row, and the cost of every answer whose
        history holds it, would grow with the catalogue. None: no bound.
    max_block_entries : int
        Memory bound of the blocked similarity computation.

    Attributes
    ----------
    similarity_ : csr_matrix of shape (n_items, n_items), float32
        Row ``j`` = the weights history item ``j`` gives to other items.
    neighbours_ : csr_matrix of shape (n_items, n_items), float32
        Row ``i`` = item ``i``'s top-k neighbours (the answer to "similar items").
    """

    def __init__(
        self,
        *,
        k: int = 200,
        shrink: float = 0.0,
        similarity: Similarity = "cosine",
        neighbourhood: Neighbourhood = "target",
        max_votes: int | None = 1000,
        max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
    ) -> None:
        self.k = k
        self.shrink = shrink
        self.similarity = similarity
        self.neighbourhood = neighbourhood
        self.max_votes = max_votes
        self.max_block_entries = max_block_entries

    def fit(self, X: sparse.spmatrix, /, **context: Any) -> Self:
        """Fit on a user x item matrix of shape (n_users, n_items)."""
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}")
        if self.neighbourhood not in NEIGHBOURHOODS:
            raise ValueError(f"neighbourhood must be one of {NEIGHBOURHOODS}")
        neighbours = item_similarity(
            _as_csr(X),
            kind=self.similarity,
            k=self.k,
            shrink=self.shrink,
            max_block_entries=self.max_block_entries,
        )
        self._set_neighbours(neighbours)
        return self

    def fit_neighbours(self, neighbours: sparse.spmatrix) -> Self:
        """Fit from neighbour rows computed elsewhere (another engine), shape (n_items, n_items)."""
        self._set_neighbours(sparse.csr_matrix(neighbours))
        return self

    def _set_neighbours(
        self, neighbours: sparse.csr_matrix, similarity: sparse.csr_matrix | None = None
    ) -> None:
        neighbours = strongest_first(neighbours)
        self.neighbours_ = neighbours
        if self.neighbourhood == "source":
            self._set_similarity(neighbours)
        elif similarity is not None:
            self._set_similarity(similarity)
        else:
            votes = neighbours.T.tocsr()
            if self.max_votes is not None:
                votes = top_k_per_row(votes, self.max_votes)
            self._set_similarity(votes)

    def similar_items(
        self, item: int, n: int = 10
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Return the ``n`` nearest neighbours of ``item`` and their similarities."""
        self._check_fitted()
        return row_top_n(self.neighbours_, item, n)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta."""
        self._check_fitted()
        arrays = {"neighbours": self.neighbours_}
        if self.neighbourhood != "source":
            # The transposed rows too: loaded memory-mapped, the workers share them instead
            # of each building its own transpose at load.
            arrays["similarity"] = self.similarity_
        return arrays, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output (older ones: no ``similarity``)."""
        model = cls._from_meta(meta)
        model._set_neighbours(arrays["neighbours"], arrays.get("similarity"))
        return model


class RP3beta(ItemItemScorer):
    """Random walk user -> item -> user -> item with popularity penalty (Paudel et al. 2017).

    ``W = P_iu @ P_ui`` with column ``j`` divided by ``popularity_j ** beta``, entries raised to
    ``alpha`` before row normalisation, top-k per row. Sparse and blocked, so it scales to
    catalogues where EASE's dense item x item matrix does not fit.

    Parameters
    ----------
    alpha : float
    beta : float
    k : int
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 0.5,
        k: int = 200,
        max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.max_block_entries = max_block_entries

    def fit(self, X: sparse.spmatrix, /, **context: Any) -> Self:
        """Fit on a user x item matrix of shape (n_users, n_items)."""
        X = _as_csr(X).astype(np.float64)
        X.data = np.power(np.maximum(X.data, 0.0), self.alpha)
        user_deg = np.asarray(X.sum(axis=1)).ravel()
        item_deg = np.asarray(X.sum(axis=0)).ravel()
        p_ui = (
            sparse.diags(np.divide(1.0, user_deg, out=np.zeros_like(user_deg), where=user_deg > 0))
            @ X
        )
        p_iu = (
            sparse.diags(np.divide(1.0, item_deg, out=np.zeros_like(item_deg), where=item_deg > 0))
            @ X.T
        )
        popularity = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
        col_norms = np.where(popularity > 0, np.power(popularity, self.beta), 1.0)
        W = blocked_top_k_product(
            p_iu.tocsr(),
            p_ui.tocsr(),
            k=self.k,
            col_norms=col_norms,
            exclude_diagonal=True,
            max_block_entries=self.max_block_entries,
        )
        self._set_similarity(W)
        return self


class EASE(ItemItemScorer):
    """Embarrassingly Shallow Autoencoder (Steck 2019): a closed-form item x item model.

    Its fit needs a dense ``n_items ** 2`` matrix, so ``fit`` refuses catalogues above
    ``max_items``; use :class:`RP3beta` there. It scores with each row pruned to its ``k``
    largest weights in absolute value (``similarity_``; the negative ones vote against an
    item), like the other item-item models, so that an answer gathers a few entries per
    history item instead of a dense row; ``k=None`` scores with the dense weights (the
    published model, for reference).

    Parameters
    ----------
    l2 : float
        Ridge regularisation added to the Gram matrix diagonal.
    max_items : int
    k : int or None
        Weights kept per row for scoring; None keeps the dense matrix.
    n_threads : int
        BLAS threads for the inversion.

    Attributes
    ----------
    weights_ : ndarray of shape (n_items, n_items), float32, zero diagonal
    similarity_ : csr_matrix of shape (n_items, n_items), float32, or None (``k=None``)
        Row ``j`` = the ``k`` weights of ``weights_[j]`` largest in absolute value.
    """

    _fitted_attr = "weights_"

    def __init__(
        self,
        *,
        l2: float = 500.0,
        max_items: int = 8000,
        k: int | None = 400,
        n_threads: int = 1,
    ) -> None:
        self.l2 = l2
        self.max_items = max_items
        self.k = k
        self.n_threads = n_threads

    def fit(self, X: sparse.spmatrix, /, **context: Any) -> Self:
        """Fit on a user x item matrix of shape (n_users, n_items)."""
        X = _as_csr(X)
        n_items = X.shape[1]
        if n_items > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n_items}x{n_items} matrix; max_items={self.max_items}"
            )
        X64 = X.astype(np.float64)
        return self.fit_gram((X64.T @ X64).toarray())

    def fit_gram(self, gram: NDArray[np.float64]) -> Self:
        """Fit from the Gram matrix ``X.T @ X``, dense (n_items, n_items), overwritten."""
        n_items = gram.shape[0]
        if n_items > self.max_items:
            raise ValueError(
                f"EASE needs a dense {n_items}x{n_items} matrix; max_items={self.max_items}"
            )
        gram = np.asarray(gram, dtype=np.float64)
        gram[np.diag_indices(n_items)] += self.l2
        # The Gram matrix plus a positive ridge is symmetric positive definite: invert it
        # through its Cholesky factor (potrf + potri, ~2x cheaper than a general inverse).
        # One BLAS thread: on this 2-core machine a 2-thread potri took 14x longer under load.
        with threadpool_limits(limits=self.n_threads, user_api="blas"):
            factor, info = linalg.lapack.dpotrf(gram, lower=True, overwrite_a=True)
            if info != 0:
                raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite ({info})")
            P, info = linalg.lapack.dpotri(factor, lower=True, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE Gram matrix inverse failed ({info})")
        P = np.tril(P) + np.tril(P, -1).T
        B = P / (-np.diag(P))[None, :]
        B[np.diag_indices(n_items)] = 0.0
        self._set_weights(B.astype(np.float32))
        return self

    def _set_weights(
        self, weights: NDArray[np.float32], pruned: sparse.csr_matrix | None = None
    ) -> None:
        # Dense row gathers (k=None) need contiguous rows (cho_solve returns Fortran order).
        self.weights_ = weights if weights.flags.c_contiguous else np.ascontiguousarray(weights)
        self.n_items_ = weights.shape[0]
        if self.k is None:
            self.similarity_: sparse.csr_matrix | None = None
            return
        if pruned is None:
            pruned = dense_top_k_rows(self.weights_, self.k, by_magnitude=True)
        self.similarity_ = strongest_first(pruned)

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return ``weights @ similarity_[items]`` (``weights_`` when k is None), (n_items,)."""
        self._check_fitted()
        if self.similarity_ is not None:
            return super().score(items, weights)
        if len(items) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        return np.asarray(weights, dtype=np.float32) @ self.weights_[items]

    def votes(
        self, items: NDArray[np.int64], weights: NDArray[np.float32], share: float = 1.0
    ) -> Votes:
        """The pruned rows' entries (:meth:`BaseScorer.votes`; a dense pass when k is None)."""
        self._check_fitted()
        if self.similarity_ is not None:
            return super().votes(items, weights, share)
        return BaseScorer.votes(self, items, weights)

    def score_rows(self, histories: sparse.csr_matrix) -> NDArray[np.float32]:
        """Score many histories at once, (n_histories, n_items)."""
        self._check_fitted()
        if self.similarity_ is not None:
            return super().score_rows(histories)
        product = sparse.csr_matrix(histories, dtype=np.float32) @ self.weights_
        return np.asarray(product, dtype=np.float32)

    def explain(
        self,
        items: NDArray[np.int64],
        weights: NDArray[np.float32],
        targets: NDArray[np.int64],
    ) -> NDArray[np.int64]:
        """Return, per target, the position in ``items`` contributing most (-1: none)."""
        self._check_fitted()
        if self.similarity_ is not None:
            return super().explain(items, weights, targets)
        if len(items) == 0:
            return np.full(len(targets), -1, dtype=np.int64)
        contrib = self.weights_[np.ix_(items, targets)] * np.asarray(weights)[:, None]
        best = contrib.argmax(axis=0)
        best[contrib.max(axis=0) <= 0] = -1
        return best.astype(np.int64)

    def similar_items(
        self, item: int, n: int = 10
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Return the ``n`` items ``item`` predicts most strongly and their weights."""
        self._check_fitted()
        row = np.asarray(self.weights_[item])
        idx = top_n(row, n)
        return idx, row[idx].astype(np.float32)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta (the pruned rows too)."""
        self._check_fitted()
        arrays: dict[str, Any] = {"weights": self.weights_}
        if self.similarity_ is not None:
            arrays["similarity"] = self.similarity_
        return arrays, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output.

        A bundle written before EASE was pruned has no ``similarity`` array and no ``k``:
        it loads with the default ``k`` and its rows are pruned here (deterministic, about
        a second for 4,000 items).
        """
        model = cls._from_meta(meta)
        model._set_weights(arrays["weights"], arrays.get("similarity"))
        return model


class UserKNN(BaseScorer):
    """User-based nearest neighbours: the history is compared with every training user.

    Parameters
    ----------
    k : int
        Neighbours (users) whose items are summed, weighted by similarity.
    shrink : float
    similarity : {"cosine", "pearson"}
        ``pearson`` centres each user's stored values (and the history's) on their mean.

    Attributes
    ----------
    interactions_ : csr_matrix of shape (n_users, n_items), float32
    by_item_ : csr_matrix of shape (n_items, n_users), float32
        The (centred for Pearson) values by item, to find users sharing history items.
    user_norms_ : ndarray of shape (n_users,), float32
    """

    _fitted_attr = "interactions_"

    def __init__(
        self, *, k: int = 50, shrink: float = 0.0, similarity: UserSimilarity = "cosine"
    ) -> None:
        self.k = k
        self.shrink = shrink
        self.similarity = similarity

    def fit(self, X: sparse.spmatrix, /, **context: Any) -> Self:
        """Fit on a user x item matrix of shape (n_users, n_items)."""
        if self.similarity not in get_args(UserSimilarity):
            raise ValueError("similarity must be 'cosine' or 'pearson'")
        X = _as_csr(X)
        centred = center_nonzeros(X) if self.similarity == "pearson" else X.astype(np.float64)
        by_item = centred.T.tocsr().astype(np.float32)
        by_item.sort_indices()
        self._set_state(X, by_item, row_norms(centred).astype(np.float32))
        return self

    def _set_state(
        self, X: sparse.csr_matrix, by_item: sparse.csr_matrix, norms: NDArray[np.float32]
    ) -> None:
        self.interactions_ = X
        self.by_item_ = by_item
        self.user_norms_ = norms
        self.n_users_, self.n_items_ = X.shape
        self._forgotten: NDArray[np.bool_] | None = None

    def forget_users(self, users: NDArray[np.int64]) -> None:
        """Never use these users (row indices) as neighbours again (erasure before a retrain)."""
        self._check_fitted()
        if self._forgotten is None:
            self._forgotten = np.zeros(self.n_users_, dtype=bool)
        users = np.asarray(users, dtype=np.int64)
        self._forgotten[users[(users >= 0) & (users < self.n_users_)]] = True

    def _neighbours(
        self, items: NDArray[np.int64], weights: NDArray[np.float32]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        h = np.asarray(weights, dtype=np.float32)
        if self.similarity == "pearson":
            h = h - h.mean()
        h_norm = float(np.sqrt(h @ h))
        if h_norm == 0.0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        # Only the users sharing a history item have a non-zero dot product: sum their
        # entries (in the order gather_rows_score sums them, so the same bits) and rank those.
        b = self.by_item_
        touched_users, entries, _ = gather_votes(b.indptr, b.indices, b.data, items, h)
        if len(touched_users) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        touched, inverse = distinct(touched_users, self.n_users_)
        dots = np.bincount(inverse, weights=entries, minlength=len(touched))
        dots = dots.astype(np.float32)
        denom = self.user_norms_[touched] * h_norm + self.shrink
        sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        if self._forgotten is not None:
            sims[self._forgotten[touched]] = 0.0
        best = top_n(sims, self.k)
        return touched[best], sims[best]

    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Return the similarity-weighted sum of the ``k`` nearest users' rows, (n_items,)."""
        self._check_fitted()
        if len(items) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        users, sims = self._neighbours(items, weights)
        if len(users) == 0:
            return np.zeros(self.n_items_, dtype=np.float32)
        X = self.interactions_
        return gather_rows_score(X.indptr, X.indices, X.data, users, sims, self.n_items_)

    def votes(
        self, items: NDArray[np.int64], weights: NDArray[np.float32], share: float = 1.0
    ) -> Votes:
        """The nearest users' entries (see :meth:`BaseScorer.votes`; no history owners)."""
        self._check_fitted()
        if len(items) == 0:
            return Votes(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        users, sims = self._neighbours(items, weights)
        X = self.interactions_
        cols, vals, _ = gather_votes(X.indptr, X.indices, X.data, users, sims)
        return Votes(cols, vals)

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta."""
        self._check_fitted()
        arrays = {
            "interactions": self.interactions_,
            "by_item": self.by_item_,
            "user_norms": self.user_norms_,
        }
        return arrays, self._state_meta()

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = cls._from_meta(meta)
        model._set_state(arrays["interactions"], arrays["by_item"], arrays["user_norms"])
        return model
