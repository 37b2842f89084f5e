"""Redis crashes (or hangs) under load: answers stay 2xx and fast, say `degraded`, then recover.

The service runs as production runs it (its own process, uvloop, one worker) on SQLite and a
private Redis; client threads call GET /recommend for known buyers before, during and after the
outage. The circuit breaker in app/cache/ must turn the dead Redis into immediate misses, so
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
from prometheus_client.parser import text_string_to_metric_families

from app.cache import RedisCache
from app.config import Settings
from tests.faults.servers import RedisServer, ServiceProcess
from tests.faults.support import (
    buyers,
    latency_line,
    make_settings,
    percentile,
    seed_and_train,
    wait_for,
)

LOCAL_TTL_SECONDS = Settings.model_fields["local_cache_ttl_seconds"].default
BREAKER_SECONDS = inspect.signature(RedisCache.__init__).parameters["breaker_seconds"].default
CLIENTS = 3
# Traffic spikes: this many requests at once, before the outage and after Redis returns.
BURST = 12
WARM_UP_SECONDS = 0.5
BEFORE_SECONDS = 2.0
# Longer than the breaker, so it half-opens during the outage and must open again.
OUTAGE_SECONDS = BREAKER_SECONDS + 2.0
# Spikes for this long once Redis answers again, then a quiet spell to measure latency.
AFTER_SPIKES_SECONDS = 2.0
AFTER_QUIET_SECONDS = 2.0
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
    burst: bool


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

    def _call(self, client: httpx.Client, user: str, burst: bool = False) -> None:
        started = time.monotonic()
        try:
            response = client.get(f"/recommend/{user}", params={"n": 10})
        except httpx.HTTPError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
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
            burst,
        )
        with self._lock:
            self.answers.append(answer)

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            i = offset
            while not self._stop.is_set():
                self._call(client, self.users[i % len(self.users)])
                i += CLIENTS

    def burst(self, size: int = BURST) -> None:
        """`size` requests at once, each on its own connection (a traffic spike)."""

        def one(k: int) -> None:
            with httpx.Client(base_url=self.base_url, timeout=10) as client:
                self._call(client, self.users[k % len(self.users)], burst=True)

        threads = [threading.Thread(target=one, args=(k,)) for k in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

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


@pytest.mark.parametrize(
    "fault",
    ["crash", "freeze"],
)
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
            lambda: (
                httpx.get(service.base_url + "/ready").json()["checks"]["model"]["version"] == 1
            ),
            30,
            "model version 1 loaded by the service",
        )
        clients.start()
        clients.burst()  # the pool of Redis connections grows to the spike
        time.sleep(WARM_UP_SECONDS)
        baseline_at = time.monotonic()
        time.sleep(BEFORE_SECONDS)
        stopped_at = time.monotonic()
        if fault == "crash":
            private_redis.kill()  # returns once the process is gone
        else:
            private_redis.freeze()
        down_at = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        if fault == "crash":
            private_redis.start()
        else:
            private_redis.thaw()
        up_at = time.monotonic()

        def recovered() -> bool:
            return any(a.started >= up_at and a.degraded is False for a in clients.snapshot())

        wait_for(recovered, BREAKER_SECONDS + 10, "a non-degraded answer after Redis returned")
        deadline = time.monotonic() + AFTER_SPIKES_SECONDS
        while time.monotonic() < deadline:
            clients.burst()
            time.sleep(0.25)
        quiet_at = time.monotonic()
        time.sleep(AFTER_QUIET_SECONDS)
        scrape = httpx.get(service.base_url + "/metrics", timeout=10)
    finally:
        clients.stop()
        service.stop()

    # The outage shows in the metrics: the breaker opened, and it is closed again.
    assert scrape.status_code == 200, scrape.text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }
    assert samples["tastemaker_cache_breaker_openings_total"] >= 1
    assert samples["tastemaker_cache_breaker_open"] == 0
    assert samples["tastemaker_cache_lookups_total"] > 0

    answers = clients.answers
    recovered_at = min(a.started for a in answers if a.started >= up_at and a.degraded is False)
    last_degraded = max(
        (a.started + a.latency for a in answers if a.started >= up_at and a.degraded),
        default=recovered_at,
    )
    before = [a for a in answers if baseline_at <= a.started and a.started + a.latency < stopped_at]
    during = [a for a in answers if a.started >= down_at and a.started + a.latency <= up_at]
    after = [a for a in answers if a.started >= recovered_at]
    # Latency is compared on the steady clients away from the spikes, which queue them.
    steady = {
        "before": [a.latency for a in before],
        "during": [a.latency for a in during],
        "after": [a.latency for a in after if a.started >= quiet_at],
    }
    slow = [a for a in during if a.latency >= REDIS_TIMEOUT_SECONDS]
    tag = f"[redis {fault}]"
    print(
        f"\n{tag} {len(answers)} answers ({sum(a.burst for a in answers)} in bursts of {BURST}), "
        f"{len(clients.errors)} client errors, statuses {sorted({a.status for a in answers})}"
    )
    print(latency_line(f"{tag} before", steady["before"]))
    print(latency_line(f"{tag} during the {OUTAGE_SECONDS:.0f}s outage", steady["during"]))
    print(latency_line(f"{tag} after recovery (quiet spell)", steady["after"]))
    print(
        f"{tag} degraded: before {sum(bool(a.degraded) for a in before)}/{len(before)}, "
        f"during {sum(bool(a.degraded) for a in during)}/{len(during)}, "
        f"after recovery {sum(bool(a.degraded) for a in after)}/{len(after)}; "
        f"{len(slow)} answers during the outage took >= the {REDIS_TIMEOUT_SECONDS * 1000:.0f} ms "
        f"Redis timeout; first full answer {recovered_at - up_at:.2f}s and last degraded one "
        f"{last_degraded - up_at:.2f}s after Redis returned (breaker {BREAKER_SECONDS:.0f}s)"
    )
    for line in service.log_text().splitlines():
        if "redis" in line.lower():
            print(f"{tag} service log: {line.strip()}")

    assert clients.errors == []
    assert {a.status for a in answers} == {200}
    assert len(before) >= 20 and len(during) >= 100 and len(steady["after"]) >= 20
    assert not any(a.degraded for a in before)
    # While Redis is down every answer says so, once the outage has been noticed: until a
    # request reaches Redis, answers come from the worker's in-process tier (fresh for
    # TASTEMAKER_LOCAL_CACHE_TTL_SECONDS) without touching it, and cannot know.
    noticed_at = min(a.started + a.latency for a in during if a.degraded)
    assert noticed_at - down_at <= LOCAL_TTL_SECONDS + REDIS_TIMEOUT_SECONDS + 1
    assert all(a.degraded is True for a in during if a.started >= noticed_at)
    # ...and is still the personalised answer, computed from the store and the bundle.
    first_seen = {a.user: a.items for a in before if a.source == "personalized"}
    assert all(a.source == "personalized" for a in during)
    assert all(a.items == first_seen[a.user] for a in during if a.user in first_seen)
    # The breaker bounds latency: a Redis timeout is paid at most once per breaker window by
    # each request then in flight, never by every request (x2 for scheduling noise on a shared
    # machine, which has shown 300 ms stalls with Redis healthy).
    windows = int(OUTAGE_SECONDS // BREAKER_SECONDS) + 1
    assert len(slow) <= 2 * CLIENTS * windows, [round(a.latency, 3) for a in slow]
    # p99 under 100 ms (or twice the healthy p99 when the machine is that loaded), and always
    # under the Redis timeout, which every answer would exceed without the breaker.
    bound = min(max(P99_BOUND_SECONDS, 2 * percentile(steady["before"], 99)), REDIS_TIMEOUT_SECONDS)
    assert percentile(steady["during"], 99) < bound
    assert percentile(steady["after"], 99) < bound
    # Full service again within a breaker window (plus slack), and for good: a reconnect that
    # fails in the spike right after the return may cost the requests in flight then (seen:
    # 1 answer in ~1,500 on a loaded machine), never a re-opened breaker window of answers.
    assert last_degraded - up_at < BREAKER_SECONDS + 3
    assert sum(bool(a.degraded) for a in after) <= CLIENTS + BURST
