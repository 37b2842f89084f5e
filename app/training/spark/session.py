"""One SparkSession per process, built from the settings' master."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkUnavailable(RuntimeError):
    """PySpark (or the Java it needs) is not installed here."""


#: The folder holding the ``app`` package this driver runs: executors import the same code.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])


def spark_session(master: str = "local[*]", *, app_name: str = "tastemaker-train") -> SparkSession:
    """The process's SparkSession on ``master`` (created on first use, then shared)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable(
            "the Spark engine needs PySpark: pip install 'tastemaker[spark]' (and Java 17)"
        ) from exc
    # The driver's own import path (what PYTHONPATH added included), the source folder first.
    python_path = os.pathsep.join([_SOURCE_ROOT, *(p for p in sys.path if p)])
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "2g")
        # Executors run the same kernels as the driver: its interpreter in local mode, its
        # source folder first on their path (a cluster's workers have tastemaker installed).
        .config("spark.executorEnv.PYTHONPATH", python_path)
    )
    if master.startswith("local"):
        # Local executors are this machine's: they run this interpreter (its packages).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", sys.executable)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j/Java errors: no JVM, wrong Java
        raise SparkUnavailable(f"Spark could not start on {master!r}: {exc}") from exc
    session.sparkContext.setLogLevel("ERROR")
    return session
