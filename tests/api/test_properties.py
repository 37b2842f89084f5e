"""Property-based tests of ingestion: no input shape produces a 500 or a partial write, and the
API and the events importer accept and refuse the same rows for the same reasons."""

from __future__ import annotations

import json
import string
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.importers import import_events_file
from app.main import create_app

ID_ALPHABET = string.ascii_letters + string.digits + "_.:@+-"
valid_ids = st.text(ID_ALPHABET, min_size=1, max_size=128)
any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
valid_event = st.fixed_dictionaries(
    {
        "user_id": valid_ids,
        "item_id": valid_ids,
        "type": st.sampled_from(["view", "click", "purchase"]),
    },
    optional={"event_id": valid_ids, "value": st.floats(0, 1e6), "order_id": valid_ids},
)
junk_event = st.dictionaries(
    st.sampled_from(["user_id", "item_id", "type", "value", "event_id", "occurred_at", "x"]),
    any_json,
    max_size=7,
)


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory, sqlite_template) -> Settings:
    import shutil

    path = tmp_path_factory.mktemp("prop") / "db.sqlite"
    shutil.copy(sqlite_template, path)
    # Hypothesis posts faster than the default write limit (200/s): limits are test_security's.
    unlimited = {"read": "100000/second", "write": "100000/second", "admin": "100000/second"}
    return Settings(
        database_url=f"sqlite:///{path}", model_dir=path.parent / "m", rate_limits=unlimited
    )


@pytest.fixture(scope="module")
def app_client(app_settings):
    with TestClient(create_app(app_settings)) as client:
        yield client


def _stored(client: TestClient, user_id: str) -> int:
    response = client.get(f"/users/{user_id}/events", params={"limit": 1000})
    return len(response.json()) if response.status_code == 200 else 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(valid_event, min_size=1, max_size=20))
def test_valid_batches_are_accepted(app_client, events):
    marker = f"p{uuid.uuid4().hex[:12]}"
    events = [{**e, "user_id": marker} for e in events]
    response = app_client.post("/events", json={"events": events})
    assert response.status_code == 200, response.json()
    body = response.json()
    ids = [e["event_id"] for e in events if "event_id" in e]
    assert body["accepted"] + body["duplicates"] + len(body["conflicts"]) == len(events)
    assert body["duplicates"] + len(body["conflicts"]) >= len(ids) - len(set(ids))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    good=st.lists(valid_event, min_size=0, max_size=5), bad=junk_event, body_shape=st.integers(0, 2)
)
def test_junk_is_a_4xx_and_writes_nothing(app_client, good, bad, body_shape):
    marker = f"j{uuid.uuid4().hex[:12]}"
    good = [{**e, "user_id": marker} for e in good]
    bad = {**bad, "user_id": marker} if body_shape == 0 else bad
    payload = [{"events": [*good, bad]}, bad, [bad]][body_shape]
    response = app_client.post("/events", json=payload)
    assert response.status_code < 500
    if response.status_code != 200:
        assert response.status_code in (413, 422)
        assert {"error", "detail"} <= set(response.json())
        assert _stored(app_client, marker) == 0


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user_id=st.text(max_size=200), limit=st.one_of(st.integers(-5, 2000), st.text(max_size=5)))
def test_path_and_query_parameters_never_500(app_client, user_id, limit):
    from urllib.parse import quote

    response = app_client.get(f"/users/{quote(user_id, safe='')}/events", params={"limit": limit})
    assert response.status_code in (200, 404, 422) or response.status_code == 405


# Rows as a client or a file might hold them: a plausible row, half the time with one field
# made wrong (in type, shape, range or against a domain rule).
good_rows = st.fixed_dictionaries(
    {
        "user_id": valid_ids,
        "item_id": valid_ids,
        "type": st.sampled_from(["view", "purchase", "rating", "add_to_cart"]),
    },
    optional={
        "event_id": st.sampled_from(["fresh", None]),
        "value": st.none() | st.floats(0, 1e6) | st.integers(0, 1000),
        "occurred_at": st.datetimes(
            min_value=datetime(2010, 1, 1), max_value=datetime(2026, 1, 1)
        ).map(datetime.isoformat),
        "order_id": valid_ids,
    },
)
bad_ids = st.sampled_from(["", "has space", "x" * 129, 7, None])
bad_values = {
    "user_id": bad_ids,
    "item_id": bad_ids,
    "event_id": st.sampled_from(["", "bad id", 5]),
    "order_id": bad_ids,
    "type": st.sampled_from(["teleport", "", 3, None]),
    "value": st.floats(-1e13, -1e-3)
    | st.floats(1e12 + 1, 1e14)
    | st.sampled_from(["12", "-1", True, False, "abc", [1]]),
    "occurred_at": st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(datetime.isoformat)
    | st.sampled_from(["garbage", "2024-02-30T00:00:00", "", True])
    | st.integers(-(10**12), 10**12),
}
one_wrong_field = st.sampled_from(sorted(bad_values)).flatmap(
    lambda name: st.tuples(st.just(name), bad_values[name])
)
file_rows = st.builds(
    lambda row, wrong: row if wrong is None else {**row, wrong[0]: wrong[1]},
    good_rows,
    st.none() | one_wrong_field | one_wrong_field,
)
FIELDS = ("event_id", "user_id", "item_id", "type", "value", "order_id", "occurred_at")


def _api_reason(field: dict) -> str:
    path = field["path"].split(".")
    return f"{field['type']}:{'.'.join(path[path.index('events') + 2 :])}"


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(row=file_rows)
def test_the_api_and_the_events_importer_accept_and_refuse_alike(
    app_client, app_settings, tmp_path_factory, row
):
    if row.get("event_id") == "fresh":
        row = {**row, "event_id": f"h{uuid.uuid4().hex}"}
    response = app_client.post("/events", json={"events": [row]})
    assert response.status_code in (200, 422), response.text
    first = (response.json().get("fields") or [{}])[0]
    event(f"API answered {response.status_code} {first.get('type')}")
    path = tmp_path_factory.mktemp("rows") / "row.jsonl"
    path.write_text(json.dumps(row) + "\n")
    summary = import_events_file(app_settings, path, {f: f for f in FIELDS})
    assert summary.read == 1
    if response.status_code == 200:
        assert not summary.dropped, (row, summary)
        assert summary.inserted + summary.already_stored == 1
    else:
        assert summary.inserted == 0, (row, response.json())
        assert summary.dropped == {_api_reason(response.json()["fields"][0]): 1}
