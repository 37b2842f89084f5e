"""Prepared stores for the serving benchmarks: Online Retail imported and trained, cached safely.

Preparing a store runs the real commands (`tastemaker migrate`, `tastemaker import
online-retail ...`, `tastemaker train`) on PostgreSQL; it takes minutes, so the result is kept:

* the imported database as the PostgreSQL template ``tastemaker_bench_tpl``, the trained bundle
  and the SQLite copy of the store under ``benchmarks/results/cache/<fingerprint>/``;
* the fingerprint hashes everything the prepared state depends on: the dataset file, every
  source file of ``app/`` and ``migrations/``, the PostgreSQL server version and the numeric
  library versions. Any change prepares again; a template whose comment is another
  fingerprint is dropped. Templates are never connected to, only copied
  (``CREATE DATABASE ... TEMPLATE``), so every run starts from the same bytes.

Each run then clones the template into ``tastemaker_bench`` (dropped and recreated per server
start, so ingestion never leaks into the next measurement) and copies the bundle into the
run's own model directory, pointing ``model_version.path`` at the copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "data" / "online-retail" / "online-retail-all.csv.xz"
CACHE_ROOT = ROOT / "benchmarks" / "results" / "cache"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_DB = "tastemaker_bench"
TEMPLATE_DB = "tastemaker_bench_tpl"  # imported and trained
DATA_TEMPLATE_DB = "tastemaker_bench_data"  # imported only

Say = Callable[[str], None]


def tastemaker_command() -> list[str]:
    """The `tastemaker` console script of this environment (or `python -m app.cli`)."""
    script = Path(sys.executable).with_name("tastemaker")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def clean_environment() -> dict[str, str]:
    """This process's environment without any TASTEMAKER_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}


# What the imported store depends on (schema, importer, ORM models and their SQL) and what the
# trained bundle depends on in addition (the ML core, the trainer, the settings it reads).
# Serving code (routers, services, cache, server) is left out: it never touches prepared state.
DATA_SOURCES = (
    "alembic.ini",
    "migrations/**/*.py",
    "migrations/*.mako",
    "app/importers.py",
    "app/datasets/**/*.py",
    "app/db.py",
    "app/models.py",
    "app/*/models.py",
    "app/*/repository.py",
)
MODEL_SOURCES = ("app/ml/**/*.py", "app/training/**/*.py", "app/config.py", "benchmarks/store.py")


def _hash_files(digest: Any, patterns: tuple[str, ...]) -> None:
    """Feed every matching file (relative path and bytes, in sorted order) to `digest`."""
    paths = {p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()}
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())


def fingerprints(pg_version: str) -> tuple[str, str]:
    """(data, model) hashes of everything the imported store and the trained bundle depend on."""
    import numpy
    import scipy
    import sklearn

    data = hashlib.sha256()
    data.update(DATASET.read_bytes())
    data.update(pg_version.encode())
    _hash_files(data, DATA_SOURCES)
    model = hashlib.sha256(data.digest())
    _hash_files(model, MODEL_SOURCES)
    model.update(f"{numpy.__version__}|{scipy.__version__}|{sklearn.__version__}".encode())
    return data.hexdigest()[:16], model.hexdigest()[:16]


def _admin():
    """An engine on the `postgres` database able to CREATE/DROP DATABASE."""
    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)


def postgres_version() -> str:
    """The server version string of the shared PostgreSQL."""
    engine = _admin()
    try:
        with engine.connect() as conn:
            return str(conn.scalar(text("SHOW server_version")))
    finally:
        engine.dispose()


def store_roots() -> list[int]:
    """Process ids of the shared PostgreSQL postmaster and Redis server (for CPU accounting)."""
    import redis

    from benchmarks.procs import parent_of

    roots = []
    engine = _admin()
    try:
        with engine.connect() as conn:
            backend = conn.scalar(text("SELECT pg_backend_pid()"))
        # 0 when not found: roots[0] is always the postmaster's place (procs.store_process_cpu).
        roots.append(parent_of(int(backend)) or 0)
    finally:
        engine.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        roots.append(int(client.info("server")["process_id"]))
    finally:
        client.close()
    return roots


def _stamp_of(database: str) -> str | None:
    """The fingerprint stored as a template database's comment, if it exists."""
    engine = _admin()
    try:
        with engine.connect() as conn:
            return conn.scalar(
                text(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname = :name"
                ),
                {"name": database},
            )
    finally:
        engine.dispose()


def _drop_database(conn: Any, name: str) -> None:
    """Drop one of our databases, ending connections left to it."""
    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def recreate_database(name: str = BENCH_DB, template: str | None = None) -> float:
    """Drop `name` and create it again (as a copy of `template`); return seconds taken."""
    started = time.perf_counter()
    engine = _admin()
    try:
        with engine.connect() as conn:
            _drop_database(conn, name)
            clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _save_template(source: str, template: str, stamp: str) -> None:
    """Copy `source` to the template database `template`, stamped with `stamp`."""
    engine = _admin()
    try:
        with engine.connect() as conn:
            _drop_database(conn, template)
            conn.execute(text(f'CREATE DATABASE "{template}" TEMPLATE "{source}"'))
            conn.execute(text(f"COMMENT ON DATABASE \"{template}\" IS '{stamp}'"))
    finally:
        engine.dispose()


def drop_bench_database() -> None:
    """Drop the per-run database (the template stays)."""
    engine = _admin()
    try:
        with engine.connect() as conn:
            _drop_database(conn, BENCH_DB)
    finally:
        engine.dispose()


def _run_cli(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run one `tastemaker` command, its output appended to `log`; raise when it fails."""
    with log.open("a") as out:
        out.write(f"$ tastemaker {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [*tastemaker_command(), *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise RuntimeError(f"`tastemaker {' '.join(args)}` failed; see {log}")


@dataclass(frozen=True)
class PreparedStore:
    """Where the prepared Online Retail store and its bundle live for this run."""

    fingerprint: str
    cache_dir: Path
    reused: str
    prepare_s: float
    timings: dict[str, float]

    @property
    def bundle_dir(self) -> Path:
        """The trained model directory (holds v1)."""
        return self.cache_dir / "models"

    @property
    def sqlite_file(self) -> Path:
        """The prepared SQLite store."""
        return self.cache_dir / "sqlite" / "tastemaker.db"


def prepare(say: Say) -> PreparedStore:
    """Return the prepared store for the current code and data, preparing what is stale."""
    if not DATASET.exists():
        raise SystemExit(f"the Online Retail file is missing at {DATASET} (see shared/data)")
    data_stamp, model_stamp = fingerprints(postgres_version())
    data_dir = CACHE_ROOT / f"data-{data_stamp}"
    model_dir = CACHE_ROOT / f"model-{model_stamp}"
    marker = model_dir / "prepared.json"
    if marker.exists() and _stamp_of(TEMPLATE_DB) == model_stamp:
        say(f"prepared store {model_stamp} reused")
        timings = json.loads(marker.read_text()).get("timings", {})
        return PreparedStore(model_stamp, model_dir, "all", 0.0, timings)
    for stale in CACHE_ROOT.glob("*-*"):
        if stale.is_dir() and stale not in (data_dir, model_dir):
            shutil.rmtree(stale, ignore_errors=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    reused = "imported data"
    if (data_dir / "prepared.json").exists() and _stamp_of(DATA_TEMPLATE_DB) == data_stamp:
        recreate_database(BENCH_DB, DATA_TEMPLATE_DB)
    else:
        reused = "nothing"
        say(f"importing Online Retail into PostgreSQL and SQLite ({data_stamp}; once per schema)")
        timings["import_s"] = _import(data_dir)
        _save_template(BENCH_DB, DATA_TEMPLATE_DB, data_stamp)
        (data_dir / "prepared.json").write_text(json.dumps({"timings": timings}))
    say(f"training the Online Retail bundle ({model_stamp}; once per ML code change)")
    shutil.rmtree(model_dir, ignore_errors=True)
    (model_dir / "sqlite").mkdir(parents=True)
    t0 = time.perf_counter()
    env = {
        **clean_environment(),
        "TASTEMAKER_DATABASE_URL": PG_URL.format(db=BENCH_DB),
        "TASTEMAKER_MODEL_DIR": str(model_dir / "models"),
        "TASTEMAKER_DATA_DIR": str(model_dir / "data"),
    }
    _run_cli(["train"], env, model_dir / "prepare.log")
    timings["train_s"] = time.perf_counter() - t0
    shutil.copy2(data_dir / "sqlite" / "tastemaker.db", model_dir / "sqlite" / "tastemaker.db")
    _copy_model_versions(PG_URL.format(db=BENCH_DB), model_dir / "sqlite" / "tastemaker.db")
    _save_template(BENCH_DB, TEMPLATE_DB, model_stamp)
    drop_bench_database()
    timings["total_s"] = time.perf_counter() - started
    marker.write_text(json.dumps({"timings": timings, "data": data_stamp}, indent=2))
    return PreparedStore(model_stamp, model_dir, reused, timings["total_s"], timings)


def _import(data_dir: Path) -> float:
    """Migrate and import Online Retail into a fresh BENCH_DB and a SQLite file, side by side."""
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "sqlite").mkdir(parents=True)
    started = time.perf_counter()
    recreate_database()
    env = {**clean_environment(), "TASTEMAKER_DATABASE_URL": PG_URL.format(db=BENCH_DB)}
    sqlite_env = {**clean_environment(), "TASTEMAKER_DATA_DIR": str(data_dir / "sqlite")}
    log, sqlite_log = data_dir / "import.log", data_dir / "import-sqlite.log"
    _run_cli(["migrate"], env, log)
    _run_cli(["migrate"], sqlite_env, sqlite_log)
    # Two independent single-threaded imports: run them side by side on the two cores.
    with sqlite_log.open("a") as out:
        sqlite_import = subprocess.Popen(
            [*tastemaker_command(), "import", "online-retail", str(DATASET)],
            env=sqlite_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _run_cli(["import", "online-retail", str(DATASET)], env, log)
        finally:
            code = sqlite_import.wait()
    if code != 0:
        raise RuntimeError(f"the SQLite import failed; see {sqlite_log}")
    checkpoint_sqlite(data_dir / "sqlite" / "tastemaker.db")
    return time.perf_counter() - started


def adopt_store_identity(sqlite_file: Path, store_id: str) -> None:
    """Give a SQLite store the identity `store_id`: it holds a copy of that store's data.

    Workers serve only bundles of their own store; the benchmark serves one bundle from two
    copies of the same data (and a synthetic bundle from a store made for it).
    """
    with contextlib.closing(sqlite3.connect(sqlite_file)) as db:
        db.execute("DELETE FROM store_identity")
        db.execute(
            "INSERT INTO store_identity (id, store_id, created_at) VALUES (1, ?, ?)",
            (store_id, datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")),
        )
        db.commit()


def _copy_model_versions(pg_url: str, sqlite_file: Path) -> None:
    """Register the bundle trained on PostgreSQL in the SQLite store (same rows, same model)."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT version, created_at, path, metrics, is_active, note FROM model_version"
                )
            ).all()
            store_id = conn.execute(text("SELECT store_id FROM store_identity")).scalar_one()
    finally:
        engine.dispose()
    adopt_store_identity(sqlite_file, store_id)
    with contextlib.closing(sqlite3.connect(sqlite_file)) as db:
        db.executemany(
            "INSERT INTO model_version (version, created_at, path, metrics, is_active, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    r[0],
                    r[1].replace(tzinfo=None).isoformat(sep=" "),
                    r[2],
                    json.dumps(r[3]),
                    r[4],
                    r[5],
                )
                for r in rows
            ],
        )
        db.commit()
    checkpoint_sqlite(sqlite_file)


def checkpoint_sqlite(sqlite_file: Path) -> None:
    """Fold the write-ahead log into the database file, so copying the file copies everything."""
    with contextlib.closing(sqlite3.connect(sqlite_file)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def point_bundle_at(url: str, models_dir: Path) -> None:
    """Rewrite model_version.path in a cloned store to the copy under `models_dir`."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for version, path in conn.execute(text("SELECT version, path FROM model_version")):
                new_path = str(models_dir / Path(path).name)
                conn.execute(
                    text("UPDATE model_version SET path = :p WHERE version = :v"),
                    {"p": new_path, "v": version},
                )
    finally:
        engine.dispose()


def stage_postgres(prepared: PreparedStore, models_dir: Path) -> str:
    """Clone the template into the per-run database and stage the bundle; return its URL."""
    recreate_database(BENCH_DB, TEMPLATE_DB)
    _copy_bundle(prepared, models_dir)
    url = PG_URL.format(db=BENCH_DB)
    point_bundle_at(url, models_dir)
    return url


def stage_sqlite(prepared: PreparedStore, data_dir: Path, models_dir: Path) -> Path:
    """Copy the prepared SQLite store into `data_dir` and stage the bundle; return the file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("tastemaker.db*"):
        stale.unlink()
    target = data_dir / "tastemaker.db"
    shutil.copy2(prepared.sqlite_file, target)
    _copy_bundle(prepared, models_dir)
    point_bundle_at(f"sqlite:///{target}", models_dir)
    return target


def _copy_bundle(prepared: PreparedStore, models_dir: Path) -> None:
    """Copy the trained bundle directory into the run's model directory (fresh)."""
    shutil.rmtree(models_dir, ignore_errors=True)
    shutil.copytree(prepared.bundle_dir, models_dir)
