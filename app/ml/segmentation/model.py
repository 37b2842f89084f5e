"""Customer segmentation: RFM scores and groups, behaviour features, K-means and DBSCAN.

Input is one row of aggregates per customer (:class:`CustomerAggregates`): the store computes
them with SQL aggregates, :func:`aggregate_events` computes them from event arrays for tests,
benchmarks and the trainer. Customers who never purchased are not clustered: they form the
reserved segment ``NO_PURCHASE_SEGMENT`` (-1, "No purchase yet", the "new customer" segment
of the design). DBSCAN's noise is the reserved segment ``OUTLIER_SEGMENT`` (-2).

Features: see :mod:`app.ml.segmentation.features`; RFM scores and groups: see
:mod:`app.ml.segmentation.rfm`; how K-means and DBSCAN are fitted: see
:mod:`app.ml.segmentation.clustering`; segment profiles and labels: see
:mod:`app.ml.segmentation.profiles`; the saved state: see :mod:`app.ml.segmentation.state`.

The data's clock
----------------
Recency and tenure are measured to a reference time ``now``. At fit it is the last event of the
data (``reference_time_``, stored with the model); live assignment uses
:meth:`CustomerSegmentation.data_time`: the reference time plus the whole days elapsed on the
wall clock since the fit. A historic dataset (Online Retail ends in 2011) is thus measured on
its own clock, a live shop on one that advances with the wall; and a customer without an event
since training gets exactly the training answer until a day has passed (recency is in days,
and RFM edges often sit exactly on a customer's value, so a second of drift would move them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.ml.interactions import SECONDS_PER_DAY
from app.ml.segmentation.assignment import SegmentAssignment
from app.ml.segmentation.clustering import (
    NO_PURCHASE_SEGMENT,
    OUTLIER_SEGMENT,
    KMeansFit,
    cluster_quality,
    dbscan_cores,
    kmeans_by_spend,
    knee_eps,
    nearest_centroid,
    nearest_core,
    row_normalise,
    sample_rows,
    silhouette_by_k,
)
from app.ml.segmentation.features import (
    FEATURES,
    CustomerAggregates,
    ItemCounts,
    aligned_category_counts,
    base_features,
    category_components,
    feature_matrix,
)
from app.ml.segmentation.profiles import (
    NO_PURCHASE_LABEL,
    SegmentProfile,
    json_float,
    segment_profiles,
)
from app.ml.segmentation.rfm import rfm_edges, rfm_group_index, rfm_group_names, rfm_scores
from app.ml.segmentation.state import restore_state, state_of, state_params
from app.ml.segmentation.value import CustomerValue, value_inputs

__all__ = ["CustomerSegmentation", "NotEnoughData"]

Algorithm = Literal["kmeans", "dbscan"]
ALGORITHMS: tuple[str, ...] = ("kmeans", "dbscan")


class NotEnoughData(ValueError):
    """The customers given cannot support a segmentation (too few with a purchase)."""


class CustomerSegmentation:
    """RFM scoring plus K-means and DBSCAN segments over behaviour features.

    Parameters
    ----------
    algorithm : {"kmeans", "dbscan"}
        Default clustering for :meth:`assign`; both are always fitted.
    k : int, optional
        Number of K-means clusters; default chosen by silhouette over ``k_range``.
    k_range : (int, int)
        Inclusive range of k tried when ``k`` is None.
    n_init : int
        K-means restarts (k-means++ seeding).
    dbscan_min_samples : int
        DBSCAN ``min_samples`` (the point itself included, as in scikit-learn).
    dbscan_eps : float, optional
        DBSCAN radius in standardised feature space; default the k-distance knee.
    sample_size : int
        Customers used to choose k and to fit DBSCAN; the final K-means uses everyone.
    silhouette_sample_size : int
        Customers used for each silhouette figure (it costs O(n^2)).
    n_category_components : int
        TruncatedSVD components of the category matrix (fewer when there are few categories).
    category_weight : float
        Multiplier of the standardised category components.
    random_state : int
        Seed of every random step.
    n_threads : int, optional
        Threads of the native code (OpenMP, BLAS) during ``fit``. One by default: on a busy
        two-core box K-means with two OpenMP threads ran 40x slower than with one. None leaves
        the libraries' defaults.
    """

    #: The data's clock at fit (latest event) and the wall clock then; None in old states.
    reference_time_: float | None
    fitted_at_: float | None
    #: Each algorithm's segment profiles, labelled, in segment order (reserved ones last).
    profiles_: dict[str, list[SegmentProfile]]
    #: BG/NBD + Gamma-Gamma predicted value (unpublished, with its reason, on little data).
    value_: CustomerValue

    def __init__(
        self,
        *,
        algorithm: Algorithm = "kmeans",
        k: int | None = None,
        k_range: tuple[int, int] = (3, 8),
        n_init: int = 10,
        dbscan_min_samples: int = 10,
        dbscan_eps: float | None = None,
        sample_size: int = 20_000,
        silhouette_sample_size: int = 5_000,
        n_category_components: int = 3,
        category_weight: float = 0.5,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.algorithm = algorithm
        self.k = k
        self.k_range = k_range
        self.n_init = n_init
        self.dbscan_min_samples = dbscan_min_samples
        self.dbscan_eps = dbscan_eps
        self.sample_size = sample_size
        self.silhouette_sample_size = silhouette_sample_size
        self.n_category_components = n_category_components
        self.category_weight = category_weight
        self.random_state = random_state
        self.n_threads = n_threads

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {
            "algorithm": self.algorithm,
            "k": self.k,
            "k_range": tuple(self.k_range),
            "n_init": self.n_init,
            "dbscan_min_samples": self.dbscan_min_samples,
            "dbscan_eps": self.dbscan_eps,
            "sample_size": self.sample_size,
            "silhouette_sample_size": self.silhouette_sample_size,
            "n_category_components": self.n_category_components,
            "category_weight": self.category_weight,
            "random_state": self.random_state,
            "n_threads": self.n_threads,
        }

    def __repr__(self) -> str:
        return f"CustomerSegmentation(algorithm={self.algorithm!r}, k={self.k!r})"

    # -- fitting ------------------------------------------------------------------------------

    def fit(
        self,
        agg: CustomerAggregates,
        *,
        top_items: ItemCounts | None = None,
        kmeans: KMeansFit | None = None,
    ) -> CustomerSegmentation:
        """Learn scaler, RFM edges, K-means and DBSCAN segments, profiles and quality figures.

        Parameters
        ----------
        agg : CustomerAggregates with n_customers rows
        top_items : ItemCounts, optional
            Purchase counts per customer (rows aligned with ``agg``) and item; adds the top
            items to each profile.
        kmeans : callable like :func:`kmeans_by_spend`, optional
            What fits K-means on every customer (another engine's); default scikit-learn's.
        """
        # Load sklearn's native libraries first: threadpoolctl only limits what is loaded.
        import sklearn.cluster  # noqa: F401
        from threadpoolctl import threadpool_limits

        self._check_params()
        self._kmeans_fit: KMeansFit = kmeans or kmeans_by_spend
        if top_items is not None and top_items.matrix.shape[0] != len(agg):
            raise ValueError("top_items.matrix must have one row per customer in agg")
        with threadpool_limits(limits=self.n_threads):
            return self._fit(agg, top_items)

    def _fit(self, agg: CustomerAggregates, top_items: ItemCounts | None) -> CustomerSegmentation:
        """Fit features, K-means, DBSCAN and profiles in turn (``fit`` checked the inputs)."""
        t_start = time.perf_counter()
        rng = np.random.default_rng(self.random_state)
        base = base_features(agg)
        buyers = np.flatnonzero(base["bought"])
        ks = self._k_candidates(buyers.shape[0])
        self.reference_time_ = float(agg.now)
        self.fitted_at_ = time.time()
        X = self._fit_features(agg, base, buyers)
        # k is chosen and DBSCAN fitted on a sample; each silhouette figure on a smaller one.
        sample = sample_rows(rng, X.shape[0], self.sample_size)
        sil_rows = sample_rows(rng, sample.shape[0], self.silhouette_sample_size)
        spend = base["monetary"][buyers]
        km_labels, km_quality = self._fit_kmeans(X, spend, sample, sil_rows, ks, rng)
        db_labels, db_quality = self._fit_dbscan(X, sample, rng)
        self.value_ = CustomerValue().fit(value_inputs(agg))
        self._fit_profiles(agg, base, buyers, km_labels, db_labels, top_items)
        self.quality_ = {
            "n_customers": len(agg),
            "n_purchasers": int(buyers.shape[0]),
            "kmeans": km_quality,
            "dbscan": db_quality,
            "fit_seconds": time.perf_counter() - t_start,
        }
        return self

    def _k_candidates(self, n_buyers: int) -> range:
        """The k the silhouette may choose from; NotEnoughData if ``n_buyers`` are too few."""
        if n_buyers < 3 or (self.k is not None and self.k >= n_buyers):
            raise NotEnoughData(
                f"segmentation needs at least 3 customers with a purchase and more of them "
                f"than clusters; got {n_buyers}"
            )
        # Few buyers (a young shop): try only the k that silhouette can score.
        k_lo, k_hi = min(self.k_range[0], n_buyers - 1), min(self.k_range[1], n_buyers - 1)
        return range(k_lo, k_hi + 1)

    def _fit_features(
        self, agg: CustomerAggregates, base: dict[str, NDArray[Any]], buyers: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """Learn RFM edges, category components and scaler; return X, (n_buyers, n_features)."""
        self.categories_ = list(agg.categories)
        self.rfm_edges_ = rfm_edges(
            base["recency_days"][buyers], base["frequency"][buyers], base["monetary"][buyers]
        )
        shares = row_normalise(sp.csr_matrix(agg.category_counts, dtype=np.float64)[buyers])
        n_comp = min(self.n_category_components, len(self.categories_) - 1)
        self.svd_components_ = category_components(
            shares, n_comp, len(self.categories_), self.random_state
        )
        self.feature_names_ = [
            *FEATURES,
            *(f"category_{i + 1}" for i in range(self.svd_components_.shape[0])),
        ]
        raw = feature_matrix(base, buyers, shares, self.svd_components_)
        self.scaler_mean_ = raw.mean(axis=0)
        scale = raw.std(axis=0)
        self.scaler_scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.feature_weights_ = np.ones(raw.shape[1])
        self.feature_weights_[len(FEATURES) :] = self.category_weight
        return self._standardise(raw)

    def _standardise(self, raw: NDArray[np.float64]) -> NDArray[np.float64]:
        """``raw`` features scaled and weighted into the space the clusters live in."""
        return (raw - self.scaler_mean_) / self.scaler_scale_ * self.feature_weights_

    def _fit_kmeans(
        self,
        X: NDArray[np.float64],
        spend: NDArray[np.float64],
        sample: NDArray[np.int64],
        sil_rows: NDArray[np.int64],
        ks: range,
        rng: np.random.Generator,
    ) -> tuple[NDArray[np.int64], dict[str, Any]]:
        """Choose k on the sample (unless given), fit on everyone; labels and quality figures."""
        k_scores: dict[int, float] = {}
        if self.k is None:
            k_scores = silhouette_by_k(
                X[sample], sil_rows, ks, n_init=self.n_init, random_state=self.random_state
            )
            self.k_ = max(k_scores, key=lambda k: (np.nan_to_num(k_scores[k], nan=-np.inf), -k))
        else:
            self.k_ = int(self.k)
        self.centroids_, labels, stability, inertia = self._kmeans_fit(
            X, self.k_, spend, n_init=self.n_init, random_state=self.random_state
        )
        return labels, {
            "k": self.k_,
            "k_selection": "fixed" if self.k is not None else "silhouette",
            "silhouette_by_k": {str(k): json_float(v) for k, v in k_scores.items()},
            **cluster_quality(X, labels, rng, self.silhouette_sample_size),
            "stability_ari": stability,
            "inertia": inertia,
        }

    def _fit_dbscan(
        self, X: NDArray[np.float64], sample: NDArray[np.int64], rng: np.random.Generator
    ) -> tuple[NDArray[np.int64], dict[str, Any]]:
        """DBSCAN on the sample, then everyone takes the nearest core sample within eps.

        Returns the labels of every row of ``X`` and the quality figures.
        """
        Xd = X[sample]
        self.dbscan_eps_ = (
            float(self.dbscan_eps)
            if self.dbscan_eps is not None
            else knee_eps(Xd, self.dbscan_min_samples)
        )
        self.core_samples_, self.core_labels_, self.n_dbscan_clusters_ = dbscan_cores(
            Xd, self.dbscan_eps_, self.dbscan_min_samples
        )
        labels = nearest_core(X, self.core_samples_, self.core_labels_, self.dbscan_eps_)
        clustered = labels >= 0
        return labels, {
            "eps": self.dbscan_eps_,
            "min_samples": self.dbscan_min_samples,
            "fit_sample_size": int(sample.shape[0]),
            "n_clusters": self.n_dbscan_clusters_,
            "n_core_samples": int(self.core_samples_.shape[0]),
            "outlier_share": float(np.mean(labels == OUTLIER_SEGMENT)),
            **cluster_quality(X[clustered], labels[clustered], rng, self.silhouette_sample_size),
        }

    def _fit_profiles(
        self,
        agg: CustomerAggregates,
        base: dict[str, NDArray[Any]],
        buyers: NDArray[np.int64],
        km_labels: NDArray[np.int64],
        db_labels: NDArray[np.int64],
        top_items: ItemCounts | None,
    ) -> None:
        """Segments of every customer (purchasers' labels given) and their profiles."""
        n = len(agg)
        self.labels_ = np.full(n, NO_PURCHASE_SEGMENT, dtype=np.int64)
        self.labels_[buyers] = km_labels
        self.dbscan_labels_ = np.full(n, NO_PURCHASE_SEGMENT, dtype=np.int64)
        self.dbscan_labels_[buyers] = db_labels
        scores = rfm_scores(
            base["recency_days"], base["frequency"], base["monetary"], self.rfm_edges_
        )
        group_idx = rfm_group_index(*scores)
        value = self.value_.predict(value_inputs(agg))
        self.profiles_ = {}
        self.segment_labels_ = {}
        for name, labels in (("kmeans", self.labels_), ("dbscan", self.dbscan_labels_)):
            profiles = segment_profiles(labels, base, agg, group_idx, top_items, value)
            self.profiles_[name] = profiles
            self.segment_labels_[name] = {p["segment_id"]: p["label"] for p in profiles}

    def _check_params(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        lo, hi = self.k_range
        if self.k is None and not 2 <= lo <= hi:
            raise ValueError(f"k_range must satisfy 2 <= low <= high, got {self.k_range}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.dbscan_min_samples < 2:
            raise ValueError("dbscan_min_samples must be >= 2")

    # -- assignment ---------------------------------------------------------------------------

    def data_time(self, wall_time: float) -> float:
        """The data's clock at ``wall_time`` (epoch seconds): the ``now`` of live assignment.

        The fit's reference time plus the whole days of wall time elapsed since the fit (none
        before it). A state saved before reference times were stored measures on the wall clock.
        """
        self._check_fitted()
        if self.reference_time_ is None or self.fitted_at_ is None:
            return float(wall_time)
        days = max(math.floor((float(wall_time) - self.fitted_at_) / SECONDS_PER_DAY), 0)
        return self.reference_time_ + days * SECONDS_PER_DAY

    def assign(
        self, agg: CustomerAggregates, *, algorithm: Algorithm | None = None
    ) -> SegmentAssignment:
        """Assign customers to segments from their current aggregates, without refitting.

        Pure numpy on the stored arrays; one customer takes well under a millisecond.

        Parameters
        ----------
        agg : CustomerAggregates with n rows
        algorithm : {"kmeans", "dbscan"}, optional
            Default ``self.algorithm``.

        Returns
        -------
        SegmentAssignment with n rows
        """
        self._check_fitted()
        algorithm = algorithm or self.algorithm
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        base = base_features(agg)
        segment, outlier = self._segments(agg, base, algorithm)
        labels = self.segment_labels_[algorithm]
        label = np.asarray(
            [labels.get(int(s), NO_PURCHASE_LABEL) for s in segment.tolist()], dtype=np.str_
        )
        r, f, m = rfm_scores(
            base["recency_days"], base["frequency"], base["monetary"], self.rfm_edges_
        )
        return SegmentAssignment(
            user_ids=list(agg.user_ids),
            algorithm=algorithm,
            segment_id=segment,
            label=label,
            outlier=outlier,
            r_score=r,
            f_score=f,
            m_score=m,
            rfm_group=rfm_group_names(rfm_group_index(r, f, m)),
            recency_days=base["recency_days"],
            frequency=base["frequency"],
            monetary=base["monetary"],
            value=self.value_.predict(value_inputs(agg)),
        )

    def _segments(
        self, agg: CustomerAggregates, base: dict[str, NDArray[Any]], algorithm: Algorithm
    ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Segment ids of ``algorithm`` and DBSCAN outlier flags of every customer, shape (n,)."""
        buyers, X = self.features(agg, base)
        n = len(agg)
        segment = np.full(n, NO_PURCHASE_SEGMENT, dtype=np.int64)
        outlier = np.zeros(n, dtype=bool)
        if buyers.shape[0]:
            db = nearest_core(
                X, self.core_samples_, self.core_labels_, self.dbscan_eps_, self._core_norms()
            )
            outlier[buyers] = db == OUTLIER_SEGMENT
            if algorithm == "kmeans":
                segment[buyers] = nearest_centroid(X, self.centroids_)
            else:
                segment[buyers] = db
        return segment, outlier

    def features(
        self, agg: CustomerAggregates, base: dict[str, NDArray[Any]] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The purchasers among ``agg``'s rows, shape (b,), and their features in the space the
        clusters live in, shape (b, n_features); ``base`` is :func:`base_features` of ``agg``."""
        self._check_fitted()
        base = base_features(agg) if base is None else base
        buyers = np.flatnonzero(base["bought"])
        if not buyers.shape[0]:
            return buyers, np.zeros((0, len(self.scaler_mean_)))
        shares = row_normalise(aligned_category_counts(agg, buyers, self.categories_))
        return buyers, self._standardise(feature_matrix(base, buyers, shares, self.svd_components_))

    def _core_norms(self) -> NDArray[np.float64]:
        """Squared norms of the DBSCAN core samples, computed once per fitted state."""
        cached = self.__dict__.get("_core_sq")
        if cached is None or cached[0] is not self.core_samples_:
            cached = (
                self.core_samples_,
                np.einsum("ij,ij->i", self.core_samples_, self.core_samples_),
            )
            self._core_sq = cached
        return cached[1]

    # -- reporting ----------------------------------------------------------------------------

    def profiles(self, algorithm: Algorithm | None = None) -> list[SegmentProfile]:
        """JSON-able profiles of the segments of ``algorithm`` (default ``self.algorithm``)."""
        self._check_fitted()
        algorithm = algorithm or self.algorithm
        if algorithm not in self.profiles_:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        return [p.copy() for p in self.profiles_[algorithm]]

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """Numeric arrays and JSON-able metadata that fully describe the fitted model."""
        self._check_fitted()
        return state_of(self)

    @classmethod
    def from_state(
        cls, arrays: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]
    ) -> CustomerSegmentation:
        """Rebuild a fitted model from :meth:`to_state` output (no refit, no pickle)."""
        model = cls(**state_params(meta))
        restore_state(model, arrays, meta)
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise RuntimeError(
                "this CustomerSegmentation is not fitted yet: call fit() or from_state() first"
            )
