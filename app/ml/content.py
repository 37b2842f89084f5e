"""Content-based similarity: TF-IDF over item title, description and categories."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from app.ml.similarity import DEFAULT_MAX_BLOCK_ENTRIES, ItemItemScorer, blocked_top_k_product


class ContentTfidf(ItemItemScorer):
    """Item-item cosine similarity of TF-IDF vectors, top-k per item, computed blocked.

    It reaches items nobody has interacted with yet, which collaborative models cannot.

    Parameters
    ----------
    k : int
        Neighbours kept per item (a small vocabulary makes the full matrix nearly dense).
    max_df : float
        Ignore terms in more than this share of items.
    min_df : int
    stop_words : "english" or None
    ngram_range : tuple of two ints
    sublinear_tf : bool

    Attributes
    ----------
    similarity_ : csr_matrix of shape (n_items, n_items), float32
    vocabulary_ : list of str
        The TF-IDF terms in column order.
    idf_ : ndarray of shape (n_terms,), float32
    """

    _param_names = (
        "k",
        "max_df",
        "min_df",
        "stop_words",
        "ngram_range",
        "sublinear_tf",
        "max_block_entries",
    )

    def __init__(
        self,
        *,
        k: int = 100,
        max_df: float = 0.5,
        min_df: int = 1,
        stop_words: str | None = "english",
        ngram_range: tuple[int, int] = (1, 1),
        sublinear_tf: bool = True,
        max_block_entries: int = DEFAULT_MAX_BLOCK_ENTRIES,
    ) -> None:
        self.k = k
        self.max_df = max_df
        self.min_df = min_df
        self.stop_words = stop_words
        self.ngram_range = ngram_range
        self.sublinear_tf = sublinear_tf
        self.max_block_entries = max_block_entries

    def _vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            max_df=self.max_df,
            min_df=self.min_df,
            stop_words=self.stop_words,
            ngram_range=tuple(self.ngram_range),
            sublinear_tf=self.sublinear_tf,
            lowercase=True,
            dtype=np.float32,
        )

    def fit(self, texts: Sequence[str]) -> ContentTfidf:
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
    def from_state(cls, arrays: dict, meta: dict) -> ContentTfidf:
        """Rebuild a fitted model from :meth:`to_state` output."""
        model = super().from_state(arrays, meta)
        model.vocabulary_ = list(meta.get("vocabulary", []))
        model.idf_ = arrays.get("idf", np.zeros(0, dtype=np.float32))
        return model
