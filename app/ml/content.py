"""Content-based similarity: TF-IDF over item title, description and categories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from app.ml.similarity import DEFAULT_MAX_BLOCK_ENTRIES, ItemItemScorer, blocked_top_k_product

# Rarest shared terms per item used as sort keys by :func:`rarity_order`.
_ORDER_DEPTH = 4


def rarity_order(tfidf: sparse.csr_matrix, depth: int = _ORDER_DEPTH) -> NDArray[np.int64]:
    """Order items by their rarest shared terms, so that similar items end up adjacent.

    Each item's key is the sequence of its ``depth`` rarest terms among those in at least two
    items (document frequency ascending, ties by column); items are sorted by these keys
    lexicographically (ties by index). Items sharing a rare term are thus contiguous, and
    within them items sharing the next rarest term too.

    Parameters
    ----------
    tfidf : csr_matrix of shape (n_items, n_terms)
    depth : int

    Returns
    -------
    ndarray of shape (n_items,), int64: item indices in order.
    """
    tfidf = sparse.csr_matrix(tfidf)
    n, d = tfidf.shape
    df = np.bincount(tfidf.indices, minlength=d)
    rarity = np.empty(d, dtype=np.int64)
    rarity[np.argsort(df, kind="stable")] = np.arange(d)
    # A term of one item links no pair: it must not separate that item from its neighbours.
    term_key = np.where(df[tfidf.indices] > 1, rarity[tfidf.indices], d)
    rows = np.repeat(np.arange(n), np.diff(tfidf.indptr))
    by_rarity = np.lexsort((term_key, rows))  # rows stay in order, rarest term first
    position = np.arange(tfidf.nnz) - tfidf.indptr[rows]
    keys = np.full((depth, n), d, dtype=np.int64)
    first = position < depth
    keys[position[first], rows[first]] = term_key[by_rarity][first]
    return np.lexsort(keys[::-1]).astype(np.int64)


def split_long_postings(
    tfidf: sparse.csr_matrix, max_postings: int, order: NDArray[np.int64]
) -> sparse.csr_matrix:
    """Split every term in more than ``max_postings`` items into groups of consecutive items.

    A term in ``df`` items becomes ``ceil(df / max_postings)`` columns of near-equal size, its
    items assigned to them in ``order``; other terms keep one column. The product of the result
    with its transpose links two items through a long term only when they fall in the same
    group, so each row has at most ``max_postings`` candidates per term.

    Parameters
    ----------
    tfidf : csr_matrix of shape (n_items, n_terms)
    max_postings : int, at least 1
    order : ndarray of shape (n_items,), a permutation of the items (:func:`rarity_order`)

    Returns
    -------
    csr_matrix of shape (n_items, n_groups), same values as ``tfidf``, columns grouped by term.
    """
    csc = sparse.csc_matrix(tfidf)
    n, d = csc.shape
    df = np.diff(csc.indptr)
    cols = np.repeat(np.arange(d), df)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    in_order = np.lexsort((position[csc.indices], cols))  # columns stay in order
    rank = np.arange(csc.nnz) - csc.indptr[cols]
    n_groups = np.maximum(1, -(-df // max_postings))
    offsets = np.cumsum(n_groups) - n_groups
    group = offsets[cols] + rank * n_groups[cols] // np.maximum(df[cols], 1)
    return sparse.csr_matrix(
        (csc.data[in_order], (csc.indices[in_order], group)),
        shape=(n, int(n_groups.sum())),
        dtype=csc.dtype,
    )


class ContentTfidf(ItemItemScorer):
    """Item-item cosine similarity of TF-IDF vectors, top-k per item, computed blocked.

    It reaches items nobody has interacted with yet, which collaborative models cannot.

    The similarity is exact while no term is in more than ``max_postings`` items. Beyond that
    (a large catalogue with a small vocabulary makes ``X @ X.T`` nearly dense, so the exact
    product grows with the square of the items), items are compared through such a term only
    within groups of at most ``max_postings`` items that share it, formed in
    :func:`rarity_order` (:func:`split_long_postings`). Each item then has a bounded number of
    candidates, the fit grows linearly with the items, and a stored value is the part of the
    cosine carried by the terms the pair shares a group in (at most the cosine; equal to it
    for pairs that share a group in every common term, typically the closest ones).

    Parameters
    ----------
    k : int
        Neighbours kept per item (a small vocabulary makes the full matrix nearly dense).
    max_df : float
        Ignore terms in more than this share of items.
    min_df : int
    stop_words : "english" or None
    ngram_max : int
        Terms are word n-grams of 1 to ``ngram_max`` words.
    sublinear_tf : bool
    max_postings : int or None
        Terms in more items than this link items only within groups of this size; None: exact.
    max_block_entries : int

    Attributes
    ----------
    similarity_ : csr_matrix of shape (n_items, n_items), float32
    vocabulary_ : list of str
        The TF-IDF terms in column order.
    idf_ : ndarray of shape (n_terms,), float32
    """

    def __init__(
        self,
        *,
        k: int = 100,
        max_df: float = 0.5,
        min_df: int = 1,
        stop_words: str | None = "english",
        ngram_max: int = 1,
        sublinear_tf: bool = True,
        max_postings: int | None = 400,
        max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
    ) -> None:
        self.k = k
        self.max_df = max_df
        self.min_df = min_df
        self.stop_words = stop_words
        self.ngram_max = ngram_max
        self.sublinear_tf = sublinear_tf
        self.max_postings = max_postings
        self.max_block_entries = max_block_entries

    def _vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            max_df=self.max_df,
            min_df=self.min_df,
            stop_words=self.stop_words,
            ngram_range=(1, self.ngram_max),
            sublinear_tf=self.sublinear_tf,
            lowercase=True,
            dtype=np.float32,
        )

    def fit(self, texts: Sequence[str], /, **context: Any) -> Self:
        """Fit on one text per item (index order); empty texts get no neighbours.

        Parameters
        ----------
        texts : sequence of str of length n_items
        """
        n = len(texts)
        vectorizer = self._vectorizer()
        try:
            tfidf = vectorizer.fit_transform(list(texts)).tocsr()
            terms = vectorizer.get_feature_names_out().tolist()
            idf = vectorizer.idf_.astype(np.float32)
        except ValueError:  # empty vocabulary: no text, or only stop words
            tfidf = sparse.csr_matrix((n, 0), dtype=np.float32)
            terms, idf = [], np.zeros(0, dtype=np.float32)
        # Rows are L2-normalised by the vectorizer, so the dot product is the cosine.
        df = np.bincount(tfidf.indices, minlength=tfidf.shape[1])
        if self.max_postings is not None and df.max(initial=0) > self.max_postings:
            tfidf = split_long_postings(tfidf, self.max_postings, rarity_order(tfidf))
        similarity = blocked_top_k_product(
            tfidf,
            tfidf.T.tocsr(),
            k=self.k,
            exclude_diagonal=True,
            max_block_entries=self.max_block_entries,
        )
        self.vocabulary_ = terms
        self.idf_ = idf
        self._set_similarity(similarity)
        return self

    def to_state(self) -> tuple[dict, dict]:
        """Return the fitted state as arrays and JSON-able meta (terms in the meta)."""
        arrays, meta = super().to_state()
        arrays["idf"] = self.idf_
        meta["vocabulary"] = list(self.vocabulary_)
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output (or an older release's)."""
        params = dict(meta["params"])
        if "ngram_range" in params:  # bundles before ngram_max stored the range (1, n)
            params["ngram_max"] = int(params.pop("ngram_range")[1])
        model = super().from_state(arrays, {**meta, "params": params})
        model.vocabulary_ = list(meta.get("vocabulary", []))
        model.idf_ = arrays.get("idf", np.zeros(0, dtype=np.float32))
        return model
