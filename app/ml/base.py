"""The model interface every scorer implements: parameters, the fitted check, scoring, state."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, NamedTuple, Self

import numpy as np
from numpy.typing import NDArray
from scipy import sparse


class Votes(NamedTuple):
    """The entries a history gives a model's items, before they are summed per item.

    Attributes
    ----------
    cols : ndarray of shape (e,), int64; the item of each entry (repeats allowed)
    vals : ndarray of shape (e,), float32; its value
    owners : ndarray of shape (e,), int64, or None; the position in the history of the item
        each entry comes from (None when entries do not come from one history item)
    """

    cols: NDArray[np.int64]
    vals: NDArray[np.float32]
    owners: NDArray[np.int64] | None = None


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before ``fit`` (same bases as scikit-learn's)."""


class BaseScorer(ABC):
    """The model interface: ``fit``, ``score``, ``score_rows``, ``explain``, ``similar_items``, state.

    The parameters, the fitted check and the state format are written once here. Subclasses
    take keyword-only hyper-parameters in ``__init__`` (stored as attributes of the same name,
    read back by :meth:`get_params`), set attributes ending in ``_`` in ``fit`` and implement
    ``fit`` and ``score``.
    """

    _fitted_attr = "n_items_"

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The hyper-parameters: the named parameters of ``__init__``, as scikit-learn reads them."""
        if cls.__init__ is object.__init__:
            return []
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # not self
        return [p.name for p in parameters if p.kind in named]

    def get_params(self) -> dict:
        """Return the hyper-parameters as a JSON-able dict."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call fit() before using it"
            )

    @abstractmethod
    def fit(self, X: Any, /, **context: Any) -> Self:
        """Fit on the model's training data ``X`` and return ``self``.

        ``X`` is what the model learns from: the user x item matrix of shape (n_users,
        n_items) for the collaborative and popularity models, one text per item for content,
        the timed events for trending. ``context`` carries what a model needs besides (the
        users' segments of :class:`~app.ml.popularity.SegmentPopularity`, the reference time
        of :class:`~app.ml.popularity.Trending`); a model ignores context it does not use.
        """

    @abstractmethod
    def score(self, items: NDArray[np.int64], weights: NDArray[np.float32]) -> NDArray[np.float32]:
        """Score every item for a history of item indices with weights, shape (n_items,)."""

    def votes(
        self, items: NDArray[np.int64], weights: NDArray[np.float32], share: float = 1.0
    ) -> Votes:
        """The entries whose sums per item are :meth:`score` (see :class:`Votes`).

        With ``share`` < 1 a model that reads one row per history item reads only each
        row's strongest ``share`` of entries (a long history's budget); the sums are then
        :meth:`score`'s of those entries. Other models ignore it.

        An item may appear several times (one entry per history item voting for it); items
        with no entry score 0. Serving sums these over a candidate set instead of building
        the score of every item, so a model whose history scores touch few items overrides
        this with a gather of those few (the default reads :meth:`score`'s non-zeros, a pass
        over every item). The sums are taken in entry order in float64, then rounded to
        float32, exactly as :meth:`score` computes them. With ``owners``, an entry's value is
        also its history item's contribution, which :meth:`explain` reports.
        """
        scores = self.score(items, weights)
        touched = np.flatnonzero(scores)
        return Votes(touched.astype(np.int64), np.asarray(scores[touched], dtype=np.float32))

    def static_scores(self) -> NDArray[np.float32] | None:
        """The scores of a model that scores every history the same (popularity), else None."""
        return None

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

    def similar_items(
        self, item: int, n: int = 10
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The ``n`` items most related to ``item`` and their weights (item-item models only)."""
        raise NotImplementedError(f"{type(self).__name__} has no item neighbours")

    def to_state(self) -> tuple[dict[str, Any], dict]:
        """Return the fitted state as arrays and JSON-able meta (a bundle component)."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> Self:
        """Rebuild a fitted model from :meth:`to_state` output."""
        raise NotImplementedError

    def _state_meta(self) -> dict:
        return {"model": type(self).__name__, "params": self.get_params()}

    @classmethod
    def _from_meta(cls, meta: dict) -> Self:
        if meta.get("model") != cls.__name__:
            raise ValueError(f"state is for {meta.get('model')!r}, not {cls.__name__}")
        return cls(**meta["params"])
