"""A shop whose events are only ratings trains, activates and serves its recommender.

Segmentation needs customers with purchases; without them it is skipped, with the reason, in
the run's metrics, GET /models, /ready and `tastemaker train`; the segment endpoints answer a
503 JSON that names the model version and the reason, never a 500.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.training.runner import train_now

N_USERS, N_ITEMS = 60, 30


def _seed_ratings(client) -> None:
    items = [
        {"id": f"i{j:02d}", "title": f"Item {j}", "categories": [f"c{j % 4}"]}
        for j in range(N_ITEMS)
    ]
    assert client.post("/items", json={"items": items}).status_code == 200
    rng = np.random.default_rng(5)
    start = datetime.now(UTC) - timedelta(days=60)
    events = []
    for u in range(N_USERS):
        taste = u % 3  # three groups of users who rate three blocks of items
        picks = rng.choice(np.arange(taste * 10, taste * 10 + 10), size=6, replace=False)
        for k, j in enumerate(picks.tolist()):
            events.append(
                {
                    "event_id": f"r{u}-{j}",
                    "user_id": f"u{u:02d}",
                    "item_id": f"i{j:02d}",
                    "type": "rating",
                    "value": int(rng.integers(3, 6)),
                    "occurred_at": (start + timedelta(days=u % 50, hours=k)).isoformat(),
                }
            )
    for first in range(0, len(events), 500):
        response = client.post("/events", json={"events": events[first : first + 500]})
        assert response.status_code == 200, response.text


def _wait_for_version(client, version: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        model = client.get("/ready").json()["checks"]["model"]
        if model["version"] == version:
            return model
        assert time.monotonic() < deadline, f"version {version} not loaded: {model}"
        time.sleep(0.1)


def test_a_ratings_only_shop_gets_a_recommender_and_a_clear_answer_about_segments(client, settings):
    _seed_ratings(client)
    result = train_now(settings)
    assert result["version"] == 1 and result["status"] == "activated", result
    assert result["segmentation"].startswith("skipped: segmentation needs at least 3 customers")

    model = _wait_for_version(client, 1)
    assert model["state"] == "loaded"
    assert "at least 3 customers with a purchase" in model["segmentation"]

    versions = client.get("/models").json()
    reason = versions[0]["metrics"]["segmentation"]["skipped"]
    assert "at least 3 customers with a purchase" in reason

    recommended = client.get("/recommend/u00").json()
    assert recommended["model_version"] == 1
    assert recommended["source"] == "personalized"
    assert len(recommended["items"]) > 0

    for path in ("/segment/u00", "/segments", "/segments/0/users"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["error"] == "model_not_ready"
        assert body["detail"] == f"no segmentation in model version 1: {reason}"


def test_tastemaker_train_reports_the_skipped_segmentation(client, settings, monkeypatch):
    _seed_ratings(client)
    for name, value in settings.child_environment().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["train"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "Model version 1: activated" in result.output
    assert "Segmentation: skipped: segmentation needs at least 3 customers" in result.output
