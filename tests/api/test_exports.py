"""Campaign exports over HTTP, on the embedded defaults and on PostgreSQL + Redis.

Each export line is what the route answers the same customer; a members export carries RFM and
attributes beyond the 1,000-row page; bad requests get 4xx; an erasure makes older files gone;
an export whose worker went silent is reported failed.
"""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker, utcnow
from app.demo import import_shop
from app.exports.models import ExportJob
from app.exports.service import MEMBER_COLUMNS, STALE_SECONDS
from app.main import create_app
from app.training.runner import train_now

SHOP = generate_shop(n_users=160, n_items=70, n_events=5_000, seed=7)


@pytest.fixture
def served(settings):
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    train_now(settings)
    with TestClient(create_app(settings)) as client:
        yield client


def _finished(client, body: dict, timeout: float = 60.0) -> dict:
    response = client.post("/exports", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["download_url"] is None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/exports/{job['id']}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"export {job['id']} did not finish in {timeout}s: {job}")


def test_a_recommendations_export_holds_what_recommend_answers(served):
    job = _finished(
        served, {"kind": "recommendations", "format": "csv", "n": 5, "placement": "home"}
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["total"] == job["done"] == len(SHOP.users)
    response = served.get(job["download_url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    by_user: dict[str, list[str]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row["item_id"])
        assert row["model_version"] == "1" and row["reason"]
    assert len(by_user) == len(SHOP.users)
    for user_id in sorted(by_user)[:15]:
        answer = served.get(f"/recommend/{user_id}", params={"n": 5, "placement": "home"}).json()
        assert [item["item_id"] for item in answer["items"]] == by_user[user_id]


def test_a_members_export_carries_each_members_segment_answer_and_attributes(served):
    segments = served.get("/segments").json()["segments"]
    segment = max(segments, key=lambda s: s["size"])["segment_id"]
    members, cursor = [], None
    while True:
        page = served.get(
            f"/segments/{segment}/users",
            params={"limit": 50, **({"cursor": cursor} if cursor else {})},
        ).json()
        members += page["users"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (
        served.put(f"/users/{members[0]}", json={"attributes": {"country": "FR"}}).status_code
        == 200
    )
    job = _finished(served, {"kind": "segment_members", "format": "jsonl", "segment": segment})
    assert job["status"] == "succeeded", job["error"]
    response = served.get(job["download_url"])
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["user_id"] for line in lines] == members
    assert lines[0]["attributes"] == {"country": "FR"}
    for line in lines[:10]:
        answer = served.get(f"/segment/{line['user_id']}").json()
        assert {k: v for k, v in line.items() if k != "attributes"} == answer
        assert line["rfm"]["group"]

    as_csv = _finished(served, {"kind": "segment_members", "format": "csv", "segment": segment})
    table = list(csv.reader(io.StringIO(served.get(as_csv["download_url"]).text)))
    assert tuple(table[0]) == MEMBER_COLUMNS
    assert {"rfm_recency_days", "segment_label", "attributes"} <= set(table[0])
    assert [row[0] for row in table[1:]] == members


def _answers(client) -> dict[str, dict]:
    """Every customer's GET /segment answer."""
    return {u.user_id: client.get(f"/segment/{u.user_id}").json() for u in SHOP.users}


def _exported_users(client, job: dict) -> list[str]:
    assert job["status"] == "succeeded", job["error"]
    lines = client.get(job["download_url"]).text.splitlines()
    return [json.loads(line)["user_id"] for line in lines]


def test_an_export_filtered_by_churn_risk_holds_exactly_that_risk(served):
    answers = _answers(served)
    risks = [a["churn_risk"] for a in answers.values() if a["churn_risk"]]
    assert len(set(risks)) >= 2, "the shop should have more than one churn risk"
    for risk in sorted(set(risks)):
        want = sorted(u for u, a in answers.items() if a["churn_risk"] == risk)
        body = {"kind": "recommendations", "format": "jsonl", "n": 3, "churn_risk": risk}
        job = _finished(served, body)
        users = _exported_users(served, job)
        assert sorted(users) == want, risk
        assert job["total"] == len(SHOP.users)  # customers examined, not exported
        for line in served.get(job["download_url"]).text.splitlines()[:5]:
            user = json.loads(line)["user_id"]
            answer = served.get(f"/recommend/{user}", params={"n": 3}).json()
            assert json.loads(line)["items"] == answer["items"]


def test_a_members_export_filtered_by_rfm_group_holds_exactly_that_group(served):
    answers = _answers(served)
    segments = served.get("/segments").json()["segments"]
    segment = max(segments, key=lambda s: s["size"])["segment_id"]
    members = [u for u, a in answers.items() if a["segment"]["id"] == segment]
    groups = {answers[u]["rfm"]["group"] for u in members}
    assert len(groups) >= 2
    for group in sorted(groups):
        body = {"kind": "segment_members", "format": "jsonl", "segment": segment}
        job = _finished(served, {**body, "rfm_group": group})
        lines = [json.loads(line) for line in served.get(job["download_url"]).text.splitlines()]
        # Members as assigned at the last retrain, filtered by their answer now.
        want = {u for u, a in answers.items() if a["rfm"]["group"] == group}
        assert {line["user_id"] for line in lines} == want & set(_members_of(served, segment))
        assert all(line["rfm"]["group"] == group for line in lines)
    everyone = _exported_users(
        served,
        _finished(
            served,
            {
                "kind": "recommendations",
                "format": "jsonl",
                "n": 1,
                "rfm_group": sorted(groups)[0],
                "churn_risk": "low",
            },
        ),
    )
    assert sorted(everyone) == sorted(
        u
        for u, a in answers.items()
        if a["rfm"]["group"] == sorted(groups)[0] and a["churn_risk"] == "low"
    )


def test_the_members_listing_filters_by_rfm_group_and_churn_risk_alike(served, monkeypatch):
    # Short scans, so that the filtered pages of the test's shop end early and must be followed.
    monkeypatch.setattr("app.segments.service.FILTER_SCAN", 7)
    answers = _answers(served)
    segment = max(served.get("/segments").json()["segments"], key=lambda s: s["size"])
    members = _members_of(served, segment["segment_id"])
    says = {
        u: {"rfm_group": a["rfm"]["group"], "churn_risk": a["churn_risk"]}
        for u, a in answers.items()
    }
    for name, value in [
        ("rfm_group", says[members[0]]["rfm_group"]),
        ("churn_risk", says[members[-1]]["churn_risk"]),
    ]:
        want = [u for u in members if says[u][name] == value]
        assert 0 < len(want) < len(members)
        assert _members_of(served, segment["segment_id"], limit=3, **{name: value}) == want
    refused = served.get(f"/segments/{segment['segment_id']}/users", params={"rfm_group": "VIP"})
    assert refused.status_code == 422 and "Champions" in refused.text


def _members_of(client, segment: int, limit: int = 1000, **filters: str) -> list[str]:
    members, cursor = [], None
    while True:
        page = client.get(
            f"/segments/{segment}/users",
            params={"limit": limit, **filters, **({"cursor": cursor} if cursor else {})},
        ).json()
        assert len(page["users"]) <= limit
        members += page["users"]
        cursor = page["next_cursor"]
        if cursor is None:
            return members


def test_a_recommendations_export_of_one_segment_holds_its_members_answers(served):
    segments = served.get("/segments").json()["segments"]
    segment = min((s for s in segments if s["size"] > 1), key=lambda s: s["size"])["segment_id"]
    members = _members_of(served, segment)
    job = _finished(
        served, {"kind": "recommendations", "format": "csv", "n": 4, "segment": segment}
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["total"] == job["done"] == len(members)
    rows = list(csv.DictReader(io.StringIO(served.get(job["download_url"]).text)))
    by_user: dict[str, list[str]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row["item_id"])
    assert sorted(by_user) == sorted(members)
    for user_id in members[:10]:
        answer = served.get(f"/recommend/{user_id}", params={"n": 4}).json()
        assert [item["item_id"] for item in answer["items"]] == by_user[user_id]


def test_a_members_export_beyond_the_page_size_is_complete(settings):
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    with TestClient(create_app(settings)) as client:
        # 1,100 visitors who only looked: the "No purchase yet" segment outgrows a page.
        item = SHOP.items[0].item_id
        for start in range(0, 1_100, 550):
            events = [
                {"user_id": f"v{i:05d}", "item_id": item, "type": "view"}
                for i in range(start, start + 550)
            ]
            assert client.post("/events", json={"events": events}).status_code in (200, 202)
    train_now(settings)
    with TestClient(create_app(settings)) as client:
        segments = client.get("/segments").json()["segments"]
        biggest = max(segments, key=lambda s: s["size"])
        assert biggest["size"] > 1_000
        members = _members_of(client, biggest["segment_id"])
        assert len(members) == biggest["size"]
        body = {"kind": "segment_members", "format": "csv", "segment": biggest["segment_id"]}
        job = _finished(client, body, timeout=120.0)
        assert job["status"] == "succeeded", job["error"]
        assert job["total"] == job["done"] == len(members)
        table = list(csv.reader(io.StringIO(client.get(job["download_url"]).text)))
        assert [row[0] for row in table[1:]] == members


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"kind": "segment_members"}, 422),
        ({"kind": "segment_members", "segment": None}, 422),
        ({}, 422),
        ({"kind": "recommendations", "n": 0}, 422),
        ({"kind": "recommendations", "format": "xlsx"}, 422),
        ({"kind": "recommendations", "placement": "everywhere"}, 422),
        ({"kind": "recommendations", "segment": False}, 422),
        ({"kind": "recommendations", "bogus": 1}, 422),
        ({"kind": "recommendations", "segment": 9999}, 404),
        ({"kind": "recommendations", "rfm_group": "Whales"}, 422),
        ({"kind": "recommendations", "rfm_group": "champions"}, 422),
        ({"kind": "recommendations", "churn_risk": "extreme"}, 422),
        ({"kind": "segment_members", "segment": 0, "rfm_group": ""}, 422),
        ({"kind": "segment_members", "segment": 0, "churn_risk": None, "rfm_group": 3}, 422),
    ],
)
def test_bad_export_requests_are_refused_with_a_reason(served, body, status):
    response = served.post("/exports", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert served.get("/exports").json() == []


def test_an_erasure_after_an_export_makes_its_file_gone(served):
    job = _finished(served, {"kind": "recommendations", "format": "jsonl", "n": 3})
    assert served.get(job["download_url"]).status_code == 200
    assert served.delete(f"/users/{SHOP.users[0].user_id}").status_code == 204
    gone = served.get(job["download_url"])
    assert gone.status_code == 404 and "erasure" in gone.json()["detail"]
    assert gone.json()["error"] == "withdrawn"
    again = _finished(served, {"kind": "recommendations", "format": "jsonl", "n": 3})
    lines = served.get(again["download_url"]).text.splitlines()
    assert SHOP.users[0].user_id not in {json.loads(line)["user_id"] for line in lines}
    assert again["total"] == len(SHOP.users) - 1


def test_an_export_whose_worker_went_silent_is_failed(served, settings):
    job = _finished(served, {"kind": "recommendations", "format": "csv", "n": 2})
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory.begin() as session:
        session.execute(
            update(ExportJob)
            .where(ExportJob.id == job["id"])
            .values(status="running", heartbeat_at=utcnow() - timedelta(seconds=STALE_SECONDS + 5))
        )
    failed = served.get(f"/exports/{job['id']}").json()
    assert failed["status"] == "failed" and failed["error"] == "the worker running it stopped"
    assert served.get(f"/exports/{job['id']}/download").status_code == 409
    assert served.get("/exports/424242").status_code == 404
