"""PostgreSQL crashes (`pg_ctl stop -m immediate`) under a running service, then comes back.

Reads keep answering from the bundle and the cache; writes answer 503 with Retry-After and a
JSON error, store nothing partial, and a client that retries its batches after the outage has
every event stored exactly once. The app runs in-process on a private PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from app.security.keys import hash_key
from tests.conftest import override
from tests.faults.servers import PostgresServer, RedisServer
from tests.faults.support import (
    buyers,
    latency_line,
    make_settings,
    seed_and_train,
    wait_for,
)


@pytest.fixture
def pg_settings(tmp_path: Path, pg_url: str, private_redis: RedisServer) -> Settings:
    """The production shape on private servers."""
    return make_settings(tmp_path, pg_url, private_redis.url)


@pytest.fixture
def restart_pg(private_pg: PostgresServer) -> Iterator[PostgresServer]:
    """The private PostgreSQL, started again after the test whatever happened."""
    yield private_pg
    if not private_pg.is_running():
        private_pg.start()


def _events(prefix: str, user: str, count: int) -> list[dict]:
    return [
        {"event_id": f"{prefix}-{i}", "user_id": user, "item_id": f"i{i % 7:05d}", "type": "view"}
        for i in range(count)
    ]


def _stored(url: str, like: str) -> Counter[str]:
    """How many stored events have an event_id `<batch>-<n>` matching `like`, per batch."""
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT event_id FROM event WHERE event_id LIKE :p"), {"p": like})
        counts = Counter(event_id.rsplit("-", 1)[0] for event_id in ids.scalars())
    engine.dispose()
    return counts


def _is_retryable_outage(response) -> bool:
    """503 + a Retry-After in whole seconds + the JSON error body every error shares."""
    body = response.json()
    return (
        response.status_code == 503
        and response.headers.get("retry-after", "").isdigit()
        and int(response.headers["retry-after"]) >= 1
        and body.get("error") == "service_unavailable"
        and isinstance(body.get("detail"), str)
    )


def _retry_until_stored(
    client: TestClient, batch: list[dict], timeout: float = 30
) -> tuple[dict, int]:
    """POST a batch until it is answered 200, honouring Retry-After (capped to keep tests fast)."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        response = client.post("/events", json={"events": batch})
        if response.status_code == 200:
            return response.json(), attempts
        assert _is_retryable_outage(response), (response.status_code, response.text)
        assert time.monotonic() < deadline, "the batch was never accepted"
        time.sleep(min(float(response.headers["retry-after"]), 0.2))


def test_reads_survive_and_writes_are_refused_while_postgres_is_down(
    pg_settings: Settings, pg_url: str, restart_pg: PostgresServer
) -> None:
    seed_and_train(pg_settings)
    known = buyers(count=20)
    warm, cold = known[:10], known[10:]
    with TestClient(create_app(pg_settings)) as client:
        wait_for(
            lambda: client.app.state.registry.current is not None, 10, "model version 1 loaded"
        )
        training_segment = client.app.state.registry.current.user_segment
        recommended = {u: client.get(f"/recommend/{u}").json() for u in warm}
        segments = {u: client.get(f"/segment/{u}").json() for u in warm}
        assert all(
            r["source"] == "personalized" and not r["degraded"] for r in recommended.values()
        )
        before_events = sum(_stored(pg_url, "%").values())

        restart_pg.stop("immediate")
        down_at = time.monotonic()
        latencies: list[float] = []

        def timed_get(path: str):
            started = time.monotonic()
            response = client.get(path)
            latencies.append(time.monotonic() - started)
            return response

        # Known users whose answers are cached: the same answers.
        for user in warm:
            response = timed_get(f"/recommend/{user}")
            assert response.status_code == 200
            assert response.json()["items"] == recommended[user]["items"]
            response = timed_get(f"/segment/{user}")
            assert response.status_code == 200
            assert response.json()["segment"] == segments[user]["segment"]
        # Known users with nothing cached: from the bundle, saying so.
        for user in cold:
            response = timed_get(f"/recommend/{user}")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["degraded"] is True and body["model_version"] == 1 and body["items"]
            response = timed_get(f"/segment/{user}")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["degraded"] is True and body["model_version"] == 1
            assert body["segment"]["id"] == training_segment[user]
        # A customer the bundle never saw: nothing to answer from, so retry later.
        assert _is_retryable_outage(timed_get("/segment/not-in-the-bundle"))

        # Writes: refused as a whole, retryable.
        batches = [_events(f"outage-b{k}", "outage-client", 5) for k in range(3)]
        batches.append(_events("outage-mixed", warm[0], 5))
        refused = [client.post("/events", json={"events": batch}) for batch in batches]
        assert all(_is_retryable_outage(r) for r in refused), [
            (r.status_code, r.text) for r in refused
        ]
        # Still in rotation (reads are answered from the model), saying what is down.
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["store"] == "unavailable"
        assert ready.json()["paths"]["events"] == "unavailable: the store is down"
        outage = time.monotonic() - down_at

        restart_pg.start()
        back_in = wait_for(
            lambda: client.get("/ready").json()["status"] == "ready", 30, "/ready ready again"
        )
        # Nothing of the refused batches was stored, not even their new user.
        assert sum(_stored(pg_url, "outage-%").values()) == 0
        assert client.get("/users/outage-client").status_code == 404
        assert sum(_stored(pg_url, "%").values()) == before_events

        results = [_retry_until_stored(client, batch) for batch in batches]
        stored = {"accepted": 5, "duplicates": 0, "conflicts": []}
        assert [r[0] for r in results] == [stored] * len(batches)
        # The same batches again (a client that never saw the answer): nothing new.
        again = [client.post("/events", json={"events": b}).json() for b in batches]
        assert again == [{"accepted": 0, "duplicates": 5, "conflicts": []}] * len(batches)
        history = client.get("/users/outage-client/events", params={"limit": 100}).json()
        assert sorted(e["event_id"] for e in history) == sorted(
            e["event_id"] for batch in batches[:3] for e in batch
        )
        assert _stored(pg_url, "outage-%") == {f"outage-b{k}": 5 for k in range(3)} | {
            "outage-mixed": 5
        }

    print(
        f"\n[postgres down] {len(latencies)} reads in a {outage:.2f}s outage, all 2xx "
        f"but the one uncached unknown segment (503); "
        + latency_line("reads", latencies).split(": ", 1)[1]
        + f"; {len(refused)} batches refused 503 with Retry-After "
        f"{sorted({r.headers['retry-after'] for r in refused})}; /ready 200 again "
        f"{back_in:.2f}s after PostgreSQL restarted; retried batches landed after "
        f"{[r[1] for r in results]} attempts, each exactly once"
    )


def test_a_writer_across_the_outage_stores_every_batch_exactly_once(
    pg_settings: Settings, pg_url: str, restart_pg: PostgresServer
) -> None:
    answers: dict[int, list] = {}
    stop = threading.Event()

    with TestClient(create_app(pg_settings)) as client:

        def writer() -> None:
            k = 0
            while not stop.is_set():
                batch = _events(f"w{k}", f"writer-{k % 3}", 10)
                started = time.monotonic()
                response = client.post("/events", json={"events": batch})
                answers[k] = [response, time.monotonic() - started, started, batch]
                k += 1
                time.sleep(0.01)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(1.0)
            restart_pg.stop("immediate")
            down_at = time.monotonic()
            time.sleep(2.0)
            restart_pg.start()
            up_at = time.monotonic()
            time.sleep(1.5)
        finally:
            stop.set()
            thread.join(30)

        statuses = Counter(a[0].status_code for a in answers.values())
        refused = {k: a for k, a in answers.items() if a[0].status_code != 200}
        assert set(statuses) <= {200, 503}, {k: a[0].text for k, a in refused.items()}
        assert all(_is_retryable_outage(a[0]) for a in refused.values())
        assert statuses[200] > 0 and statuses[503] > 0
        # All or nothing, batch by batch, before any retry.
        landed = _stored(pg_url, "w%")
        partial = {b: n for b, n in landed.items() if n not in (0, 10)}
        assert partial == {}
        assert all(landed[f"w{k}"] == 10 for k, a in answers.items() if a[0].status_code == 200)
        # The client retries what was refused: each event ends up stored exactly once.
        retried = {k: _retry_until_stored(client, a[3]) for k, a in refused.items()}
        for k, (result, _) in retried.items():
            assert result["accepted"] + result["duplicates"] == 10
            assert result["accepted"] == 10 - landed[f"w{k}"]
        final = _stored(pg_url, "w%")
        assert final == {f"w{k}": 10 for k in answers}
        accepted = sum(a[0].json()["accepted"] for a in answers.values() if a[0].status_code == 200)
        accepted += sum(r["accepted"] for r, _ in retried.values())
        assert accepted == 10 * len(answers)

    first_ok_after = min(
        (a[2] - up_at for a in answers.values() if a[2] >= up_at and a[0].status_code == 200),
        default=float("nan"),
    )
    refused_latency = [a[1] for a in refused.values()]
    print(
        f"\n[postgres down, writer] {len(answers)} batches of 10: {statuses[200]} stored at once, "
        f"{statuses[503]} refused 503 ({sum(landed[f'w{k}'] == 10 for k in refused)} of them had "
        f"landed, answer lost) in a {up_at - down_at:.2f}s outage; "
        + latency_line("503 answers", refused_latency).split(": ", 1)[1]
        + f"; first batch stored {first_ok_after:.2f}s after PostgreSQL restarted; "
        f"{len(retried)} retried, {final.total()} events stored, each exactly once"
    )


def test_a_worker_started_while_postgres_is_down_serves_the_active_model(
    pg_settings: Settings, restart_pg: PostgresServer
) -> None:
    from app.training.runner import train_now

    seed_and_train(pg_settings)
    assert train_now(pg_settings)["version"] == 2
    user = buyers()[0]
    with TestClient(create_app(pg_settings)) as client:
        assert client.post("/models/1/activate").status_code == 200  # an operator's rollback

    restart_pg.stop("immediate")
    # With the store down its keys cannot be read: only a key from settings is served (issue 11).
    key = "tm_settings_key"
    keyed = override(
        pg_settings, api_keys=[{"name": "web", "sha256": hash_key(key), "scopes": ["read"]}]
    )
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(keyed)) as client:
        ready = client.get("/ready")
        assert client.get(f"/recommend/{user}").status_code == 503  # no key: not anonymous
        response = client.get(f"/recommend/{user}", headers=auth)
        assert response.status_code == 200
        served_during_outage = response.json()["model_version"]
        restart_pg.start()
        wait_for(lambda: client.get("/ready").json()["status"] == "ready", 30, "/ready ready")
        wait_for(
            lambda: client.get(f"/recommend/{user}", headers=auth).json()["model_version"] == 1,
            10,
            "the active version 1 served once the store is back",
        )
    print(
        f"\n[started with postgres down] /ready {ready.status_code} {ready.json()['checks']}; "
        f"served model version {served_during_outage} while the active version is 1"
    )
    # A model was loaded from disk: in rotation, degraded, the store reported down.
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["store"] == "unavailable"
    assert served_during_outage == 1
