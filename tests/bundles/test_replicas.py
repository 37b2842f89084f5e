"""Two `tastemaker serve` processes, each with its own model cache, on one PostgreSQL, one
Redis and one S3 bundle store: a retrain swaps both, and both answer the same.

The servers run as users start them (subprocesses on free ports); the trainer is this
process, with a third model directory: nothing but the store is shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.training.runner import train_now
from tests.bundles.conftest import CREDENTIALS
from tests.conftest import override
from tests.faults.servers import free_port

REPO = Path(__file__).resolve().parents[2]
SHOP = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=5)
PRODUCTION = pytest.mark.parametrize("settings", ["production"], indirect=True)


class Replica:
    """One `tastemaker serve` process and its URL."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}
        env = {**clean, **settings.child_environment(), "OPENBLAS_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
            )

    def model(self) -> dict[str, Any]:
        """The model this replica serves, as /ready reports it."""
        return httpx.get(f"{self.url}/ready", timeout=5).json()["checks"]["model"]

    def wait_for_version(self, version: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.model().get("version") == version:
                    return
            except httpx.HTTPError:
                pass  # still starting
            time.sleep(0.2)
        raise AssertionError(f"{self.url} never served v{version}:\n{self.log.read_text()}")

    def recommend(self, user_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/recommend/{user_id}", params={"n": 10}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


@pytest.fixture
def shared(settings: Settings, bucket: tuple[str, Any], s3_endpoint: str, tmp_path: Path):
    """The trainer's settings: PostgreSQL, Redis and the S3 store, its own model directory."""
    name, _ = bucket
    trainer = override(
        settings,
        model_dir=tmp_path / "trainer-models",
        bundle_store_url=f"s3://{name}/shop",
        s3_endpoint_url=s3_endpoint,
        allow_anonymous=True,
        model_poll_seconds=0.2,
    )
    import_shop(make_sessionmaker(make_engine(trainer.resolved_database_url)), SHOP)
    return trainer


@pytest.fixture
def replicas(shared: Settings, tmp_path: Path) -> Iterator[list[Replica]]:
    # `bucket` set the S3 credentials in this process's environment: the servers inherit them.
    assert all(os.environ.get(name) == value for name, value in CREDENTIALS.items())
    started = []
    try:
        for name in ("a", "b"):
            cache = tmp_path / f"replica-{name}"
            started.append(Replica(override(shared, model_dir=cache), tmp_path / f"{name}.log"))
        yield started
    finally:
        for replica in started:
            replica.stop()


def _buyers(n: int) -> list[str]:
    counts: dict[str, int] = {}
    for user_id, type_ in zip(SHOP.events.user_id, SHOP.events.type, strict=True):
        if type_ == "purchase":
            counts[user_id] = counts.get(user_id, 0) + 1
    return [u for u, c in sorted(counts.items()) if c >= 3][:n]


@PRODUCTION
def test_a_retrain_swaps_both_replicas_and_they_answer_alike(
    shared: Settings, replicas: list[Replica], tmp_path: Path
) -> None:
    assert train_now(shared)["version"] == 1
    for replica in replicas:
        replica.wait_for_version(1)
    users = _buyers(5)
    first = {u: [r.recommend(u) for r in replicas] for u in users}
    for u, (a, b) in first.items():
        assert a["model_version"] == b["model_version"] == 1
        assert a["items"] == b["items"] and a["items"], u

    assert train_now(shared)["status"] == "activated"
    for replica in replicas:
        replica.wait_for_version(2)
    for u in users:
        a, b = (r.recommend(u) for r in replicas)
        assert a["model_version"] == b["model_version"] == 2
        assert a["items"] == b["items"] and a["items"], u
        assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in first[u][0]["items"]]
    # Each replica fetched both versions into its own cache; the trainer's directory is its own.
    for name in ("a", "b"):
        cached = sorted(
            p.name.split("-")[0] for p in (tmp_path / f"replica-{name}").glob("bundle-cache/v*")
        )
        assert cached == ["v1", "v2"]
        assert not (tmp_path / f"replica-{name}" / "v1").exists()
