"""Serving benchmarks: the service under wrk beside the bare-FastAPI baseline, memory, ingestion.

For each worker count the real service is started with ``tastemaker serve --workers N`` as a
subprocess (its own database clone, model directory and Redis key prefix), driven by wrk over
loopback with a Lua script cycling through real user and item ids, and measured:
requests/s, p50/p90/p99 latency, and CPU per request of the server processes (utime + stime
from psutil before and after, summed over the process tree), of PostgreSQL + Redis, and of the
whole machine (so that load from other processes shows).
"""

from __future__ import annotations

import http.client
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from sqlalchemy import create_engine, insert, text

from app.datasets.synthetic import EVENT_TYPES
from benchmarks import overhead, procs, report, store
from benchmarks.wrk import Workload, run_wrk

Say = Callable[[str], None]
STORE_MARKER = f" {store.BENCH_DB} "  # in the process title of our backends
EVENTS_PER_BATCH = 500
RATE_LIMITS = '{"read": "10000000/second", "write": "10000000/second", "admin": "10000000/second"}'
PRIMED = ("recommend_cached", "segment")  # measured as cache hits: every id is requested first
EVENT_TYPE_SHARES = (0.6, 0.2, 0.12, 0.08)


@dataclass(frozen=True)
class Plan:
    """How long and how hard each measurement runs."""

    duration_s: float
    warmup_s: float
    connections: tuple[int, ...]
    workers: tuple[int, ...] = (1, 2)
    ingest_baseline_s: float = 8.0
    # A 500-event batch costs ~1000× a GET; 64 such requests in flight would only queue.
    event_connections: tuple[int, ...] = (4, 16)
    events_duration_s: float = 10.0
    hot_users: int = 1000


@dataclass(frozen=True)
class Ids:
    """Real ids of the prepared store, shuffled with a fixed seed for a realistic mix."""

    users: list[str]
    items: list[str]


@dataclass
class Server:
    """A server subprocess we started and own."""

    process: subprocess.Popen
    port: int
    workers: int
    log: Path
    start_s: float = 0.0

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Every process of the server (the parent and its workers)."""
        return procs.descendants(self.process.pid)

    def worker_pids(self) -> list[int]:
        """The processes that answer requests."""
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in self.pids() if "spawn_main" in procs.cmdline(pid)]

    def stop(self) -> None:
        """Stop the whole process group."""
        procs.stop_process(self.process)


def _start(command: list[str], env: dict[str, str], workers: int, log: Path, ready: str) -> Server:
    """Start a server and wait until every worker has started and /ready answers."""
    port = procs.free_port()
    command = [*command, "--port", str(port), "--workers", str(workers)]
    handle = log.open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Server(process, port, workers, log)
    try:
        while log.read_text(errors="replace").count("Application startup complete") < workers:
            if process.poll() is not None or time.monotonic() - started > 180:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.05)
        procs.wait_until_ready(f"{server.url}/ready", process, expect=ready.encode())
    except BaseException:
        server.stop()
        raise
    server.start_s = time.monotonic() - started
    return server


def start_service(env: dict[str, str], workers: int, log: Path) -> Server:
    """`tastemaker serve --workers N` on a free port with `env`."""
    command = [*store.tastemaker_command(), "serve", "--host", "127.0.0.1"]
    return _start(command, env, workers, log, ready='"state":"loaded"')


def start_baseline(workers: int, payload_bytes: int, log: Path) -> Server:
    """The bare FastAPI baseline with the service's uvicorn settings."""
    command = [
        sys.executable, "-m", "benchmarks.baseline_app", "--host", "127.0.0.1",
        "--payload-bytes", str(payload_bytes),
    ]  # fmt: skip
    env = {**store.clean_environment(), "PYTHONPATH": str(store.ROOT)}
    return _start(command, env, workers, log, ready='"ready"')


def read_ids(url: str) -> Ids:
    """User and available item ids of a store, shuffled deterministically."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            users = list(conn.scalars(text("SELECT DISTINCT user_id FROM event ORDER BY 1")))
            items = list(conn.scalars(text("SELECT id FROM item WHERE is_available ORDER BY id")))
    finally:
        engine.dispose()
    rng = random.Random(0)
    rng.shuffle(users)
    rng.shuffle(items)
    return Ids(users, items)


def event_rows(ids: Ids, prefix: str, seed: int) -> list[dict[str, Any]]:
    """One batch of realistic events over real users and items (event ids carry `prefix`)."""
    rng = random.Random(seed)
    rows = []
    for k in range(EVENTS_PER_BATCH):
        kind = rng.choices(EVENT_TYPES, EVENT_TYPE_SHARES)[0]
        row: dict[str, Any] = {
            "event_id": f"{prefix}-{k}",
            "user_id": rng.choice(ids.users),
            "item_id": rng.choice(ids.items),
            "type": kind,
        }
        if kind == "purchase":
            row["value"] = round(rng.uniform(1, 60), 2)
            row["order_id"] = f"{prefix}-o{k // 5}"
        rows.append(row)
    return rows


def workloads(ids: Ids, hot_users: int | None = None) -> dict[str, Workload]:
    """The measured endpoints and how each is driven (`hot_users`: the returning customers)."""
    users, items = ids.users[:hot_users], ids.items
    return {
        # Returning customers: every one is requested once first, so answers come from cache.
        "recommend_cached": Workload([f"/recommend/{u}" for u in users]),
        # A per-request nonce in `exclude` makes every cache key new (same work as a new user
        # or a new n, same payload size); the users' histories stay cached, as in production.
        "recommend_uncached": Workload([f"/recommend/{u}?exclude=x{{n}}" for u in users]),
        "segment": Workload([f"/segment/{u}" for u in users]),
        "similar": Workload([f"/items/{i}/similar" for i in items]),
        "events": Workload(
            ["/events"],
            method="POST",
            body=orjson.dumps({"events": event_rows(ids, "b{n}", seed=1)}).decode(),
        ),
    }


def measure(
    server: Server,
    workload: Workload,
    *,
    connections: int,
    duration_s: float,
    warmup_s: float,
    store_pids: list[int],
    tag: str,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Warm up, then run wrk once and read CPU counters around it."""
    if warmup_s > 0:
        run_wrk(
            server.url,
            workload,
            connections=connections,
            duration_s=warmup_s,
            run_tag=f"w{tag}",
            timeout_s=timeout_s,
        )
    before = procs.sample_cpu(server.process.pid, store_pids, STORE_MARKER)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(
        server.url,
        workload,
        connections=connections,
        duration_s=duration_s,
        run_tag=tag,
        timeout_s=timeout_s,
    )
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = procs.sample_cpu(server.process.pid, store_pids, STORE_MARKER)
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    elapsed = after.at - before.at
    server_cpu = after.server - before.server
    store_cpu = before.store_delta(after)
    machine_cpu = after.machine - before.machine
    n = max(result.requests, 1)
    other = max(machine_cpu - server_cpu - store_cpu - wrk_cpu, 0.0)
    row = result.as_dict()
    row.update(
        {
            "connections": connections,
            "server_cpu_us_per_req": round(server_cpu / n * 1e6, 1),
            "store_cpu_us_per_req": round(store_cpu / n * 1e6, 1),
            "wrk_cpu_us_per_req": round(wrk_cpu / n * 1e6, 1),
            "server_cores_busy": round(server_cpu / elapsed, 2),
            "other_cpu_share": round(other / (elapsed * (os.cpu_count() or 1)), 3),
        }
    )
    return row


def prime(server: Server, paths: list[str], concurrency: int = 16) -> float:
    """Request every path in every worker (keep-alive, `concurrency` at a time); return seconds.

    A keep-alive connection stays with the worker that accepted it, and in the embedded shape
    each worker caches only what it answered itself: one pass would leave each answer cached
    in one worker, and the "cached" rows would be half misses. Each pass opens new
    connections, so ``4 × workers`` passes leave an answer uncached in some worker with a
    chance of 2^-8 at two workers.
    """
    started = time.perf_counter()
    for _ in range(1 if server.workers == 1 else 4 * server.workers):
        _prime_pass(server, paths, concurrency)
    return time.perf_counter() - started


def _prime_pass(server: Server, paths: list[str], concurrency: int) -> None:
    chunks = [paths[i::concurrency] for i in range(concurrency)]

    def walk(chunk: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for path in chunk:
                connection.request("GET", path)
                connection.getresponse().read()
        finally:
            connection.close()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(walk, chunks))


def memory_of(server: Server) -> dict[str, Any]:
    """Rss, Pss, Shared_* and Private_* of each worker (and the parent), in MiB."""
    keys = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")

    def mib(values: dict[str, int]) -> dict[str, float]:
        return {k: round(values.get(k, 0) / 2**20, 1) for k in keys}

    workers = [mib(procs.smaps_rollup(pid)) for pid in server.worker_pids()]
    out: dict[str, Any] = {"workers": workers}
    if server.workers > 1:
        out["parent"] = mib(procs.smaps_rollup(server.process.pid))
    out["total_pss_mib"] = round(
        sum(w["Pss"] for w in workers) + out.get("parent", {}).get("Pss", 0.0), 1
    )
    return out


def recommend_payload_bytes(server: Server, users: list[str], sample: int = 50) -> int:
    """Mean size of real /recommend answers (the baseline answers this many bytes)."""
    sizes = []
    for user in users[:sample]:
        status, body = procs.http_get(f"{server.url}/recommend/{user}")
        if status == 200:
            sizes.append(len(body))
    if not sizes:
        raise RuntimeError("the service answered no /recommend request with 200")
    return round(sum(sizes) / len(sizes))


def clear_redis_prefix(prefix: str) -> int:
    """Delete every Redis key under our own prefix; return how many."""
    client = redis.Redis.from_url(store.REDIS_URL)
    try:
        deleted = 0
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()


def bulk_insert_baseline(url: str, ids: Ids, duration_s: float, tag: str) -> dict[str, Any]:
    """Plain SQLAlchemy Core bulk inserts of the same event rows, one connection, 500 a batch."""
    from app.events.models import Event

    engine = create_engine(url)
    table = Event.__table__
    template = event_rows(ids, "x", seed=1)
    batches = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < duration_s:
            now = datetime.now(UTC)
            rows = [
                {
                    "event_id": f"bulk{tag}-{batches}-{k}",
                    "user_id": r["user_id"],
                    "item_id": r["item_id"],
                    "type": r["type"],
                    "value": r.get("value"),
                    "order_id": r.get("order_id"),
                    "occurred_at": now,
                    "received_at": now,
                }
                for k, r in enumerate(template)
            ]
            with engine.begin() as conn:
                conn.execute(insert(table), rows)
            batches += 1
    finally:
        elapsed = time.perf_counter() - started
        engine.dispose()
    return {
        "events": batches * EVENTS_PER_BATCH,
        "seconds": round(elapsed, 2),
        "events_per_s": round(batches * EVENTS_PER_BATCH / elapsed, 1),
        "how": "SQLAlchemy Core insert(event) executemany, 500 rows per transaction, 1 connection",
    }


def service_env(
    *, database_url: str | None, redis_prefix: str | None, model_dir: Path, data_dir: Path
) -> dict[str, str]:
    """Environment of a service process: only the settings we choose."""
    env = {
        **store.clean_environment(),
        "TASTEMAKER_MODEL_DIR": str(model_dir),
        "TASTEMAKER_DATA_DIR": str(data_dir),
        # wrk is one client address: the per-client limits (1000 read/s by default) would
        # measure the limiter's 429s. The limiter still runs on every request.
        "TASTEMAKER_RATE_LIMITS": RATE_LIMITS,
    }
    if database_url:
        env["TASTEMAKER_DATABASE_URL"] = database_url
    if redis_prefix:
        env["TASTEMAKER_REDIS_URL"] = store.REDIS_URL
        env["TASTEMAKER_CACHE_PREFIX"] = redis_prefix
    return env


def run_service_suite(
    server: Server,
    ids: Ids,
    plan: Plan,
    *,
    backend: str,
    store_pids: list[int],
    say: Say,
    tag: str,
) -> list[dict[str, Any]]:
    """Every endpoint at every connection count against one running service."""
    rows = []
    loads = workloads(ids, plan.hot_users)
    for name, workload in loads.items():
        primed_s = None
        if name in PRIMED:
            say(f"  {backend} w{server.workers} {name}: priming every id in every worker")
            primed_s = round(prime(server, workload.paths), 2)
        is_events = name == "events"
        for connections in plan.event_connections if is_events else plan.connections:
            say(f"  {backend} w{server.workers} {name} c{connections}")
            row = measure(
                server,
                workload,
                connections=connections,
                duration_s=plan.events_duration_s if is_events else plan.duration_s,
                # No warm-up for ingestion: requests wrk abandons would still be written
                # during the measurement.
                warmup_s=0 if is_events else plan.warmup_s,
                store_pids=store_pids,
                tag=f"{tag}{name[:3]}{connections}",
                timeout_s=60 if is_events else 10,
            )
            row.update({"backend": backend, "workers": server.workers, "endpoint": name})
            if primed_s is not None:
                row["primed_s"] = primed_s
            if name == "events":
                row["events_per_s"] = round(row["rps"] * EVENTS_PER_BATCH, 1)
            rows.append(row)
    return rows


def _serve_and_measure(
    env: dict[str, str],
    backend: str,
    ids: Ids,
    plan: Plan,
    workers: int,
    logs: Path,
    store_pids: list[int],
    say: Say,
    out: dict[str, Any],
) -> None:
    """Start the service, run every endpoint, read its memory, stop it; append to `out`."""
    say(f"{backend}, {workers} worker(s): starting")
    log = logs / f"{backend}-w{workers}.log"
    server = start_service(env, workers, log)
    try:
        what = {"backend": backend, "workers": workers, "bundle": "online-retail"}
        out["startup"].append({**what, "ready_s": round(server.start_s, 2)})
        idle = memory_of(server)
        if out["payload_bytes"] is None:
            out["payload_bytes"] = recommend_payload_bytes(server, ids.users)
        out["rows"] += run_service_suite(
            server,
            ids,
            plan,
            backend=backend,
            store_pids=store_pids,
            say=say,
            tag=f"{backend[0]}{workers}",
        )
        out["memory"].append({**what, "after_start": idle, "after_load": memory_of(server)})
    finally:
        server.stop()
    # The cache degrades (breaker open) when a Redis call times out: count it per server.
    out["degraded_cache"].append(
        {**what, "breaker_openings": log.read_text(errors="replace").count("degrading for")}
    )


def _measure_baseline(
    ids: Ids, plan: Plan, workers: int, logs: Path, say: Say, out: dict[str, Any]
) -> None:
    """The bare FastAPI ceiling at every connection count."""
    say(f"baseline, {workers} worker(s)")
    base = start_baseline(workers, out["payload_bytes"], logs / f"baseline-w{workers}.log")
    workload = Workload([f"/recommend/{u}" for u in ids.users])
    try:
        for connections in plan.connections:
            row = measure(
                base,
                workload,
                connections=connections,
                duration_s=plan.duration_s,
                warmup_s=plan.warmup_s,
                store_pids=[],
                tag=f"b{workers}{connections}",
            )
            row.update({"backend": "baseline", "workers": workers, "endpoint": "baseline"})
            out["rows"].append(row)
        what = {"backend": "baseline", "workers": workers, "bundle": "none (bare FastAPI)"}
        out["startup"].append({**what, "ready_s": round(base.start_s, 2)})
        out["memory"].append({**what, "after_start": None, "after_load": memory_of(base)})
    finally:
        base.stop()


def run_serving(
    prepared: store.PreparedStore, plan: Plan, work: Path, run_id: str, say: Say
) -> dict[str, Any]:
    """The whole serving section: PostgreSQL + Redis, the baseline, SQLite + in-process cache."""
    out: dict[str, Any] = {
        "rows": [], "memory": [], "startup": [], "ingest_baseline": [], "degraded_cache": [],
        "payload_bytes": None,
    }  # fmt: skip
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    store_pids = store.store_roots()
    pg_models, sqlite_models = work / "pg-models", work / "sqlite-models"
    ids: Ids | None = None
    for workers in plan.workers:
        # A fresh clone per server: ingestion never leaks into the next measurement.
        url = store.stage_postgres(prepared, pg_models)
        ids = ids or read_ids(url)
        prefix = f"tmbench:{run_id}:w{workers}:"
        env = service_env(
            database_url=url, redis_prefix=prefix, model_dir=pg_models, data_dir=work / "pg-data"
        )
        try:
            _serve_and_measure(env, "postgres", ids, plan, workers, logs, store_pids, say, out)
        finally:
            clear_redis_prefix(prefix)
        say("  plain SQLAlchemy bulk insert into PostgreSQL (ingestion baseline)")
        bulk = bulk_insert_baseline(url, ids, plan.ingest_baseline_s, f"p{workers}")
        out["ingest_baseline"].append({"backend": "postgres", "workers_run": workers, **bulk})
        store.drop_bench_database()

        _measure_baseline(ids, plan, workers, logs, say, out)

        sqlite_file = store.stage_sqlite(prepared, work / "sqlite-data", sqlite_models)
        env = service_env(
            database_url=None, redis_prefix=None, model_dir=sqlite_models,
            data_dir=work / "sqlite-data",
        )  # fmt: skip
        _serve_and_measure(env, "sqlite", ids, plan, workers, logs, [], say, out)
        say("  plain SQLAlchemy bulk insert into SQLite (ingestion baseline)")
        bulk = bulk_insert_baseline(
            f"sqlite:///{sqlite_file}", ids, plan.ingest_baseline_s, f"s{workers}"
        )
        out["ingest_baseline"].append({"backend": "sqlite", "workers_run": workers, **bulk})
        if workers == max(plan.workers):
            # A fresh copy: the suite's ingestion measurements wrote into the last one.
            store.stage_sqlite(prepared, work / "sqlite-data", sqlite_models)
            say("  per-request layers of cached /recommend, in process (benchmarks/overhead.py)")
            paths = workloads(ids, plan.hot_users)["recommend_cached"].paths
            out["overhead"] = overhead.run(env, paths, logs / "overhead.log")
    kept = report.RESULTS_DIR / f"{run_id}-logs"
    shutil.copytree(logs, kept, dirs_exist_ok=True)
    shutil.rmtree(work / "sqlite-data", ignore_errors=True)
    out["users"] = len(ids.users) if ids else 0
    out["items"] = len(ids.items) if ids else 0
    out["server_logs"] = str(kept)
    return out


def serve_bundle_memory(
    bundle: Path, work: Path, workers_list: tuple[int, ...], seconds: float, say: Say
) -> list[dict[str, Any]]:
    """Start-up time and memory of the service serving a large synthetic bundle (SQLite store)."""
    from app.ml.bundle import read_component, read_manifest
    from benchmarks.training import SYNTHETIC_STORE_ID

    _, catalog = read_component(bundle / "catalog")
    item_ids = list(catalog["item_ids"])
    rng = random.Random(0)
    rng.shuffle(item_ids)
    _, members = read_component(bundle / "members")
    user_ids = list(members["user_ids"])
    rng.shuffle(user_ids)
    data_dir, models_dir = work / "big-data", work / "big-models"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir(parents=True)
    (models_dir / "v1").symlink_to(bundle.resolve(), target_is_directory=True)
    env = service_env(database_url=None, redis_prefix=None, model_dir=models_dir, data_dir=data_dir)
    data_dir.mkdir(parents=True)
    subprocess.run(
        [*store.tastemaker_command(), "migrate"], env=env, check=True, capture_output=True
    )
    store.adopt_store_identity(
        data_dir / "tastemaker.db", read_manifest(bundle).get("store_id") or SYNTHETIC_STORE_ID
    )
    engine = create_engine(f"sqlite:///{data_dir / 'tastemaker.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_version (version, created_at, path, metrics, is_active) VALUES (1, :t, :p, '{}', 1)"
            ),
            {
                "t": datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),
                "p": str(models_dir / "v1"),
            },
        )
    engine.dispose()
    out = []
    for workers in workers_list:
        say(f"{len(item_ids)}-item bundle, {workers} worker(s): start-up and memory")
        server = start_service(env, workers, work / "logs" / f"big-w{workers}.log")
        try:
            idle = memory_of(server)
            load = Workload([f"/items/{i}/similar" for i in item_ids])
            similar = run_wrk(server.url, load, connections=32, duration_s=seconds, run_tag="m")
            recommend = run_wrk(
                server.url,
                Workload([f"/recommend/{u}" for u in user_ids]),
                connections=32,
                duration_s=seconds,
                run_tag="m",
            )
            out.append(
                {
                    "backend": "sqlite",
                    "workers": workers,
                    "bundle": f"synthetic-{len(item_ids)}-items",
                    "bundle_mib": round(procs.dir_bytes(bundle) / 2**20, 1),
                    "ready_s": round(server.start_s, 2),
                    "after_start": idle,
                    "after_load": memory_of(server),
                    "load": {
                        "similar_rps": round(similar.rps, 1),
                        "recommend_rps": round(recommend.rps, 1),
                        "note": "users unknown to this store: cold-start answers",
                    },
                }
            )
        finally:
            server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    return out
