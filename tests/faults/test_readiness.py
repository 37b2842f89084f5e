"""GET /ready tells the truth through a sequence of outages of PostgreSQL and Redis.

A prober calls /ready and /health every few milliseconds while the test breaks and mends the
private servers; every probe that does not overlap a change must report exactly the state of
the moment: with a model loaded, 200 throughout (a soft outage must not pull every replica out
of rotation), "ready" when both are up and "degraded" otherwise, the write paths that are
unavailable, the loaded model version throughout, and /health 200 always.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.faults.servers import PostgresServer, RedisServer
from tests.faults.support import latency_line, make_settings, seed_and_train, wait_for

HOLD_SECONDS = 1.0  # how long each state lasts


@dataclass(frozen=True)
class Probe:
    started: float
    finished: float
    status: int
    said: str
    events: str
    store: str
    cache: str
    version: int | None
    health: int


@dataclass(frozen=True)
class State:
    name: str
    since: float  # the change that led here had completed
    until: float  # the next change began
    store: str
    cache: str


def test_ready_reports_each_dependency_truthfully_through_outages(
    tmp_path: Path, pg_url: str, private_pg: PostgresServer, private_redis: RedisServer
) -> None:
    settings = make_settings(tmp_path, pg_url, private_redis.url)
    seed_and_train(settings)
    probes: list[Probe] = []
    stop = threading.Event()

    with TestClient(create_app(settings)) as client:
        wait_for(lambda: client.get("/ready").status_code == 200, 10, "/ready 200")

        def prober() -> None:
            while not stop.is_set():
                started = time.monotonic()
                ready = client.get("/ready")
                finished = time.monotonic()
                checks = ready.json()["checks"]
                health = client.get("/health").status_code
                probes.append(
                    Probe(
                        started,
                        finished,
                        ready.status_code,
                        ready.json()["status"],
                        ready.json()["paths"]["events"],
                        checks["store"],
                        checks["cache"],
                        checks["model"]["version"],
                        health,
                    )
                )
                time.sleep(0.01)

        # (name, change to make, store and cache states once it is made)
        steps = [
            ("all up", lambda: None, "ok", "ok"),
            ("redis crashed", private_redis.kill, "ok", "unavailable"),
            ("redis back", private_redis.start, "ok", "ok"),
            ("postgres crashed", lambda: private_pg.stop("immediate"), "unavailable", "ok"),
            ("both down", private_redis.kill, "unavailable", "unavailable"),
            ("redis back, postgres down", private_redis.start, "unavailable", "ok"),
            ("all back", private_pg.start, "ok", "ok"),
        ]
        states: list[State] = []
        thread = threading.Thread(target=prober)
        thread.start()
        try:
            for name, change, store, cache in steps:
                began = time.monotonic()
                if states:
                    states[-1] = replace(states[-1], until=began)
                change()
                states.append(State(name, time.monotonic(), float("inf"), store, cache))
                time.sleep(HOLD_SECONDS)
        finally:
            stop.set()
            thread.join(30)
            if not private_pg.is_running():
                private_pg.start()

    print()
    wrong: list[str] = []
    for state in states:
        inside = [p for p in probes if state.since <= p.started and p.finished <= state.until]
        expected = "ready" if state.store == state.cache == "ok" else "degraded"
        events = "ok" if state.store == "ok" else "unavailable: the store is down"
        bad = [
            p
            for p in inside
            if (p.status, p.said, p.events, p.store, p.cache, p.version, p.health)
            != (200, expected, events, state.store, state.cache, 1, 200)
        ]
        wrong += [f"{state.name}: {p}" for p in bad]
        print(
            f"[ready] {state.name}: {len(inside)} probes, {len(bad)} wrong, expected {expected} "
            f"store={state.store} cache={state.cache}; "
            + latency_line("/ready", [p.finished - p.started for p in inside]).split(": ", 1)[1]
        )
        assert len(inside) >= 5, state
    assert wrong == []
    assert max(p.finished - p.started for p in probes) < 2.0
