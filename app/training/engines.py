"""The training engine a run fits with: this process (local) or Spark."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.ml.recommender.fitting import FitModels
from app.ml.segmentation.clustering import KMeansFit


@dataclass(frozen=True)
class Engine:
    """What fits the recommender's models, aggregates the customers and fits the
    segmentation's K-means (None: in this process)."""

    name: str = "local"
    fitter: FitModels | None = None
    kmeans: KMeansFit | None = None
    #: Like :func:`app.ml.segmentation.aggregate_events` (keyword arguments).
    aggregate: Callable[..., Any] | None = None


def training_engine(settings: Settings) -> Engine:
    """The engine ``settings.train_engine`` names (Spark on ``settings.spark_master``)."""
    if settings.train_engine == "local":
        return Engine()
    from app.training.spark import spark_aggregate, spark_fitter, spark_kmeans, spark_session

    spark = spark_session(settings.spark_master)
    return Engine("spark", spark_fitter(spark), spark_kmeans(spark), spark_aggregate(spark))
