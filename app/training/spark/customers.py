"""The segmentation's per-customer aggregates on Spark: :func:`aggregate_events`'s twin.

The driver codes customers and items (sorted distinct ids, as the local engine does) and
writes one Parquet file; Spark computes every customer's first and last event, last purchase,
spend, event counts by type, distinct items, orders (invoices, else purchase days) and first
order, and the (customer, item) purchase and (customer, category) event counts. Only
customer-sized arrays come back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from app.ml.interactions import SECONDS_PER_DAY
from app.ml.segmentation import CustomerAggregates, ItemCounts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def _per_customer(table: pa.Table, column: str, n: int, fill: float) -> NDArray[np.float64]:
    out = np.full(n, fill, dtype=np.float64)
    values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    out[table.column("u").to_numpy()] = np.where(np.isnan(values), fill, values)
    return out


def _counts(frame: DataFrame, column: str, shape: tuple[int, int]) -> sp.csr_matrix:
    table = frame.toArrow()
    matrix = sp.csr_matrix(
        (
            table.column("n").to_numpy().astype(np.float64),
            (table.column("u").to_numpy(), table.column(column).to_numpy()),
        ),
        shape=shape,
    )
    matrix.sort_indices()
    return matrix


def _first_orders(purchases: DataFrame) -> DataFrame:
    """Per customer: distinct orders, and the first order's time and spend (``u, orders,
    first_at, first_value``); the order of a line without an order id is its day."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    named = F.col("o") != ""
    keyed = purchases.withColumn("unnamed", (~named).cast("int")).withColumn(
        "day", F.when(named, F.lit(0)).otherwise(F.floor(F.col("t") / SECONDS_PER_DAY))
    )
    key = ["u", "unnamed", "o", "day"]
    per_order = keyed.groupBy(*key).agg(F.min("t").alias("at"), F.sum("v").alias("value"))
    # The earliest order first, ties by order key (named orders by id, then days).
    first = Window.partitionBy("u").orderBy("at", "unnamed", "o", "day")
    ranked = per_order.withColumn("rank", F.row_number().over(first))
    return ranked.groupBy("u").agg(
        F.count("*").alias("orders"),
        F.min(F.when(F.col("rank") == 1, F.col("at"))).alias("first_at"),
        F.sum(F.when(F.col("rank") == 1, F.col("value")).otherwise(0.0)).alias("first_value"),
    )


def spark_aggregate(spark: SparkSession) -> Any:
    """An ``aggregate_events`` (keyword arguments, the same result) running on ``spark``."""

    def aggregate(
        *,
        user_ids: ArrayLike,
        item_ids: ArrayLike,
        event_types: ArrayLike,
        values: ArrayLike,
        occurred_at: ArrayLike,
        order_ids: ArrayLike | None = None,
        item_categories: Mapping[str, Sequence[str]] | None = None,
    ) -> tuple[CustomerAggregates, ItemCounts]:
        """:func:`~app.ml.segmentation.aggregate_events` for every customer, on Spark."""
        names, u = np.unique(np.asarray(user_ids).astype(str), return_inverse=True)
        items, it = np.unique(np.asarray(item_ids).astype(str), return_inverse=True)
        orders = np.full(len(u), "", dtype=object)
        if order_ids is not None:
            raw = np.asarray(order_ids, dtype=object)
            orders = np.where(np.equal(raw, np.asarray(None, dtype=object)), "", raw).astype(str)
        categories = sorted({c for cs in (item_categories or {}).values() for c in cs})
        with tempfile.TemporaryDirectory(prefix="tastemaker-spark-") as tmp:
            path = Path(tmp) / "customers.parquet"
            columns = {
                "u": pa.array(u.astype(np.int64)),
                "i": pa.array(it.astype(np.int64)),
                "type": pa.array(np.asarray(event_types).astype(str)),
                "v": pa.array(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)),
                "t": pa.array(np.asarray(occurred_at, dtype=np.float64)),
                "o": pa.array(orders),
            }
            pq.write_table(pa.table(columns), path)
            events = spark.read.parquet(str(path)).cache()
            result = _aggregate(spark, events, names, items, categories, item_categories)
            events.unpersist()
        return result

    return aggregate


def _aggregate(
    spark: SparkSession,
    events: DataFrame,
    names: NDArray[np.str_],
    items: NDArray[np.str_],
    categories: list[str],
    item_categories: Mapping[str, Sequence[str]] | None,
) -> tuple[CustomerAggregates, ItemCounts]:
    from pyspark.sql import functions as F

    n = len(names)
    buy = F.col("type") == "purchase"
    per_user = events.groupBy("u").agg(
        F.min("t").alias("first"),
        F.max("t").alias("last"),
        F.max(F.when(buy, F.col("t"))).alias("last_buy"),
        F.sum(F.when(buy, F.col("v")).otherwise(0.0)).alias("monetary"),
        F.count_distinct(F.when(buy, F.col("i"))).alias("distinct"),
        F.sum(F.col("type").isin("view", "click").cast("double")).alias("views"),
        F.sum((F.col("type") == "add_to_cart").cast("double")).alias("carts"),
        F.sum(buy.cast("double")).alias("purchases"),
    )
    table = per_user.toArrow()
    purchases = events.where(buy)
    firsts = _first_orders(purchases).toArrow()
    bought = purchases.groupBy("u", "i").agg(F.count("*").alias("n"))
    purchase_matrix = _counts(bought, "i", (n, len(items)))
    category_counts = sp.csr_matrix((n, len(categories)))
    position = {c: j for j, c in enumerate(categories)}
    rows = [
        (j, position[c])
        for j, item in enumerate(items.tolist())
        for c in (item_categories or {}).get(item, ())
    ]
    if rows:  # every event counts once per category of its item
        pairs = spark.createDataFrame(rows, ["i", "c"])
        per_category = events.join(F.broadcast(pairs), "i").groupBy("u", "c").count()
        renamed = per_category.withColumnRenamed("count", "n")
        category_counts = _counts(renamed, "c", (n, len(categories)))
    t_max = events.agg(F.max("t")).first()
    aggregates = CustomerAggregates(
        user_ids=names.tolist(),
        last_purchase_at=_per_customer(table, "last_buy", n, np.nan),
        first_seen_at=_per_customer(table, "first", n, np.nan),
        last_seen_at=_per_customer(table, "last", n, np.nan),
        orders=_per_customer(firsts, "orders", n, 0.0),
        monetary=_per_customer(table, "monetary", n, 0.0),
        distinct_items=_per_customer(table, "distinct", n, 0.0),
        views=_per_customer(table, "views", n, 0.0),
        carts=_per_customer(table, "carts", n, 0.0),
        purchases=_per_customer(table, "purchases", n, 0.0),
        category_counts=category_counts,
        categories=categories,
        now=float(t_max[0]) if t_max is not None and t_max[0] is not None else 0.0,
        first_purchase_at=_per_customer(firsts, "first_at", n, np.nan),
        first_order_value=_per_customer(firsts, "first_value", n, 0.0),
    )
    return aggregates, ItemCounts(matrix=purchase_matrix, item_ids=items.tolist())
