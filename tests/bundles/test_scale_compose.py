"""docker compose's `scale` profile agrees with the code (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCALE = ("minio", "minio-bucket", "spark-master", "spark-worker", "trainer", "replica")


def _services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_the_scale_profile_stays_out_of_a_plain_up():
    services = _services()
    for name in SCALE:
        assert services[name]["profiles"] == ["scale"], name
    for name in ("api", "postgres", "redis"):
        assert "profiles" not in services[name]


def test_trainer_and_replica_share_the_store_and_set_only_real_settings():
    services = _services()
    fields = {f"TASTEMAKER_{name.upper()}" for name in Settings.model_fields}
    for name in ("trainer", "replica"):
        env = services[name]["environment"]
        ours = {k for k in env if k.startswith("TASTEMAKER_")}
        assert ours <= fields, ours - fields
        assert env["TASTEMAKER_BUNDLE_STORE_URL"].startswith("s3://tastemaker-bundles/")
        assert env["TASTEMAKER_SPARK_MASTER"] == "spark://spark-master:7077"
    assert services["trainer"]["command"] == ["tastemaker", "train", "--engine", "spark"]
    bucket = " ".join(services["minio-bucket"]["command"])
    assert "store/tastemaker-bundles" in bucket


def test_spark_runs_the_official_image_with_a_matching_pyspark():
    dockerfile = (ROOT / "Dockerfile.spark").read_text()
    assert "FROM apache/spark:${SPARK_VERSION}-python3" in dockerfile
    assert '"pyspark==${SPARK_VERSION}"' in dockerfile
    for name in ("spark-master", "spark-worker", "trainer"):
        assert _services()[name]["build"]["dockerfile"] == "Dockerfile.spark"
