"""K-means for the customer segmentation on Spark (``pyspark.ml.clustering.KMeans``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from app.ml.segmentation.clustering import KMeansFit, nearest_centroid

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


#: Spark K-means fits per seed. Each costs a few Spark jobs per iteration whatever the data
#: size, and k-means|| initialisation (Spark's) already does what scikit-learn's ``n_init``
#: restarts are for; on Online Retail one fit agrees with scikit-learn's ten (ARI 0.99).
SPARK_RESTARTS = 1


def _fit(spark: SparkSession, X: NDArray[np.float64], k: int, seed: int) -> Any:
    """The best of :data:`SPARK_RESTARTS` Spark K-means fits (k-means||) by cost."""
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.linalg import Vectors

    rows = [(Vectors.dense(row),) for row in X.tolist()]
    frame = spark.createDataFrame(rows, ["features"]).cache()
    best = None
    for attempt in range(SPARK_RESTARTS):
        model = KMeans(k=k, seed=seed + 1000 * attempt, maxIter=300, tol=1e-6).fit(frame)
        cost = model.summary.trainingCost
        if best is None or cost < best[0]:
            best = (cost, model)
    frame.unpersist()
    assert best is not None
    return best[1]


def spark_kmeans(spark: SparkSession) -> KMeansFit:
    """A :class:`KMeansFit` running K-means on ``spark``, numbered like :func:`kmeans_by_spend`."""
    from sklearn.metrics import adjusted_rand_score

    def fit(
        X: NDArray[np.float64],
        k: int,
        spend: NDArray[np.float64],
        *,
        n_init: int,
        random_state: int,
    ) -> tuple[NDArray[np.float64], NDArray[np.int64], float, float]:
        """K-means on every row of ``X`` (n, d) on Spark; see :func:`kmeans_by_spend`."""
        model = _fit(spark, X, k, random_state)
        other = _fit(spark, X, k, random_state + 1)
        centroids = np.asarray(model.clusterCenters(), dtype=np.float64)
        labels = nearest_centroid(X, centroids)
        stability = float(
            adjusted_rand_score(labels, nearest_centroid(X, np.asarray(other.clusterCenters())))
        )
        medians = [
            -np.median(spend[labels == c]) if np.any(labels == c) else np.inf for c in range(k)
        ]
        order = np.argsort(medians, kind="stable")
        inertia = float(model.summary.trainingCost)
        return centroids[order], np.argsort(order)[labels], stability, inertia

    return fit
