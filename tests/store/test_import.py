"""Importers: Online Retail and generic event files, on both shapes, through the POST /events rules."""

from __future__ import annotations

import csv
import json
import lzma
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.catalog.models import Item
from app.db import make_engine, make_sessionmaker
from app.events.models import Event, User
from app.importers import import_events_file, import_online_retail
from app.main import create_app
from tests.conftest import require_online_retail

MAPPING = {f: f for f in ("event_id", "user_id", "item_id", "type", "value", "order_id")} | {
    "occurred_at": "occurred_at"
}


def _slice(tmp_path: Path, lines: int, extra: list[str] | None = None) -> Path:
    source = require_online_retail()
    target = tmp_path / "slice.csv"
    with lzma.open(source, "rt", encoding="utf-8", newline="") as src:
        text = "".join(islice(src, lines))
    target.write_text(text + "".join(line + "\n" for line in extra or []), encoding="utf-8")
    return target


@contextmanager
def _session(settings) -> Iterator[Session]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()  # the PostgreSQL server is shared: hold no idle connections


def _events(settings) -> int:
    with _session(settings) as session:
        return session.scalar(select(func.count()).select_from(Event))


def _exists(settings, model, key: str) -> bool:
    with _session(settings) as session:
        return session.get(model, key) is not None


def test_online_retail_slice_is_imported_once(settings, tmp_path):
    path = _slice(tmp_path, 20_001)
    first = import_online_retail(settings, path)
    assert first.read == 20_000
    assert first.inserted > 10_000
    assert first.dropped["no_customer"] > 0 and first.dropped["cancellation"] > 0
    assert first.inserted + sum(first.dropped.values()) == first.read
    assert _events(settings) == first.inserted
    with _session(settings) as session:
        event = session.scalars(select(Event).limit(1)).one()
        assert event.type == "purchase" and event.value > 0 and event.order_id
        item = session.get(Item, event.item_id)
        assert item.title and not item.is_placeholder  # the file describes its items
    second = import_online_retail(settings, path)
    assert second.inserted == 0 and second.already_stored == first.inserted
    assert _events(settings) == first.inserted


def test_an_online_retail_row_dated_2099_is_refused_as_the_api_refuses_it(settings, tmp_path):
    row = "999999,99999Z,FUTURE MUG,1,2099-01-01 10:00:00,2.5,99999.0,United Kingdom"
    summary = import_online_retail(settings, _slice(tmp_path, 201, [row]))
    assert summary.dropped["future_timestamp:occurred_at"] == 1
    assert not _exists(settings, User, "99999")
    assert not _exists(settings, Item, "99999Z")
    with TestClient(create_app(settings)) as client:
        event = {"user_id": "99999", "item_id": "99999Z", "type": "purchase", "value": 2.5}
        response = client.post(
            "/events", json={"events": [{**event, "occurred_at": "2099-01-01T10:00:00"}]}
        )
    assert response.status_code == 422
    assert [(f["path"], f["type"]) for f in response.json()["fields"]] == [
        ("events.0.occurred_at", "future_timestamp")
    ]


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_events_file_rows_meet_the_api_rules(settings, tmp_path):
    rows = [
        {"event_id": "a1", "user_id": "c1", "item_id": "s1", "type": "view"},
        {"event_id": "a2", "user_id": "c1", "item_id": "s2", "type": "purchase", "value": "12"},
        {"event_id": "a3", "user_id": "c9", "item_id": "s1", "type": "view",
         "occurred_at": "2099-06-01T00:00:00Z"},
        {"event_id": "a4", "user_id": "c9", "item_id": "s1", "type": "view",
         "occurred_at": "1990-06-01T00:00:00Z"},
        {"event_id": "a5", "user_id": "c9", "item_id": "s1", "type": "purchase", "value": "-3"},
        {"event_id": "a6", "user_id": "c1", "item_id": "s1", "type": "rating", "value": "-1"},
        {"event_id": "a7", "user_id": "c9", "item_id": "s1", "type": "purchase", "value": "true"},
    ]  # fmt: skip
    summary = import_events_file(settings, _write_csv(tmp_path / "e.csv", rows), MAPPING)
    assert summary.inserted == 3  # a1, a2 (the importer reads "12" as a number), a6
    assert summary.dropped == {
        "future_timestamp:occurred_at": 1,
        "past_timestamp:occurred_at": 1,
        "negative_value:value": 1,
        "float_type:value": 1,
    }
    assert not _exists(settings, User, "c9")
    with _session(settings) as session:
        values = {e: v for e, v in session.execute(select(Event.event_id, Event.value))}
    assert values == {"a1": None, "a2": 12.0, "a6": -1.0}


def test_json_lines_take_numbers_as_the_api_does(settings, tmp_path):
    path = tmp_path / "e.jsonl"
    rows = [
        {"user_id": "c1", "item_id": "s1", "type": "purchase", "value": 12},
        {"user_id": "c1", "item_id": "s2", "type": "purchase", "value": "12"},
        {"user_id": "c1", "item_id": "s3", "type": "purchase", "value": True},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    summary = import_events_file(settings, path, MAPPING)
    assert summary.inserted == 1 and summary.dropped == {"float_type:value": 2}


def test_a_reused_event_id_with_another_payload_is_dropped_as_a_conflict(settings, tmp_path):
    path = tmp_path / "e.jsonl"
    rows = [
        {"event_id": "x1", "user_id": "c1", "item_id": "s1", "type": "view"},
        {"event_id": "x1", "user_id": "c2", "item_id": "s9", "type": "view"},
        {"event_id": "x1", "user_id": "c1", "item_id": "s1", "type": "view"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    summary = import_events_file(settings, path, MAPPING)
    assert (summary.inserted, summary.already_stored) == (1, 1)
    assert summary.dropped == {"conflict:event_id": 1}
    assert not _exists(settings, User, "c2") and not _exists(settings, Item, "s9")
    again = import_events_file(settings, path, MAPPING)
    assert (again.inserted, again.already_stored, again.dropped) == (0, 2, {"conflict:event_id": 1})


def test_generic_events_file_with_mapping(settings, tmp_path):
    path = tmp_path / "events.jsonl"
    rows = [
        {"customer": "c1", "sku": "s1", "kind": "view", "ts": "2024-01-01T00:00:00Z"},
        {"customer": "c1", "sku": "s2", "kind": "purchase", "ts": "2024-01-02T00:00:00Z"},
        {"customer": "c2", "sku": "s1", "kind": "teleport", "ts": "2024-01-02T00:00:00Z"},
        {"customer": "bad id", "sku": "s1", "kind": "view"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    mapping = {"user_id": "customer", "item_id": "sku", "type": "kind", "occurred_at": "ts"}
    summary = import_events_file(settings, path, mapping)
    assert summary.read == 5 and summary.inserted == 2
    assert summary.dropped == {
        "event_type:type": 1,
        "string_pattern_mismatch:user_id": 1,
        "invalid_json": 1,
    }
    again = import_events_file(settings, path, mapping)
    assert again.inserted == 0 and again.already_stored == 2


def test_the_import_command_reports_refused_rows_by_reason(settings, tmp_path):
    from typer.testing import CliRunner

    from app.cli import cli
    from app.config import get_settings

    rows = [
        {"customer": "c1", "sku": "s1", "kind": "view", "ts": "2024-01-01T00:00:00Z"},
        {"customer": "c2", "sku": "s1", "kind": "view", "ts": "2099-01-01T00:00:00Z"},
    ]
    path = _write_csv(tmp_path / "rows.csv", rows)
    mapping = ["--map", "user_id=customer", "--map", "item_id=sku", "--map", "type=kind"]
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli,
            ["import", "events", str(path), *mapping, "--map", "occurred_at=ts"],
            env=settings.child_environment(),
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "future_timestamp:occurred_at" in result.output
    assert _events(settings) == 1 and not _exists(settings, User, "c2")
