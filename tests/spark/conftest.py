"""One SparkSession (local mode, two cores at most) shared by every Spark test.

Without PySpark or Java the Spark tests skip here and fail in CI (CI=true): the parity of the
two engines is part of what CI checks.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the Spark engine's tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The session's SparkSession on local[2]."""
    if importlib.util.find_spec("pyspark") is None:
        _unavailable("PySpark is not installed: pip install -e '.[test]'")
    from app.training.spark import SparkUnavailable, spark_session

    try:
        session = spark_session("local[2]", app_name="tastemaker-tests")
    except SparkUnavailable as exc:
        _unavailable(str(exc))
    yield session
    session.stop()
