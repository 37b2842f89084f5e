"""Live GET /segment agrees with training: recency is measured on the data's clock.

Online Retail ends in December 2011. Measured from the wall clock, every customer's last
purchase is a decade old (R = 1, an outlier, a label that contradicts the RFM group); measured
on the data's clock, a customer without an event since training gets, live, exactly the
segment, RFM scores and group and outlier flag that training gave them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import make_engine, make_sessionmaker
from app.demo import load_demo
from app.importers import import_online_retail
from app.main import create_app
from app.migrate import upgrade
from app.ml.segmentation import aggregate_events
from app.training.pipeline import load_training_data
from app.training.registry import LoadedBundle
from app.training.runner import train_now
from tests.conftest import require_online_retail

NO_LIMITS = {"read": "1000000/second", "write": "1000000/second", "admin": "1000000/second"}


def _settings(root: Path) -> Settings:
    url = f"sqlite:///{root / 'store.db'}"
    upgrade(url)
    return Settings(
        database_url=url,
        redis_url=None,
        data_dir=root / "data",
        model_dir=root / "models",
        cache_prefix=f"tmclock:{uuid.uuid4().hex[:8]}:",
        model_poll_seconds=0.2,
        rate_limits=NO_LIMITS,
    )


@contextmanager
def _client_with_version(settings: Settings, version: int) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").json()["checks"]["model"]["version"] != version:
            assert time.monotonic() < deadline, "the trained version was not loaded"
            time.sleep(0.1)
        yield client


def _training_answers(settings: Settings, bundle: LoadedBundle) -> dict[str, dict]:
    """Each customer's assignment as training computed it (all events, the data's last time)."""
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        data = load_training_data(session)
    engine.dispose()
    aggregates, _ = aggregate_events(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        event_types=data.types,
        values=data.values,
        occurred_at=data.occurred_at,
        order_ids=data.order_ids,
        item_categories=dict(zip(data.catalog.item_ids, data.catalog.categories, strict=True)),
    )
    assert bundle.segmentation is not None
    assert bundle.segmentation.reference_time_ == aggregates.now  # stored with the bundle
    return {a["user_id"]: a for a in bundle.segmentation.assign(aggregates).to_dicts()}


def _compare(client: TestClient, bundle: LoadedBundle, expected: dict[str, dict], users: list[str]):
    mismatches = []
    for user_id in users:
        response = client.get(f"/segment/{user_id}")
        assert response.status_code == 200, response.text
        live, trained = response.json(), expected[user_id]
        got = (
            live["segment"]["id"],
            live["segment"]["label"],
            live["rfm"]["r"],
            live["rfm"]["f"],
            live["rfm"]["m"],
            live["rfm"]["group"],
            live["outlier"],
        )
        want = (
            trained["segment_id"],
            trained["label"],
            trained["rfm"]["r"],
            trained["rfm"]["f"],
            trained["rfm"]["m"],
            trained["rfm"]["group"],
            trained["outlier"],
        )
        if got != want or bundle.user_segment[user_id] != got[0]:
            mismatches.append((user_id, got, want))
        if trained["recency_days"] is not None:
            assert live["rfm"]["recency_days"] == pytest.approx(trained["recency_days"])
    assert mismatches == [], f"{len(mismatches)} of {len(users)} differ, e.g. {mismatches[:3]}"


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store holding the whole Online Retail file, trained once for this module."""
    path = require_online_retail()
    settings = _settings(tmp_path_factory.mktemp("retail"))
    import_online_retail(settings, path)
    assert train_now(settings)["version"] == 1
    return settings


@pytest.mark.slow
def test_live_segments_on_online_retail_equal_the_training_assignment(retail: Settings) -> None:
    with _client_with_version(retail, 1) as client:
        bundle = client.app.state.registry.current
        expected = _training_answers(retail, bundle)
        buyers = sorted(u for u, a in expected.items() if a["segment_id"] >= 0)
        rng = np.random.default_rng(11)
        sample = sorted(rng.choice(buyers, size=300, replace=False).tolist())
        _compare(client, bundle, expected, sample)
        # The data's clock, not the wall's: recent buyers are recent, and not everyone is an
        # outlier or "Lost" (what a 2026 wall clock made of a 2011 shop).
        answers = [client.get(f"/segment/{u}").json() for u in sample[:100]]
        assert min(a["rfm"]["recency_days"] for a in answers) < 30
        assert {a["rfm"]["r"] for a in answers} == {1, 2, 3, 4, 5}
        assert sum(a["outlier"] for a in answers) < 50


def test_live_segments_of_the_synthetic_demo_equal_the_training_assignment(
    tmp_path: Path,
) -> None:
    # The demo's year ends today, so its data clock and the wall clock nearly coincide.
    settings = _settings(tmp_path)
    load_demo(
        make_sessionmaker(make_engine(settings.resolved_database_url)),
        n_users=300,
        n_items=100,
        n_events=10_000,
    )
    assert train_now(settings)["version"] == 1
    with _client_with_version(settings, 1) as client:
        bundle = client.app.state.registry.current
        expected = _training_answers(settings, bundle)
        last = datetime.fromtimestamp(bundle.segmentation.reference_time_, UTC)
        assert datetime.now(UTC) - last < timedelta(days=2)
        _compare(client, bundle, expected, sorted(expected)[:120])
