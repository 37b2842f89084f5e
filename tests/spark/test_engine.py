"""`tastemaker train --engine spark`: the same bundle as the local engine, served alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.ml.bundle import read_manifest
from app.training.registry import load_bundle

SHOP = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=11)
EMBEDDED = pytest.mark.parametrize("settings", ["embedded"], indirect=True)


def _files(bundle: Path) -> set[str]:
    return {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}


def _train(settings: Settings, *args: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, ["train", *args], env=settings.child_environment())
    finally:
        get_settings.cache_clear()


@EMBEDDED
def test_both_engines_write_the_same_bundle(settings: Settings, spark: Any) -> None:
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    # Blend tuning pinned (two fits each instead of four): the bundle's shape is the point.
    settings = settings.model_copy(update={"recommender": {"tune": False}})
    # The CLI reuses the session's SparkSession (one per process); its master is local[2].
    done = _train(settings.model_copy(update={"spark_master": "local[2]"}), "--engine", "spark")
    assert done.exit_code == 0, done.output
    done = _train(settings)  # the default engine: local
    assert done.exit_code == 0, done.output
    v1, v2 = settings.model_dir / "v1", settings.model_dir / "v2"
    assert read_manifest(v1)["metrics"]["engine"] == "spark"
    assert read_manifest(v2)["metrics"]["engine"] == "local"
    assert _files(v1) == _files(v2)
    on_spark, local = load_bundle(1, v1, origin=None), load_bundle(2, v2, origin=None)
    assert on_spark.member_ids == local.member_ids
    spark_knn = on_spark.recommender.blender.models["item_knn"]
    local_knn = local.recommender.blender.models["item_knn"]
    np.testing.assert_allclose(
        spark_knn.neighbours_.toarray(), local_knn.neighbours_.toarray(), rtol=1e-5, atol=1e-6
    )


@EMBEDDED
def test_an_unknown_engine_is_refused(settings: Settings) -> None:
    done = _train(settings, "--engine", "hadoop")
    assert done.exit_code == 2
    assert "--engine must be local or spark" in done.output
