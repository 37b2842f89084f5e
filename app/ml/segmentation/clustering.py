"""K-means and DBSCAN for the segmentation, with sampling, quality figures and assignment.

Clustering
----------
K-means (k-means++, ``n_init`` restarts, fixed seed) with ``k`` chosen by the silhouette over
``k_range`` on a sample of ``sample_size`` customers unless ``k`` is given; clusters are numbered
by decreasing median spend. DBSCAN runs on a sample, with ``eps`` at the knee of the sorted
``min_samples``-distance curve unless given; every customer (the sample included) then takes the
cluster of its nearest core sample when that is within ``eps``, else is an outlier. Both are
always fitted; ``algorithm`` picks which one :meth:`CustomerSegmentation.assign` uses by default.
Assignment needs only stored arrays (scaler, SVD components, quintile edges, centroids, DBSCAN
core samples and eps) and is pure numpy.

Customers who never purchased are not clustered: they form the reserved segment
``NO_PURCHASE_SEGMENT``; DBSCAN's noise is the reserved segment ``OUTLIER_SEGMENT``.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

__all__ = [
    "NO_PURCHASE_SEGMENT",
    "OUTLIER_SEGMENT",
    "cluster_quality",
    "dbscan_cores",
    "kmeans_by_spend",
    "knee_eps",
    "nearest_centroid",
    "nearest_core",
    "row_normalise",
    "sample_rows",
    "silhouette",
    "silhouette_by_k",
]

NO_PURCHASE_SEGMENT = -1
OUTLIER_SEGMENT = -2


def row_normalise(m: sp.csr_matrix | NDArray[np.float64]) -> sp.csr_matrix | NDArray[np.float64]:
    """Rows scaled to sum 1 (all-zero rows stay zero)."""
    if sp.issparse(m):
        m = sp.csr_matrix(m, dtype=np.float64)
        sums = np.asarray(m.sum(axis=1)).ravel()
        inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
        return sp.csr_matrix(sp.diags(inv) @ m)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def sample_rows(rng: np.random.Generator, n: int, size: int) -> NDArray[np.int64]:
    """Sorted positions of ``size`` of ``n`` rows drawn without replacement (all if n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))


def silhouette(X: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """Silhouette of ``labels`` on the rows of ``X``; NaN when it is undefined."""
    from sklearn.metrics import silhouette_score

    if np.unique(labels).shape[0] < 2 or np.unique(labels).shape[0] >= X.shape[0]:
        return float("nan")
    return float(silhouette_score(X, labels))


def cluster_quality(
    X: NDArray[np.float64], labels: NDArray[np.int64], rng: np.random.Generator, sample_size: int
) -> dict[str, float | None]:
    """Silhouette (on a sample), Davies-Bouldin and Calinski-Harabasz; None if undefined."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

    n_labels = np.unique(labels).shape[0]
    if n_labels < 2 or n_labels >= X.shape[0]:
        return {"silhouette": None, "davies_bouldin": None, "calinski_harabasz": None}
    rows = sample_rows(rng, X.shape[0], sample_size)
    sil = silhouette(X[rows], labels[rows])
    return {
        "silhouette": None if math.isnan(sil) else sil,
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
    }


def knee_eps(X: NDArray[np.float64], min_samples: int) -> float:
    """DBSCAN eps at the knee of the sorted k-distance curve (max distance to its chord)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(min_samples, X.shape[0])
    dist, _ = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X)
    kd = np.sort(dist[:, -1])
    n = kd.shape[0]
    if n < 3 or kd[-1] <= kd[0]:
        return float(max(kd[-1], 1e-6))
    x = np.linspace(0.0, 1.0, n)
    y = (kd - kd[0]) / (kd[-1] - kd[0])
    # Points above the chord are impossible on a convex curve; distance below it is x - y.
    knee = int(np.argmax(x - y))
    return float(max(kd[knee], 1e-6))


def nearest_centroid(X: NDArray[np.float64], centroids: NDArray[np.float64]) -> NDArray[np.int64]:
    """Index of the nearest of ``centroids`` (k, d) to every row of ``X`` (n, d), shape (n,)."""
    # ||x||^2 is the same for every centroid, so argmin needs only the rest.
    d2 = np.einsum("ij,ij->i", centroids, centroids)[None, :] - 2.0 * (X @ centroids.T)
    return np.argmin(d2, axis=1)


def nearest_core(
    X: NDArray[np.float64],
    cores: NDArray[np.float64],
    core_labels: NDArray[np.int64],
    eps: float,
    core_sq: NDArray[np.float64] | None = None,
) -> NDArray[np.int64]:
    """Label of the nearest core sample within ``eps``, else ``OUTLIER_SEGMENT``, shape (n,).

    A few rows (live lookups) use one matrix-vector product; many rows use a KD-tree, which
    prunes by ``eps`` instead of computing n x n_cores distances.
    """
    out = np.full(X.shape[0], OUTLIER_SEGMENT, dtype=np.int64)
    if cores.shape[0] == 0 or X.shape[0] == 0:
        return out
    limit = eps * (1 + 1e-9) + 1e-12
    if X.shape[0] > 64:
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(cores).query(X, k=1, distance_upper_bound=limit)
        found = np.isfinite(dist)
        out[found] = core_labels[idx[found]]
        return out
    if core_sq is None:
        core_sq = np.einsum("ij,ij->i", cores, cores)
    nearest = np.argmin(core_sq[None, :] - 2.0 * (X @ cores.T), axis=1)
    # The exact distance to the chosen core, so the eps test agrees with the KD-tree path.
    diff = X - cores[nearest]
    within = np.sqrt(np.einsum("ij,ij->i", diff, diff)) <= limit
    return np.where(within, core_labels[nearest], OUTLIER_SEGMENT).astype(np.int64)


def silhouette_by_k(
    X: NDArray[np.float64],
    sil_rows: NDArray[np.int64],
    ks: range,
    *,
    n_init: int,
    random_state: int,
) -> dict[int, float]:
    """Silhouette of K-means fitted on ``X`` for every k in ``ks``, measured on ``X[sil_rows]``."""
    from sklearn.cluster import KMeans

    scores: dict[int, float] = {}
    for k in ks:
        km = KMeans(
            n_clusters=k,
            init="k-means++",
            n_init=n_init,
            random_state=random_state,
        ).fit(X)
        scores[k] = silhouette(X[sil_rows], km.labels_[sil_rows])
    return scores


class KMeansFit(Protocol):
    """What fits K-means for the segmentation: :func:`kmeans_by_spend` or another engine's."""

    def __call__(
        self,
        X: NDArray[np.float64],
        k: int,
        spend: NDArray[np.float64],
        *,
        n_init: int,
        random_state: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], float, float]: ...


def kmeans_by_spend(
    X: NDArray[np.float64], k: int, spend: NDArray[np.float64], *, n_init: int, random_state: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], float, float]:
    """K-means on every row of ``X`` (n, d), clusters numbered by decreasing median ``spend``.

    Returns
    -------
    centroids : ndarray of shape (k, d)
    labels : ndarray of shape (n,)
    stability : float
        Adjusted Rand index against a second fit seeded ``random_state + 1``.
    inertia : float
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=random_state).fit(X)
    km_other = KMeans(
        n_clusters=k,
        init="k-means++",
        n_init=n_init,
        random_state=random_state + 1,
    ).fit(X)
    stability = float(adjusted_rand_score(km.labels_, km_other.labels_))
    # Number clusters by decreasing median spend so ids read the same across refits.
    order = np.argsort([-np.median(spend[km.labels_ == c]) for c in range(k)], kind="stable")
    return km.cluster_centers_[order], np.argsort(order)[km.labels_], stability, float(km.inertia_)


def dbscan_cores(
    X: NDArray[np.float64], eps: float, min_samples: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], int]:
    """DBSCAN on ``X`` (n, d): core samples, their labels and the number of clusters.

    Clusters are numbered by decreasing number of core samples.

    Returns
    -------
    core_samples : ndarray of shape (n_cores, d)
    core_labels : ndarray of shape (n_cores,)
    n_clusters : int
    """
    from sklearn.cluster import DBSCAN

    db = DBSCAN(eps=eps, min_samples=min_samples).fit(X)
    core = db.core_sample_indices_
    core_labels = db.labels_[core]
    sizes = np.bincount(core_labels) if core.size else np.zeros(0, np.int64)
    rank = np.empty(sizes.shape[0], np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(sizes.shape[0])
    ranked = rank[core_labels] if core.size else np.zeros(0, np.int64)
    return X[core], ranked, int(sizes.shape[0])
