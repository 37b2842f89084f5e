"""The service's Prometheus metrics, defined once (prometheus-client).

``tastemaker serve`` runs several worker processes: it points ``PROMETHEUS_MULTIPROC_DIR`` (the
variable prometheus-client reads when a process defines its first metric) at an empty
directory before they start (:func:`prepare_multiprocess`) and gives the workers the same
directory in their settings (``metrics_multiprocess_dir``); each worker writes its values
there, and a scrape of any worker sums them (:func:`exposition`). A process without it (one
worker, tests) keeps its values in memory.

The hot path (one request) touches label children bound once per label set (:func:`_bound`),
not ``labels(...)`` on every call, and per-request counts reach them in batches (:class:`_Tally`).
``TASTEMAKER_METRICS=false`` turns its counting off in the
whole process (:func:`configure`, called by ``create_app``): nothing per request is counted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUESTS = Counter(
    "tastemaker_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "tastemaker_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
CACHE = Counter(
    "tastemaker_cache_lookups",
    "Look-ups of cached answers in the customers' records, by tier (local, redis) and result.",
    ["tier", "result"],
)
_CACHE = {
    (tier, hit): CACHE.labels(tier, "hit" if hit else "miss")
    for tier in ("local", "redis")
    for hit in (True, False)
}
BREAKER_OPEN = Gauge(
    "tastemaker_cache_breaker_open",
    "1 while a worker's Redis circuit breaker is open (the service answers degraded).",
    multiprocess_mode="livemax",
)
BREAKER_OPENINGS = Counter(
    "tastemaker_cache_breaker_openings", "Times a Redis circuit breaker opened."
)
RATE_LIMITED = Counter(
    "tastemaker_rate_limited",
    "Requests refused by a rate limit, by kind (a scope's per-key limit: read, write, admin; "
    "webhook per address; auth_failures per address).",
    ["kind"],
)
AUTH_FAILURES = Counter("tastemaker_auth_failures", "Requests whose key was missing or wrong.")
EVENTS = Counter(
    "tastemaker_events",
    "Events received, by outcome (accepted, duplicate, conflicting).",
    ["outcome"],
)
MODEL_VERSION = Gauge(
    "tastemaker_model_version",
    "The model version a worker serves (0: none yet).",
    multiprocess_mode="livemax",
)
MODEL_SWAPS = Counter("tastemaker_model_swaps", "Bundles loaded and swapped in by a worker.")
ANSWERS = Counter(
    "tastemaker_recommendations",
    "Recommendation answers by source (personalized, cold_start, fallback) and placement.",
    ["source", "placement"],
)


class _Tally:
    """The per-request counts of this process, handed to prometheus-client in batches.

    In multiprocess mode every increment of a prometheus-client value takes a lock and writes
    a memory-mapped file: the five of a cached answer cost about 11% of its CPU. A request adds
    to plain numbers here instead (on the event loop's thread, where requests run), and
    flush() adds the sums to the metrics every second (``create_app``'s lifespan) and before
    every scrape (``GET /metrics``); a scrape sees the other workers' requests up to a second
    late.
    """

    def __init__(self) -> None:
        self.counting = True
        # (method, route, status) -> [count, sum of seconds, count per latency bucket]
        self.requests: dict[tuple[str, str, int], list[Any]] = {}
        self.counters: dict[Counter, int] = {}

    def take(self) -> tuple[dict[tuple[str, str, int], list[Any]], dict[Counter, int]]:
        """What was counted since the last call, emptied."""
        requests, counters = self.requests, self.counters
        self.requests, self.counters = {}, {}
        return requests, counters


_TALLY = _Tally()
_BOUNDS = (*_LATENCY_BUCKETS, float("inf"))


def configure(enabled: bool) -> None:
    """Count what every request does in this process, or not (``TASTEMAKER_METRICS``)."""
    _TALLY.counting = enabled


@cache
def _bound(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    # Label sets are bounded: route templates (unmatched paths share one), methods, statuses.
    counter, histogram = REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route)
    # flush() adds to the histogram's bucket and sum values, which prometheus-client keeps in
    # these attributes (tests/api/test_operations.py checks that the sums come out right).
    if len(histogram._buckets) != len(_BOUNDS) or not hasattr(histogram, "_sum"):
        raise RuntimeError("prometheus-client's Histogram changed: app/metrics.py cannot flush")
    return counter, histogram


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    if not _TALLY.counting:
        return
    key = (method, route, status)
    entry = _TALLY.requests.get(key)
    if entry is None:
        entry = _TALLY.requests[key] = [0, 0.0, [0] * len(_BOUNDS)]
    entry[0] += 1
    entry[1] += seconds
    entry[2][bisect_left(_BOUNDS, seconds)] += 1  # the first bucket whose bound is >= seconds


def _add(child: Counter, amount: int = 1) -> None:
    if _TALLY.counting:
        _TALLY.counters[child] = _TALLY.counters.get(child, 0) + amount


def flush() -> None:
    """Add what this process counted since the last flush to its metrics."""
    requests, counters = _TALLY.take()
    for (method, route, status), (count, seconds, buckets) in requests.items():
        counter, histogram = _bound(method, route, status)
        counter.inc(count)
        histogram._sum.inc(seconds)
        for value, n in zip(histogram._buckets, buckets, strict=True):
            if n:
                value.inc(n)
    for child, amount in counters.items():
        child.inc(amount)


_EVENT_OUTCOMES = {o: EVENTS.labels(o) for o in ("accepted", "duplicate", "conflicting")}


def count_events(accepted: int, duplicates: int, conflicts: int) -> None:
    """Count a committed batch's events by outcome."""
    for outcome, count in (
        ("accepted", accepted),
        ("duplicate", duplicates),
        ("conflicting", conflicts),
    ):
        if count:
            _EVENT_OUTCOMES[outcome].inc(count)


@cache
def _answer(source: str, placement: str) -> Counter:
    return ANSWERS.labels(source, placement)


def count_answer(source: str, placement: str) -> None:
    """Count one recommendation answer."""
    _add(_answer(source, placement))


def count_cache(tier: str, hit: bool) -> None:
    """Count one look-up of a cached answer in ``tier`` (local, redis)."""
    _add(_CACHE[tier, hit])


def prepare_multiprocess(directory: Path | None = None) -> Path:
    """Point this process and the workers it starts at an empty metrics directory.

    Call it before any worker starts (prometheus-client reads the variable when a process
    defines its first metric, so the serving parent sets it for the workers it spawns).
    """
    path = directory or Path(tempfile.mkdtemp(prefix="tastemaker-metrics-"))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def worker_exited(directory: Path | None, pid: int | None) -> None:
    """Drop a dead worker's live gauges (its counters keep counting in the totals)."""
    if directory is not None and pid is not None:
        multiprocess.mark_process_dead(pid, str(directory))


def exposition(directory: Path | None, extra: Iterable[Collector] = ()) -> bytes:
    """The text format of the metrics of every worker writing to ``directory`` (of this
    process alone when None), plus ``extra`` collectors read at scrape time."""
    if directory is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(directory))
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Default(Collector):
    """The in-process registry's metrics, inside a registry of their own per scrape."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()
