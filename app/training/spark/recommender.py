"""The recommender's fit on Spark: the same models as :func:`~app.ml.recommender.fitting.fit_models`.

Spark does what grows with the events: summing the weighted, decayed events of each (user,
item) pair into the interaction matrix, the popularity and trending counts, and the Gram
matrix of co-occurrences (:mod:`app.training.spark.kernels`) from which item-kNN's top-k
cosine neighbours are computed on the executors and EASE's Gram is inverted on the driver.
The driver keeps what is item-sized or needs the whole matrix in memory anyway: the event
encoding (vocabulary look-ups and event-type weights), user-kNN and RP3beta, and the content
model (fitted once per run by the caller).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from scipy import sparse

from app.ml.base import BaseScorer
from app.ml.collaborative import EASE, ItemKNN
from app.ml.content import ContentTfidf
from app.ml.interactions import SECONDS_PER_DAY, EncodedEvents, EventLog, encode_events
from app.ml.popularity import Popularity, SegmentPopularity, Trending
from app.ml.recommender.config import DEFAULT_AGGREGATION, RecommenderConfig
from app.ml.recommender.fitting import FitModels, Fitted, collaborative_models
from app.ml.vocabulary import Vocabulary
from app.training.spark import kernels

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def export_events(encoded: EncodedEvents, directory: Path) -> Path:
    """Write encoded events as the Parquet file Spark reads: ``u, i, w, t`` per event."""
    path = directory / f"events-{uuid.uuid4().hex}.parquet"
    table = pa.table(
        {
            "u": pa.array(encoded.rows, pa.int64()),
            "i": pa.array(encoded.cols, pa.int64()),
            "w": pa.array(encoded.weights, pa.float64()),
            "t": pa.array(encoded.occurred_at, pa.float64()),
        }
    )
    pq.write_table(table, path)
    return path


def _latest(events: DataFrame) -> float:
    """The latest event time of ``events`` (0 when there is none)."""
    from pyspark.sql import functions as F

    row = events.agg(F.max("t")).first()
    return float(row[0]) if row is not None and row[0] is not None else 0.0


def _interactions(events: DataFrame, config: RecommenderConfig) -> DataFrame:
    """The interaction matrix's non-zero cells ``u, i, x`` (:func:`interaction_matrix`)."""
    from pyspark.sql import functions as F

    weighted = events.withColumn("x", F.col("w"))
    if config.half_life_days is not None:
        now = _latest(events)
        age = F.greatest(F.lit(now) - F.col("t"), F.lit(0.0)) / SECONDS_PER_DAY
        decay = F.greatest(F.pow(F.lit(2.0), -age / config.half_life_days), F.lit(1e-30))
        weighted = events.withColumn("x", F.col("w") * decay)
    summed = weighted.groupBy("u", "i").agg(F.sum("x").alias("s"))
    aggregation = config.aggregation or DEFAULT_AGGREGATION
    value = {
        "log1p": F.log1p(F.greatest(F.col("s"), F.lit(0.0))),
        "sum": F.col("s"),
        "binary": (F.col("s") > 0).cast("double"),
    }[aggregation]
    # The local engine stores float32 values and drops the zeros among them.
    cells = summed.select("u", "i", value.cast("float").cast("double").alias("x"))
    return cells.where(F.col("x") != 0)


def _counts(frame: DataFrame, column: str, n_items: int) -> NDArray[np.float64]:
    """Per item, the sum of ``column`` in ``frame`` (``i, column``), shape (n_items,)."""
    table = frame.toArrow()
    counts = np.zeros(n_items, dtype=np.float64)
    np.add.at(counts, table.column("i").to_numpy(), table.column(column).to_numpy())
    return counts


def _trending(events: DataFrame, config: RecommenderConfig, n_items: int) -> Trending:
    """:class:`Trending` from each (user, item)'s best decayed credit in the window."""
    from pyspark.sql import functions as F

    counted = events.where(F.col("w") > 0)
    now = _latest(counted)
    window, half_life = config.trending.window_days, config.trending.half_life_days
    age = (F.lit(now) - F.col("t")) / SECONDS_PER_DAY
    recent = counted.withColumn("age", age).where((F.col("age") >= 0) & (F.col("age") <= window))
    best = recent.groupBy("u", "i").agg(
        F.max(F.pow(F.lit(2.0), -F.col("age") / half_life)).alias("c")
    )
    per_item = best.groupBy("i").agg(F.sum("c").alias("c"))
    trending = Trending(**config.trending.model_dump())
    trending.popularity_ = Popularity.from_counts(_counts(per_item, "c", n_items))
    trending.now_ = float(now)
    return trending


def _matrix(cells: DataFrame, shape: tuple[int, int]) -> sparse.csr_matrix:
    """The cells collected into the user x item CSR matrix, float32, sorted indices."""
    table = cells.toArrow()
    X = sparse.csr_matrix(
        (
            table.column("x").to_numpy().astype(np.float32),
            (table.column("u").to_numpy(), table.column("i").to_numpy()),
        ),
        shape=shape,
    )
    X.sort_indices()
    return X


def _gram_blocks(cells: DataFrame, n_items: int, blocks: list[tuple[int, int]]) -> Any:
    """An RDD of ``(lo, Gram rows lo..)`` summed over every partition of users."""
    partitions = cells.sparkSession.sparkContext.defaultParallelism
    by_user = cells.repartition(partitions, "u").rdd
    return by_user.mapPartitions(
        lambda rows: kernels.partial_grams(rows, n_items, blocks)
    ).reduceByKey(kernels.add)


def _item_knn(
    model: ItemKNN, grams: Any, blocks: list[tuple[int, int]], diagonal: NDArray[np.float64]
) -> ItemKNN:
    """Fit ``model`` from the Gram blocks: cosine top-k computed on the executors."""
    n_items = len(diagonal)
    norms = grams.context.broadcast(np.sqrt(diagonal))
    k, shrink, budget = model.k, model.shrink, model.max_block_entries
    pruned = grams.map(
        lambda block: (
            block[0],
            kernels.cosine_top_k(
                block[0], block[1], norms.value, k=k, shrink=shrink, max_block_entries=budget
            ),
        )
    ).collect()
    norms.unpersist()
    parts = dict(pruned)
    rows = []
    for lo, hi in blocks:
        rows.append(parts.get(lo, sparse.csr_matrix((hi - lo, n_items), dtype=np.float32)))
    return model.fit_neighbours(sparse.vstack(rows, format="csr"))


def _gram(grams: Any, n_items: int) -> NDArray[np.float64]:
    """The dense Gram matrix gathered on the driver (EASE: a catalogue it can invert)."""
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    for lo, block in grams.collect():
        gram[lo : lo + block.shape[0]] += block.toarray()
    return gram


class SparkFitter:
    """:data:`FitModels` on a SparkSession; Parquet exports go to a scratch directory."""

    def __init__(self, spark: SparkSession, scratch: Path | None = None) -> None:
        self.spark = spark
        self.scratch = scratch

    def __call__(
        self,
        events: EventLog,
        users: Vocabulary,
        items: Vocabulary,
        config: RecommenderConfig,
        content: ContentTfidf | None,
        segments: NDArray[np.int64] | None,
        timings: dict[str, float],
        phase: str,
    ) -> Fitted:
        """Fit every model of ``config`` on ``events`` (timed under ``phase``)."""
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="tastemaker-spark-") as tmp:
            return self._fit(
                Path(tmp), events, users, items, config, content, segments, timings, phase
            )

    def _fit(
        self,
        tmp: Path,
        events: EventLog,
        users: Vocabulary,
        items: Vocabulary,
        config: RecommenderConfig,
        content: ContentTfidf | None,
        segments: NDArray[np.int64] | None,
        timings: dict[str, float],
        phase: str,
    ) -> Fitted:
        from pyspark.sql import functions as F

        t0 = time.perf_counter()
        encoded = encode_events(events, users=users, items=items, weights=config.event_weights)
        frame = self.spark.read.parquet(str(export_events(encoded, tmp))).cache()
        cells = _interactions(frame, config).cache()
        n_items = len(items)
        X = _matrix(cells, (len(users), n_items))
        timings[f"{phase}.matrix"] = time.perf_counter() - t0

        wanted = collaborative_models(config, n_items)
        models: dict[str, BaseScorer] = {}
        knn = wanted.get("item_knn")
        spark_knn = isinstance(knn, ItemKNN) and knn.similarity == "cosine"
        ease = wanted.get("ease")
        grams = None
        blocks = kernels.item_blocks(n_items, config.max_block_entries)
        if spark_knn or isinstance(ease, EASE):
            t0 = time.perf_counter()
            grams = _gram_blocks(cells, n_items, blocks).cache()
            timings[f"{phase}.gram"] = time.perf_counter() - t0
        for name, model in wanted.items():
            t0 = time.perf_counter()
            if name == "item_knn" and spark_knn and isinstance(model, ItemKNN):
                squares = cells.groupBy("i").agg(F.sum(F.col("x") * F.col("x")).alias("q"))
                models[name] = _item_knn(model, grams, blocks, _counts(squares, "q", n_items))
            elif name == "ease" and isinstance(model, EASE):
                models[name] = model.fit_gram(_gram(grams, n_items))
            else:  # user-kNN, RP3beta, other similarities: on the driver's matrix
                models[name] = model.fit(X)
            timings[f"{phase}.{name}"] = time.perf_counter() - t0
        if grams is not None:
            grams.unpersist()
        if content is not None:
            models["content"] = content
        distinct_users = cells.groupBy("i").agg(F.count("*").cast("double").alias("n"))
        popularity = Popularity.from_counts(_counts(distinct_users, "n", n_items))
        if "popularity" in config.models:
            models["popularity"] = popularity
        trending = _trending(frame, config, n_items)
        if "trending" in config.models:
            models["trending"] = trending
        segment_popularity = None
        if segments is not None:
            segment_popularity = SegmentPopularity().fit(X, segments=segments)
        cells.unpersist()
        frame.unpersist()
        return Fitted(X, models, popularity, trending, segment_popularity)


def spark_fitter(spark: SparkSession, scratch: Path | None = None) -> FitModels:
    """The fitter :func:`~app.ml.recommender.train_recommender` takes, running on ``spark``."""
    return SparkFitter(spark, scratch)
