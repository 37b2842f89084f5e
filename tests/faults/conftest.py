"""Fixtures of the fault tests: private PostgreSQL and Redis servers, private stores."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.migrate import upgrade
from tests.faults.servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this session alone, with a migrated database `tastemaker`."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
        admin = create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE tastemaker"))
        admin.dispose()
        upgrade(server.url("tastemaker"))
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(private_pg: PostgresServer) -> str:
    """The private database, running and empty (every table but Alembic's truncated)."""
    if not private_pg.is_running():  # a previous test may have failed mid-outage
        private_pg.start()
    url = private_pg.url("tastemaker")
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = (
            conn.execute(
                text(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            )
            .scalars()
            .all()
        )
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated SQLite file of this test."""
    path = tmp_path / "tastemaker.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"
