"""Importers: Online Retail and generic event files, into SQLite and PostgreSQL, idempotent."""

from __future__ import annotations

import json
import lzma
from itertools import islice
from pathlib import Path

from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker
from app.events.models import Event
from app.importers import import_events_file, import_online_retail
from tests.conftest import require_online_retail


def _slice(tmp_path: Path, lines: int) -> Path:
    source = require_online_retail()
    target = tmp_path / "slice.csv"
    with lzma.open(source, "rt", encoding="utf-8", newline="") as src:
        target.write_text("".join(islice(src, lines)), encoding="utf-8")
    return target


def _events(factory) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Event))


def test_online_retail_slice_is_imported_once(database_url, tmp_path):
    path = _slice(tmp_path, 20_001)
    factory = make_sessionmaker(make_engine(database_url))
    first = import_online_retail(factory, path)
    assert first.read == 20_000
    assert first.inserted > 10_000
    assert first.dropped["no_customer"] > 0 and first.dropped["cancellation"] > 0
    assert first.inserted + sum(first.dropped.values()) == first.read
    assert _events(factory) == first.inserted
    with factory() as session:
        event = session.scalars(select(Event).limit(1)).one()
        assert event.type == "purchase" and event.value > 0 and event.order_id
    second = import_online_retail(factory, path)
    assert second.inserted == 0 and second.already_stored == first.inserted
    assert _events(factory) == first.inserted


def test_generic_events_file_with_mapping(database_url, tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [
        {"customer": "c1", "sku": "s1", "kind": "view", "ts": "2024-01-01T00:00:00Z"},
        {"customer": "c1", "sku": "s2", "kind": "purchase", "ts": "2024-01-02T00:00:00Z"},
        {"customer": "c2", "sku": "s1", "kind": "teleport", "ts": "2024-01-02T00:00:00Z"},
        {"customer": "bad id", "sku": "s1", "kind": "view"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    mapping = {"user_id": "customer", "item_id": "sku", "type": "kind", "occurred_at": "ts"}
    factory = make_sessionmaker(make_engine(database_url))
    types = ["view", "purchase"]
    summary = import_events_file(factory, path, mapping, types)
    assert summary.read == 5 and summary.inserted == 2
    assert summary.dropped == {"unknown_type": 1, "invalid_user_id": 1, "invalid_json": 1}
    again = import_events_file(factory, path, mapping, types)
    assert again.inserted == 0 and again.already_stored == 2
