"""The Spark engine against the local one on Online Retail: same neighbours, NDCG, segments.

The recommender is compared on the most recent 30% of the purchases (117k events, 3.1k
items), which keeps the two trainings of each engine within the suite's time; the
segmentation on every customer of the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from app.datasets.online_retail import read_online_retail, to_event_log
from app.ml.collaborative import ItemKNN
from app.ml.interactions import Catalog, EventLog
from app.ml.recommender import RecommenderConfig, TrainedRecommender, train_recommender
from app.ml.segmentation import CustomerSegmentation, aggregate_events
from app.ml.segmentation.features import PER_CUSTOMER_FIELDS
from app.training.pipeline import served_ndcg
from app.training.spark import spark_aggregate, spark_fitter, spark_kmeans
from tests.conftest import require_online_retail

RECENT_SHARE = 0.3
CONFIG = RecommenderConfig.from_dict(
    {
        "tune": False,
        "aggregation": "binary",
        "models": ["item_knn", "ease", "content", "popularity", "trending"],
        "blend_weights": {"item_knn": 1.0, "ease": 1.0, "content": 0.1, "popularity": 0.05},
    }
)


@pytest.fixture(scope="module")
def retail() -> tuple[EventLog, Catalog]:
    """Every purchase of Online Retail and its catalogue."""
    return to_event_log(read_online_retail(require_online_retail()))


@pytest.fixture(scope="module")
def trained(retail: tuple[EventLog, Catalog], spark: Any) -> dict[str, TrainedRecommender]:
    """Both engines' recommenders on the recent purchases (evaluated, then refitted on all)."""
    events, catalog = retail
    recent = events.subset(events.occurred_at >= np.quantile(events.occurred_at, 1 - RECENT_SHARE))
    return {
        "local": train_recommender(recent, catalog, CONFIG),
        "spark": train_recommender(recent, catalog, CONFIG, fitter=spark_fitter(spark)),
    }


def _knn(trained: TrainedRecommender) -> ItemKNN:
    model = trained.recommender.blender.models["item_knn"]
    assert isinstance(model, ItemKNN)
    return model


def test_neighbour_lists_overlap(trained: dict[str, TrainedRecommender]) -> None:
    local, spark = _knn(trained["local"]).neighbours_, _knn(trained["spark"]).neighbours_
    assert local.shape == spark.shape
    overlaps = []
    for item in range(local.shape[0]):
        mine = set(local.indices[local.indptr[item] : local.indptr[item + 1]].tolist())
        if not mine:
            continue
        theirs = set(spark.indices[spark.indptr[item] : spark.indptr[item + 1]].tolist())
        overlaps.append(len(mine & theirs) / len(mine))
    assert len(overlaps) > 1000, "the recent purchases give most items neighbours"
    print(f"neighbour overlap: mean {np.mean(overlaps):.4f} over {len(overlaps)} items")
    assert np.mean(overlaps) >= 0.95
    # Where the lists agree, so do the similarities (not merely the same item ids).
    common = local.multiply(spark.astype(bool)).tocsr()
    np.testing.assert_allclose(
        common.data, spark.multiply(local.astype(bool)).tocsr().data, rtol=1e-4
    )


def test_served_ndcg_within_one_percent(trained: dict[str, TrainedRecommender]) -> None:
    local = served_ndcg({"recommender": trained["local"].metrics})
    spark = served_ndcg({"recommender": trained["spark"].metrics})
    print(f"served NDCG@10: local {local:.4f}, spark {spark:.4f}")
    assert local is not None and spark is not None and local > 0.05
    assert abs(spark - local) <= 0.01 * local


def test_popularity_and_trending_agree(trained: dict[str, TrainedRecommender]) -> None:
    local, spark = trained["local"].recommender.blender, trained["spark"].recommender.blender
    np.testing.assert_allclose(spark.popularity.counts_, local.popularity.counts_)
    assert local.trending is not None and spark.trending is not None
    assert local.trending.has_signal()
    np.testing.assert_allclose(spark.trending.counts_, local.trending.counts_, rtol=1e-5)


def test_customer_aggregates_and_segments_agree(
    retail: tuple[EventLog, Catalog], spark: Any
) -> None:
    events, _ = retail
    columns = {
        "user_ids": events.user_ids,
        "item_ids": events.item_ids,
        "event_types": events.types,
        "values": events.values,
        "occurred_at": events.occurred_at,
        "order_ids": events.order_ids,
    }
    aggregates, item_counts = aggregate_events(**columns)
    on_spark, spark_counts = spark_aggregate(spark)(**columns)
    assert on_spark.user_ids == aggregates.user_ids and on_spark.now == aggregates.now
    for name in PER_CUSTOMER_FIELDS:
        np.testing.assert_allclose(getattr(on_spark, name), getattr(aggregates, name), err_msg=name)
    assert spark_counts.item_ids == item_counts.item_ids
    assert (spark_counts.matrix != item_counts.matrix).nnz == 0

    local = CustomerSegmentation(algorithm="kmeans").fit(aggregates)
    fitted = CustomerSegmentation(algorithm="kmeans").fit(on_spark, kmeans=spark_kmeans(spark))
    assert local.k_ == fitted.k_ >= 2
    ari = adjusted_rand_score(
        local.assign(aggregates).segment_id, fitted.assign(on_spark).segment_id
    )
    print(f"segment assignments: ARI {ari:.4f} (k={local.k_}, {len(aggregates)} customers)")
    assert ari >= 0.9
