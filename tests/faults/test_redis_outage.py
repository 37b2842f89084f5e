"""Redis crashes (or hangs) under load: answers stay 2xx and fast, say `degraded`, then recover.

The service runs as production runs it (its own process, uvloop, one worker) on SQLite and a
private Redis; client threads call GET /recommend for known buyers before, during and after the
outage. The circuit breaker in app/cache.py must turn the dead Redis into immediate misses, so
no request waits for a socket timeout more than once per breaker window.
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.cache import RedisCache
from tests.faults.servers import RedisServer, ServiceProcess
from tests.faults.support import (
    buyers,
    latency_line,
    make_settings,
    percentile,
    seed_and_train,
    wait_for,
)

BREAKER_SECONDS = inspect.signature(RedisCache.__init__).parameters["breaker_seconds"].default
CLIENTS = 3
BEFORE_SECONDS = 2.0
# Longer than the breaker, so it half-opens during the outage and must open again.
OUTAGE_SECONDS = BREAKER_SECONDS + 2.0
AFTER_SECONDS = 2.0
P99_BOUND_SECONDS = 0.100
# Well above the scheduling noise of a shared 2-core machine, so that an answer which waited
# for a Redis timeout is unmistakable in the latency figures.
REDIS_TIMEOUT_SECONDS = 0.2


@dataclass(frozen=True)
class Answer:
    started: float
    latency: float
    user: str
    status: int
    degraded: bool | None
    source: str | None
    items: tuple[str, ...]


class Clients:
    """Threads calling GET /recommend in a loop, each on its own keep-alive connection."""

    def __init__(self, base_url: str, users: list[str]) -> None:
        self.base_url = base_url
        self.users = users
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(CLIENTS)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            i = offset
            while not self._stop.is_set():
                user = self.users[i % len(self.users)]
                i += CLIENTS
                started = time.monotonic()
                try:
                    response = client.get(f"/recommend/{user}", params={"n": 10})
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latency = time.monotonic() - started
                body = response.json() if response.status_code == 200 else {}
                answer = Answer(
                    started,
                    latency,
                    user,
                    response.status_code,
                    body.get("degraded"),
                    body.get("source"),
                    tuple(item["item_id"] for item in body.get("items", [])),
                )
                with self._lock:
                    self.answers.append(answer)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


@pytest.mark.parametrize("fault", ["crash", "freeze"])
def test_recommend_stays_fast_and_says_degraded_while_redis_is_down(
    fault: str, tmp_path: Path, sqlite_url: str, private_redis: RedisServer
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url, private_redis.url, redis_timeout_seconds=REDIS_TIMEOUT_SECONDS
    )
    seed_and_train(settings)
    service = ServiceProcess(settings, tmp_path)
    service.start()
    clients = Clients(service.base_url, buyers(count=30))
    try:
        wait_for(
            lambda: httpx.get(service.base_url + "/ready").json()["checks"]["model"]["version"] == 1,
            30,
            "model version 1 loaded by the service",
        )
        clients.start()
        time.sleep(BEFORE_SECONDS)
        down_at = time.monotonic()
        if fault == "crash":
            private_redis.kill()
        else:
            private_redis.freeze()
        time.sleep(OUTAGE_SECONDS)
        if fault == "crash":
            private_redis.start()
        else:
            private_redis.thaw()
        up_at = time.monotonic()

        def recovered() -> bool:
            return any(a.started >= up_at and a.degraded is False for a in clients.snapshot())

        recovery = wait_for(recovered, BREAKER_SECONDS + 10, "a non-degraded answer after Redis returned")
        time.sleep(AFTER_SECONDS)
    finally:
        clients.stop()
        service.stop()

    answers = clients.answers
    recovered_at = min(a.started for a in answers if a.started >= up_at and a.degraded is False)
    before = [a for a in answers if a.started + a.latency < down_at]
    during = [a for a in answers if a.started >= down_at and a.started + a.latency <= up_at]
    after = [a for a in answers if a.started >= recovered_at]
    slow = [a for a in during if a.latency >= settings.redis_timeout_seconds]
    print(
        f"\n[redis {fault}] {len(answers)} answers, {len(clients.errors)} client errors, "
        f"statuses {sorted({a.status for a in answers})}"
    )
    print(latency_line(f"[redis {fault}] before", [a.latency for a in before]))
    print(latency_line(f"[redis {fault}] during {OUTAGE_SECONDS:.0f}s outage", [a.latency for a in during]))
    print(latency_line(f"[redis {fault}] after recovery", [a.latency for a in after]))
    print(
        f"[redis {fault}] degraded: before {sum(bool(a.degraded) for a in before)}/{len(before)}, "
        f"during {sum(bool(a.degraded) for a in during)}/{len(during)}, "
        f"after {sum(bool(a.degraded) for a in after)}/{len(after)}; "
        f"{len(slow)} answers during the outage took >= {settings.redis_timeout_seconds * 1000:.0f} ms "
        f"(the Redis timeout); full service {recovery:.2f}s after Redis returned "
        f"(breaker {BREAKER_SECONDS:.0f}s)"
    )

    for line in service.log_text().splitlines():
        if "redis" in line.lower():
            print(f"[redis {fault}] service log: {line.strip()}")

    assert clients.errors == []
    assert {a.status for a in answers} == {200}
    assert len(before) >= 20 and len(during) >= 100 and len(after) >= 20
    assert not any(a.degraded for a in before)
    # While Redis is down every answer says so...
    assert all(a.degraded is True for a in during)
    # ...and is still the personalised answer, computed from the store and the bundle.
    first_seen = {a.user: a.items for a in before if a.source == "personalized"}
    assert all(a.source == "personalized" for a in during)
    assert all(a.items == first_seen[a.user] for a in during if a.user in first_seen)
    # The breaker bounds latency: a Redis timeout is paid at most once per breaker window
    # by each client in flight, never by every request.
    windows = int(OUTAGE_SECONDS // BREAKER_SECONDS) + 1
    assert len(slow) <= CLIENTS * windows, [round(a.latency, 3) for a in slow]
    assert percentile([a.latency for a in during], 99) < P99_BOUND_SECONDS
    # Full service again within a breaker window (plus slack) and for good.
    assert recovery < BREAKER_SECONDS + 3
    assert not any(a.degraded for a in after)
    assert percentile([a.latency for a in after], 99) < P99_BOUND_SECONDS
