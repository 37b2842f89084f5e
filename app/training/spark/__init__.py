"""The Spark training engine: the data-sized parts of a fit run on Spark, the bundle stays the same.

``TASTEMAKER_TRAIN_ENGINE=spark`` (or ``tastemaker train --engine spark``) fits with
:func:`spark_fitter`, :func:`spark_aggregate` and :func:`spark_kmeans` in place of the local engine's in-process fits;
everything else of a run (evaluation through the serving path, tuning, writing the bundle) is
the local engine's, so serving cannot tell which engine trained a bundle. PySpark is an
optional extra (``pip install 'tastemaker[spark]'``); importing this package without it fails
with a sentence that says so.
"""

from app.training.spark.customers import spark_aggregate
from app.training.spark.recommender import spark_fitter
from app.training.spark.segments import spark_kmeans
from app.training.spark.session import SparkUnavailable, spark_session

__all__ = ["SparkUnavailable", "spark_aggregate", "spark_fitter", "spark_kmeans", "spark_session"]
