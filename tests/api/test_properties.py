"""Property-based tests of the event validator: no input shape produces a 500 or a partial write."""

from __future__ import annotations

import string
import uuid

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
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
    optional={"event_id": valid_ids, "value": st.floats(-1e6, 1e6), "order_id": valid_ids},
)
junk_event = st.dictionaries(
    st.sampled_from(["user_id", "item_id", "type", "value", "event_id", "occurred_at", "x"]),
    any_json,
    max_size=7,
)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, sqlite_template):
    import shutil

    path = tmp_path_factory.mktemp("prop") / "db.sqlite"
    shutil.copy(sqlite_template, path)
    # Hypothesis posts faster than the default write limit (200/s): limits are test_security's.
    unlimited = {"read": "100000/second", "write": "100000/second", "admin": "100000/second"}
    app = create_app(
        Settings(
            database_url=f"sqlite:///{path}", model_dir=path.parent / "m", rate_limits=unlimited
        )
    )
    with TestClient(app) as client:
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
    assert body["accepted"] + body["duplicates"] == len(events)
    assert body["duplicates"] >= len(ids) - len(set(ids))


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
