"""What `/recommend` answers over HTTP is what the offline evaluation measured, exactly.

The offline report is what `tastemaker evaluate --json` prints for a store holding the whole
log: it splits every customer's history at a time cutoff and scores each test customer through
the serving code, in process. Here the training side of that split is loaded through the API
into a second store, the service retrains on it, and every test customer is asked over HTTP:
the metrics of those answers must equal the report's, digit for digit, on both targets and for
every placement.
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.datasets.online_retail import read_online_retail, to_event_log
from app.db import make_engine, make_sessionmaker
from app.main import create_app
from app.ml.evaluation import ranking_metrics, time_split
from app.ml.interactions import EventLog, item_vocabulary, user_vocabulary
from app.ml.offline import targets_of
from app.training.pipeline import load_training_data
from app.training.runner import train_now
from tests.conftest import override, require_online_retail, wait_for_version

ROWS = 30_000
K = 10
PINNED = {
    "blend_weights": {"item_knn": 0.3, "ease": 1.0, "rp3beta": 0.6, "content": 0.2},
    "home_repeat_share": 0.4,
    # Small, so that many customers' answers read only a share of each row (a long history).
    "history_rows": 8,
}


@pytest.fixture(scope="module")
def shop() -> tuple[list, EventLog]:
    """The first purchase lines of Online Retail, as rows and as an event log."""
    rows = list(itertools.islice(read_online_retail(require_online_retail()), ROWS))
    events, _ = to_event_log(rows)
    return rows, events


def _load(client, rows: list, keep: np.ndarray) -> None:
    titles: dict[str, str] = {}
    for row in rows:
        titles.setdefault(row.item_id, row.description)
    items = [{"id": item, "title": title} for item, title in titles.items()]
    for lo in range(0, len(items), 500):
        assert client.post("/items", json={"items": items[lo : lo + 500]}).status_code == 200
    events = [
        {
            "event_id": row.event_id,
            "user_id": row.user_id,
            "item_id": row.item_id,
            "type": "purchase",
            "value": row.value,
            "order_id": row.invoice,
            "occurred_at": datetime.fromtimestamp(row.occurred_at.timestamp(), UTC).isoformat(),
        }
        for row, kept in zip(rows, keep.tolist(), strict=True)
        if kept
    ]
    for lo in range(0, len(events), 500):
        response = client.post("/events", json={"events": events[lo : lo + 500]})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(events[lo : lo + 500])


def _served(client, user_ids: list[str], placement: str, vocab) -> dict[int, np.ndarray]:
    out = {}
    for r, user_id in enumerate(user_ids):
        response = client.get(f"/recommend/{user_id}", params={"n": K, "placement": placement})
        assert response.status_code == 200, response.text
        out[r] = vocab.indices([item["item_id"] for item in response.json()["items"]])
    return out


def _evaluate_cli(settings, monkeypatch) -> dict:
    """`tastemaker evaluate --json` against the store of `settings`."""
    for name, value in settings.child_environment().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["evaluate", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])


def test_http_answers_score_exactly_what_tastemaker_evaluate_reports(
    client, settings, shop, tmp_path: Path, sqlite_template: Path, monkeypatch
):
    rows, events = shop
    # The whole log in a store of its own, for `tastemaker evaluate`.
    shutil.copy(sqlite_template, tmp_path / "whole.db")
    whole = override(
        settings,
        database_url=f"sqlite:///{tmp_path / 'whole.db'}",
        redis_url=None,
        model_dir=tmp_path / "whole-models",
        recommender=PINNED,
    )
    with TestClient(create_app(whole)) as whole_client:
        _load(whole_client, rows, np.ones(len(rows), dtype=bool))
    report = _evaluate_cli(whole, monkeypatch)

    # The training side of the same split in the served store; the service retrains on it.
    factory = make_sessionmaker(make_engine(whole.resolved_database_url))
    with factory() as session:
        catalog = load_training_data(session).catalog
    users, items = user_vocabulary(events), item_vocabulary(catalog, events)
    split = time_split(events, users, items)
    tested = np.flatnonzero(np.diff(split.explore.indptr) > 0)
    assert report["protocol"]["evaluated_users"] == len(tested) > 100
    _load(client, rows, split.train_mask)
    result = train_now(override(settings, recommender={**PINNED, "evaluate": False}))
    assert result["status"] == "activated", result
    wait_for_version(client, result["version"])

    user_ids = users.lookup(tested.tolist())
    explore, basket = targets_of(split.explore, tested), targets_of(split.next_basket, tested)
    n_items = len(items)
    served = _served(client, user_ids, "explore", items)
    assert ranking_metrics(served, explore, n_items=n_items, k=K) == report["models"]["served"]
    for placement in ("explore", "buy_again", "home"):
        answers = served if placement == "explore" else _served(client, user_ids, placement, items)
        measured = ranking_metrics(answers, basket, n_items=n_items, k=K)
        assert measured == report["next_basket"][placement], placement
