"""Two stores sharing one model directory never serve or overwrite each other's bundles.

Each store gets a random identity when it is migrated; each bundle records the identity of the
store it was trained from. A worker refuses a bundle of another store, says so in /ready (both
identities) and the log, and keeps serving what it had, or the fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.main import create_app
from app.migrate import upgrade
from app.ml.bundle import read_manifest, write_manifest
from app.training import repository
from app.training.models import ModelVersion
from app.training.pipeline import BundleDirectoryTaken
from app.training.registry import ForeignBundle, ModelRegistry, StoreOrigin, check_origin
from app.training.runner import train_now
from tests.conftest import override

SHOP = generate_shop(n_users=200, n_items=80, n_events=6_000, seed=8)


@contextmanager
def _factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the store of `settings`, its connections closed afterwards."""
    engine = make_engine(settings.resolved_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


def _store_id(settings: Settings) -> str:
    with _factory(settings) as factory, factory.begin() as session:
        return repository.store_identity(session)


def _second_store(tmp_path: Path, first: Settings) -> Settings:
    """Another store (a fresh SQLite file, migrated) with the same model directory."""
    url = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(url)
    return override(
        first,
        database_url=url,
        redis_url=None,
        cache_prefix=f"tmother:{uuid.uuid4().hex[:8]}:",
    )


def _seed(settings: Settings) -> None:
    with _factory(settings) as factory:
        import_shop(factory, SHOP)


def _ready_model(client: TestClient, until, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = client.get("/ready").json()["checks"]["model"]
        if until(model):
            return model
        assert time.monotonic() < deadline, f"/ready never showed the expected model: {model}"
        time.sleep(0.1)


def _register(settings: Settings, version: int, path: Path, *, active: bool) -> None:
    """What an operator's SQL or a stale registration does: point a version at `path`."""
    manifest = read_manifest(path)
    with _factory(settings) as factory, factory.begin() as session:
        row = ModelVersion(version=version, path=str(path), metrics=manifest["metrics"])
        session.add(row)
        session.flush()
        if active:
            repository.activate(session, row)


def test_each_migrated_store_has_its_own_identity(settings, tmp_path):
    other = _second_store(tmp_path, settings)
    first_id, other_id = _store_id(settings), _store_id(other)
    assert len(first_id) == 32 and len(other_id) == 32
    assert first_id != other_id
    upgrade(other.resolved_database_url)  # migrating again keeps the identity
    assert _store_id(other) == other_id


def test_a_store_refuses_the_bundle_of_another_store_sharing_its_model_dir(
    settings, tmp_path, caplog
):
    other = _second_store(tmp_path, settings)
    ours, theirs = _store_id(settings), _store_id(other)
    _seed(settings)
    _seed(other)  # the very same events: only the identity tells the bundles apart
    assert train_now(settings)["version"] == 1
    v1 = settings.model_dir / "v1"
    assert read_manifest(v1)["store_id"] == ours
    before = (v1 / "manifest.json").read_bytes()

    # The other store's trainer would write v1 too: it refuses to replace our bundle.
    with pytest.raises(BundleDirectoryTaken, match=ours):
        train_now(other)
    assert (v1 / "manifest.json").read_bytes() == before

    # Activating that bundle in the other store: refused by the API, naming both stores.
    _register(other, 1, v1, active=False)
    with TestClient(create_app(other)) as client:
        response = client.post("/models/1/activate")
        assert response.status_code == 409
        assert ours in response.json()["detail"] and theirs in response.json()["detail"]

    # Activated behind the API's back: the worker refuses it and serves the fallback.
    with _factory(other) as factory, factory.begin() as session:
        repository.activate(session, repository.get_version(session, 1))
    with caplog.at_level(logging.ERROR), TestClient(create_app(other)) as client:
        model = _ready_model(client, lambda m: m["state"] == "failed")
        assert model["version"] is None and model["store_id"] == theirs
        assert ours in model["error"] and theirs in model["error"]
        assert "refused" in model["error"]
        answer = client.get(f"/recommend/{SHOP.users[0].user_id}").json()
        assert answer["model_version"] is None and answer["source"] == "fallback"
        assert client.get(f"/segment/{SHOP.users[0].user_id}").status_code == 503
    assert f"trained from store {ours}, not from this store {theirs}" in caplog.text


def test_a_worker_keeps_serving_its_own_version_when_a_foreign_one_is_activated(settings, tmp_path):
    other = _second_store(tmp_path, settings)
    own_dir = override(other, model_dir=tmp_path / "other-models")
    _seed(settings)
    _seed(other)
    assert train_now(settings)["version"] == 1
    assert train_now(settings)["version"] == 2  # the shared directory now has v1 and v2
    assert train_now(own_dir)["version"] == 1
    ours, theirs = _store_id(settings), _store_id(other)

    with TestClient(create_app(other)) as client:
        _ready_model(client, lambda m: m["version"] == 1 and m["state"] == "loaded")
        _register(other, 2, settings.model_dir / "v2", active=True)
        model = _ready_model(client, lambda m: "error" in m)
        assert model["version"] == 1 and model["state"] == "loaded"
        assert model["error"].startswith("version 2: ")
        assert ours in model["error"] and theirs in model["error"]
        answer = client.get(f"/recommend/{SHOP.users[0].user_id}").json()
        assert answer["model_version"] == 1
        time.sleep(3 * other.model_poll_seconds)  # later polls keep saying why
        assert client.get("/ready").json()["checks"]["model"]["error"] == model["error"]


def test_a_bundle_loaded_while_the_store_was_down_is_checked_once_it_answers(settings, tmp_path):
    # The other store's worker starts while its store is down: it serves the version last
    # activated in the shared directory (written there by the first store's trainer)...
    other = _second_store(tmp_path, settings)
    _seed(settings)
    assert train_now(settings)["version"] == 1
    down = make_sessionmaker(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    registry = ModelRegistry(other, down)
    asyncio.run(registry.refresh())
    assert registry.current is not None and registry.current.version == 1
    assert registry.describe()["origin"].startswith("not checked yet")
    # ... and refuses it as soon as its own store answers.
    registry.factory = make_sessionmaker(make_engine(other.resolved_database_url))
    asyncio.run(registry.refresh())
    model = registry.describe()
    assert registry.current is None and model["state"] == "failed"
    assert _store_id(settings) in model["error"] and _store_id(other) in model["error"]


def test_a_bundle_without_identity_is_accepted_only_when_it_is_the_one_registered(tmp_path):
    manifest = {"version": 3, "data": {"events": 10, "last_event_id": 10}}
    path = tmp_path / "v3"
    recorded = StoreOrigin("a" * 32, {"events": 10, "last_event_id": 10})
    assert "retrain to stamp it" in check_origin(manifest, path, recorded)
    replaced = StoreOrigin("a" * 32, {"events": 99, "last_event_id": 99})
    with pytest.raises(ForeignBundle, match="records no store"):
        check_origin(manifest, path, replaced)
    with pytest.raises(ForeignBundle, match="records no store"):
        check_origin(manifest, path, StoreOrigin("a" * 32, None))
    assert check_origin({**manifest, "store_id": "a" * 32}, path, recorded) is None
    with pytest.raises(ForeignBundle, match="b" * 32):
        check_origin({**manifest, "store_id": "b" * 32}, path, recorded)


def test_an_old_bundle_of_this_store_keeps_being_served_after_the_upgrade(settings):
    _seed(settings)
    assert train_now(settings)["version"] == 1
    v1 = settings.model_dir / "v1"
    manifest = read_manifest(v1)
    del manifest["store_id"]  # as written before stores had identities
    write_manifest(v1, manifest)
    with TestClient(create_app(settings)) as fresh:
        model = _ready_model(fresh, lambda m: m["version"] == 1)
        assert model["state"] == "loaded" and "retrain to stamp it" in model["origin"]


def test_the_demo_keeps_its_models_in_its_own_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASTEMAKER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TASTEMAKER_MODEL_DIR", raising=False)
    monkeypatch.delenv("TASTEMAKER_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        args = ["demo", "--no-serve", "--users", "150", "--items", "60", "--events", "4000"]
        result = CliRunner().invoke(cli, args)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    demo_models = tmp_path / "data" / "demo-models"
    assert json.loads((demo_models / "v1" / "manifest.json").read_text())["version"] == 1
    assert not (tmp_path / "models").exists()
    shutil.rmtree(tmp_path / "data")
